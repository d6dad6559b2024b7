// The dashboard in a real browser against the whole running platform: Debian's
// Chromium driven by playwright-core. deploy/e2e's TestDashboardInBrowser
// starts the platform and runs this script (`npm run e2e`); by hand:
//
//   STOREPROV_URL=http://127.0.0.1:3000 STOREPROV_TOKEN=$(cat .cache/dev/token) npm run e2e
//
// Environment:
//   STOREPROV_URL               the gateway, which serves the dashboard at its root (required)
//   STOREPROV_TOKEN             an admin API token (required)
//   STOREPROV_ARTIFACTS_DIR     where screenshots go (default deploy/e2e/artifacts of the repository)
//   STOREPROV_CHROMIUM          the browser (default /usr/bin/chromium)
//   STOREPROV_OIDC_USERNAME     a user of the gateway's identity provider; with the password, the
//   STOREPROV_OIDC_PASSWORD     script also signs in with OpenID Connect (set both or neither)
//   STOREPROV_OIDC_EXPECT_USER  the user name the header must show after that sign-in (optional)
//
// With the OIDC variables set, after the token checks it signs out, clicks
// "Sign in with …", fills the identity provider's login form (input[name=username],
// input[name=password], button[type=submit]), expects to come back signed in on
// the route it left, signs out, and checks that the session token is revoked
// (GET /v1/users/me with it answers 401).
//
// It fails, with exit code 1, on the first check that does not hold, on any
// console error but the "Failed to load resource" lines of the 4xx answers it
// provokes on purpose, and on any uncaught error in the page.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
const baseURL = requiredEnv("STOREPROV_URL").replace(/\/+$/, "");
const token = requiredEnv("STOREPROV_TOKEN");
const artifacts = path.resolve(process.env.STOREPROV_ARTIFACTS_DIR || path.join(repoRoot, "deploy/e2e/artifacts"));
const executablePath = process.env.STOREPROV_CHROMIUM || "/usr/bin/chromium";
const oidc = oidcEnv();

/** How long a store may take to become READY, or DELETED, on the sandbox cluster. */
const phaseTimeoutMs = 180_000;
/** How long the audit log may take to record what happened. */
const auditTimeoutMs = 30_000;

const started = Date.now();
const suffix = Math.random().toString(16).slice(2, 8);
const storeName = `Browser Shop ${suffix}`;

function requiredEnv(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set: point it at a running gateway (see the comment at the top of e2e/dashboard.e2e.mjs)`);
    process.exit(2);
  }
  return v;
}

/** oidcEnv returns the identity provider's user to sign in as, or null when the OIDC check is not asked for. */
function oidcEnv() {
  const username = process.env.STOREPROV_OIDC_USERNAME;
  const password = process.env.STOREPROV_OIDC_PASSWORD;
  if (!username && !password) return null;
  if (!username || !password) {
    console.error("set both STOREPROV_OIDC_USERNAME and STOREPROV_OIDC_PASSWORD, or neither (see the comment at the top of e2e/dashboard.e2e.mjs)");
    process.exit(2);
  }
  return { username, password, expectUser: process.env.STOREPROV_OIDC_EXPECT_USER || "" };
}

function log(msg) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${msg}`);
}

/** check throws with message unless ok. */
function check(ok, message) {
  if (!ok) throw new Error(message);
}

// Console errors and page errors, and the failed loads a step expects.
const problems = [];
const expectedFailures = [];
const failedLoad = /^Failed to load resource: the server responded with a status of (4\d\d)\b/;

/** expectFailedLoads lets the browser report 4xx answers of urlPart while fn runs. */
async function expectFailedLoads(status, urlPart, fn) {
  const allowance = { status, urlPart };
  expectedFailures.push(allowance);
  try {
    return await fn();
  } finally {
    expectedFailures.splice(expectedFailures.indexOf(allowance), 1);
  }
}

function watchConsole(page) {
  page.on("console", (msg) => {
    if (msg.type() === "warning") log(`browser warning: ${msg.text()}`);
    if (msg.type() !== "error") return;
    const text = msg.text();
    const url = msg.location()?.url ?? "";
    const m = failedLoad.exec(text);
    const allowance = m && expectedFailures.find((a) => String(a.status) === m[1] && url.includes(a.urlPart));
    if (allowance) {
      log(`expected: ${text} (${url})`);
      return;
    }
    problems.push(`console error: ${text}${url ? ` (${url})` : ""}`);
  });
  page.on("pageerror", (err) => problems.push(`uncaught error in the page: ${err.stack || err.message}`));
}

/** noProblems fails the step that just ran when the page reported an error. */
function noProblems(step) {
  if (problems.length > 0) throw new Error(`${step}: the page reported errors:\n  ${problems.join("\n  ")}`);
}

// What the dashboard asked of the network, to show it never reads a secret.
const requests = [];
const apiBodies = [];

function watchNetwork(page) {
  page.on("request", (req) => requests.push(`${req.method()} ${req.url()}`));
  page.on("response", async (res) => {
    const url = new URL(res.url());
    if (!url.pathname.startsWith("/v1/") || url.pathname.endsWith(":watch")) return;
    try {
      apiBodies.push({ url: res.url(), body: await res.text() });
    } catch {
      // The page went on before the body arrived; nothing to inspect.
    }
  });
}

/** installPhaseRecorder records every data-phase each store row shows, in order, in window.__phases. */
async function installPhaseRecorder(page) {
  await page.evaluate(() => {
    const w = /** @type {any} */ (window);
    w.__phases = {};
    w.__noReload = true;
    const record = (el) => {
      if (!(el instanceof Element) || !el.matches("tr[data-store-id]")) return;
      const seen = (w.__phases[el.dataset.storeId] ??= []);
      if (seen[seen.length - 1] !== el.dataset.phase) seen.push(el.dataset.phase);
    };
    document.querySelectorAll("tr[data-store-id]").forEach(record);
    new MutationObserver((mutations) => {
      for (const m of mutations) {
        if (m.type === "attributes") record(m.target);
        for (const n of m.addedNodes) {
          record(n);
          if (n instanceof Element) n.querySelectorAll("tr[data-store-id]").forEach(record);
        }
      }
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-phase"] });
  });
}

async function phasesOf(page, id) {
  return page.evaluate((id) => /** @type {any} */ (window).__phases?.[id] ?? [], id);
}

/** waitForRow waits until the row of store id passes test, or fails saying where the row is. */
async function waitForRow(page, id, want, test) {
  try {
    await page.waitForFunction(test, id, { timeout: phaseTimeoutMs, polling: 200 });
  } catch (err) {
    const row = page.locator(`tr[data-store-id="${id}"]`);
    const where = (await row.count()) ? `${await row.getAttribute("data-phase")}: ${(await row.innerText()).replace(/\s+/g, " ")}` : "no row";
    throw new Error(`store ${id} is not ${want} after ${phaseTimeoutMs / 1000} s (${where}; phases seen ${JSON.stringify(await phasesOf(page, id))})`, { cause: err });
  }
}

async function notReloaded(page, step) {
  check(await page.evaluate(() => /** @type {any} */ (window).__noReload === true), `${step}: the page reloaded; the dashboard must update live`);
}

async function screenshot(page, name, opts = {}) {
  const file = path.join(artifacts, name);
  await page.mouse.move(0, 0);
  await page.screenshot({ path: file, ...opts });
  log(`screenshot ${file}`);
}

/** accessibleDescription is the text of the elements aria-describedby names. */
async function accessibleDescription(locator) {
  return locator.evaluate((el) =>
    (el.getAttribute("aria-describedby") ?? "")
      .split(/\s+/)
      .map((id) => document.getElementById(id)?.textContent ?? "")
      .join(" ")
      .trim(),
  );
}

/** badgeText is what a phase badge says, without its decorative glyph. */
async function badgeText(badge) {
  return badge.evaluate((el) =>
    [...el.childNodes]
      .filter((n) => !(n instanceof Element && n.getAttribute("aria-hidden") === "true"))
      .map((n) => n.textContent)
      .join("")
      .trim(),
  );
}

async function signIn(page, withToken) {
  await page.getByLabel("API token").fill(withToken);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

async function run(page) {
  log(`dashboard at ${baseURL}, store "${storeName}"`);
  await page.goto(baseURL + "/");
  await page.getByRole("heading", { level: 1, name: "Sign in to storeprov" }).waitFor();

  // Sign in.
  await signIn(page, token);
  await page.getByRole("navigation", { name: "Main" }).waitFor();
  await page.getByRole("status").filter({ hasText: "Live updates on" }).waitFor();
  check((await page.locator(".user").textContent())?.includes("admin"), "the header does not name the signed-in admin");
  noProblems("sign in");
  log("signed in; live updates on");

  // Create a WooCommerce store through the form and watch it become READY, live.
  await installPhaseRecorder(page);
  const name = page.getByLabel("Store name");
  await name.fill(storeName);
  await page.getByLabel("Engine").selectOption("ENGINE_WOOCOMMERCE");
  await screenshot(page, "create-form.png");
  await page.getByRole("button", { name: "Create store" }).click();
  const row = page.locator("tr[data-store-id]").filter({ has: page.getByRole("rowheader", { name: storeName, exact: true }) });
  await row.waitFor();
  const id = await row.getAttribute("data-store-id");
  check(id, "the new row has no data-store-id");
  const rowById = page.locator(`tr[data-store-id="${id}"]`);
  log(`store-id ${id}`); // TestDashboardInBrowser removes its namespace should this script stop halfway
  await page.getByRole("status").filter({ hasText: `Store “${storeName}” created: it is provisioning.` }).waitFor();
  check((await name.inputValue()) === "", "the form kept the name of the created store");
  log(`created store ${id}; waiting for READY`);
  await waitForRow(page, id, "READY", (id) => document.querySelector(`tr[data-store-id="${id}"]`)?.getAttribute("data-phase") === "PHASE_READY");
  const phases = await phasesOf(page, id);
  check(
    phases[0] === "PHASE_PROVISIONING" && phases[phases.length - 1] === "PHASE_READY",
    `row phases ${JSON.stringify(phases)}: want PROVISIONING first and READY last`,
  );
  await notReloaded(page, "create");
  check((await badgeText(rowById.locator(".badge[data-phase]"))) === "Ready", "the READY row's badge does not say Ready");
  await rowById.getByRole("link", { name: new RegExp(`store-${id}\\.`) }).waitFor();
  check((await rowById.locator('td[data-label="Engine"]').textContent()) === "WooCommerce", "the row's engine is not WooCommerce");
  noProblems("create");
  log(`store ${id} became READY live, phases ${phases.join(" → ")}`);
  await screenshot(page, "list.png", { fullPage: true });

  // The detail page: status, the kubectl command (never the password), the history.
  await rowById.getByRole("rowheader").getByRole("link", { name: storeName }).click();
  await page.getByRole("heading", { level: 1, name: storeName }).waitFor();
  check(new URL(page.url()).hash === `#/stores/${id}`, `detail page at ${page.url()}, want #/stores/${id}`);
  check((await badgeText(page.locator(".page-head .badge[data-phase]"))) === "Ready", "the detail page's badge does not say Ready");
  const command = `kubectl -n store-${id} get secret store-admin -o jsonpath='{.data.password}' | base64 -d`;
  check((await page.locator(".copy-command code").textContent()) === command, "the detail page does not show the kubectl command");
  await page.getByRole("button", { name: "Copy command" }).waitFor();
  const upgrade = page.getByRole("form", { name: "Upgrade" });
  check(await upgrade.getByRole("button", { name: "Upgrade store" }).isEnabled(), "a READY store's Upgrade button is disabled");
  const history = page.getByRole("list", { name: "History" });
  const created = history.getByRole("listitem").filter({ hasText: "Created by admin" });
  const ready = history.getByRole("listitem").filter({ hasText: "Became ready by system:orchestrator" });
  await created.waitFor({ timeout: auditTimeoutMs });
  await ready.waitFor({ timeout: auditTimeoutMs });
  const items = await history.getByRole("listitem").allTextContents();
  check(items.length === 2, `history ${JSON.stringify(items)}: want exactly create and ready`);
  await notReloaded(page, "detail");
  noProblems("detail");
  log(`detail page: command shown, history ${items.map((t) => t.split(" · ")[0]).join("; ")}`);
  await screenshot(page, "detail.png", { fullPage: true });

  // Delete it from the list, through the dialog that names it.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Stores" }).click();
  await page.getByRole("heading", { level: 1, name: "Stores" }).waitFor();
  await page.locator(`tr[data-store-id="${id}"][data-phase="PHASE_READY"]`).waitFor();
  // The picture in docs/dashboard.png: one viewport (1280×800), the READY store in the list.
  await screenshot(page, "dashboard.png");
  await rowById.getByRole("button", { name: `Delete ${storeName}` }).click();
  const dialog = page.getByRole("dialog", { name: `Delete “${storeName}”?` });
  await dialog.waitFor();
  check((await dialog.textContent())?.includes(id), "the delete dialog does not show the store's ID");
  await screenshot(page, "delete-dialog.png");
  await dialog.getByRole("button", { name: "Delete store" }).click();
  await dialog.waitFor({ state: "detached" });
  log("deletion confirmed; waiting for DELETED");
  await waitForRow(page, id, "DELETED", (id) => {
    const tr = document.querySelector(`tr[data-store-id="${id}"]`);
    return !tr || tr.getAttribute("data-phase") === "PHASE_DELETED";
  });
  const deletePhases = (await phasesOf(page, id)).slice(phases.length);
  check(deletePhases[0] === "PHASE_DELETING", `row phases after delete ${JSON.stringify(deletePhases)}: want DELETING first`);
  await page.getByLabel(/^Show deleted stores/).check();
  await page.locator(`tr[data-store-id="${id}"][data-phase="PHASE_DELETED"]`).waitFor();
  check((await badgeText(rowById.locator(".badge[data-phase]"))) === "Deleted", "the deleted row's badge does not say Deleted");
  await page.getByLabel(/^Show deleted stores/).uncheck();
  await rowById.waitFor({ state: "detached" });
  await notReloaded(page, "delete");
  noProblems("delete");
  log("store deleted: hidden from the list, shown as Deleted when asked");

  // A name the server refuses: its message shows on the field.
  const tooLong = "n".repeat(64);
  const rowsBefore = await page.locator("tr[data-store-id]").count();
  await expectFailedLoads(400, "/v1/stores", async () => {
    await name.fill(tooLong);
    await page.getByRole("button", { name: "Create store" }).click();
    await page.locator('input[name="displayName"][aria-invalid="true"]').waitFor();
  });
  const description = await accessibleDescription(name);
  check(
    description.startsWith("Store name ") && /at most 63/.test(description),
    `the name field's description is ${JSON.stringify(description)}: want the server's "at most 63" message, about "Store name"`,
  );
  check(await name.evaluate((el) => el === document.activeElement), "focus is not on the refused name");
  check((await page.locator("tr[data-store-id]").count()) === rowsBefore, "a refused name created a store");
  noProblems("bad name");
  log(`refused name: "${description}"`);
  await screenshot(page, "create-form-error.png");

  // Sign out, then a wrong token is refused.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API token").waitFor();
  check((await page.evaluate(() => sessionStorage.length)) === 0, "signing out left the token in sessionStorage");
  // Signing out asks the API to revoke the token; an API token stays valid (signed in again below).
  check(signOutCalls() === 1, `signing out sent ${signOutCalls()} POST /v1/users/me:signOut, want 1`);
  await expectFailedLoads(401, "/v1/users/me", async () => {
    await signIn(page, "sp_wrong" + suffix);
    await page.locator(".signin .field-error[role=alert]").waitFor();
  });
  const refusal = (await page.locator(".signin .field-error[role=alert]").textContent()) ?? "";
  check(/token/i.test(refusal), `wrong token refused with ${JSON.stringify(refusal)}: want a message about the token`);
  check((await page.getByRole("navigation", { name: "Main" }).count()) === 0, "a wrong token signed in");
  check((await page.evaluate(() => sessionStorage.length)) === 0, "a wrong token was kept in sessionStorage");
  noProblems("wrong token");
  log(`wrong token refused: "${refusal}"`);

  // The right token still works after a refusal.
  await page.getByLabel("API token").fill("");
  await signIn(page, token);
  await page.getByRole("status").filter({ hasText: "Live updates on" }).waitFor();
  noProblems("sign in again");

  // Nothing the dashboard asked for reads a secret, and no API answer holds a password.
  const foreign = requests.filter((r) => !r.split(" ")[1].startsWith(baseURL + "/") && !r.split(" ")[1].startsWith("data:"));
  check(foreign.length === 0, `requests outside the gateway: ${foreign.join(", ")}`);
  const secretish = requests.filter((r) => /secret|password/i.test(r));
  check(secretish.length === 0, `requests about secrets: ${secretish.join(", ")}`);
  const leaky = apiBodies.filter((b) => /"[a-z_]*password[a-z_]*"\s*:/i.test(b.body));
  check(leaky.length === 0, `API answers with a password field: ${leaky.map((b) => b.url).join(", ")}`);
  log(`${requests.length} requests, all to the gateway, none about secrets`);

  // Last, as the identity provider is another origin: sign in with OpenID Connect.
  if (oidc) await signInWithProvider(page);
  else log("OIDC sign-in not checked: STOREPROV_OIDC_USERNAME and STOREPROV_OIDC_PASSWORD are not set");
}

/** signOutCalls is how many times the dashboard asked the API to revoke its token. */
function signOutCalls() {
  return requests.filter((r) => r === `POST ${baseURL}/v1/users/me:signOut`).length;
}

/**
 * signInWithProvider signs out, signs in through the identity provider's login
 * form, expects to be back, signed in, on the route it left, then signs out
 * and checks that the session token it was given no longer works.
 */
async function signInWithProvider(page) {
  // Leave from a route other than the default, to see the dashboard come back to it.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Activity" }).click();
  await page.getByRole("heading", { level: 1, name: "Activity" }).waitFor();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API token").waitFor();
  const provider = page.getByRole("button", { name: /^Sign in with / });
  try {
    await provider.waitFor();
  } catch (err) {
    throw new Error('the sign-in page offers no "Sign in with …" button: is OIDC configured on the gateway (GET /auth/config)?', { cause: err });
  }
  const label = ((await provider.textContent()) ?? "").trim();
  await provider.click();

  // The identity provider's own login page: a plain HTML form.
  await page.locator("input[name=username]").waitFor();
  log(`"${label}": login page at ${new URL(page.url()).origin}`);
  await page.locator("input[name=username]").fill(oidc.username);
  await page.locator("input[name=password]").fill(oidc.password);
  await page.locator("button[type=submit]").click();

  // Back in the dashboard, signed in, where it left, with no token in the address.
  await page.getByRole("navigation", { name: "Main" }).waitFor();
  await page.getByRole("heading", { level: 1, name: "Activity" }).waitFor();
  await page.getByRole("status").filter({ hasText: "Live updates on" }).waitFor();
  const landed = new URL(page.url());
  check(landed.origin === new URL(baseURL).origin, `after the sign-in the browser is at ${landed.origin}, want the gateway`);
  check(landed.hash === "#/activity", `after the sign-in the dashboard shows ${landed.hash}, want the route it left, #/activity`);
  check(!/session=|signin_error=/.test(page.url()), "the address still carries the sign-in's fragment (and maybe the token)");
  const name = ((await page.locator(".user strong").textContent()) ?? "").trim();
  check(name !== "", "the header names no user after the OIDC sign-in");
  if (oidc.expectUser) check(name === oidc.expectUser, `the header names ${JSON.stringify(name)}, want ${JSON.stringify(oidc.expectUser)}`);
  const sessionToken = await page.evaluate(() => sessionStorage.getItem("storeprov.token"));
  check(sessionToken?.startsWith("sp_"), "no session token (sp_…) in sessionStorage after the OIDC sign-in");
  check(sessionToken !== token, "the OIDC sign-in kept the API token, not a session token of its own");
  noProblems("OIDC sign-in");
  log(`signed in with "${label}" as ${name}, back on #/activity`);
  await screenshot(page, "signin-oidc.png");

  // Signing out revokes the session token: the API refuses it from then on.
  const callsBefore = signOutCalls();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API token").waitFor();
  check((await page.evaluate(() => sessionStorage.length)) === 0, "signing out left something in sessionStorage");
  check(signOutCalls() === callsBefore + 1, "signing out did not send POST /v1/users/me:signOut");
  const status = await expectFailedLoads(401, "/v1/users/me", () =>
    page.evaluate(async (t) => (await fetch("/v1/users/me", { headers: { Authorization: `Bearer ${t}` } })).status, sessionToken),
  );
  check(status === 401, `GET /v1/users/me with the signed-out session token answered ${status}, want 401 (revoked)`);
  noProblems("OIDC sign-out");
  log("signed out: the session token is revoked (401)");
}

async function main() {
  await mkdir(artifacts, { recursive: true });
  const userDataDir = await mkdtemp(path.join(tmpdir(), "storeprov-chromium-"));
  let context;
  let page;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1280, height: 800 },
      deviceScaleFactor: 1,
      locale: "en-US",
      timezoneId: "UTC",
    });
    context.setDefaultTimeout(15_000);
    page = context.pages()[0] ?? (await context.newPage());
    watchConsole(page);
    watchNetwork(page);
    await run(page);
    noProblems("end");
    log("PASS: the dashboard works end to end in Chromium");
  } catch (err) {
    process.exitCode = 1;
    console.error(`FAIL: ${err instanceof Error ? err.message : err}`);
    const frames = err instanceof Error ? (err.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l)) : [];
    if (frames.length > 0) console.error(frames.slice(0, 5).join("\n"));
    if (problems.length > 0) console.error(`the page also reported:\n  ${problems.join("\n  ")}`);
    if (page) {
      await page
        .screenshot({ path: path.join(artifacts, "failure.png"), fullPage: true })
        .then(() => console.error(`screenshot of the failure: ${path.join(artifacts, "failure.png")}`))
        .catch(() => undefined);
    }
  } finally {
    await context?.close().catch(() => undefined);
    await rm(userDataDir, { recursive: true, force: true });
  }
}

await main();
