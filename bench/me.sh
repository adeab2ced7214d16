#!/usr/bin/env bash
# Requests/s and latency of an authenticated `GET /v1/me` (user key), on SQLite and on
# PostgreSQL, with in-process rate limiting and with Redis. Needs wrk (apt-get install wrk).
#
#   bash bench/me.sh            # 10 s per case, 2 threads, 32 connections
#   DURATION=30s bash bench/me.sh
#
# Rate limits stay on (every request goes through the limiter) but are set high enough never
# to refuse, so the numbers measure the limiter's cost, not its refusals.
set -euo pipefail
export PGOPTIONS='--client-min-messages=warning'
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}
cargo build --release --locked --quiet
BIN=target/release/tollgate
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

run_case() { # name, database url, redis url or ""
  local name=$1 db=$2 redis=$3 schema="tg_bench_$$_$RANDOM"
  local url=$db
  if [[ $db == postgres* ]]; then
    # An ordinary role, as in production: row-level security applies to it (not to superusers).
    psql "$db" -qc "DO \$\$ BEGIN CREATE ROLE tollgate_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
    psql "$db" -qc "CREATE SCHEMA $schema AUTHORIZATION tollgate_app" >/dev/null
    url="$(echo "$db" | sed 's#://[^@/]*@#://tollgate_app@#')?options=-c%20search_path%3D$schema"
  fi
  local env=(TOLLGATE_DATA_DIR="$WORK/$schema" DATABASE_URL="$url" TOLLGATE_LOG__LEVEL=warn
    TOLLGATE_LOG__FORMAT=json TOLLGATE_LISTEN=127.0.0.1:18099
    TOLLGATE_RATE_LIMITS__KEY__REQUESTS=1000000000 TOLLGATE_RATE_LIMITS__APP__REQUESTS=1000000000
    TOLLGATE_RATE_LIMITS__REDIS_PREFIX="bench:$schema:")
  [[ -n $redis ]] && env+=(REDIS_URL="$redis")
  env "${env[@]}" "$BIN" migrate >/dev/null
  env "${env[@]}" "$BIN" apps create bench >/dev/null
  local key
  key=$(env "${env[@]}" "$BIN" keys create --app bench --user bench-user | tail -n1)
  env "${env[@]}" "$BIN" serve 2>"$WORK/$schema.log" &
  local pid=$!
  for _ in $(seq 1 50); do curl -sf localhost:18099/health >/dev/null && break; sleep 0.1; done
  curl -sf -H "Authorization: Bearer $key" localhost:18099/v1/me >/dev/null
  echo "== $name"
  wrk -t2 -c32 -d"$DURATION" --latency -H "Authorization: Bearer $key" http://127.0.0.1:18099/v1/me \
    | grep -E "Requests/sec|^\s+(50|99)%|Non-2xx"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [[ $db == postgres* ]]; then psql "$db" -qc "DROP SCHEMA $schema CASCADE" >/dev/null; fi
}

run_case "SQLite, in-process limits" "sqlite://$WORK/sqlite-local.db" ""
run_case "SQLite, Redis limits" "sqlite://$WORK/sqlite-redis.db" "$REDIS"
run_case "PostgreSQL, in-process limits" "$PG_URL" ""
run_case "PostgreSQL, Redis limits" "$PG_URL" "$REDIS"
