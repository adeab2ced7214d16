// Starts a real tollgate (the binary cargo built) on a random loopback port, on SQLite in a
// temporary directory or, when TEST_DATABASE_URL is set, in a fresh PostgreSQL schema — the
// same choice as the Rust suite. A missing binary or database is a failure, never a skip.
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..", "..");

export function binary() {
  const bin = process.env.TOLLGATE_BIN ?? join(repo, "target", "debug", "tollgate");
  if (!existsSync(bin)) {
    throw new Error(`no tollgate binary at ${bin}: run \`cargo build\` first (or set TOLLGATE_BIN)`);
  }
  return bin;
}

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** The app every test uses: a free plan on the mock model, a paid one, products and a minimum client version. */
export const CONFIG = `
environment = "development"

[rate_limits]
enabled = false

[providers.mock]
enabled = true

[[apps]]
slug = "acme"
name = "Acme"
default_plan = "free"

# The stores' APIs: test/fake_stores.mjs when a test starts them, else an address where
# nothing listens (checkout validates its input before it calls Stripe).
[apps.stripe]
secret_key = "sk_test_tollgate_ts_client"
webhook_secrets = ["whsec_dGVzdHMgb2YgdGhlIFRTIGNsaWVudA=="]
api_base = "{STRIPE_API}"

[apps.revenuecat]
webhook_authorization = "Bearer revenuecat-webhook-for-the-ts-client"
api_key = "sk_rc_tollgate_ts_client"
api_base = "{REVENUECAT_API}"

[apps.compat.desktop]
min_version = "2.0.0"
latest_version = "2.3.0"
update_url = "https://acme.example/download"

[[apps.plans]]
id = "free"
name = "Free"
models = ["mock", "claude"]
credits = "100"

[[apps.plans]]
id = "pro"
name = "Pro"
entitlements = ["premium"]
models = ["*"]
credits = "1000"
[apps.plans.quotas.exports]
limit = 20
period = "month"

[[apps.products]]
provider = "stripe"
id = "price_pro_monthly"
plan = "pro"

[[apps.products]]
provider = "stripe"
id = "price_pack_500"
credits = "500"

[[apps.products]]
provider = "revenuecat"
id = "pro_monthly"
plan = "pro"
`;

function psql(url, sql) {
  execFileSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], { stdio: ["ignore", "pipe", "pipe"] });
}

/** Where this instance keeps its data, and how to remove it. */
function database(dir) {
  const admin = process.env.TEST_DATABASE_URL;
  if (!admin) return { env: { TOLLGATE_DATA_DIR: dir }, drop() {} };
  const schema = `ts_${randomBytes(6).toString("hex")}`;
  psql(admin, `CREATE SCHEMA ${schema}`);
  const url = new URL(admin);
  url.searchParams.set("options", `-c search_path=${schema}`);
  return {
    env: { DATABASE_URL: url.toString() },
    drop() {
      psql(admin, `DROP SCHEMA ${schema} CASCADE`);
    },
  };
}

/**
 * A running tollgate: `{baseUrl, cli(args), stop()}`. `cli` runs the binary's commands against
 * the same database and config and returns stdout.
 */
export async function startTollgate({ config = CONFIG, extra = "", stores = {} } = {}) {
  const nowhere = "http://127.0.0.1:9";
  config = config
    .replace("{STRIPE_API}", stores.stripe ?? nowhere)
    .replace("{REVENUECAT_API}", stores.revenuecat ?? nowhere);
  const bin = binary();
  const dir = mkdtempSync(join(tmpdir(), "tollgate-ts-"));
  const configPath = join(dir, "tollgate.toml");
  writeFileSync(configPath, config + extra); // extra: whole tables, after the top-level keys
  const db = database(dir);
  const port = await freePort();
  const env = {
    ...process.env,
    ...db.env,
    TOLLGATE_CONFIG: configPath,
    TOLLGATE_LISTEN: `127.0.0.1:${port}`,
    RUST_LOG: process.env.RUST_LOG ?? "warn",
  };
  delete env.TEST_DATABASE_URL;
  const child = spawn(bin, ["serve"], { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-8000);
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tollgate exited with ${child.exitCode}:\n${stderr}`);
    try {
      const ready = await fetch(`${baseUrl}/ready`);
      if (ready.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`tollgate did not become ready in 30 s:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    baseUrl,
    cli(args) {
      return execFileSync(bin, args, { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    },
    /** An app secret key for `acme` (the last line the CLI prints). */
    appKey() {
      return this.cli(["keys", "create", "--app", "acme", "--secret"]).trim().split("\n").at(-1);
    },
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      db.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
