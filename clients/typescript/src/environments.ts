// Which tollgate the client talks to. An app ships with its production URL and may know a
// staging or preview one and a local one; which one is active can change at run time (a debug
// menu switching to a pull-request preview) without a rebuild.
import { TollgateConfigError } from "./errors.js";

/** An environment the client can talk to. */
export interface Environment {
  /** `production`, `staging`, `local`, `pr-123`, … */
  name: string;
  /** Where tollgate is, without a trailing slash: `https://api.example.com`. */
  baseUrl: string;
  /** The origin tokens are kept under: scheme, host and port of `baseUrl`. */
  origin: string;
}

/** Base URLs by environment name; `production` is required. */
export type EnvironmentUrls = { production: string } & Record<string, string>;

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]", "10.0.2.2"]);

/**
 * A checked environment. Plain `http` is refused except to this machine (localhost, 127.0.0.1,
 * ::1, and 10.0.2.2, the Android emulator's name for its host): a token sent in clear to
 * anywhere else can be read on the way.
 */
export function environment(name: string, baseUrl: string, allowInsecure = false): Environment {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
    throw new TollgateConfigError(`environment name ${JSON.stringify(name)}: use letters, digits, '.', '-' or '_'`);
  }
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new TollgateConfigError(`environment ${name}: ${JSON.stringify(baseUrl)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new TollgateConfigError(`environment ${name}: ${baseUrl} must be http(s)`);
  }
  if (url.protocol === "http:" && !LOOPBACK.has(url.hostname) && !allowInsecure) {
    throw new TollgateConfigError(
      `environment ${name}: ${baseUrl} is plain http to another machine; use https (or allowInsecure for a trusted network)`,
    );
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new TollgateConfigError(`environment ${name}: ${baseUrl} must not carry a query, fragment or credentials`);
  }
  const path = url.pathname.replace(/\/+$/, "");
  return { name, baseUrl: `${url.origin}${path}`, origin: url.origin };
}

/**
 * The environment a client starts in when none is named: production in a packaged build
 * (Electron's `app.isPackaged`, React Native's `!__DEV__`), `local` in development when one
 * is configured. Unknown (`packaged` not given): development only when `NODE_ENV` says
 * `development` or `test`; a build that cannot tell falls back to production, which is safe.
 */
export function defaultEnvironmentName(urls: EnvironmentUrls, packaged?: boolean): string {
  const development =
    packaged === undefined
      ? ["development", "test"].includes(
          (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.NODE_ENV ?? "",
        )
      : !packaged;
  return development && urls.local !== undefined ? "local" : "production";
}
