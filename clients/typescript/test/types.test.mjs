// The types are generated from docs/openapi.json; this fails when they are stale
// (fix: `npm run generate` in clients/typescript, and commit the result).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";

const here = dirname(fileURLToPath(import.meta.url));

test("src/generated/openapi.ts is what openapi-typescript makes of docs/openapi.json", async () => {
  const spec = new URL(`file://${join(here, "..", "..", "..", "docs", "openapi.json")}`);
  const fresh = astToString(await openapiTS(spec));
  const committed = readFileSync(join(here, "..", "src", "generated", "openapi.ts"), "utf8");
  const strip = (s) => s.replace(/^\/\*\*[\s\S]*?\*\/\s*/, ""); // the generator's header comment
  assert.ok(strip(committed) === strip(fresh), "stale types: run `npm run generate` in clients/typescript");
});

test("every event type of the spec is in the typed event union", async () => {
  const spec = JSON.parse(readFileSync(join(here, "..", "..", "..", "docs", "openapi.json"), "utf8"));
  const types = Object.keys(spec.webhooks ?? {});
  assert.ok(types.length >= 11, `the spec lists its events as webhooks (${types.length})`);
  const generated = readFileSync(join(here, "..", "src", "generated", "openapi.ts"), "utf8");
  for (const type of types) assert.ok(generated.includes(`"${type}": {`), `${type} in the generated webhooks`);
});
