#!/usr/bin/env bash
# A throw-away PostgreSQL cluster under a project data directory.
#   pg.sh start <datadir> <port>   init (once) and start; idempotent
#   pg.sh stop <datadir>           fast shutdown; idempotent
#   pg.sh crash <datadir>          immediate shutdown (no checkpoint, crash recovery on next start): tests
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_postgres
cmd="${1:?start|stop|status}"; datadir="${2:?datadir}"; port="${3:-5433}"
mkdir -p "$datadir"; datadir="$(cd "$datadir" && pwd)"

# postgres refuses to run as root: run the cluster as the 'postgres' system user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    chown -R postgres "$datadir"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    if [ "$(id -u)" = 0 ] && ! as_pg test -w "$datadir"; then
      log "the postgres user cannot write $datadir (check the permissions of its parent folders)"; exit 1
    fi
    if [ ! -f "$datadir/PG_VERSION" ]; then
      log "initialising PostgreSQL cluster in $datadir"
      # trust on loopback only: a local, throw-away development/test cluster.
      as_pg "$PG_BINDIR/initdb" -D "$datadir" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if as_pg "$PG_BINDIR/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
      log "PostgreSQL already running ($datadir)"; exit 0
    fi
    as_pg "$PG_BINDIR/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200 -c fsync=${PG_FSYNC:-on} -c synchronous_commit=${PG_SYNC_COMMIT:-on} ${PG_EXTRA_OPTS:-}" start >/dev/null \
      || { log "PostgreSQL failed to start on port $port:"; tail -n 5 "$datadir/server.log" >&2; exit 1; }
    log "PostgreSQL listening on 127.0.0.1:$port"
    ;;
  stop)
    if [ -f "$datadir/postmaster.pid" ]; then as_pg "$PG_BINDIR/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null || true; fi
    ;;
  crash)
    if [ -f "$datadir/postmaster.pid" ]; then as_pg "$PG_BINDIR/pg_ctl" -D "$datadir" -m immediate -w stop >/dev/null || true; fi
    ;;
  status)
    as_pg "$PG_BINDIR/pg_ctl" -D "$datadir" status
    ;;
  *) echo "usage: pg.sh start|stop|crash|status <datadir> [port]" >&2; exit 2 ;;
esac
