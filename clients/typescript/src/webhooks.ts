// Verifying tollgate's events on the app's server. tollgate signs each delivery per Standard
// Webhooks: `webhook-signature` holds `v1,<base64 HMAC-SHA256>` of
// `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed with the base64 part of the endpoint's
// `whsec_` secret; during a secret rotation it holds two signatures. Uses WebCrypto only, so
// it runs on Node 18+, Deno, Bun and edge runtimes.
import type { webhooks } from "./generated/openapi.js";

/** Every event tollgate sends, by type: `{type, timestamp, data}` with `data` typed per type. */
export type TollgateEvent = {
  [T in keyof webhooks]: webhooks[T] extends { post: { requestBody: { content: { "application/json": infer B } } } }
    ? B
    : never;
}[keyof webhooks];

export type EventType = TollgateEvent["type"];

/** The event of one type: `EventOf<"credits.low">["data"]["balance_micros"]`. */
export type EventOf<T extends EventType> = Extract<TollgateEvent, { type: T }>;

/** Why a delivery was refused. Answer 400 (or 401) to it; tollgate will retry. */
export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebhookVerificationError";
  }
}

export interface VerifyOptions {
  /** The endpoint's secret(s), `whsec_…`; two while you rotate. */
  secret: string | string[];
  /** The request's headers: a `Headers`, or Node's `req.headers` object. */
  headers: Headers | Record<string, string | string[] | undefined>;
  /** The raw body exactly as received (not re-serialized JSON). */
  body: string | Uint8Array;
  /** How far `webhook-timestamp` may be from now, in seconds (default 300). */
  toleranceSeconds?: number;
  /** Now, in ms since the epoch (tests). */
  now?: number;
}

function header(headers: VerifyOptions["headers"], name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
  const value = (headers as Record<string, string | string[] | undefined>)[name];
  return Array.isArray(value) ? value[0] : value;
}

function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Compares without an early exit, so the time taken says nothing about where they differ. */
function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

async function sign(secret: string, content: Uint8Array): Promise<string> {
  if (!secret.startsWith("whsec_")) throw new WebhookVerificationError("the secret must start with whsec_");
  let key: Uint8Array;
  try {
    key = base64ToBytes(secret.slice("whsec_".length));
  } catch {
    throw new WebhookVerificationError("the secret is not whsec_ followed by base64");
  }
  const hmac = await globalThis.crypto.subtle.importKey("raw", key as BufferSource, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return bytesToBase64(new Uint8Array(await globalThis.crypto.subtle.sign("HMAC", hmac, content as BufferSource)));
}

/**
 * Checks a delivery's signature and age and returns its event, typed by `type`. Throws
 * `WebhookVerificationError` for a missing header, a stale or future timestamp, or no
 * matching signature. Keep the `webhook-id`s you have processed: a retry or replay repeats one.
 */
export async function verifyWebhook(options: VerifyOptions): Promise<TollgateEvent & { id: string }> {
  const id = header(options.headers, "webhook-id");
  const timestamp = header(options.headers, "webhook-timestamp");
  const signatures = header(options.headers, "webhook-signature");
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (!/^\d+$/.test(timestamp)) throw new WebhookVerificationError("webhook-timestamp is not unix seconds");
  const tolerance = options.toleranceSeconds ?? 300;
  const now = Math.floor((options.now ?? Date.now()) / 1000);
  const sent = Number(timestamp);
  if (sent < now - tolerance) throw new WebhookVerificationError("webhook-timestamp is too old");
  if (sent > now + tolerance) throw new WebhookVerificationError("webhook-timestamp is in the future");
  const body = typeof options.body === "string" ? new TextEncoder().encode(options.body) : options.body;
  const prefix = new TextEncoder().encode(`${id}.${timestamp}.`);
  const content = new Uint8Array(prefix.length + body.length);
  content.set(prefix);
  content.set(body, prefix.length);
  const offered = signatures
    .split(" ")
    .filter((s) => s.startsWith("v1,"))
    .map((s) => s.slice(3));
  const secrets = Array.isArray(options.secret) ? options.secret : [options.secret];
  let matched = false;
  for (const secret of secrets) {
    const expected = await sign(secret, content);
    for (const candidate of offered) matched = constantTimeEqual(expected, candidate) || matched;
  }
  if (!matched) throw new WebhookVerificationError("no signature matches");
  const event = JSON.parse(new TextDecoder().decode(body)) as TollgateEvent;
  return { ...event, id };
}
