#!/usr/bin/env bash
# npm start: provision everything (npm ci, PostgreSQL, Temporal CLI) and run creditflow locally:
# a Postgres cluster and the Temporal dev server (with Web UI) under .data/dev, migrations, worker and API.
# Ctrl-C / SIGTERM stops all of it; the next start reuses the same data.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
cd "$ROOT"

ensure_node_modules
log "building (tsc)"
npx --no-install tsc -p tsconfig.build.json

DATA_DIR="${CREDITFLOW_DATA_DIR:-$ROOT/.data/dev}"
mkdir -p "$DATA_DIR"
export CREDITFLOW_MODE="${CREDITFLOW_MODE:-development}"
export PORT="${PORT:-3000}"
TEMPORAL_PORT="${TEMPORAL_PORT:-7233}"
TEMPORAL_UI_PORT="${TEMPORAL_UI_PORT:-8233}"
PG_PORT="${CREDITFLOW_PG_PORT:-5433}"

pids=()
started_pg=""
temporal_pid=""
cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$temporal_pid" ]; then kill -TERM "$temporal_pid" 2>/dev/null || true; wait "$temporal_pid" 2>/dev/null || true; fi
  if [ -n "$started_pg" ]; then bash "$ROOT/scripts/pg.sh" stop "$DATA_DIR/pg" || true; fi
  log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for_port() { # host port seconds pid
  local i
  for ((i = 0; i < $3 * 4; i++)); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    kill -0 "$4" 2>/dev/null || return 1
    sleep 0.25
  done
  return 1
}

create_db=()
if [ -z "${DATABASE_URL:-}" ]; then
  ensure_postgres
  bash "$ROOT/scripts/pg.sh" start "$DATA_DIR/pg" "$PG_PORT"
  started_pg=1
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/creditflow"
  create_db=(--create-database)
fi

if [ -z "${TEMPORAL_ADDRESS:-}" ]; then
  ensure_temporal
  TEMPORAL_PORT="$TEMPORAL_PORT" TEMPORAL_UI_PORT="$TEMPORAL_UI_PORT" TEMPORAL_DB_FILE="$DATA_DIR/temporal.db" \
    TEMPORAL_LOG_FILE="$DATA_DIR/temporal.log" node dist/scripts/temporal-server.js &
  temporal_pid=$!
  wait_for_port 127.0.0.1 "$TEMPORAL_PORT" 120 "$temporal_pid" || { log "Temporal did not start; see $DATA_DIR/temporal.log"; exit 1; }
  export TEMPORAL_ADDRESS="127.0.0.1:$TEMPORAL_PORT"
fi

node dist/scripts/migrate.js "${create_db[@]}"
if [ "$CREDITFLOW_MODE" = development ]; then
  # Development convenience: the example card prices events out of the box (never overwrites a card).
  node dist/cli/main.js rate-cards load --name default --file examples/rate-cards/default.yaml --if-missing
fi
node dist/worker/main.js &
pids+=($!)
node dist/api/main.js &
pids+=($!)
wait_for_port 127.0.0.1 "$PORT" 60 "${pids[1]}" || { log "API did not start"; exit 1; }

log "creditflow is up"
log "  API          http://127.0.0.1:$PORT   (ready: /readyz, docs: /openapi.json)"
log "  Temporal     $TEMPORAL_ADDRESS (gRPC)"
[ -n "$temporal_pid" ] && log "  Temporal UI  http://127.0.0.1:$TEMPORAL_UI_PORT"
[ "$CREDITFLOW_MODE" = development ] && log "  dev admin key: cf_dev_admin_key_for_local_use_only (development mode only)"
log "Ctrl-C stops everything"

# Any process ending (or a signal) brings the whole stack down.
wait -n "${pids[@]}" ${temporal_pid:+"$temporal_pid"} || true
