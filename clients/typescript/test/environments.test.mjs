// Environments switch at run time and tokens stay with the origin that issued them: a switch
// never sends one backend's token to another, even for a call started before the switch.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import {
  TollgateClient,
  TollgateConfigError,
  TollgateError,
  callbackStorage,
  createTollgateClient,
  defaultEnvironmentName,
  memoryStorage,
  tokenKey,
  webStorage,
} from "../dist/esm/index.js";
import { TollgateServer } from "../dist/esm/index.js";
import { startTollgate } from "./harness.mjs";

let tollgate;
let server;
// A second backend ("staging") that records the Authorization header of every request.
let recorder;
let recorded = [];
before(async () => {
  tollgate = await startTollgate();
  server = new TollgateServer({ baseUrl: tollgate.baseUrl, appKey: tollgate.appKey() });
  recorder = createServer((req, res) => {
    recorded.push({ path: req.url, authorization: req.headers.authorization ?? null });
    res.writeHead(401, { "content-type": "application/problem+json" });
    res.end(JSON.stringify({ type: "urn:tollgate:problem:unauthorized", title: "Unauthorized", status: 401, detail: "staging", request_id: "rec-1" }));
  });
  await new Promise((r) => recorder.listen(0, "localhost", r));
});
after(async () => {
  await tollgate?.stop();
  recorder?.close();
});

function stagingUrl() {
  return `http://localhost:${recorder.address().port}`;
}

test("switching environment keeps each origin's token apart", async () => {
  const storage = memoryStorage();
  const client = await createTollgateClient({
    environments: { production: tollgate.baseUrl, staging: stagingUrl() },
    environment: "production",
    storage,
  });
  const { key } = await server.createUserKey("env-user");
  await client.setToken(key);
  assert.equal((await client.me()).user.external_id, "env-user");

  await client.useEnvironment("staging");
  assert.equal(client.environment.name, "staging");
  assert.equal(await client.token(), null, "staging has no token yet");
  recorded = [];
  await assert.rejects(client.me(), (e) => e instanceof TollgateError && e.status === 401);
  assert.deepEqual(recorded, [{ path: "/v1/me", authorization: null }], "production's token was not sent to staging");

  await client.setToken("tg_user_staging-token");
  recorded = [];
  await assert.rejects(client.me());
  assert.deepEqual(recorded, [{ path: "/v1/me", authorization: "Bearer tg_user_staging-token" }]);

  await client.useEnvironment("production");
  assert.equal((await client.me()).user.external_id, "env-user", "production's token is still there");
  assert.equal(await client.token(), key);

  // A pull-request preview named at run time: a new origin, so no token at all.
  await client.useEnvironment({ name: "pr-42", baseUrl: `${stagingUrl()}/` });
  assert.equal(client.environment.baseUrl, stagingUrl());
  assert.equal(client.environment.name, "pr-42");

  await client.signOut(); // signs out of this origin only
  await client.useEnvironment("production");
  assert.equal(await client.token(), key);
});

test("the AI SDK settings carry the active environment's token and URL only", async () => {
  const client = await createTollgateClient({
    environments: { production: tollgate.baseUrl, staging: stagingUrl() },
    environment: "production",
  });
  const { key } = await server.createUserKey("env-sdk");
  await client.setToken(key);
  const prod = await client.openai();
  assert.equal(prod.baseURL, `${tollgate.baseUrl}/v1`);
  assert.equal(prod.apiKey, key);
  assert.equal(prod.maxRetries, 0);
  await client.useEnvironment("staging");
  await assert.rejects(client.openai(), TollgateConfigError, "no staging token: no settings");
});

test("the default environment: packaged builds use production, development the local one", () => {
  const urls = { production: "https://api.acme.example", local: "http://localhost:8080" };
  assert.equal(defaultEnvironmentName(urls, true), "production");
  assert.equal(defaultEnvironmentName(urls, false), "local");
  assert.equal(defaultEnvironmentName({ production: urls.production }, false), "production");
  const nodeEnv = process.env.NODE_ENV;
  try {
    process.env.NODE_ENV = "production";
    assert.equal(defaultEnvironmentName(urls), "production");
    process.env.NODE_ENV = "development";
    assert.equal(defaultEnvironmentName(urls), "local");
    delete process.env.NODE_ENV;
    assert.equal(defaultEnvironmentName(urls), "production", "unknown: the safe choice");
  } finally {
    if (nodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = nodeEnv;
  }
  const client = new TollgateClient({ environments: urls, packaged: true });
  assert.equal(client.environment.name, "production");
  assert.deepEqual(client.environments.map((e) => e.name), ["production", "local"]);
});

test("plain http to another machine, unknown environments and a missing production are refused", async () => {
  assert.throws(() => new TollgateClient({ environments: { production: "http://api.acme.example" } }), TollgateConfigError);
  assert.throws(() => new TollgateClient({ environments: { local: "http://localhost" } }), TollgateConfigError);
  assert.throws(() => new TollgateClient({ environments: { production: "https://a.example/?k=1" } }), TollgateConfigError);
  const ok = new TollgateClient({ environments: { production: "http://10.0.0.5:8080" }, allowInsecure: true });
  assert.equal(ok.environment.origin, "http://10.0.0.5:8080");
  const client = new TollgateClient({ environments: { production: "https://api.acme.example" } });
  await assert.rejects(client.useEnvironment("nope"), TollgateConfigError);
  await assert.rejects(client.useEnvironment({ name: "evil", baseUrl: "http://evil.example" }), TollgateConfigError);
});

test("the chosen environment is remembered across restarts when asked", async () => {
  const items = new Map();
  const local = { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, v), removeItem: (k) => items.delete(k) };
  const urls = { production: "https://api.acme.example", staging: "https://staging.acme.example" };
  const first = await createTollgateClient({ environments: urls, storage: webStorage(local), rememberEnvironment: true, packaged: true });
  await first.useEnvironment({ name: "pr-7", baseUrl: "https://pr-7.preview.acme.example" });
  await first.setToken("tg_user_pr7");
  const second = await createTollgateClient({ environments: urls, storage: webStorage(local), rememberEnvironment: true, packaged: true });
  assert.equal(second.environment.name, "pr-7");
  assert.equal(await second.token(), "tg_user_pr7");
  const forgetful = await createTollgateClient({ environments: urls, storage: webStorage(local), packaged: true });
  assert.equal(forgetful.environment.name, "production", "without rememberEnvironment the stored choice is ignored");
  assert.equal(await forgetful.token(), null);
});

test("async callback storage (secure storage) gets keys every secure store accepts", async () => {
  const calls = [];
  const values = new Map();
  const storage = callbackStorage({
    get: async (k) => (calls.push(["get", k]), values.get(k) ?? null),
    set: async (k, v) => void (calls.push(["set", k]), values.set(k, v)),
    remove: async (k) => void (calls.push(["remove", k]), values.delete(k)),
  });
  const client = new TollgateClient({ environments: { production: "https://api.acme.example:8443" }, storage });
  await client.setToken("tg_user_secure");
  assert.equal(await client.token(), "tg_user_secure");
  for (const [, key] of calls) assert.match(key, /^[A-Za-z0-9._-]+$/);
  assert.notEqual(tokenKey("https://a.example"), tokenKey("https://a.example:8443"));
  assert.notEqual(tokenKey("http://a.example"), tokenKey("https://a.example"));
});
