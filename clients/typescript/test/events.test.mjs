// tollgate's signed events, verified by the helper the app's server uses — cross-checked with
// the Standard Webhooks reference package, and refused when anything was changed.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { Webhook } from "standardwebhooks";
import { TollgateServer, WebhookVerificationError, verifyWebhook } from "../dist/esm/index.js";
import { startTollgate } from "./harness.mjs";

let tollgate;
let server;
let receiver;
let secret;
const deliveries = [];
before(async () => {
  tollgate = await startTollgate();
  server = new TollgateServer({ baseUrl: tollgate.baseUrl, appKey: tollgate.appKey() });
  receiver = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      deliveries.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  const out = tollgate.cli([
    "endpoints", "add", "--app", "acme",
    "--url", `http://127.0.0.1:${receiver.address().port}/hooks/tollgate`,
    "--events", "credits.granted,credits.exhausted",
  ]);
  secret = out.match(/whsec_[A-Za-z0-9+/=]+/)?.[0];
  assert.ok(secret, `the CLI printed the endpoint's secret:\n${out}`);
});
after(async () => {
  await tollgate?.stop();
  receiver?.close();
});

async function delivery(type) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const found = deliveries.find((d) => JSON.parse(d.body).type === type);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no ${type} delivery in 30 s (got ${deliveries.length})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("a credits.exhausted delivery verifies, typed, and agrees with the reference verifier", async () => {
  await server.createUserKey("events-user"); // the free plan's credits are granted on first use
  await server.debit("events-user", { amountMicros: 100_000_000, reason: "all of it" });
  const { headers, body } = await delivery("credits.exhausted");
  const event = await verifyWebhook({ secret, headers, body });
  assert.equal(event.type, "credits.exhausted");
  assert.equal(event.data.user_id, "events-user");
  assert.equal(event.data.balance_micros, 0);
  assert.match(event.id, /^msg_/);
  assert.equal(event.id, headers["webhook-id"]);
  assert.ok(!Number.isNaN(Date.parse(event.timestamp)));
  // The reference implementation accepts the same bytes.
  const reference = new Webhook(secret).verify(body, headers);
  assert.equal(reference.type, "credits.exhausted");

  const granted = await delivery("credits.granted");
  const grant = await verifyWebhook({ secret, headers: new Headers(granted.headers), body: new TextEncoder().encode(granted.body) });
  assert.equal(grant.type, "credits.granted");
  assert.equal(grant.data.amount_micros, 100_000_000);
});

test("a changed body, another secret, an old timestamp or no signature is refused", async () => {
  const { headers, body } = await delivery("credits.exhausted");
  const refused = (options) => assert.rejects(verifyWebhook({ secret, headers, body, ...options }), WebhookVerificationError);
  await refused({ body: body.replace('"balance_micros":0', '"balance_micros":1000') });
  await refused({ secret: "whsec_" + Buffer.from("another secret of 24 b!!").toString("base64") });
  await refused({ now: (Number(headers["webhook-timestamp"]) + 301) * 1000 });
  await refused({ now: (Number(headers["webhook-timestamp"]) - 301) * 1000 });
  await refused({ headers: { ...headers, "webhook-signature": undefined } });
  await refused({ headers: { ...headers, "webhook-id": "msg_other" } });
  // During a rotation either secret verifies.
  const other = "whsec_" + Buffer.from("the next secret, 24 byte").toString("base64");
  const event = await verifyWebhook({ secret: [other, secret], headers, body });
  assert.equal(event.type, "credits.exhausted");
});
