#!/usr/bin/env bash
# npm start: provision everything (npm ci, PostgreSQL, Temporal CLI) and run creditflow locally:
# a Postgres cluster and the Temporal dev server (with Web UI) under .data/dev, migrations, then the
# worker and the API under scripts/supervise.ts, which restarts either one when it crashes.
# Ctrl-C / SIGTERM — also during start-up — stops all of it within bounded time; the next start
# reuses the same data.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
cd "$ROOT"

DATA_DIR="${CREDITFLOW_DATA_DIR:-$ROOT/.data/dev}"
export CREDITFLOW_MODE="${CREDITFLOW_MODE:-development}"
export PORT="${PORT:-3000}"
TEMPORAL_PORT="${TEMPORAL_PORT:-7233}"
TEMPORAL_UI_PORT="${TEMPORAL_UI_PORT:-8233}"
PG_PORT="${CREDITFLOW_PG_PORT:-5433}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
INGEST_KAFKA="${INGEST_KAFKA:-}"

# What is running, for cleanup. Each runs in its own session (setsid): a terminal's Ctrl-C, sent to
# the whole foreground process group, reaches only this script, which then stops things in order.
step_pid=""       # the start-up step running now (tsc, Postgres start, migrations, …)
pg_state=""       # starting | up: Postgres is ours to stop
kafka_started=""  # the Kafka broker under the data dir is ours to stop
temporal_pid=""
supervisor_pid="" # it stops the worker and the API itself (SIGTERM, SIGKILL after 10 s)

in_session() { if command -v setsid >/dev/null 2>&1; then exec setsid "$@"; else exec "$@"; fi; }
alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }

stop_proc() { # pid seconds: SIGTERM its process group, SIGKILL whatever is left after the bound
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "pid $pid still running after $2 s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM HUP # a second Ctrl-C must not cut the stop short (Postgres would stay up)
  log "stopping"
  # Postgres mid-start: let pg_ctl finish (bounded by its -t 60), then stop it the normal way.
  if [ "$pg_state" = starting ] && [ -n "$step_pid" ]; then wait "$step_pid" 2>/dev/null || true; step_pid=""; fi
  stop_proc "$step_pid" 10
  stop_proc "$supervisor_pid" 20
  stop_proc "$temporal_pid" 15
  if [ -n "$kafka_started" ]; then bash "$ROOT/scripts/kafka.sh" stop "$DATA_DIR/kafka" || true; fi
  if [ -n "$pg_state" ]; then bash "$ROOT/scripts/pg.sh" stop "$DATA_DIR/pg" || true; fi
  log "stopped"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# A step in the background, so a signal is handled at once instead of after the step finishes.
run_step() {
  (in_session "$@") &
  step_pid=$!
  wait "$step_pid"
  step_pid=""
}

wait_for_port() { # host port seconds pid
  local i
  for ((i = 0; i < $3 * 4; i++)); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    kill -0 "$4" 2>/dev/null || return 1
    sleep 0.25
  done
  return 1
}

ensure_node_modules
log "building (tsc)"
run_step npx --no-install tsc -p tsconfig.build.json
run_step npx --no-install tsc -p portal/tsconfig.json
mkdir -p "$DATA_DIR"
if [ "$CREDITFLOW_MODE" = development ] && [ -z "${PORTAL_TOKEN_SECRET:-}" ]; then
  # Portal tokens stay valid across restarts: one secret per data dir, made on first start.
  secret_file="$DATA_DIR/portal-token-secret"
  [ -s "$secret_file" ] || (umask 077 && node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("base64url"))' >"$secret_file")
  PORTAL_TOKEN_SECRET="$(cat "$secret_file")"
  export PORTAL_TOKEN_SECRET
fi

create_db=()
if [ -z "${DATABASE_URL:-}" ]; then
  ensure_postgres
  pg_state=starting
  run_step bash "$ROOT/scripts/pg.sh" start "$DATA_DIR/pg" "$PG_PORT"
  pg_state=up
  # Migrations as the owner; the service as creditflow_app, which cannot rewrite the ledger
  # (README "Database roles"; trust auth on loopback: no passwords).
  export DATABASE_OWNER_URL="postgres://postgres@127.0.0.1:$PG_PORT/creditflow"
  export DATABASE_URL="postgres://creditflow_app@127.0.0.1:$PG_PORT/creditflow"
  create_db=(--create-database)
fi

if [ -z "${TEMPORAL_ADDRESS:-}" ]; then
  ensure_temporal
  (in_session env TEMPORAL_PORT="$TEMPORAL_PORT" TEMPORAL_UI_PORT="$TEMPORAL_UI_PORT" \
    TEMPORAL_DB_FILE="$DATA_DIR/temporal.db" TEMPORAL_LOG_FILE="$DATA_DIR/temporal.log" \
    node dist/scripts/temporal-server.js) &
  temporal_pid=$!
  wait_for_port 127.0.0.1 "$TEMPORAL_PORT" 120 "$temporal_pid" || { log "Temporal did not start; see $DATA_DIR/temporal.log"; exit 1; }
  export TEMPORAL_ADDRESS="127.0.0.1:$TEMPORAL_PORT"
fi

# INGEST_KAFKA=1: a local Kafka broker (unless KAFKA_BROKERS names one) and the ingest consumer.
children=(worker=dist/worker/main.js api=dist/api/main.js)
if [ -n "$INGEST_KAFKA" ] && [ "$INGEST_KAFKA" != 0 ]; then
  if [ -z "${KAFKA_BROKERS:-}" ]; then
    kafka_started=1
    run_step bash "$ROOT/scripts/kafka.sh" start "$DATA_DIR/kafka" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
    export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
  fi
  children+=(consumer=dist/ingest/consumer.js)
fi

run_step node dist/scripts/migrate.js "${create_db[@]}"
unset DATABASE_OWNER_URL # the owner's connection is for migrations only: the CLI, API and worker never get it
if [ "$CREDITFLOW_MODE" = development ]; then
  # Development convenience: the example card prices events out of the box (never overwrites a card).
  run_step node dist/cli/main.js rate-cards load --name default --file examples/rate-cards/default.yaml --if-missing \
    --operator npm-start --reason 'development default card'
fi
(in_session node dist/scripts/supervise.js "${children[@]}") &
supervisor_pid=$!
wait_for_port 127.0.0.1 "$PORT" 60 "$supervisor_pid" || { log "API did not start"; exit 1; }

log "creditflow is up"
log "  API          http://127.0.0.1:$PORT   (ready: /readyz, docs: /openapi.json)"
log "  Temporal     $TEMPORAL_ADDRESS (gRPC)"
[ -n "$temporal_pid" ] && log "  Temporal UI  http://127.0.0.1:$TEMPORAL_UI_PORT"
if [ -n "${KAFKA_BROKERS:-}" ] && [ "${#children[@]}" -gt 2 ]; then
  log "  Kafka        $KAFKA_BROKERS, topic ${KAFKA_TOPIC:-creditflow.usage} (consumer metrics: http://127.0.0.1:${CONSUMER_METRICS_PORT:-9465}/metrics)"
fi
if [ "$CREDITFLOW_MODE" = development ]; then
  log "  dev admin key: cf_dev_admin_key_for_local_use_only (development mode only)"
  # A demo customer's portal (live balance, expiries, usage, ledger); best effort.
  if portal_url="$(node dist/scripts/demo-portal.js)"; then log "  portal       $portal_url  (demo customer, 24 h)"; fi
fi
log "Ctrl-C stops everything"

# The supervisor keeps the worker and the API up; if it or Temporal ends, the stack comes down.
wait -n "$supervisor_pid" ${temporal_pid:+"$temporal_pid"} || true
log "the supervisor or the Temporal dev server exited"
exit 1
