// The CommonJS build loads with require() and exports the same API as the ESM one.
const assert = require("node:assert/strict");
const { test } = require("node:test");

test("require('@tollgate/client') works from CommonJS", async () => {
  const cjs = require("../dist/cjs/index.js");
  const esm = await import("../dist/esm/index.js");
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  const client = new cjs.TollgateClient({ environments: { production: "https://api.acme.example" } });
  assert.equal(client.environment.origin, "https://api.acme.example");
});
