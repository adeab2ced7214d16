#!/usr/bin/env bash
# Billing webhooks: how many Stripe deliveries per second tollgate verifies (HMAC-SHA256) and
# stores with their processing job (one transaction, then 200), at concurrency 16 and 64, on
# an API-only process; then how fast a worker processes what was stored (subscription, plan).
#
#   bash bench/webhooks.sh                          # SQLite, 20,000 events per case
#   TOTAL=50000 bash bench/webhooks.sh
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bash bench/webhooks.sh
set -euo pipefail
export PGOPTIONS='--client-min-messages=warning'
cd "$(dirname "$0")/.."
TOTAL=${TOTAL:-20000}
DB=${BENCH_DATABASE_URL:-}
cargo build --release --locked --quiet --bin tollgate --example webhook_load
BIN=target/release/tollgate
LOAD=target/release/examples/webhook_load
WORK=$(mktemp -d)
SCHEMA="tg_whbench_$$"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"; [[ $DB == postgres* ]] && psql "$DB" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null || true' EXIT
SECRET=whsec_bench_secret

URL="sqlite://$WORK/bench.db"
if [[ $DB == postgres* ]]; then
  psql "$DB" -qc "DO \$\$ BEGIN CREATE ROLE tollgate_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
  psql "$DB" -qc "CREATE SCHEMA $SCHEMA AUTHORIZATION tollgate_app" >/dev/null
  URL="$(echo "$DB" | sed 's#://[^@/]*@#://tollgate_app@#')?options=-c%20search_path%3D$SCHEMA"
fi

cat > "$WORK/tollgate.toml" <<TOML
[[apps]]
slug = "bench"
[[apps.plans]]
id = "free"
[[apps.plans]]
id = "pro"
[apps.stripe]
webhook_secrets = ["$SECRET"]
[[apps.products]]
provider = "stripe"
id = "price_pro"
plan = "pro"
TOML

export TOLLGATE_CONFIG="$WORK/tollgate.toml" TOLLGATE_DATA_DIR="$WORK" DATABASE_URL="$URL" \
  TOLLGATE_LOG__LEVEL=warn TOLLGATE_LOG__FORMAT=json TOLLGATE_LISTEN=127.0.0.1:18097 \
  TOLLGATE_RATE_LIMITS__IP__REQUESTS=1000000000 TOLLGATE_RATE_LIMITS__WEBHOOKS__REQUESTS=1000000000
"$BIN" migrate >/dev/null
"$BIN" serve --role api 2>"$WORK/api.log" &
for _ in $(seq 1 100); do curl -sf localhost:18097/health >/dev/null && break; sleep 0.1; done

echo "database: ${DB:-sqlite}"
for conc in 16 64; do
  "$LOAD" http://127.0.0.1:18097/webhooks/bench/stripe "$SECRET" "$TOTAL" "$conc"
done
stored=$("$BIN" webhooks list --status pending --limit 1000000 --json | grep -c '"event_id"')
echo "pending deliveries stored: $stored"

# A worker processes the backlog; the time until the queue drains.
start=$(date +%s.%N)
TOLLGATE_LISTEN=127.0.0.1:18096 "$BIN" serve --role worker 2>"$WORK/worker.log" &
"$BIN" jobs drain default --timeout-secs 600 >/dev/null
end=$(date +%s.%N)
processed=$("$BIN" webhooks list --status processed --limit 1000000 --json | grep -c '"event_id"')
awk -v n="$processed" -v s="$start" -v e="$end" \
  'BEGIN { printf "processed %d deliveries in %.1f s: %.0f/s (one worker)\n", n, e - s, n / (e - s) }'
