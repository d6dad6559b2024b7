// Makes a new store able to sell: a region in the store's currency, a sales
// channel, a publishable API key for it, a stock location with manual
// fulfilment and a shipping option, and one product in stock there.
//
//   npx medusa exec ./src/scripts/seed-store.js     (the built server, as the
//                                                    chart's setup Job runs it)
//
// Idempotent. Each object is looked up before it is created, so a run that
// was cut short is finished by the next one; once a run has completed it
// marks the store (metadata storeprov_setup = "done") and later runs change
// nothing, so whatever the owner edits or deletes afterwards stays so, as
// the WooCommerce setup does. Runs of two release revisions take a lock.
//
// Inputs, from the environment (all optional):
//   STORE_TITLE            the store's name in Medusa
//   STORE_CURRENCY         ISO 4217 code of the region and prices (usd)
//   STORE_COUNTRIES        comma-separated ISO 3166-1 alpha-2 codes of the
//                          region and the shipping zone (us)
//   PUBLISHABLE_KEY_TITLE  title of the publishable API key (storeprov); the
//                          order check finds the key by this title
//   PRODUCT_NAME, PRODUCT_SKU (also the product's handle), PRODUCT_PRICE
//   (in the currency's main unit: 19.99), PRODUCT_DESCRIPTION, PRODUCT_STOCK
//   SHIPPING_PRICE         price of the shipping option (0)
import type { ExecArgs } from "@medusajs/framework/types"
import { ContainerRegistrationKeys, Modules, ProductStatus } from "@medusajs/framework/utils"
import {
  batchLinksWorkflow,
  createApiKeysWorkflow,
  createInventoryLevelsWorkflow,
  createLocationFulfillmentSetWorkflow,
  createProductsWorkflow,
  createRegionsWorkflow,
  createSalesChannelsWorkflow,
  createServiceZonesWorkflow,
  createShippingOptionsWorkflow,
  createShippingProfilesWorkflow,
  createStockLocationsWorkflow,
  createTaxRegionsWorkflow,
  linkSalesChannelsToApiKeyWorkflow,
  linkSalesChannelsToStockLocationWorkflow,
  updateStoresWorkflow,
} from "@medusajs/medusa/core-flows"

const DONE = "done"
const LOCK = "storeprov:seed-store"

type Settings = {
  title: string
  currency: string
  countries: string[]
  keyTitle: string
  product: { name: string; sku: string; price: number; description: string; stock: number }
  shippingPrice: number
}

function env(name: string, def: string): string {
  const v = process.env[name]
  return v === undefined || v.trim() === "" ? def : v
}

function number(name: string, def: string): number {
  const raw = env(name, def)
  const n = Number(raw)
  if (!Number.isFinite(n) || n < 0) {
    throw new Error(`${name}=${JSON.stringify(raw)} is not a non-negative number`)
  }
  return n
}

export function settings(): Settings {
  const currency = env("STORE_CURRENCY", "usd").trim().toLowerCase()
  if (!/^[a-z]{3}$/.test(currency)) {
    throw new Error(`STORE_CURRENCY=${JSON.stringify(currency)} is not an ISO 4217 code`)
  }
  const countries = env("STORE_COUNTRIES", "us")
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter(Boolean)
  for (const c of countries) {
    if (!/^[a-z]{2}$/.test(c)) {
      throw new Error(`STORE_COUNTRIES has ${JSON.stringify(c)}, not an ISO 3166-1 alpha-2 code`)
    }
  }
  if (countries.length === 0) {
    throw new Error("STORE_COUNTRIES names no country")
  }
  const sku = env("PRODUCT_SKU", "storeprov-sample")
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(sku)) {
    throw new Error(`PRODUCT_SKU=${JSON.stringify(sku)} must be lowercase letters, digits and inner '-' (it is the product's handle)`)
  }
  const stock = number("PRODUCT_STOCK", "100")
  return {
    title: env("STORE_TITLE", ""),
    currency,
    countries,
    keyTitle: env("PUBLISHABLE_KEY_TITLE", "storeprov"),
    product: {
      name: env("PRODUCT_NAME", "Sample product"),
      sku,
      price: number("PRODUCT_PRICE", "19.99"),
      description: env("PRODUCT_DESCRIPTION", "A product created with the store. Edit or delete it in the admin."),
      stock: Math.floor(stock),
    },
    shippingPrice: number("SHIPPING_PRICE", "0"),
  }
}

export default async function seedStore({ container }: ExecArgs) {
  const logger = container.resolve(ContainerRegistrationKeys.LOGGER)
  const s = settings()
  const locking = container.resolve(Modules.LOCKING)
  // The lock (Redis when REDIS_URL is set) keeps the Jobs of two release
  // revisions from creating the same objects twice.
  await locking.execute(LOCK, () => seed(container, s, logger), { timeout: 600 })
}

type Container = ExecArgs["container"]
type Logger = { info(msg: string): void }

async function seed(container: Container, s: Settings, logger: Logger) {
  const log = (msg: string) => logger.info(`seed-store: ${msg}`)
  const query = container.resolve(ContainerRegistrationKeys.QUERY)
  const storeModule = container.resolve(Modules.STORE)
  const salesChannelModule = container.resolve(Modules.SALES_CHANNEL)
  const regionModule = container.resolve(Modules.REGION)
  const taxModule = container.resolve(Modules.TAX)
  const stockLocationModule = container.resolve(Modules.STOCK_LOCATION)
  const fulfillmentModule = container.resolve(Modules.FULFILLMENT)
  const apiKeyModule = container.resolve(Modules.API_KEY)
  const productModule = container.resolve(Modules.PRODUCT)
  const inventoryModule = container.resolve(Modules.INVENTORY)

  const [store] = await storeModule.listStores({}, { relations: ["supported_currencies"] })
  if (!store) {
    throw new Error("Medusa has no store: the server's defaults were not created")
  }
  if (store.metadata?.storeprov_setup === DONE) {
    log("the store was set up by an earlier run; keeping the owner's changes")
    return
  }

  // The sales channel: the store's default one (Medusa creates "Default
  // Sales Channel" when it first starts), or a new one.
  let salesChannelId = store.default_sales_channel_id ?? ""
  if (salesChannelId) {
    const found = await salesChannelModule.listSalesChannels({ id: salesChannelId })
    if (found.length === 0) salesChannelId = ""
  }
  if (!salesChannelId) {
    const { result } = await createSalesChannelsWorkflow(container).run({
      input: { salesChannelsData: [{ name: "Default Sales Channel" }] },
    })
    salesChannelId = result[0].id
    log(`created the sales channel ${salesChannelId}`)
  }

  // The currency, the store's default one.
  const currencies = store.supported_currencies ?? []
  if (!currencies.some((c) => c.currency_code === s.currency && c.is_default)) {
    await updateStoresWorkflow(container).run({
      input: {
        selector: { id: store.id },
        update: {
          supported_currencies: [
            { currency_code: s.currency, is_default: true },
            ...currencies
              .filter((c) => c.currency_code !== s.currency)
              .map((c) => ({ currency_code: c.currency_code, is_default: false })),
          ],
        },
      },
    })
    log(`made ${s.currency} the store's default currency`)
  }

  // The region: one in the currency, with the system payment provider.
  let [region] = await regionModule.listRegions({ currency_code: s.currency })
  if (!region) {
    // A country belongs to one region at most.
    const countries = await regionModule.listCountries({ iso_2: s.countries })
    const free = countries.filter((c) => !(c as { region_id?: string | null }).region_id).map((c) => c.iso_2)
    const { result } = await createRegionsWorkflow(container).run({
      input: {
        regions: [
          {
            name: s.currency.toUpperCase(),
            currency_code: s.currency,
            countries: free,
            payment_providers: ["pp_system_default"],
          },
        ],
      },
    })
    region = result[0]
    log(`created the region ${region.id} (${s.currency}, countries ${free.join(",") || "none"})`)
  }

  // Tax regions, so that the admin can set rates; none means no tax.
  for (const country_code of s.countries) {
    const existing = await taxModule.listTaxRegions({ country_code })
    if (!existing.some((r) => !r.parent_id)) {
      await createTaxRegionsWorkflow(container).run({ input: [{ country_code, provider_id: "tp_system" }] })
      log(`created the tax region ${country_code}`)
    }
  }

  // The stock location, its sales channel and its fulfilment provider.
  const locationName = "Main warehouse"
  let [location] = await stockLocationModule.listStockLocations({ name: locationName })
  if (!location) {
    const { result } = await createStockLocationsWorkflow(container).run({
      input: {
        locations: [{ name: locationName, address: { address_1: "", country_code: s.countries[0].toUpperCase() } }],
      },
    })
    location = result[0]
    log(`created the stock location ${location.id}`)
  }
  const locationLinks = async () => {
    const { data } = await query.graph({
      entity: "stock_location",
      fields: ["id", "sales_channels.id", "fulfillment_providers.id", "fulfillment_sets.id", "fulfillment_sets.type"],
      filters: { id: location.id },
    })
    return data[0] as any
  }
  let links = await locationLinks()
  if (!(links.sales_channels ?? []).some((c: any) => c?.id === salesChannelId)) {
    await linkSalesChannelsToStockLocationWorkflow(container).run({ input: { id: location.id, add: [salesChannelId] } })
    log("linked the stock location to the sales channel")
  }
  if (!(links.fulfillment_providers ?? []).some((p: any) => p?.id === "manual_manual")) {
    await batchLinksWorkflow(container).run({
      input: {
        create: [
          {
            [Modules.STOCK_LOCATION]: { stock_location_id: location.id },
            [Modules.FULFILLMENT]: { fulfillment_provider_id: "manual_manual" },
          },
        ],
        update: [],
        delete: [],
      },
    })
    log("linked the stock location to the manual fulfillment provider")
  }

  // The shipping profile every product needs.
  let [profile] = await fulfillmentModule.listShippingProfiles({ type: "default" })
  if (!profile) {
    const { result } = await createShippingProfilesWorkflow(container).run({
      input: { data: [{ name: "Default Shipping Profile", type: "default" }] },
    })
    profile = result[0]
    log(`created the shipping profile ${profile.id}`)
  }

  // Shipping from the location to the store's countries.
  let setId = (links.fulfillment_sets ?? []).find((f: any) => f?.type === "shipping")?.id as string | undefined
  if (!setId) {
    await createLocationFulfillmentSetWorkflow(container).run({
      input: { location_id: location.id, fulfillment_set_data: { name: `${locationName} shipping`, type: "shipping" } },
    })
    links = await locationLinks()
    setId = (links.fulfillment_sets ?? []).find((f: any) => f?.type === "shipping")?.id
    if (!setId) throw new Error("the fulfillment set of the stock location was not created")
    log(`created the fulfillment set ${setId}`)
  }
  let [zone] = await fulfillmentModule.listServiceZones({ fulfillment_set: { id: setId } })
  if (!zone) {
    const { result } = await createServiceZonesWorkflow(container).run({
      input: {
        data: [
          {
            fulfillment_set_id: setId,
            name: s.countries.map((c) => c.toUpperCase()).join(", "),
            geo_zones: s.countries.map((country_code) => ({ type: "country" as const, country_code })),
          },
        ],
      },
    })
    zone = result[0]
    log(`created the service zone ${zone.id}`)
  }
  const options = await fulfillmentModule.listShippingOptions({ service_zone: { id: zone.id } })
  if (options.length === 0) {
    const { result } = await createShippingOptionsWorkflow(container).run({
      input: [
        {
          name: "Standard shipping",
          price_type: "flat",
          provider_id: "manual_manual",
          service_zone_id: zone.id,
          shipping_profile_id: profile.id,
          type: { label: "Standard", description: "Shipped by the store.", code: "standard" },
          prices: [
            { currency_code: s.currency, amount: s.shippingPrice },
            { region_id: region.id, amount: s.shippingPrice },
          ],
          rules: [
            { attribute: "enabled_in_store", value: "true", operator: "eq" },
            { attribute: "is_return", value: "false", operator: "eq" },
          ],
        },
      ],
    })
    log(`created the shipping option ${result[0].id}`)
  }

  // The product, its price and its stock at the location.
  let [product] = await productModule.listProducts({ handle: s.product.sku }, { withDeleted: true })
  if (product?.deleted_at) {
    throw new Error(`the product ${s.product.sku} was deleted, yet the store was never marked as set up`)
  }
  if (!product) {
    const { result } = await createProductsWorkflow(container).run({
      input: {
        products: [
          {
            title: s.product.name,
            handle: s.product.sku,
            description: s.product.description,
            status: ProductStatus.PUBLISHED,
            shipping_profile_id: profile.id,
            options: [{ title: "Option", values: ["Standard"] }],
            variants: [
              {
                title: "Standard",
                sku: s.product.sku,
                manage_inventory: true,
                options: { Option: "Standard" },
                prices: [{ currency_code: s.currency, amount: s.product.price }],
              },
            ],
            sales_channels: [{ id: salesChannelId }],
          },
        ],
      },
    })
    product = result[0]
    log(`created the product ${s.product.sku} (${product.id})`)
  }
  const { data: variants } = await query.graph({
    entity: "product_variant",
    fields: ["id", "inventory_items.inventory_item_id"],
    filters: { product_id: product.id },
  })
  for (const v of variants as any[]) {
    for (const item of v.inventory_items ?? []) {
      const inventory_item_id = item?.inventory_item_id
      if (!inventory_item_id) continue
      const levels = await inventoryModule.listInventoryLevels({ inventory_item_id, location_id: location.id })
      if (levels.length === 0) {
        await createInventoryLevelsWorkflow(container).run({
          input: {
            inventory_levels: [{ inventory_item_id, location_id: location.id, stocked_quantity: s.product.stock }],
          },
        })
        log(`stocked ${s.product.stock} of variant ${v.id} at ${locationName}`)
      }
    }
  }

  // The publishable API key of the sales channel, last: the order check
  // waits for it, and finds everything else in place once it exists.
  let key = (await apiKeyModule.listApiKeys({ title: s.keyTitle, type: "publishable" })).find((k) => !k.revoked_at)
  if (!key) {
    const { result } = await createApiKeysWorkflow(container).run({
      input: { api_keys: [{ title: s.keyTitle, type: "publishable", created_by: "" }] },
    })
    key = result[0]
    log(`created the publishable API key ${s.keyTitle}`)
  }
  const { data: keyData } = await query.graph({
    entity: "api_key",
    fields: ["id", "sales_channels.id"],
    filters: { id: key.id },
  })
  if (!((keyData[0] as any)?.sales_channels ?? []).some((c: any) => c?.id === salesChannelId)) {
    await linkSalesChannelsToApiKeyWorkflow(container).run({ input: { id: key.id, add: [salesChannelId] } })
    log(`linked the publishable API key ${s.keyTitle} to the sales channel`)
  }

  // Done: the defaults point at what was created, and later runs keep the
  // owner's changes.
  await updateStoresWorkflow(container).run({
    input: {
      selector: { id: store.id },
      update: {
        ...(s.title ? { name: s.title } : {}),
        default_sales_channel_id: salesChannelId,
        default_region_id: region.id,
        default_location_id: location.id,
        metadata: { ...(store.metadata ?? {}), storeprov_setup: DONE },
      },
    },
  })
  log(`done: region ${region.id} (${s.currency}), publishable API key "${s.keyTitle}": ${key.token}`)
}
