// A build below the app's minimum version gets a typed "update required" with where to update.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { TollgateClient, TollgateServer, UpdateRequiredError } from "../dist/esm/index.js";
import { startTollgate } from "./harness.mjs";

let tollgate;
let server;
before(async () => {
  tollgate = await startTollgate();
  server = new TollgateServer({ baseUrl: tollgate.baseUrl, appKey: tollgate.appKey() });
});
after(() => tollgate?.stop());

function build(version) {
  return new TollgateClient({
    environments: { production: tollgate.baseUrl },
    app: { platform: "desktop", version },
  });
}

test("an old build gets UpdateRequiredError with the update URL, on every call", async () => {
  const old = build("1.4.0");
  const { key } = await server.createUserKey("old-build");
  await old.setToken(key);
  const compat = await old.compat();
  assert.equal(compat.status, "update_required");
  assert.equal(compat.update_url, "https://acme.example/download");
  await assert.rejects(old.me(), (e) => {
    assert.ok(e instanceof UpdateRequiredError);
    assert.equal(e.status, 426);
    assert.equal(e.minVersion, "2.0.0");
    assert.equal(e.latestVersion, "2.3.0");
    assert.equal(e.updateUrl, "https://acme.example/download");
    return true;
  });
  // The AI SDK settings send the build's version too: the gateway refuses the old build alike.
  const openai = new OpenAI(await old.openai());
  await assert.rejects(
    openai.chat.completions.create({ model: "mock", messages: [{ role: "user", content: "hi" }] }),
    (e) => e.status === 426,
  );
  assert.equal((await old.usage().catch((e) => e)).status, 426);
});

test("a current build is let in, and told when a newer one exists", async () => {
  const current = build("2.1.0");
  const { key } = await server.createUserKey("new-build");
  await current.setToken(key);
  assert.equal((await current.compat()).status, "update_available");
  assert.equal((await current.me()).user.external_id, "new-build");
  const signedOut = build("2.3.0");
  assert.equal((await signedOut.compat("acme")).status, "ok", "works before sign-in with the app's slug");
});
