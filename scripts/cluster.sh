#!/usr/bin/env bash
# A Spark standalone cluster on this machine, from the pyspark installation in the venv:
#   scripts/cluster.sh up        master + workers on 127.0.0.1; waits until every worker is ALIVE
#   scripts/cluster.sh down      stops them (workers first, then the master; no JVM left behind)
#   scripts/cluster.sh status    what runs, from the master's JSON at http://127.0.0.1:UI/json/
#   scripts/cluster.sh submit [sparkmart batch options...]
#                                the batch pipeline through spark-submit, the package shipped as
#                                a zip with --py-files (what `make cluster-submit` runs)
# Settings (environment; defaults in brackets):
#   SPARKMART_CLUSTER_DIR [data/cluster]   logs, pids, worker dirs, the package zip
#   SPARKMART_MASTER_PORT [7077]   SPARKMART_MASTER_UI_PORT [8080]
#   SPARKMART_MASTER_REST_PORT [6066] (the master's REST submission server)
#   SPARKMART_WORKER_UI_PORT [8081] (worker i gets this + i - 1)
#   SPARKMART_WORKERS [2]   SPARKMART_WORKER_CORES [1]   SPARKMART_WORKER_MEMORY [2g]
#   SPARKMART_EXECUTOR_MEMORY [1g] (submit)   SPARKMART_DAEMON_MEMORY [512m] (master, workers)
#   SPARKMART_CLUSTER_TIMEOUT [120] seconds to wait for the workers
#   SPARKMART_SUBMIT_ARGS  more spark-submit options (submit), e.g. "--conf spark.ui.enabled=false"
#   SPARKMART_APP_NAME [sparkmart-batch] the application's name in the master UI (submit)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=$(cd "$VENV/bin" 2>/dev/null && pwd)/python
CLUSTER_DIR=${SPARKMART_CLUSTER_DIR:-data/cluster}
MASTER_PORT=${SPARKMART_MASTER_PORT:-7077}
MASTER_UI_PORT=${SPARKMART_MASTER_UI_PORT:-8080}
MASTER_REST_PORT=${SPARKMART_MASTER_REST_PORT:-6066}
WORKER_UI_PORT=${SPARKMART_WORKER_UI_PORT:-8081}
WORKERS=${SPARKMART_WORKERS:-2}
WORKER_CORES=${SPARKMART_WORKER_CORES:-1}
WORKER_MEMORY=${SPARKMART_WORKER_MEMORY:-2g}
EXECUTOR_MEMORY=${SPARKMART_EXECUTOR_MEMORY:-1g}
TIMEOUT=${SPARKMART_CLUSTER_TIMEOUT:-120}
HOST=127.0.0.1
MASTER_URL="spark://$HOST:$MASTER_PORT"
MASTER_UI="http://$HOST:$MASTER_UI_PORT"
JDBC_JAR=/usr/share/java/postgresql.jar

say()  { printf '[cluster] %s\n' "$*"; }
fail() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || fail "no Python at $VENV/bin/python: run \`make setup\` first"
SPARK_HOME=$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
export SPARK_HOME SPARK_LOCAL_IP=$HOST SPARK_DAEMON_MEMORY=${SPARKMART_DAEMON_MEMORY:-512m}
export PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY
mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)

for value in "$MASTER_PORT" "$MASTER_UI_PORT" "$MASTER_REST_PORT" "$WORKER_UI_PORT" "$WORKERS" "$WORKER_CORES" "$TIMEOUT"; do
  [[ "$value" =~ ^[0-9]+$ ]] || fail "'$value' is not a number (check the SPARKMART_* settings)"
done

# --- processes -----------------------------------------------------------------------------
# Each daemon is `spark-class ...`, which execs java: its pid file holds the JVM's pid.
daemons() { echo master; for i in $(seq 1 "$WORKERS"); do echo "worker-$i"; done; }
pid_of() { cat "$CLUSTER_DIR/$1.pid" 2>/dev/null || true; }
running() {
  local pid
  pid=$(pid_of "$1")
  # the pid is still one of our Spark daemons (not a reused pid): it has our port in its args
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "org.apache.spark.deploy.*$(port_arg "$1")"
}
port_arg() {  # what identifies a daemon on its command line
  case "$1" in
    master) echo "--port $MASTER_PORT" ;;
    *) echo "--work-dir $CLUSTER_DIR/$1" ;;
  esac
}

port_free() {  # bind test on every address: catches a listener on 127.0.0.1 or 0.0.0.0
  "$PY" - "$1" <<'PY'
import socket, sys
with socket.socket() as s:
    try:
        s.bind(("0.0.0.0", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PY
}
need_port() {  # $1 port, $2 what it is for
  port_free "$1" || fail "port $1 ($2) is already in use on this machine: stop what holds it \
(\`ss -ltnp 'sport = :$1'\`) or choose another with $3"
}

master_json() {  # the master UI's JSON (workers, applications); fails while it does not answer
  "$PY" - "$MASTER_UI/json/" 2>/dev/null <<'PY'
import sys, urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
    sys.stdout.write(response.read().decode())
PY
}
alive_workers() {  # ALIVE workers registered with the master (0 while it does not answer)
  local json
  json=$(master_json) || { echo 0; return; }
  "$PY" -c 'import json, sys; print(sum(w["state"] == "ALIVE" for w in json.loads(sys.argv[1])["workers"]))' "$json"
}

start_daemon() {  # $1 name, $2... spark-class arguments
  local name=$1
  shift
  say "starting $name (log $CLUSTER_DIR/$name.log)"
  # setsid: the daemon outlives this shell (and `make`) and gets no terminal signals.
  setsid "$SPARK_HOME/bin/spark-class" "$@" >"$CLUSTER_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/$name.pid"
}

stop_pid() {  # SIGTERM, then SIGKILL after 20 s
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  say "pid $pid did not stop in 20 s: killing it"
  kill -9 "$pid" 2>/dev/null || true
}

leftover_pids() {  # executor JVMs run in a worker's work dir: any process still there is ours
  local link
  for link in /proc/[0-9]*/cwd; do
    case "$(readlink "$link" 2>/dev/null)" in
      "$CLUSTER_DIR"/worker-*) link=${link#/proc/}; echo "${link%/cwd}" ;;
    esac
  done
}

# --- commands ------------------------------------------------------------------------------
up() {
  if running master; then
    say "master already running (pid $(pid_of master))"
  else
    need_port "$MASTER_PORT" "master" SPARKMART_MASTER_PORT
    need_port "$MASTER_UI_PORT" "master web UI" SPARKMART_MASTER_UI_PORT
    need_port "$MASTER_REST_PORT" "master REST server" SPARKMART_MASTER_REST_PORT
    SPARK_MASTER_OPTS="${SPARK_MASTER_OPTS:-} -Dspark.master.rest.port=$MASTER_REST_PORT" \
      start_daemon master org.apache.spark.deploy.master.Master \
      --host "$HOST" --port "$MASTER_PORT" --webui-port "$MASTER_UI_PORT"
  fi
  for i in $(seq 1 "$WORKERS"); do
    local name="worker-$i" ui=$((WORKER_UI_PORT + i - 1))
    if running "$name"; then
      say "$name already running (pid $(pid_of "$name"))"
      continue
    fi
    need_port "$ui" "$name web UI" SPARKMART_WORKER_UI_PORT
    mkdir -p "$CLUSTER_DIR/$name"
    start_daemon "$name" org.apache.spark.deploy.worker.Worker \
      --host "$HOST" --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" --webui-port "$ui" \
      --work-dir "$CLUSTER_DIR/$name" "$MASTER_URL"
  done
  say "waiting up to ${TIMEOUT}s for $WORKERS ALIVE workers at $MASTER_UI"
  local deadline=$((SECONDS + TIMEOUT)) alive=0
  while [ "$SECONDS" -lt "$deadline" ]; do
    alive=$(alive_workers)
    [ "$alive" -ge "$WORKERS" ] && break
    for name in $(daemons); do
      if ! running "$name"; then
        tail -n 20 "$CLUSTER_DIR/$name.log" >&2 || true
        fail "$name exited during start-up (log above: $CLUSTER_DIR/$name.log)"
      fi
    done
    sleep 1
  done
  if [ "$alive" -lt "$WORKERS" ]; then
    fail "only $alive of $WORKERS workers ALIVE after ${TIMEOUT}s (logs in $CLUSTER_DIR); \
\`scripts/cluster.sh down\` stops what started"
  fi
  say "up: $MASTER_URL with $alive workers x $WORKER_CORES core, $WORKER_MEMORY; UI $MASTER_UI"
}

down() {
  local name pid stopped=0
  for name in $(daemons | tac); do  # workers first: they stop their executors
    if running "$name"; then
      pid=$(pid_of "$name")
      say "stopping $name (pid $pid)"
      stop_pid "$pid"
      stopped=$((stopped + 1))
    fi
    rm -f "$CLUSTER_DIR/$name.pid"
  done
  for pid in $(leftover_pids); do
    say "stopping leftover executor (pid $pid)"
    stop_pid "$pid"
  done
  say "down ($stopped daemons stopped)"
}

status() {
  local name code=0
  for name in $(daemons); do
    if running "$name"; then say "$name: running (pid $(pid_of "$name"))"; else say "$name: stopped"; code=1; fi
  done
  if json=$(master_json); then
    "$PY" - "$json" "$MASTER_UI" <<'PY'
import json, sys

m = json.loads(sys.argv[1])
print(f"[cluster] master {m['url']} {m['status']}: {m['aliveworkers']} alive workers, "
      f"{m['cores']} cores, {len(m['activeapps'])} running and "
      f"{len(m['completedapps'])} completed applications, UI {sys.argv[2]}")
for w in m["workers"]:
    print(f"[cluster]   {w['id']} {w['state']}: {w['cores']} cores, {w['memory']} MB, "
          f"UI {w['webuiaddress']}")
PY
  else
    say "master UI $MASTER_UI does not answer"
    code=1
  fi
  return "$code"
}

package_zip() {  # the sparkmart package as a zip for --py-files (sources only, no caches)
  "$PY" - "$CLUSTER_DIR/sparkmart.zip" <<'PY'
import sys, zipfile
from pathlib import Path

target = Path(sys.argv[1])
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in sorted(Path("src").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path):
            zf.write(path, path.relative_to("src"))
print(target)
PY
}

submit() {  # the batch pipeline on the cluster; arguments go to `sparkmart batch`
  running master || fail "the cluster is not running: \`make cluster-up\` first"
  local zip
  zip=$(package_zip)
  say "spark-submit --master $MASTER_URL --py-files $zip scripts/batch_pipeline.py $*"
  local jars=()
  [ -f "$JDBC_JAR" ] && jars=(--jars "$JDBC_JAR" --driver-class-path "$JDBC_JAR")
  exec "$SPARK_HOME/bin/spark-submit" \
    --master "$MASTER_URL" --deploy-mode client \
    --name "${SPARKMART_APP_NAME:-sparkmart-batch}" \
    --executor-memory "$EXECUTOR_MEMORY" --executor-cores "$WORKER_CORES" \
    --total-executor-cores $((WORKERS * WORKER_CORES)) \
    --conf spark.pyspark.python="$PY" --conf spark.pyspark.driver.python="$PY" \
    --conf spark.driver.host=$HOST \
    --driver-java-options "-Dlog4j2.configurationFile=file:$PWD/config/log4j2.properties" \
    "${jars[@]}" \
    --py-files "$zip" \
    ${SPARKMART_SUBMIT_ARGS:-} \
    scripts/batch_pipeline.py --profile cluster "$@"
}

main() {
  case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    submit) shift; submit "$@" ;;
    *) fail "usage: scripts/cluster.sh up|down|status|submit [sparkmart batch options]" ;;
  esac
}

main "$@"; exit  # bash reads a script as it runs: nothing after this line is ever read
