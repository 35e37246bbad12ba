#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker + controller) for
# machines without Docker. The jars come from Maven Central via ./pom.xml and are
# cached outside the repository, so a second run downloads nothing.
#
#   deploy/local/kafka.sh start | stop | status | fetch | logs | kill
#
# `kill` is for crash tests (the chaos soak): SIGKILL the broker this script started, keep
# its data; a later `start` with the same CXONE_KAFKA_HOME recovers that data.
#
# Environment:
#   KAFKA_BOOTSTRAP_SERVERS  when set, names an existing cluster: this script does nothing.
#   CXONE_KAFKA_HOME         broker state (data, logs, pid); default ~/.cache/cxone-connector/broker
#   CXONE_KAFKA_CACHE        jar cache; default ~/.cache/cxone-connector/kafka-<version>
#   CXONE_KAFKA_PORT         client port (default 9092); the controller uses port + 1
#   CXONE_KAFKA_HEAP         JVM heap (default 512m)
set -euo pipefail

KAFKA_VERSION=4.1.1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PORT=${CXONE_KAFKA_PORT:-9092}
CONTROLLER_PORT=$((PORT + 1))
HEAP=${CXONE_KAFKA_HEAP:-512m}
CACHE=${CXONE_KAFKA_CACHE:-$HOME/.cache/cxone-connector/kafka-$KAFKA_VERSION}
STATE=${CXONE_KAFKA_HOME:-$HOME/.cache/cxone-connector/broker}
LIBS=$CACHE/libs
PIDFILE=$STATE/kafka.pid
LOGDIR=$STATE/logs
DATADIR=$STATE/data
PROPS=$STATE/server.properties

say() { printf 'kafka.sh: %s\n' "$*" >&2; }

external_cluster() {
  if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    say "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS names an existing cluster; nothing to do"
    return 0
  fi
  return 1
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
  return 1
}

# The pid in our pidfile, only if that process is still the broker we started.
our_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "kafka.Kafka $PROPS" || return 1
  echo "$pid"
}

fetch() {
  if [ -f "$LIBS/.complete" ]; then
    return 0
  fi
  command -v mvn >/dev/null || { say "Maven (mvn) is required to fetch the Kafka jars"; exit 1; }
  say "resolving Apache Kafka $KAFKA_VERSION with Maven into $LIBS"
  rm -rf "$LIBS" && mkdir -p "$LIBS"
  mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS" -DincludeScope=runtime >&2
  touch "$LIBS/.complete"
}

java_run() {
  java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
       -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
       -Dkafka.logs.dir="$LOGDIR" \
       -cp "$LIBS/*" "$@"
}

write_props() {
  mkdir -p "$DATADIR" "$LOGDIR"
  cat >"$PROPS" <<PROPS
# Written by deploy/local/kafka.sh; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATADIR
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# A small heap wants a small dedupe buffer (the default is 128 MiB).
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.threads=1
log.cleaner.backoff.ms=2000
num.network.threads=2
num.io.threads=4
auto.create.topics.enable=true
delete.topic.enable=true
PROPS
}

start() {
  external_cluster && return 0
  if pid=$(our_pid); then
    say "already running (pid $pid) on 127.0.0.1:$PORT; logs in $LOGDIR"
    return 0
  fi
  if port_open "$PORT"; then
    say "something this script did not start is listening on 127.0.0.1:$PORT;"
    say "point KAFKA_BOOTSTRAP_SERVERS at it, or set CXONE_KAFKA_PORT to another port"
    exit 1
  fi
  command -v java >/dev/null || { say "Java 17+ is required"; exit 1; }
  fetch
  write_props
  if [ ! -f "$DATADIR/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java_run kafka.tools.StorageTool random-uuid)
    java_run kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$PROPS" >"$LOGDIR/format.log" 2>&1 \
      || { say "format failed; see $LOGDIR/format.log"; exit 1; }
  fi
  # setsid: the broker outlives this shell and is not killed with its process group.
  setsid nohup bash -c "exec java -Xms$HEAP -Xmx$HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true -Dlog4j2.configurationFile='$HERE/log4j2.properties' \
      -Dkafka.logs.dir='$LOGDIR' -cp '$LIBS/*' kafka.Kafka $PROPS" \
      >"$LOGDIR/stdout.log" 2>&1 </dev/null &
  local started=$!
  echo "$started" >"$PIDFILE"
  local deadline=$((SECONDS + 90))
  until port_open "$PORT"; do
    # Liveness by pid, not by our_pid: while setsid, nohup and bash exec their way to java,
    # /proc/<pid>/cmdline can read empty for a moment, which once passed for an exit.
    if ! kill -0 "$started" 2>/dev/null; then
      say "the broker exited during start-up; last lines of $LOGDIR/server.log:"
      tail -n 30 "$LOGDIR/server.log" "$LOGDIR/stdout.log" >&2 2>/dev/null || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      say "the broker did not accept connections within 90 s; see $LOGDIR"
      exit 1
    fi
    sleep 0.5
  done
  say "Apache Kafka $KAFKA_VERSION (KRaft) running on 127.0.0.1:$PORT, pid $(cat "$PIDFILE"); logs in $LOGDIR"
}

stop() {
  external_cluster && return 0
  local pid
  if ! pid=$(our_pid); then
    say "no broker started by this script is running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "broker did not stop within 30 s; killing it"
    kill -KILL "$pid" || true
  fi
  rm -f "$PIDFILE"
  say "stopped (pid $pid)"
}

# SIGKILL, no clean shutdown: the logs are recovered on the next start (same data dir).
kill_now() {
  external_cluster && return 0
  local pid
  if ! pid=$(our_pid); then
    say "no broker started by this script is running"
    return 1
  fi
  kill -KILL "$pid"
  local deadline=$((SECONDS + 30))
  # gone once it is no longer the broker (exited, or a zombie: cmdline reads empty)
  while our_pid >/dev/null || port_open "$PORT"; do
    if [ $SECONDS -ge $deadline ]; then
      say "the broker (pid $pid) still runs 30 s after SIGKILL"
      return 1
    fi
    sleep 0.1
  done
  rm -f "$PIDFILE"
  say "killed (pid $pid) with SIGKILL; data kept in $DATADIR"
}

status() {
  external_cluster && return 0
  if pid=$(our_pid); then
    say "running (pid $pid) on 127.0.0.1:$PORT; logs in $LOGDIR"
    return 0
  fi
  say "not running"
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fetch) fetch ;;
  logs) echo "$LOGDIR" ;;
  kill) kill_now ;;
  reset) stop; rm -rf "$DATADIR"; say "data removed" ;;
  *) echo "usage: $0 start|stop|status|fetch|logs|reset|kill" >&2; exit 2 ;;
esac
