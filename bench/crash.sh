#!/usr/bin/env bash
# Exactly once under kill -9: runs the random-kill fault test (tests/api/idempotency_crash.rs)
# with many trials, on SQLite and on PostgreSQL. Each trial starts `tollgate serve --role api`,
# sends concurrent keyed requests (debits, holds, AI calls, streams) on loopback, SIGKILLs the
# process at a random instant, restarts it and retries every key; it prints the trials, the
# keyed requests and the effects that happened twice (the test fails unless that is 0).
#
#   bash bench/crash.sh                 # 40 trials per database
#   CRASH_TRIALS=100 bash bench/crash.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${CRASH_TRIALS:-40}
PG_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
TEST=idempotency_crash::requests_killed_at_random_instants_and_retried_take_effect_at_most_once
run() { # label, env...
  local label=$1; shift
  echo "== $label"
  env "$@" CRASH_TRIALS="$TRIALS" cargo nextest run --locked --no-capture "$TEST" 2>&1 \
    | grep -E "kill -9 trials|PASS|FAIL|panicked" || true
}
run SQLite
run PostgreSQL TEST_DATABASE_URL="$PG_URL"
