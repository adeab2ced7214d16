// Paying through the client: a Stripe Checkout session (created once, then reused), the
// Customer Portal, and RevenueCat's "sync now" after an in-app purchase — after which the
// entitlement is there on the next call. And invite codes.
import assert from "node:assert/strict";
import OpenAI from "openai";
import { after, before, test } from "node:test";
import { CONFIG, startTollgate } from "./harness.mjs";
import { fakeRevenueCat, fakeStripe } from "./fake_stores.mjs";
import { TollgateClient, TollgateError, TollgateServer } from "../dist/esm/index.js";

let tollgate;
let server;
let stripe;
let revenuecat;
before(async () => {
  stripe = await fakeStripe();
  revenuecat = await fakeRevenueCat();
  tollgate = await startTollgate({ stores: { stripe: stripe.url, revenuecat: revenuecat.url } });
  server = new TollgateServer({ baseUrl: tollgate.baseUrl, appKey: tollgate.appKey() });
});
after(async () => {
  await tollgate?.stop();
  stripe?.close();
  revenuecat?.close();
});

async function user(id) {
  const client = new TollgateClient({ environments: { production: tollgate.baseUrl } });
  await client.setToken((await server.createUserKey(id)).key);
  return client;
}

test("checkout opens one Stripe session per user and price, and the portal answers a URL", async () => {
  const client = await user("buyer-1");
  const input = { product: "price_pro_monthly", successUrl: "https://acme.example/ok", cancelUrl: "https://acme.example/back" };
  const first = await client.checkout(input);
  assert.equal(first.mode, "subscription");
  assert.equal(first.reused, false);
  assert.match(first.url, /^https:\/\/checkout\.stripe\.com\/c\/pay\/cs_test_fake/);
  const again = await client.checkout(input);
  assert.equal(again.id, first.id);
  assert.equal(again.reused, true, "the open session is answered again, not a second one");
  const created = stripe.requests.filter((r) => r.method === "POST" && r.path === "/v1/checkout/sessions");
  assert.equal(created.length, 1);
  assert.equal(created[0].form["line_items[0][price]"], "price_pro_monthly");
  assert.equal(created[0].form.client_reference_id, "buyer-1");

  const pack = await client.checkout({ ...input, product: "price_pack_500" });
  assert.equal(pack.mode, "payment");

  const portal = await client.portal({ returnUrl: "https://acme.example/account" });
  assert.equal(portal, "https://billing.stripe.com/p/session/test_fake1");
  assert.deepEqual((await client.subscriptions()).data, [], "nothing is paid until Stripe says so");
});

test("after an in-app purchase, sync now makes the plan and entitlement follow at once", async () => {
  const client = await user("ios-buyer");
  assert.equal((await client.entitlements()).has("premium"), false);
  revenuecat.subscribe("ios-buyer", "pro_monthly");
  const sync = await client.syncPurchases();
  assert.equal(sync.plan_id, "pro");
  assert.equal(sync.subscriptions[0].status, "active");
  const entitlements = await client.entitlements();
  assert.equal(entitlements.plan.id, "pro");
  assert.equal(entitlements.has("premium"), true);
  assert.equal((await client.plans()).current, "pro");
  assert.equal((await client.subscriptions()).data[0].provider, "revenuecat");
});

test("an invite code lets a new user in where the app requires one", async () => {
  const invites = await startTollgate({ config: CONFIG.replace("# The stores' APIs", "[apps.invites]\nrequired = true\n\n# The stores' APIs") });
  try {
    const app = new TollgateServer({ baseUrl: invites.baseUrl, appKey: invites.appKey() });
    const client = new TollgateClient({ environments: { production: invites.baseUrl } });
    await client.setToken((await app.createUserKey("invitee")).key);
    const me = await client.me();
    assert.equal(me.app.invite_required, true);
    assert.equal(me.user.invited, false);
    const ask = async () =>
      new OpenAI(await client.openai()).chat.completions.create({ model: "mock", messages: [{ role: "user", content: "hi" }] });
    await assert.rejects(ask(), (e) => e.status === 403, "AI calls wait for the invite");

    const admin = invites.cli(["operators", "create-token", "--role", "admin"]).trim().split("\n").at(-1);
    const created = await fetch(`${invites.baseUrl}/admin/v1/apps/acme/invites`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({ code: "WELCOME", max_uses: 5 }),
    });
    assert.equal(created.status, 201);
    await assert.rejects(
      client.redeemInvite("NOPE"),
      (e) => e instanceof TollgateError && e.status === 422 && e.fieldErrors[0]?.field === "code",
    );
    const redeemed = await client.redeemInvite("WELCOME");
    assert.deepEqual(redeemed, { invited: true, redeemed_now: true });
    assert.deepEqual(await client.redeemInvite("WELCOME"), { invited: true, redeemed_now: false }, "repeating is harmless");
    assert.equal((await client.me()).user.invited, true);
    assert.ok((await ask()).choices[0].message.content.length > 0, "and are let in after it");
  } finally {
    await invites.stop();
  }
});
