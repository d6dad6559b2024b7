// Fails when the committed dist/ is not what `npm run build` makes from the
// current sources: the gateway embeds dist/, so a stale one ships old code.
// It builds into a temporary folder and compares file names and contents.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const committed = path.join(root, "dist");

async function files(dir) {
  const out = new Map();
  async function walk(d) {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(path.relative(dir, p), await readFile(p));
    }
  }
  await walk(dir);
  return out;
}

const fresh = await mkdtemp(path.join(tmpdir(), "dashboard-dist-"));
try {
  await build({ root, logLevel: "warn", build: { outDir: fresh, emptyOutDir: true } });
  const want = await files(fresh);
  const got = await files(committed);
  const problems = [];
  for (const [name, body] of want) {
    if (!got.has(name)) problems.push(`missing ${name}`);
    else if (!got.get(name).equals(body)) problems.push(`differs ${name}`);
  }
  for (const name of got.keys()) if (!want.has(name)) problems.push(`extra ${name}`);
  if (problems.length > 0) {
    console.error(`dist/ is stale (${problems.join(", ")}): run \`npm run build\` and commit dist/`);
    process.exitCode = 1;
  } else {
    console.log(`dist/ is up to date (${want.size} files)`);
  }
} finally {
  await rm(fresh, { recursive: true, force: true });
}
