#!/usr/bin/env bash
# npm test: provision what the tests need (npm ci, PostgreSQL server, Temporal CLI, Schemathesis, localstripe,
# Kafka's jars and Java), then
# typecheck, lint, format check and the whole Jest suite against real Postgres and a real Temporal server.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
cd "$ROOT"

ensure_node_modules
ensure_postgres
ensure_temporal
ensure_temporal_test_server
ensure_schemathesis || true # without it the contract test fails and says why; the rest still runs
ensure_localstripe || true  # likewise for the Stripe gateway test
ensure_chromium || true     # the portal's browser test fails and says why without it
ensure_kafka || true        # the broker's jars (the Kafka tests start a broker each); without them those tests fail

log "typecheck"; npx --no-install tsc -p tsconfig.json --noEmit && npx --no-install tsc -p portal/tsconfig.json --noEmit
log "lint"; npx --no-install eslint . --max-warnings 0
log "format"; npx --no-install prettier --check . --log-level warn

mkdir -p .data/test
stop_pg() { bash "$ROOT/scripts/pg.sh" stop "$ROOT/.data/test/pg" >/dev/null 2>&1 || true; }
[ "${CI:-}" = "true" ] && trap stop_pg EXIT

status=0
rm -f .data/test/jest.json
npx --no-install jest --ci --json --outputFile=.data/test/jest.json "$@" || status=$?
# A plain closing line any CI reader understands.
[ -f .data/test/jest.json ] && node -e 'const r=require("./.data/test/jest.json");console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`)'
exit $status
