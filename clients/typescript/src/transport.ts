// Every request the client (or an AI SDK given its `fetch`) sends goes through here: the token
// of the request's own origin is attached, a POST gets an Idempotency-Key, and a request that
// got no answer at all is sent again with that same key — tollgate then answers the first
// attempt's result instead of doing it twice. Without a key a request is never sent twice.
import { NetworkError } from "./errors.js";

export type Fetch = (input: Request) => Promise<Response>;

export interface TransportOptions {
  fetch?: typeof globalThis.fetch;
  /** The token for an origin, or null to send none. Read at send time, for the request's URL. */
  tokenFor: (origin: string) => Promise<string | null>;
  /** Extra attempts after a network failure (default 2). */
  retries?: number;
  /** Headers every request carries unless it sets them (client platform and version). */
  headers?: Record<string, string>;
  /** First wait between attempts in ms, doubled each time (default 200). */
  backoffMs?: number;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

function newIdempotencyKey(): string {
  return `tgc_${globalThis.crypto.randomUUID()}`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), reject(signal.reason)), { once: true });
  });
}

/**
 * A fetch with tollgate's rules. Accepts `fetch(url, init)` as well as `fetch(request)`, so it
 * can be handed to the official `openai` and `@anthropic-ai/sdk` packages (with their own
 * retries off: theirs would send a new request without the key).
 */
export function transport(options: TransportOptions): (input: RequestInfo | URL, init?: RequestInit) => Promise<Response> {
  const send = options.fetch ?? globalThis.fetch.bind(globalThis);
  const retries = options.retries ?? 2;
  const backoff = options.backoffMs ?? 200;
  return async (input, init) => {
    const request = new Request(input, init);
    const origin = new URL(request.url).origin;
    const headers = new Headers(request.headers);
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      if (!headers.has(name)) headers.set(name, value);
    }
    if (!headers.has("authorization")) {
      const token = await options.tokenFor(origin);
      if (token) headers.set("authorization", `Bearer ${token}`);
    }
    const safe = SAFE_METHODS.has(request.method);
    if (!safe && !headers.has("idempotency-key")) headers.set("idempotency-key", newIdempotencyKey());
    const ready = new Request(request, { headers });
    // A body is read once per attempt; keep the original for copies.
    const attempts = 1 + retries;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const response = await send(attempt < attempts ? ready.clone() : ready);
        // The first attempt may still be running when its retry arrives: tollgate answers 409
        // until it has finished, then replays its answer. Wait for it, a bounded number of times.
        if (response.status === 409 && attempt > 1 && attempt < attempts) {
          await response.body?.cancel();
          await sleep(backoff * 2 ** (attempt - 1), ready.signal);
          continue;
        }
        return response;
      } catch (error) {
        if (ready.signal.aborted) throw error; // the caller gave up: not a network failure
        lastError = error;
        if (attempt === attempts) break;
        await sleep(backoff * 2 ** (attempt - 1), ready.signal);
      }
    }
    throw new NetworkError(
      `${request.method} ${request.url}: no answer after ${attempts} attempt(s)`,
      attempts,
      lastError,
    );
  };
}
