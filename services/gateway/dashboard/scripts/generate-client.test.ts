// @vitest-environment node
import { readFile } from "node:fs/promises";
import { expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without type declarations
import { generate, outputPath } from "./generate-client.mjs";

it("src/api/schema.ts matches the OpenAPI document (run `npm run generate` if not)", async () => {
  const committed = await readFile(outputPath, "utf8");
  expect(committed === (await generate()), "src/api/schema.ts is stale: run `npm run generate`").toBe(true);
}, 30_000);
