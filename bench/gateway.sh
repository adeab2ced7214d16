#!/usr/bin/env bash
# The gateway's overhead: POST /v1/chat/completions through tollgate (billing ON: key auth,
# rate limit, quota, hold, settle, usage record) in front of a fast local fake OpenAI
# (examples/fake_upstream.rs), against calling the fake directly and against the floor — a
# pass-through proxy on the same HTTP stack that checks and charges nothing
# (examples/floor_proxy.rs). Non-streamed and streamed, at concurrency 1, 16 and 64. Reports
# requests/s, p50/p99 and the latency each adds over the direct call, tollgate's RPS as a share
# of the floor's, CPU time per request of the tollgate process, and its peak RSS. Needs wrk
# (apt-get install wrk).
#
#   bash bench/gateway.sh                         # SQLite, 10 s per case
#   DURATION=30s bash bench/gateway.sh
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bash bench/gateway.sh
#   CALLS_PER_USER=100000 REDIS_URL=redis://127.0.0.1:6379 MODES=plain CONCS=16 bash bench/gateway.sh
#     (the gateway's limits shared through Redis: a slot taken and given back per call)
#   PERF_DATA=/tmp/tollgate.perf MODES=plain CONCS=64 bash bench/gateway.sh   (then perf report)
set -euo pipefail
export PGOPTIONS='--client-min-messages=warning'
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
# The per-user cap on calls in flight (0: none, so no slot is taken); MODES and CONCS pick cases.
CALLS_PER_USER=${CALLS_PER_USER:-0}
MODES=${MODES:-plain stream}
CONCS=${CONCS:-1 16 64}
DB=${BENCH_DATABASE_URL:-}
cargo build --release --locked --quiet --bin tollgate --example fake_upstream --example floor_proxy
BIN=target/release/tollgate
FAKE=target/release/examples/fake_upstream
FLOOR=target/release/examples/floor_proxy
WORK=$(mktemp -d)
SCHEMA="tg_gwbench_$$"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"; [[ $DB == postgres* ]] && psql "$DB" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null || true' EXIT
TICK=$(getconf CLK_TCK)

URL="sqlite://$WORK/bench.db"
if [[ $DB == postgres* ]]; then
  # An ordinary role, as in production: row-level security applies.
  psql "$DB" -qc "DO \$\$ BEGIN CREATE ROLE tollgate_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
  psql "$DB" -qc "CREATE SCHEMA $SCHEMA AUTHORIZATION tollgate_app" >/dev/null
  URL="$(echo "$DB" | sed 's#://[^@/]*@#://tollgate_app@#')?options=-c%20search_path%3D$SCHEMA"
fi

cat > "$WORK/tollgate.toml" <<TOML
[providers.openai]
base_url = "http://127.0.0.1:18098/v1"

[models.gpt]
provider = "openai"
upstream = "gpt-4o-mini"

[prices.gpt]
input = "0.15"
output = "0.60"

[[apps]]
slug = "bench"
[[apps.plans]]
id = "free"
name = "Free"
models = ["gpt"]
credits = "1000000000"
TOML

export TOLLGATE_CONFIG="$WORK/tollgate.toml" TOLLGATE_DATA_DIR="$WORK" DATABASE_URL="$URL" \
  OPENAI_API_KEY=sk-bench TOLLGATE_LOG__LEVEL=warn TOLLGATE_LOG__FORMAT=json \
  TOLLGATE_LISTEN=127.0.0.1:18099 \
  TOLLGATE_RATE_LIMITS__KEY__REQUESTS=1000000000 TOLLGATE_RATE_LIMITS__APP__REQUESTS=1000000000 \
  TOLLGATE_GATEWAY__MAX_CONCURRENT_CALLS_PER_USER=$CALLS_PER_USER
[[ -n ${REDIS_URL:-} ]] && export TOLLGATE_RATE_LIMITS__REDIS_PREFIX="tollgate-bench:$$:"

"$FAKE" 127.0.0.1:18098 &
"$FLOOR" 127.0.0.1:18097 http://127.0.0.1:18098 &
"$BIN" migrate >/dev/null
"$BIN" serve 2>"$WORK/serve.log" &
PID=$!
for _ in $(seq 1 100); do curl -sf localhost:18099/health >/dev/null && break; sleep 0.1; done
KEY=$("$BIN" keys create --app bench --user bench-user | tail -n1)

for mode in plain stream; do
  stream=false; [[ $mode == stream ]] && stream=true
  cat > "$WORK/$mode.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"gpt","stream":$stream,"max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
done
curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d '{"model":"gpt","messages":[{"role":"user","content":"hi"}]}' localhost:18099/v1/chat/completions >/dev/null

# wrk's latency line value in ms ("1.23ms", "850.00us", "1.02s").
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else print v*1000 }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }

lat() { ms "$(echo "$1" | awk -v q="$2" '$1 == q { print $2 }')"; }
rps() { echo "$1" | awk '/Requests\/sec/ { print $2 }'; }
printf "%-6s %4s | %9s %7s | %9s %7s %7s | %10s %7s %7s %7s | %6s | %8s\n" mode conc "direct/s" "p50 ms" \
  "floor/s" "+p50" "+p99" "tollgate/s" "+p50" "+p99" "CPU ms" "T/F" "+p50 T-F"
for mode in $MODES; do
  for conc in $CONCS; do
    threads=$(( conc < 2 ? 1 : 2 ))
    run() { wrk -t$threads -c$conc -d"$DURATION" --latency -s "$WORK/$mode.lua" "http://127.0.0.1:$1/v1/chat/completions"; }
    direct=$(run 18098)
    floor=$(run 18097)
    before=$(cpu_ticks)
    # PERF_DATA=FILE records a profile of tollgate during its run (the last case's is kept).
    [[ -n ${PERF_DATA:-} ]] && { perf record -F 499 -g -p $PID -o "$PERF_DATA" -- sleep "${DURATION%s}" >/dev/null 2>&1 & }
    via=$(run 18099)
    after=$(cpu_ticks)
    if echo "$via" | grep -q "Non-2xx"; then echo "$via" >&2; echo "tollgate answered errors" >&2; exit 1; fi
    reqs=$(echo "$via" | awk '/requests in/ { print $1 }')
    awk -v m=$mode -v c=$conc -v rd="$(rps "$direct")" -v rf="$(rps "$floor")" -v rt="$(rps "$via")" \
      -v d50="$(lat "$direct" 50%)" -v d99="$(lat "$direct" 99%)" \
      -v f50="$(lat "$floor" 50%)" -v f99="$(lat "$floor" 99%)" \
      -v t50="$(lat "$via" 50%)" -v t99="$(lat "$via" 99%)" \
      -v t=$((after - before)) -v n="$reqs" -v hz="$TICK" \
      'BEGIN { printf "%-6s %4d | %9.0f %7.3f | %9.0f %7.3f %7.3f | %10.0f %7.3f %7.3f %7.3f | %6.3f | %8.3f\n",
               m, c, rd, d50, rf, f50 - d50, f99 - d99, rt, t50 - d50, t99 - d99,
               t * 1000 / hz / n, rt / rf, t50 - f50 }'
  done
done
curl -sf localhost:18099/metrics | awk '
  $1 ~ /^tollgate_ledger_batch_duration_seconds_sum/ { s += $2 } $1 ~ /^tollgate_ledger_batch_duration_seconds_count/ { n += $2 }
  $1 ~ /^tollgate_ledger_batch_calls_sum/ { c += $2 }
  END { if (n) printf "ledger batches: %d, %.1f writes each, %.3f ms each\n", n, c / n, s / n * 1000 }'
echo "peak RSS of tollgate: $(awk '/VmHWM/ { print $2, $3 }' "/proc/$PID/status")"
calls=$(curl -sf -H "Authorization: Bearer $KEY" 'localhost:18099/v1/me' | grep -o '"balance_micros":[-0-9]*')
echo "after the run: $calls (every call was held, settled and recorded)"
