// Sign-up to first AI call: the app's server mints a user key, the app's client stores it and
// hands it to the official `openai` package; each call is charged once, by its usage.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { TollgateServer, TollgateError, createTollgateClient, memoryStorage } from "../dist/esm/index.js";
import { fakeAnthropic } from "./fake_anthropic.mjs";
import { startTollgate } from "./harness.mjs";

let tollgate;
let server;
let anthropicUpstream;
before(async () => {
  anthropicUpstream = await fakeAnthropic();
  tollgate = await startTollgate({ extra: anthropicUpstream.config() });
  server = new TollgateServer({ baseUrl: tollgate.baseUrl, appKey: tollgate.appKey() });
});
after(async () => {
  await tollgate?.stop();
  anthropicUpstream?.close();
});

async function signedIn(userId) {
  const { key } = await server.createUserKey(userId, { name: "laptop" });
  const client = await createTollgateClient({
    environments: { production: "https://api.acme.example", local: tollgate.baseUrl },
    environment: "local",
    storage: memoryStorage(),
  });
  await client.setToken(key);
  return client;
}

test("a new user reaches the mock model through the official openai package, charged once per call", async () => {
  const client = await signedIn("user-ai-1");
  const me = await client.me();
  assert.equal(me.user.external_id, "user-ai-1");
  assert.equal(me.plan.id, "free");
  const start = (await client.balances()).balance_micros;
  assert.equal(start, 100_000_000, "the free plan's 100 credits");
  const entitlements = await client.entitlements();
  assert.equal(entitlements.has("premium"), false);

  const openai = new OpenAI(await client.openai());
  const reply = await openai.chat.completions.create({ model: "mock", messages: [{ role: "user", content: "Say hi" }] });
  assert.ok(reply.choices[0].message.content.length > 0);
  assert.ok(reply.usage.completion_tokens > 0);

  let text = "";
  let usageChunks = 0;
  const stream = await openai.chat.completions.create({
    model: "mock",
    messages: [{ role: "user", content: "Say hi" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.usage) usageChunks++;
  }
  assert.ok(text.length > 0);
  assert.equal(usageChunks, 1);

  const usage = await client.usage();
  assert.equal(usage.data.length, 2, "one usage record per call");
  const charged = usage.data.reduce((sum, r) => sum + r.cost_micros, 0);
  assert.ok(charged > 0);
  assert.deepEqual(usage.data.map((r) => r.stream).sort(), [false, true]);
  const end = (await client.balances()).balance_micros;
  assert.equal(start - end, charged, "the balance fell by exactly what the usage records cost");
  const ledger = await client.ledger();
  assert.equal(ledger.data.at(-1).amount_micros, 100_000_000, "the oldest entry is the plan's grant");
  assert.equal(ledger.data[0].balance_after_micros, end, "the newest entry leaves the balance /v1/me shows");
});

test("the anthropic package reaches Anthropic through the gateway with the same settings helper", async () => {
  const client = await signedIn("user-ai-2");
  const start = (await client.balances()).balance_micros;
  const settings = await client.anthropic();
  assert.equal(settings.baseURL, `${tollgate.baseUrl}/anthropic`);
  const anthropic = new Anthropic(settings);
  const message = await anthropic.messages.create({
    model: "claude",
    max_tokens: 50,
    messages: [{ role: "user", content: "Say hi" }],
  });
  assert.equal(message.role, "assistant");
  assert.equal(message.content[0].text, "Hello from the fake Anthropic.");
  assert.equal(anthropicUpstream.calls.length, 1);
  assert.equal(anthropicUpstream.calls[0].body.model, "claude-sonnet-4-5");
  assert.equal(anthropicUpstream.calls[0].headers["x-api-key"], "sk-ant-test-provider-key", "the provider key, not the user's");
  const usage = await client.usage();
  assert.equal(usage.data.length, 1);
  assert.equal(usage.data[0].input_tokens, 12);
  assert.equal(usage.data[0].output_tokens, 7);
  // 12 × $3 + 7 × $15 per 1M = $0.000141 = 0.0141 credits (one credit is $0.01).
  assert.equal(usage.data[0].cost_micros, 14_100);
  assert.equal(start - (await client.balances()).balance_micros, 14_100);
});

test("plans, models and the server's holds and debits are typed calls", async () => {
  const client = await signedIn("user-plans");
  const plans = await client.plans();
  assert.equal(plans.current, "free");
  assert.deepEqual(plans.data.map((p) => p.id), ["free", "pro"]);
  const pro = plans.data.find((p) => p.id === "pro");
  assert.deepEqual(pro.products, [
    { provider: "stripe", id: "price_pro_monthly" },
    { provider: "revenuecat", id: "pro_monthly" },
  ]);
  assert.deepEqual(pro.quotas, [{ metric: "exports", limit: 20, period: "month" }]);
  assert.deepEqual(plans.packs, [{ provider: "stripe", id: "price_pack_500", credits_micros: 500_000_000, credits: "500" }]);
  const models = await client.models();
  assert.ok(models.data.some((m) => m.id === "mock"));

  const hold = await server.holds.reserve("user-plans", { amountMicros: 5_000_000, reference: "render-1" });
  assert.equal(hold.state, "open");
  assert.equal((await client.balances()).held_micros, 5_000_000);
  const settled = await server.holds.settle(hold.id, 2_000_000);
  assert.equal(settled.charged_micros, 2_000_000);
  await server.debit("user-plans", { amountMicros: 1_000_000, reason: "export" });
  const balances = await client.balances();
  assert.equal(balances.balance_micros, 97_000_000);
  assert.equal(balances.held_micros, 0);
  await assert.rejects(
    server.debit("user-plans", { amountMicros: 1_000_000_000 }),
    (e) => e instanceof TollgateError && e.status === 402 && e.code === "insufficient-credits" && e.requestId !== null,
  );
  await assert.rejects(server.debit("user-plans", { amountMicros: 1.5 }), RangeError);
});

test("a field refused by tollgate arrives as a typed error naming the field", async () => {
  const client = await signedIn("user-bad-input");
  await assert.rejects(
    client.checkout({ product: "price_unknown", successUrl: "notaurl", cancelUrl: "https://acme.example/c" }),
    (e) => {
      assert.ok(e instanceof TollgateError);
      assert.equal(e.status, 422);
      assert.equal(e.code, "validation");
      assert.deepEqual(e.fieldErrors.map((f) => f.field).sort(), ["product", "success_url"]);
      assert.match(e.requestId, /\S/, "the request id is carried");
      return true;
    },
  );
});
