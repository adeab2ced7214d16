// The client an app's users run (Electron, React Native, the web): their own account, credits,
// entitlements and purchases, and the settings for the official AI SDKs — against whichever
// environment is active, with each environment's token kept apart.
import { type Api, type CallOptions, api, headersOf, unwrap } from "./call.js";
import { TollgateConfigError } from "./errors.js";
import { type Environment, type EnvironmentUrls, defaultEnvironmentName, environment } from "./environments.js";
import type { components } from "./generated/openapi.js";
import { ENVIRONMENT_KEY, type TokenStorage, memoryStorage, tokenKey } from "./storage.js";
import { transport } from "./transport.js";

type Schemas = components["schemas"];
export type Me = Schemas["MeOut"];
export type Balances = Schemas["BalancesOut"];
export type Plan = Schemas["PlanOut"];
export type PlanList = Schemas["PlansOut"];
export type UsagePage = Schemas["UsagePage"];
export type LedgerPage = Schemas["EntriesPage"];
export type Compat = Schemas["CompatOut"];
export type ModelList = Schemas["ModelList"];
export type Checkout = Schemas["CheckoutOut"];
export type Subscriptions = Schemas["SubscriptionsOut"];
export type Sync = Schemas["SyncOut"];
export type Redeemed = Schemas["RedeemOut"];

export interface ClientOptions {
  /** Base URLs by name. `production` is required; `local` is the development default. */
  environments: EnvironmentUrls;
  /** The environment to start in (default: see `defaultEnvironmentName`). */
  environment?: string;
  /** Whether this is a packaged build (Electron `app.isPackaged`, React Native `!__DEV__`). */
  packaged?: boolean;
  /** Where tokens are kept, per origin (default: in memory only). */
  storage?: TokenStorage;
  /** Keep the environment chosen at run time across restarts (in `storage`). Default false. */
  rememberEnvironment?: boolean;
  /** This build's platform and version, sent with every call: an old one gets UpdateRequiredError. */
  app?: { platform: string; version: string };
  /** Extra attempts after a network failure, with the same Idempotency-Key (default 2). */
  retries?: number;
  /** First wait between attempts, in ms (default 200). */
  backoffMs?: number;
  /** Allow plain http to hosts other than this machine (a trusted network only). */
  allowInsecure?: boolean;
  fetch?: typeof globalThis.fetch;
}

/** What the official `openai` package needs: `new OpenAI(await tollgate.openai())`. */
export interface SdkSettings {
  baseURL: string;
  apiKey: string;
  /** Sends through the client's transport: the same Idempotency-Key on a retry. */
  fetch: (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;
  /** The SDK's own retries are off: they would resend without the key and be charged twice. */
  maxRetries: 0;
  defaultHeaders: Record<string, string>;
  /** For a browser or Electron renderer: the key is the user's own, not a provider secret. */
  dangerouslyAllowBrowser: true;
}

/** The user's entitlements, as `/v1/me` listed them. */
export interface Entitlements {
  plan: Plan;
  list: string[];
  has(name: string): boolean;
}

export class TollgateClient {
  readonly #urls: Map<string, Environment>;
  readonly #storage: TokenStorage;
  readonly #options: ClientOptions;
  readonly #fetch: (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;
  readonly #api: Api;
  #active: Environment;

  constructor(options: ClientOptions) {
    if (!options.environments?.production) {
      throw new TollgateConfigError("environments.production is required");
    }
    this.#options = options;
    this.#urls = new Map(
      Object.entries(options.environments).map(([name, url]) => [name, environment(name, url, options.allowInsecure)]),
    );
    this.#storage = options.storage ?? memoryStorage();
    const name = options.environment ?? defaultEnvironmentName(options.environments, options.packaged);
    this.#active = this.#lookup(name);
    const headers: Record<string, string> = {};
    if (options.app) {
      headers["X-Client-Platform"] = options.app.platform;
      headers["X-Client-Version"] = options.app.version;
    }
    this.#fetch = transport({
      fetch: options.fetch,
      retries: options.retries,
      backoffMs: options.backoffMs,
      headers,
      // The token of the origin the request goes to, read when it is sent: a call started
      // before a switch can never carry the other environment's token.
      tokenFor: async (origin) => (await this.#storage.get(tokenKey(origin))) ?? null,
    });
    this.#api = api(this.#fetch);
  }

  #lookup(name: string): Environment {
    const found = this.#urls.get(name);
    if (!found) throw new TollgateConfigError(`no environment ${JSON.stringify(name)} (known: ${[...this.#urls.keys()].join(", ")})`);
    return found;
  }

  /** Restores the environment remembered from a previous run, if `rememberEnvironment` is on. */
  async restore(): Promise<Environment> {
    if (!this.#options.rememberEnvironment) return this.#active;
    const saved = await this.#storage.get(ENVIRONMENT_KEY);
    if (!saved) return this.#active;
    try {
      const { name, baseUrl } = JSON.parse(saved) as { name: string; baseUrl: string };
      this.#active = this.#urls.get(name) ?? environment(name, baseUrl, this.#options.allowInsecure);
    } catch {
      await this.#storage.remove(ENVIRONMENT_KEY); // unreadable: start from the default
    }
    return this.#active;
  }

  /** The active environment (for a debug screen). */
  get environment(): Environment {
    return this.#active;
  }

  /** Every configured environment. */
  get environments(): Environment[] {
    return [...this.#urls.values()];
  }

  /**
   * Switches to a configured environment by name, or to any other tollgate (a pull-request
   * preview) by `{name, baseUrl}`. Tokens stay with their origin: the new environment sees
   * only a token stored for it.
   */
  async useEnvironment(target: string | { name: string; baseUrl: string }): Promise<Environment> {
    this.#active =
      typeof target === "string" ? this.#lookup(target) : environment(target.name, target.baseUrl, this.#options.allowInsecure);
    if (this.#options.rememberEnvironment) {
      await this.#storage.set(ENVIRONMENT_KEY, JSON.stringify({ name: this.#active.name, baseUrl: this.#active.baseUrl }));
    }
    return this.#active;
  }

  /** Stores the user's token (a `tg_user_…` key or the identity provider's JWT) for the active environment. */
  async setToken(token: string): Promise<void> {
    await this.#storage.set(tokenKey(this.#active.origin), token);
  }

  /** The active environment's token, if one is stored. */
  async token(): Promise<string | null> {
    return (await this.#storage.get(tokenKey(this.#active.origin))) ?? null;
  }

  /** Forgets the active environment's token (other environments keep theirs). */
  async signOut(): Promise<void> {
    await this.#storage.remove(tokenKey(this.#active.origin));
  }

  /** The typed client for any route not wrapped here; send `baseUrl: client.environment.baseUrl`. */
  get api(): Api {
    return this.#api;
  }

  get #base() {
    return { baseUrl: this.#active.baseUrl };
  }

  /** The user, their app, plan, entitlements, balances and quotas. */
  async me(options?: CallOptions): Promise<Me> {
    return unwrap(await this.#api.GET("/v1/me", { ...this.#base, signal: options?.signal }));
  }

  /** Balance, held and available credits, and the buckets (grants) they come from. */
  async balances(options?: CallOptions): Promise<Balances> {
    return (await this.me(options)).credits;
  }

  /** The plan's entitlements, with `has(name)` for feature checks. */
  async entitlements(options?: CallOptions): Promise<Entitlements> {
    const me = await this.me(options);
    const list = me.entitlements;
    return { plan: me.plan, list, has: (name) => list.includes(name) };
  }


  /** The app's plans (for a paywall) and which one the user is on. */
  async plans(options?: CallOptions): Promise<PlanList> {
    return unwrap(await this.#api.GET("/v1/plans", { ...this.#base, signal: options?.signal }));
  }

  /** The models this user's plan may call. */
  async models(options?: CallOptions): Promise<ModelList> {
    return unwrap(await this.#api.GET("/v1/models", { ...this.#base, signal: options?.signal }));
  }

  /** The user's AI and metered usage, newest first (`cursor`: the previous page's `next_cursor`). */
  async usage(page?: { cursor?: string; limit?: number }, options?: CallOptions): Promise<UsagePage> {
    return unwrap(await this.#api.GET("/v1/me/usage", { ...this.#base, params: { query: page }, signal: options?.signal }));
  }

  /** The user's ledger entries (grants, charges, expiries), newest first. */
  async ledger(page?: { cursor?: string; limit?: number }, options?: CallOptions): Promise<LedgerPage> {
    return unwrap(await this.#api.GET("/v1/me/ledger", { ...this.#base, params: { query: page }, signal: options?.signal }));
  }

  /**
   * Whether this build may still be used: `ok`, `update_available` or `update_required`.
   * Works signed out (the app's slug is needed then).
   */
  async compat(app?: string, options?: CallOptions): Promise<Compat> {
    const build = this.#options.app;
    if (!build) throw new TollgateConfigError("compat(): set `app: {platform, version}` in the client options");
    return unwrap(
      await this.#api.GET("/v1/compat", {
        ...this.#base,
        params: { query: { platform: build.platform, version: build.version, app } },
        signal: options?.signal,
      }),
    );
  }

  /** Redeems an invite code (repeating it is harmless). */
  async redeemInvite(code: string, options?: CallOptions): Promise<Redeemed> {
    return unwrap(
      await this.#api.POST("/v1/invites/redeem", { ...this.#base, body: { code }, headers: headersOf(options), signal: options?.signal }),
    );
  }

  /** A Stripe Checkout session for a plan or a credit pack (`product`: its Stripe price id). */
  async checkout(input: { product: string; successUrl: string; cancelUrl: string }, options?: CallOptions): Promise<Checkout> {
    return unwrap(
      await this.#api.POST("/v1/billing/checkout", {
        ...this.#base,
        body: { product: input.product, success_url: input.successUrl, cancel_url: input.cancelUrl },
        headers: headersOf(options),
        signal: options?.signal,
      }),
    );
  }

  /** A Stripe customer-portal URL (change plan, update the card, cancel). */
  async portal(input: { returnUrl: string }, options?: CallOptions): Promise<string> {
    const out = unwrap(
      await this.#api.POST("/v1/billing/portal", {
        ...this.#base,
        body: { return_url: input.returnUrl },
        headers: headersOf(options),
        signal: options?.signal,
      }),
    );
    return out.url;
  }

  /** The user's subscriptions at every store. */
  async subscriptions(options?: CallOptions): Promise<Subscriptions> {
    return unwrap(await this.#api.GET("/v1/billing/subscriptions", { ...this.#base, signal: options?.signal }));
  }

  /** After a purchase in the app: asks RevenueCat now instead of waiting for its webhook. */
  async syncPurchases(options?: CallOptions): Promise<Sync> {
    return unwrap(await this.#api.POST("/v1/billing/sync", { ...this.#base, headers: headersOf(options), signal: options?.signal }));
  }

  async #sdk(path: string): Promise<SdkSettings> {
    const apiKey = await this.token();
    if (!apiKey) throw new TollgateConfigError(`no token for ${this.#active.name}: call setToken() after sign-in`);
    const defaultHeaders: Record<string, string> = {};
    if (this.#options.app) {
      defaultHeaders["X-Client-Platform"] = this.#options.app.platform;
      defaultHeaders["X-Client-Version"] = this.#options.app.version;
    }
    return {
      baseURL: `${this.#active.baseUrl}${path}`,
      apiKey,
      fetch: this.#fetch,
      maxRetries: 0,
      defaultHeaders,
      dangerouslyAllowBrowser: true,
    };
  }

  /** Settings for the official `openai` package: `new OpenAI(await tollgate.openai())`. */
  openai(): Promise<SdkSettings> {
    return this.#sdk("/v1");
  }

  /** Settings for `@anthropic-ai/sdk`: `new Anthropic(await tollgate.anthropic())`. */
  anthropic(): Promise<SdkSettings> {
    return this.#sdk("/anthropic");
  }
}

/** A client, with the environment remembered from the last run restored. */
export async function createTollgateClient(options: ClientOptions): Promise<TollgateClient> {
  const client = new TollgateClient(options);
  await client.restore();
  return client;
}
