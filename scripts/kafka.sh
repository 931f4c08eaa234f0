#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft: broker and controller in one JVM) under a data directory,
# bound to 127.0.0.1. For tests and INGEST_KAFKA=1 npm start; never a production setup.
#   kafka.sh start <dir> <port> [controller-port]   format the storage (once), start, wait until ready; idempotent
#   kafka.sh stop <dir>                             SIGTERM (controlled shutdown), SIGKILL after 30 s; idempotent
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
cmd="${1:?start|stop}"; dir="${2:?dir}"; port="${3:-9092}"; cport="${4:-$((port + 1))}"
mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
pidfile="$dir/kafka.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "$cmd" in
  start)
    if running; then log "Kafka already running ($dir)"; exit 0; fi
    ensure_kafka
    cp="$KAFKA_LIBS/*"
    # Rewritten at every start (ports may change); the storage formatted once keeps its cluster id.
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=${KAFKA_PARTITIONS:-4}
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPS
    cat >"$dir/log4j2.properties" <<PROPS
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
PROPS
    jvm=(java -Xms128m "-Xmx${KAFKA_HEAP:-512m}" -XX:+UseSerialGC -Djava.awt.headless=true
      "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$cp")
    if [ ! -f "$dir/data/meta.properties" ]; then
      log "formatting Kafka storage in $dir/data"
      "${jvm[@]}" kafka.tools.StorageTool format -t "$("${jvm[@]}" kafka.tools.StorageTool random-uuid)" \
        -c "$dir/server.properties" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; exit 1; }
    fi
    : >"$dir/server.log"
    if command -v setsid >/dev/null 2>&1; then ss=(setsid); else ss=(); fi
    nohup "${ss[@]}" "${jvm[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for ((i = 0; i < 480; i++)); do
      if grep -q 'Kafka Server started' "$dir/server.log" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        log "Kafka listening on 127.0.0.1:$port"; exit 0
      fi
      running || { log "Kafka exited during start-up:"; tail -n 20 "$dir/server.log" "$dir/stdout.log" >&2; exit 1; }
      sleep 0.25
    done
    log "Kafka did not become ready in 120 s; see $dir/server.log"; exit 1
    ;;
  stop)
    running || { rm -f "$pidfile"; exit 0; }
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "Kafka still running after 30 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
    rm -f "$pidfile"
    ;;
  *) echo "usage: kafka.sh start|stop <dir> [port] [controller-port]" >&2; exit 2 ;;
esac
