// The typed calls: openapi-fetch over the generated `paths`, its answers turned into data or a
// thrown TollgateError. Shared by the app's client and its server.
import createClient, { type Client } from "openapi-fetch";
import { errorFromResponse } from "./errors.js";
import type { paths } from "./generated/openapi.js";

export type Api = Client<paths>;

/** A typed client whose requests go through `fetch` (the transport). */
export function api(fetch: (input: Request) => Promise<Response>): Api {
  return createClient<paths>({ fetch });
}

/** The data of a successful answer, or the answer's error thrown as a TollgateError. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): Exclude<T, undefined> {
  if (!result.response.ok) throw errorFromResponse(result.response, result.error);
  return result.data as Exclude<T, undefined>;
}

/** Amounts are integer micro-units; anything else is refused before it is sent. */
export function micros(name: string, value: number): number {
  if (!Number.isSafeInteger(value)) throw new RangeError(`${name} must be an integer number of micro-units`);
  return value;
}

/** Per-call options: the Idempotency-Key to use (one is made for every POST otherwise). */
export interface CallOptions {
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export function headersOf(options?: CallOptions): Record<string, string> {
  return options?.idempotencyKey ? { "Idempotency-Key": options.idempotencyKey } : {};
}
