// Local stand-ins for the two store APIs tollgate calls on a user's behalf, answering in their
// wire formats: Stripe's form-encoded API (customers, Checkout Sessions, Customer Portal
// sessions; https://docs.stripe.com/api) and RevenueCat's REST API v1 subscriber
// (GET /v1/subscribers/{app_user_id}; https://www.revenuecat.com/docs/api-v1).
import { createServer } from "node:http";

export const STRIPE_KEY = "sk_test_tollgate_ts_client";
export const REVENUECAT_KEY = "sk_rc_tollgate_ts_client";

function listen(handler) {
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => handler(req, Buffer.concat(chunks).toString("utf8"), (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    }));
  });
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r(server)));
}

export async function fakeStripe() {
  const requests = [];
  const sessions = new Map();
  const byKey = new Map(); // Stripe replays a POST with a used Idempotency-Key
  let customers = 0;
  const server = await listen((req, body, send) => {
    if (req.headers.authorization !== `Bearer ${STRIPE_KEY}`) {
      return send(401, { error: { type: "invalid_request_error", message: "Invalid API Key provided" } });
    }
    const form = Object.fromEntries(new URLSearchParams(body));
    const path = new URL(req.url, "http://stripe").pathname;
    requests.push({ method: req.method, path, form });
    const key = req.headers["idempotency-key"] && `${path} ${req.headers["idempotency-key"]}`;
    if (req.method === "POST" && key && byKey.has(key)) return send(200, byKey.get(key));
    const answer = (object) => (key && byKey.set(key, object), send(200, object));
    if (req.method === "POST" && path === "/v1/customers") {
      customers++;
      return answer({ id: `cus_fake${customers}`, object: "customer", metadata: {} });
    }
    if (req.method === "POST" && path === "/v1/checkout/sessions") {
      const id = `cs_test_fake${sessions.size + 1}`;
      const session = {
        id,
        object: "checkout.session",
        mode: form.mode,
        status: "open",
        customer: form.customer ?? null,
        client_reference_id: form.client_reference_id ?? null,
        success_url: form.success_url,
        cancel_url: form.cancel_url,
        url: `https://checkout.stripe.com/c/pay/${id}`,
        expires_at: Math.floor(Date.now() / 1000) + 86_400,
      };
      sessions.set(id, session);
      return answer(session);
    }
    const session = path.match(/^\/v1\/checkout\/sessions\/([^/]+)$/);
    if (req.method === "GET" && session && sessions.has(session[1])) return send(200, sessions.get(session[1]));
    if (req.method === "POST" && path === "/v1/billing_portal/sessions") {
      return answer({
        id: "bps_fake1",
        object: "billing_portal.session",
        customer: form.customer,
        return_url: form.return_url,
        url: "https://billing.stripe.com/p/session/test_fake1",
      });
    }
    send(404, { error: { type: "invalid_request_error", message: `Unrecognized request URL (${req.method}: ${req.url})` } });
  });
  return { url: `http://127.0.0.1:${server.address().port}`, requests, close: () => server.close() };
}

export async function fakeRevenueCat() {
  const subscribers = new Map();
  const server = await listen((req, _body, send) => {
    if (req.headers.authorization !== `Bearer ${REVENUECAT_KEY}`) return send(401, { code: 7225, message: "Invalid API key." });
    const match = new URL(req.url, "http://revenuecat").pathname.match(/^\/v1\/subscribers\/([^/]+)$/);
    if (req.method !== "GET" || !match) return send(404, { code: 7000, message: "Not found" });
    const id = decodeURIComponent(match[1]);
    const subscriber = subscribers.get(id) ?? { original_app_user_id: id, entitlements: {}, subscriptions: {}, non_subscriptions: {} };
    send(200, { request_date: new Date().toISOString(), request_date_ms: Date.now(), subscriber });
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** The user bought `product` in the App Store a minute ago, renewing in 30 days. */
    subscribe(id, product) {
      const iso = (ms) => new Date(ms).toISOString();
      const now = Date.now();
      subscribers.set(id, {
        original_app_user_id: id,
        entitlements: { pro: { product_identifier: product, expires_date: iso(now + 30 * 86_400_000) } },
        subscriptions: {
          [product]: {
            purchase_date: iso(now - 60_000),
            expires_date: iso(now + 30 * 86_400_000),
            period_type: "normal",
            store: "app_store",
            is_sandbox: true,
            unsubscribe_detected_at: null,
            billing_issues_detected_at: null,
            refunded_at: null,
          },
        },
        non_subscriptions: {},
      });
    },
    close: () => server.close(),
  };
}
