// A connection dropped after tollgate acted but before the answer arrived: the client sends the
// request again with the same Idempotency-Key and is answered the first result — charged once.
import assert from "node:assert/strict";
import { connect, createServer } from "node:net";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { NetworkError, TollgateClient, TollgateServer } from "../dist/esm/index.js";
import { startTollgate } from "./harness.mjs";

let tollgate;
let appKey;
before(async () => {
  tollgate = await startTollgate();
  appKey = tollgate.appKey();
});
after(() => tollgate?.stop());

/**
 * A TCP proxy to tollgate that lets the first `drops` connections deliver their request, then
 * cuts them as soon as tollgate starts answering (the answer is lost on the way back).
 */
async function droppingProxy(target, drops) {
  const { port: targetPort } = new URL(target);
  const seen = { connections: 0, dropped: 0 };
  const proxy = createServer((client) => {
    seen.connections++;
    const drop = seen.dropped < drops;
    const upstream = connect(Number(targetPort), "127.0.0.1");
    client.pipe(upstream);
    upstream.on("data", (chunk) => {
      if (drop) {
        seen.dropped++;
        client.destroy();
        upstream.destroy();
      } else {
        client.write(chunk);
      }
    });
    upstream.on("end", () => client.end());
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${proxy.address().port}`, seen, close: () => proxy.close() };
}

test("a debit whose answer was lost is retried with the same key and charged once", async () => {
  const proxy = await droppingProxy(tollgate.baseUrl, 1);
  try {
    const direct = new TollgateServer({ baseUrl: tollgate.baseUrl, appKey });
    await direct.createUser("retry-debit");
    const before = (await direct.getUser("retry-debit")).id;
    const viaProxy = new TollgateServer({ baseUrl: proxy.url, appKey, backoffMs: 20 });
    const entry = await viaProxy.debit("retry-debit", { amountMicros: 3_000_000, reason: "export" });
    assert.equal(proxy.seen.dropped, 1, "the first answer was cut");
    assert.equal(proxy.seen.connections, 2, "one retry");
    assert.ok(entry, "the retry got the first attempt's answer");
    const { key } = await direct.createUserKey("retry-debit");
    const user = new TollgateClient({ environments: { production: tollgate.baseUrl } });
    await user.setToken(key);
    const me = await user.me();
    assert.equal(me.user.id, before);
    assert.equal(me.credits.balance_micros, 97_000_000, "100 credits less one 3-credit debit, not two");
  } finally {
    proxy.close();
  }
});

test("an AI call through the official openai package, answer lost, retried: one usage record, one charge", async () => {
  const proxy = await droppingProxy(tollgate.baseUrl, 1);
  try {
    const server = new TollgateServer({ baseUrl: tollgate.baseUrl, appKey });
    const { key } = await server.createUserKey("retry-ai");
    const direct = new TollgateClient({ environments: { production: tollgate.baseUrl } });
    await direct.setToken(key);
    const start = (await direct.balances()).balance_micros;
    const viaProxy = new TollgateClient({ environments: { production: proxy.url }, backoffMs: 20 });
    await viaProxy.setToken(key);
    const openai = new OpenAI(await viaProxy.openai());
    const reply = await openai.chat.completions.create({ model: "mock", messages: [{ role: "user", content: "Say hi" }] });
    assert.ok(reply.choices[0].message.content.length > 0);
    assert.equal(proxy.seen.dropped, 1, "the first answer was cut");
    assert.equal(proxy.seen.connections, 2, "the call and one retry");
    const usage = await direct.usage();
    assert.equal(usage.data.length, 1, "the provider was called once");
    assert.equal(start - (await direct.balances()).balance_micros, usage.data[0].cost_micros, "charged once");
  } finally {
    proxy.close();
  }
});

test("a streamed AI call whose answer was lost is replayed whole on the retry and charged once", async () => {
  const proxy = await droppingProxy(tollgate.baseUrl, 1);
  try {
    const server = new TollgateServer({ baseUrl: tollgate.baseUrl, appKey });
    const { key } = await server.createUserKey("retry-stream");
    const direct = new TollgateClient({ environments: { production: tollgate.baseUrl } });
    await direct.setToken(key);
    const start = (await direct.balances()).balance_micros;
    const viaProxy = new TollgateClient({ environments: { production: proxy.url }, backoffMs: 50, retries: 4 });
    await viaProxy.setToken(key);
    const openai = new OpenAI(await viaProxy.openai());
    const stream = await openai.chat.completions.create({
      model: "mock",
      messages: [{ role: "user", content: "Say hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      usage = chunk.usage ?? usage;
    }
    assert.ok(text.length > 0, "the whole answer arrived on the retry");
    assert.ok(usage?.completion_tokens > 0);
    assert.equal(proxy.seen.dropped, 1);
    const records = await direct.usage();
    assert.equal(records.data.length, 1, "one provider call");
    assert.equal(start - (await direct.balances()).balance_micros, records.data[0].cost_micros, "charged once");
  } finally {
    proxy.close();
  }
});

test("with nobody answering, the client gives up after its retries with a NetworkError", async () => {
  const proxy = await droppingProxy(tollgate.baseUrl, 100);
  try {
    const server = new TollgateServer({ baseUrl: proxy.url, appKey, retries: 2, backoffMs: 10 });
    await assert.rejects(server.createUser("never"), (e) => e instanceof NetworkError && e.attempts === 3);
    assert.equal(proxy.seen.connections, 3);
  } finally {
    proxy.close();
  }
});
