// Places one order through the storefront API, as a shopper would, then
// cancels it through the admin API: proof that the store can sell.
//
//   node src/scripts/order-check.js        (the built server's directory)
//
// It exits 0 and prints the order id on stdout, or exits 1 and prints
// "order check failed at <step>: <detail>"; that line also goes to the
// container's termination message (/dev/termination-log), where the
// platform reads it without the pod's logs. Progress goes to stderr.
//
// Inputs, from the environment:
//   MEDUSA_URL              the server (http://localhost:9000)
//   ADMIN_EMAIL, ADMIN_PASSWORD
//                           an admin user: looks up the publishable key and
//                           cancels the order
//   MEDUSA_PUBLISHABLE_KEY  the key to shop with; when empty, the key titled
//   PUBLISHABLE_KEY_TITLE   (storeprov) is looked up through the admin API
//   STORE_CURRENCY          prefer the region in this currency (any region)
//   ORDER_CHECK_WAIT_SECONDS
//                           how long to wait for the server to answer
//                           /health and for the key titled
//                           PUBLISHABLE_KEY_TITLE, which the seed creates
//                           last (300)
//   ORDER_CHECK_TIMEOUT_SECONDS
//                           the limit of each request (30)
//
// Node 18 or later (fetch); no dependency.
import { writeFileSync } from "fs"

class StepError extends Error {
  constructor(
    readonly step: string,
    detail: string
  ) {
    super(detail)
  }
}

const env = (name: string, def = "") => {
  const v = process.env[name]
  return v === undefined || v.trim() === "" ? def : v.trim()
}

const baseUrl = env("MEDUSA_URL", "http://localhost:9000").replace(/\/+$/, "")
const requestTimeoutMs = Number(env("ORDER_CHECK_TIMEOUT_SECONDS", "30")) * 1000
const waitSeconds = Number(env("ORDER_CHECK_WAIT_SECONDS", "300"))

const progress = (msg: string) => process.stderr.write(`order-check: ${msg}\n`)

type Json = any

// call sends one request and returns the JSON body of a 2xx answer; any
// other answer fails step with the status and Medusa's message.
async function call(step: string, method: string, path: string, opts: { body?: unknown; headers?: Record<string, string> } = {}): Promise<Json> {
  let res: Response
  try {
    res = await fetch(baseUrl + path, {
      method,
      headers: { accept: "application/json", ...(opts.body !== undefined ? { "content-type": "application/json" } : {}), ...opts.headers },
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      signal: AbortSignal.timeout(requestTimeoutMs),
    })
  } catch (err: any) {
    throw new StepError(step, `${method} ${path}: ${err?.message ?? err} (${reason(err)})`)
  }
  const text = await res.text()
  let body: Json = undefined
  try {
    body = text ? JSON.parse(text) : undefined
  } catch {
    // not JSON; reported below when the status is an error
  }
  if (!res.ok) {
    const message = body?.message ?? text.slice(0, 200)
    throw new StepError(step, `${method} ${path}: HTTP ${res.status}${message ? `: ${message}` : ""}`)
  }
  return body
}

// reason names why fetch failed: ECONNREFUSED, ENOTFOUND, a timeout.
const reason = (err: any): string =>
  err?.cause?.code || err?.cause?.errors?.[0]?.code || err?.cause?.message || err?.name || String(err)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// The server and the seed may still be starting: both waits share one
// deadline.
const deadline = Date.now() + waitSeconds * 1000

async function waitForHealth() {
  for (;;) {
    try {
      const res = await fetch(baseUrl + "/health", { signal: AbortSignal.timeout(5000) })
      if (res.ok) return
      if (Date.now() >= deadline) throw new StepError("health", `GET /health: HTTP ${res.status} after ${waitSeconds}s`)
    } catch (err: any) {
      if (err instanceof StepError) throw err
      if (Date.now() >= deadline) {
        throw new StepError("health", `GET /health: ${reason(err)} after ${waitSeconds}s`)
      }
    }
    await sleep(3000)
  }
}

async function check(): Promise<string> {
  await waitForHealth()
  progress(`${baseUrl} answers`)

  const email = env("ADMIN_EMAIL")
  const password = process.env.ADMIN_PASSWORD ?? ""
  if (!email || !password) {
    throw new StepError("sign-in", "ADMIN_EMAIL and ADMIN_PASSWORD are required")
  }
  const auth = await call("sign-in", "POST", "/auth/user/emailpass", { body: { email, password } })
  if (!auth?.token) throw new StepError("sign-in", "no token in the answer")
  const admin = { authorization: `Bearer ${auth.token}` }

  let key = env("MEDUSA_PUBLISHABLE_KEY")
  if (!key) {
    const title = env("PUBLISHABLE_KEY_TITLE", "storeprov")
    for (;;) {
      const res = await call("publishable-key", "GET", `/admin/api-keys?type=publishable&title=${encodeURIComponent(title)}&fields=id,title,token,revoked_at`, { headers: admin })
      const found = (res?.api_keys ?? []).find((k: Json) => k.title === title && !k.revoked_at && k.token)
      if (found) {
        key = found.token as string
        break
      }
      if (Date.now() >= deadline) {
        throw new StepError("publishable-key", `no publishable API key titled ${JSON.stringify(title)} after ${waitSeconds}s`)
      }
      await sleep(5000)
    }
  }
  const store = { "x-publishable-api-key": key }

  const { regions } = await call("region", "GET", "/store/regions?fields=id,currency_code,*countries", { headers: store })
  const currency = env("STORE_CURRENCY").toLowerCase()
  const usable = (regions ?? []).filter((r: Json) => (r.countries ?? []).length > 0)
  const region = usable.find((r: Json) => r.currency_code === currency) ?? usable[0]
  if (!region) throw new StepError("region", "the store has no region with a country")
  const country = region.countries[0].iso_2 as string
  progress(`region ${region.id} (${region.currency_code}, ${country})`)

  const { products } = await call(
    "product",
    "GET",
    `/store/products?region_id=${region.id}&limit=50&fields=id,handle,*variants,*variants.calculated_price,+variants.inventory_quantity`,
    { headers: store }
  )
  let variant: Json
  for (const p of products ?? []) {
    variant = (p.variants ?? []).find(
      (v: Json) => v.calculated_price?.calculated_amount != null && (!v.manage_inventory || v.allow_backorder || (v.inventory_quantity ?? 0) > 0)
    )
    if (variant) {
      progress(`variant ${variant.id} of ${p.handle} at ${variant.calculated_price.calculated_amount} ${region.currency_code}`)
      break
    }
  }
  if (!variant) throw new StepError("product", `no product has a variant priced in ${region.currency_code} and in stock`)

  const address = {
    first_name: "Order",
    last_name: "Check",
    address_1: "1 Check Street",
    city: "Checktown",
    postal_code: "10001",
    country_code: country,
  }
  const { cart } = await call("create-cart", "POST", "/store/carts", {
    headers: store,
    body: { region_id: region.id, email: "order-check@example.com", shipping_address: address, billing_address: address },
  })
  progress(`cart ${cart.id}`)

  await call("add-item", "POST", `/store/carts/${cart.id}/line-items`, {
    headers: store,
    body: { variant_id: variant.id, quantity: 1 },
  })

  const { shipping_options } = await call("shipping-options", "GET", `/store/shipping-options?cart_id=${cart.id}`, { headers: store })
  const option = (shipping_options ?? []).find((o: Json) => o.price_type === "flat") ?? (shipping_options ?? [])[0]
  if (!option) throw new StepError("shipping-options", `no shipping option for the cart (country ${country})`)
  await call("add-shipping", "POST", `/store/carts/${cart.id}/shipping-methods`, {
    headers: store,
    body: { option_id: option.id },
  })
  progress(`shipping option ${option.id} (${option.name})`)

  const { payment_collection } = await call("payment-collection", "POST", "/store/payment-collections", {
    headers: store,
    body: { cart_id: cart.id },
  })
  await call("payment-session", "POST", `/store/payment-collections/${payment_collection.id}/payment-sessions`, {
    headers: store,
    body: { provider_id: "pp_system_default" },
  })

  const done = await call("complete-cart", "POST", `/store/carts/${cart.id}/complete`, { headers: store })
  if (done?.type !== "order" || !done.order?.id) {
    throw new StepError("complete-cart", done?.error?.message ?? `the cart was not completed: ${JSON.stringify(done).slice(0, 200)}`)
  }
  const orderId = done.order.id as string
  progress(`order ${orderId} placed (display id ${done.order.display_id})`)

  await call("cancel-order", "POST", `/admin/orders/${orderId}/cancel`, { headers: admin })
  progress(`order ${orderId} cancelled`)
  return orderId
}

function terminationMessage(line: string) {
  try {
    writeFileSync(env("TERMINATION_LOG", "/dev/termination-log"), line + "\n")
  } catch {
    // outside Kubernetes
  }
}

check().then(
  (orderId) => {
    terminationMessage(`order check passed: ${orderId}`)
    process.stdout.write(orderId + "\n")
    process.exit(0)
  },
  (err) => {
    const line =
      err instanceof StepError ? `order check failed at ${err.step}: ${err.message}` : `order check failed at internal: ${err?.stack ?? err}`
    terminationMessage(line.split("\n")[0])
    process.stdout.write(line + "\n")
    process.exit(1)
  }
)
