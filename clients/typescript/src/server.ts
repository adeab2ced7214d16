// The app's own server, with its app secret key (`tg_app_…`): sign users up (a user key per
// user), charge them for work done outside the AI gateway with holds or direct debits, count
// quotas, enqueue the app's jobs and send its email. Never ship this key in a client.
import { type Api, type CallOptions, api, headersOf, micros, unwrap } from "./call.js";
import { TollgateConfigError } from "./errors.js";
import { environment } from "./environments.js";
import type { components } from "./generated/openapi.js";
import { transport } from "./transport.js";

type Schemas = components["schemas"];
export type User = Schemas["UserRow"];
export type NewKey = Schemas["NewKeyOut"];
export type Hold = Schemas["HoldOut"];
export type Job = Schemas["AppJobOut"];
export type Queued = Schemas["Queued"];
export type Enqueued = Schemas["Enqueued"];

export interface ServerOptions {
  /** Where tollgate is: `https://api.example.com`. */
  baseUrl: string;
  /** The app secret key, `tg_app_…` (from `tollgate keys create --app SLUG --secret`). */
  appKey: string;
  retries?: number;
  backoffMs?: number;
  allowInsecure?: boolean;
  fetch?: typeof globalThis.fetch;
}

export class TollgateServer {
  readonly #baseUrl: string;
  readonly #api: Api;

  constructor(options: ServerOptions) {
    if (!options.appKey?.startsWith("tg_app_")) {
      throw new TollgateConfigError("appKey must be an app secret key (tg_app_…)");
    }
    const target = environment("server", options.baseUrl, options.allowInsecure);
    this.#baseUrl = target.baseUrl;
    // The key goes only to the one origin it was configured for.
    const fetch = transport({
      fetch: options.fetch,
      retries: options.retries,
      backoffMs: options.backoffMs,
      tokenFor: async (origin) => (origin === target.origin ? options.appKey : null),
    });
    this.#api = api(fetch);
  }

  /** The typed client for any route not wrapped here. */
  get api(): Api {
    return this.#api;
  }

  #opts(options?: CallOptions) {
    return { baseUrl: this.#baseUrl, headers: headersOf(options), signal: options?.signal };
  }

  /** Creates a user (or returns the one with that id). */
  async createUser(externalId: string, options?: CallOptions): Promise<User> {
    return unwrap(await this.#api.POST("/v1/users", { ...this.#opts(options), body: { external_id: externalId } }));
  }

  async getUser(externalId: string, options?: CallOptions): Promise<User> {
    return unwrap(
      await this.#api.GET("/v1/users/{external_id}", { ...this.#opts(options), params: { path: { external_id: externalId } } }),
    );
  }

  /** Erases the user's personal data and revokes their keys (a privacy request). */
  async deleteUser(externalId: string, options?: CallOptions): Promise<void> {
    unwrap(await this.#api.DELETE("/v1/users/{external_id}", { ...this.#opts(options), params: { path: { external_id: externalId } } }));
  }

  /**
   * Signs a user up: mints their user key (creating the user if new). Hand `key` to their
   * client once (`client.setToken(key)`); tollgate keeps only its hash.
   */
  async createUserKey(
    externalId: string,
    input: { name?: string; expiresAt?: number } = {},
    options?: CallOptions,
  ): Promise<NewKey> {
    return unwrap(
      await this.#api.POST("/v1/users/{external_id}/keys", {
        ...this.#opts(options),
        params: { path: { external_id: externalId } },
        body: { name: input.name ?? null, expires_at: input.expiresAt ?? null },
      }),
    );
  }

  /** Charges a known amount at once (402 when the user cannot cover it). */
  async debit(
    externalId: string,
    input: { amountMicros: number; reason?: string; reference?: string },
    options?: CallOptions,
  ) {
    return unwrap(
      await this.#api.POST("/v1/users/{external_id}/debits", {
        ...this.#opts(options),
        params: { path: { external_id: externalId } },
        body: { amount_micros: micros("amountMicros", input.amountMicros), reason: input.reason ?? null, reference: input.reference ?? null },
      }),
    );
  }

  /** Counts `quantity` (default 1) of a metric against the user's plan quota (429 past it). */
  async consumeQuota(externalId: string, metric: string, quantity = 1, options?: CallOptions) {
    return unwrap(
      await this.#api.POST("/v1/users/{external_id}/quotas/{metric}", {
        ...this.#opts(options),
        params: { path: { external_id: externalId, metric } },
        body: { quantity },
      }),
    );
  }

  /** Holds: reserve before long work, then settle at its cost or release it. */
  readonly holds = {
    /** Reserves credits (402 when the user's available credits do not cover them). */
    reserve: async (
      externalId: string,
      input: { amountMicros: number; reference?: string; expiresInSecs?: number },
      options?: CallOptions,
    ): Promise<Hold> =>
      unwrap(
        await this.#api.POST("/v1/users/{external_id}/holds", {
          ...this.#opts(options),
          params: { path: { external_id: externalId } },
          body: {
            amount_micros: micros("amountMicros", input.amountMicros),
            reference: input.reference ?? null,
            expires_in_secs: input.expiresInSecs ?? null,
          },
        }),
      ),
    /** Charges what the work cost (at most the hold); the rest is released. */
    settle: async (id: number, amountMicros: number, options?: CallOptions): Promise<Hold> =>
      unwrap(
        await this.#api.POST("/v1/holds/{id}/settle", {
          ...this.#opts(options),
          params: { path: { id } },
          body: { amount_micros: micros("amountMicros", amountMicros) },
        }),
      ),
    /** Records progress (what has been used so far), so a crash settles at least that. */
    usage: async (id: number, usedMicros: number, options?: CallOptions): Promise<Hold> =>
      unwrap(
        await this.#api.POST("/v1/holds/{id}/usage", {
          ...this.#opts(options),
          params: { path: { id } },
          body: { used_micros: micros("usedMicros", usedMicros) },
        }),
      ),
    /** Releases the hold without charging. */
    release: async (id: number, options?: CallOptions): Promise<Hold> =>
      unwrap(await this.#api.POST("/v1/holds/{id}/release", { ...this.#opts(options), params: { path: { id } } })),
  };

  /** Enqueues one of the app's jobs (declared in its config); the same key finds the same job. */
  async enqueueJob(input: Schemas["JobIn"], options?: CallOptions): Promise<Enqueued> {
    return unwrap(await this.#api.POST("/v1/jobs", { ...this.#opts(options), body: input }));
  }

  async getJob(id: number, options?: CallOptions): Promise<Job> {
    return unwrap(await this.#api.GET("/v1/jobs/{id}", { ...this.#opts(options), params: { path: { id } } }));
  }

  /** Queues an email from one of the app's templates. */
  async sendEmail(input: Schemas["EmailIn"], options?: CallOptions): Promise<Queued> {
    return unwrap(await this.#api.POST("/v1/emails", { ...this.#opts(options), body: input }));
  }
}
