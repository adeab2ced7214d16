// tollgate answers every error as problem+json (RFC 9457): `type` is
// `urn:tollgate:problem:<code>`, with `status`, `detail`, the request id, and, for a bad
// request body, one entry per field. These classes carry that answer to the app.
import type { components } from "./generated/openapi.js";

export type Problem = components["schemas"]["Problem"];
export type FieldError = components["schemas"]["FieldError"];

const PREFIX = "urn:tollgate:problem:";

/** An error answer from tollgate (4xx or 5xx), with everything its problem+json body said. */
export class TollgateError extends Error {
  /** The problem's short name: `validation`, `insufficient-credits`, `rate-limited`, … */
  readonly code: string;
  readonly type: string;
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  /** Quote it when reporting a problem: it finds the request in tollgate's logs. */
  readonly requestId: string | null;
  /** One entry per refused field of the request (422). */
  readonly fieldErrors: FieldError[];
  /** Seconds to wait before trying again, when tollgate said (429, 503). */
  readonly retryAfterSeconds: number | null;
  readonly problem: Problem;

  constructor(problem: Problem, retryAfterSeconds: number | null = null) {
    super(`${problem.title}: ${problem.detail}`);
    this.name = "TollgateError";
    this.problem = problem;
    this.type = problem.type;
    this.code = problem.type.startsWith(PREFIX) ? problem.type.slice(PREFIX.length) : problem.type;
    this.status = problem.status;
    this.title = problem.title;
    this.detail = problem.detail;
    this.requestId = problem.request_id ?? null;
    this.fieldErrors = problem.errors ?? [];
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** 426: this client version is below the app's minimum; show `updateUrl` and stop calling. */
export class UpdateRequiredError extends TollgateError {
  readonly minVersion: string | null;
  readonly latestVersion: string | null;
  readonly updateUrl: string | null;

  constructor(problem: Problem) {
    super(problem);
    this.name = "UpdateRequiredError";
    this.minVersion = problem.min_version ?? null;
    this.latestVersion = problem.latest_version ?? null;
    this.updateUrl = problem.update_url ?? null;
  }
}

/** The request never got an answer (connection refused, reset or dropped), after every retry. */
export class NetworkError extends Error {
  readonly attempts: number;
  constructor(message: string, attempts: number, cause: unknown) {
    super(message, { cause });
    this.name = "NetworkError";
    this.attempts = attempts;
  }
}

/** The client was set up wrongly (an unknown environment, a plain-http URL to a remote host). */
export class TollgateConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TollgateConfigError";
  }
}

function isProblem(body: unknown): body is Problem {
  if (typeof body !== "object" || body === null) return false;
  const b = body as Record<string, unknown>;
  return typeof b.type === "string" && typeof b.status === "number";
}

/** The typed error for a failed answer whose body has been read (`body`: parsed JSON or text). */
export function errorFromResponse(response: Response, body: unknown): TollgateError {
  const retryAfter = Number(response.headers.get("retry-after"));
  const wait = Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : null;
  const problem: Problem = isProblem(body)
    ? body
    : {
        // Not tollgate's answer (a proxy's error page, a platform's 502): say what came back.
        type: `${PREFIX}http`,
        title: response.statusText || `HTTP ${response.status}`,
        status: response.status,
        detail: typeof body === "string" && body ? body.slice(0, 500) : `HTTP ${response.status}`,
        request_id: response.headers.get("x-request-id"),
      };
  if (problem.status === 426) return new UpdateRequiredError(problem);
  return new TollgateError(problem, wait);
}
