// @tollgate/client: a typed client for a tollgate backend.
export { TollgateClient, createTollgateClient } from "./client.js";
export type {
  Balances,
  Checkout,
  ClientOptions,
  Compat,
  Entitlements,
  LedgerPage,
  Me,
  ModelList,
  Plan,
  PlanList,
  Redeemed,
  SdkSettings,
  Subscriptions,
  Sync,
  UsagePage,
} from "./client.js";
export { TollgateServer } from "./server.js";
export type { Enqueued, Hold, Job, NewKey, Queued, ServerOptions, User } from "./server.js";
export { NetworkError, TollgateConfigError, TollgateError, UpdateRequiredError } from "./errors.js";
export type { FieldError, Problem } from "./errors.js";
export { defaultEnvironmentName, environment } from "./environments.js";
export type { Environment, EnvironmentUrls } from "./environments.js";
export { callbackStorage, memoryStorage, tokenKey, webStorage } from "./storage.js";
export type { TokenStorage, WebStorageLike } from "./storage.js";
export { WebhookVerificationError, verifyWebhook } from "./webhooks.js";
export type { EventOf, EventType, TollgateEvent, VerifyOptions } from "./webhooks.js";
export type { CallOptions } from "./call.js";
export type { components, paths, webhooks } from "./generated/openapi.js";
