#!/usr/bin/env bash
# A private 3-node RabbitMQ cluster on this host, beside any system broker:
#   nodes nq1@localhost … nq3@localhost, AMQP ports 5681-5683, distribution ports 25681-25683,
#   data and logs under DIR. No plugins (the system broker keeps :15672).
# Usage: rabbitmq-cluster.sh start DIR | stop DIR | pid DIR N
set -euo pipefail
cmd=${1:?start|stop|pid}
dir=${2:?data directory}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

node_env() {
  local i=$1
  export RABBITMQ_NODENAME="nq${i}@localhost"
  export RABBITMQ_NODE_PORT=$((5680 + i))
  export RABBITMQ_DIST_PORT=$((25680 + i))
  export RABBITMQ_MNESIA_BASE="$dir/nq$i/mnesia"
  export RABBITMQ_LOG_BASE="$dir/nq$i/log"
  export RABBITMQ_PID_FILE="$dir/nq$i/pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
  export RABBITMQ_CONFIG_FILE="$dir/nq$i/rabbitmq"
  mkdir -p "$dir/nq$i/mnesia" "$dir/nq$i/log"
  printf 'loopback_users = none\n' > "$dir/nq$i/rabbitmq.conf"
}

case "$cmd" in
  start)
    echo '[].' > "$dir/enabled_plugins"
    for i in 1 2 3; do node_env "$i"; done
    # Debian's rabbitmq-server drops privileges to the rabbitmq user: it must own the node dirs.
    if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
      chmod 755 "$dir"
      chown -R rabbitmq:rabbitmq "$dir"
    fi
    for i in 1 2 3; do
      ( node_env "$i"; rabbitmq-server -detached >/dev/null 2>&1 )
    done
    for i in 1 2 3; do
      for _ in $(seq 1 120); do
        rabbitmqctl -n "nq$i@localhost" await_startup --timeout 60 >/dev/null 2>&1 && break
        sleep 1
      done
      rabbitmqctl -n "nq$i@localhost" await_startup --timeout 5 >/dev/null
    done
    for i in 2 3; do
      rabbitmqctl -n "nq$i@localhost" stop_app >/dev/null
      rabbitmqctl -n "nq$i@localhost" join_cluster nq1@localhost >/dev/null
      rabbitmqctl -n "nq$i@localhost" start_app >/dev/null
    done
    rabbitmqctl -n nq1@localhost cluster_status --formatter json | python3 -c \
      'import json,sys; s=json.load(sys.stdin); print("running nodes:", " ".join(sorted(s["running_nodes"])))'
    ;;
  stop)
    for i in 1 2 3; do
      if [ -f "$dir/nq$i/pid" ]; then
        kill -9 "$(cat "$dir/nq$i/pid")" 2>/dev/null || true
      fi
      rabbitmqctl -n "nq$i@localhost" stop >/dev/null 2>&1 || true
    done
    ;;
  pid)
    cat "$dir/nq${3:?node number}/pid"
    ;;
  *)
    echo "usage: $0 start|stop|pid DIR [N]" >&2
    exit 2
    ;;
esac
