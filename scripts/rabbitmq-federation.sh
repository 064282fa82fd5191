#!/usr/bin/env bash
# Three standalone RabbitMQ brokers on this host for federation (not clustered: each is its own
# deployment): region A (nf1, AMQP 5691), region B (nf2, 5692) and the global tier (nf3, 5693),
# each with the shovel and management plugins (management API on 15691-15693), beside any system
# broker. Distribution ports 25691-25693; data and logs under DIR.
# Usage: rabbitmq-federation.sh start DIR | stop DIR | pid DIR N
set -euo pipefail
cmd=${1:?start|stop|pid}
dir=${2:?data directory}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

node_env() {
  local i=$1
  export RABBITMQ_NODENAME="nf${i}@localhost"
  export RABBITMQ_NODE_PORT=$((5690 + i))
  export RABBITMQ_DIST_PORT=$((25690 + i))
  export RABBITMQ_MNESIA_BASE="$dir/nf$i/mnesia"
  export RABBITMQ_LOG_BASE="$dir/nf$i/log"
  export RABBITMQ_PID_FILE="$dir/nf$i/pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
  export RABBITMQ_CONFIG_FILE="$dir/nf$i/rabbitmq"
  # a machine-wide env file may pin the node to other ports or addresses: not ours
  export RABBITMQ_CONF_ENV_FILE="$dir/nf$i/rabbitmq-env.conf"
  mkdir -p "$dir/nf$i/mnesia" "$dir/nf$i/log"
  : > "$dir/nf$i/rabbitmq-env.conf"
  printf 'loopback_users = none\nmanagement.tcp.port = %d\nmanagement.tcp.ip = 127.0.0.1\nlisteners.tcp.default = 127.0.0.1:%d\n' \
    $((15690 + i)) $((5690 + i)) > "$dir/nf$i/rabbitmq.conf"
}

case "$cmd" in
  start)
    echo '[rabbitmq_management,rabbitmq_shovel,rabbitmq_shovel_management].' > "$dir/enabled_plugins"
    for i in 1 2 3; do node_env "$i"; done
    # Debian's rabbitmq-server drops privileges to the rabbitmq user: it must own the node dirs.
    if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
      chmod 755 "$dir"
      chown -R rabbitmq:rabbitmq "$dir"
    fi
    for i in 1 2 3; do
      if rabbitmqctl -n "nf$i@localhost" await_startup --timeout 2 >/dev/null 2>&1; then continue; fi
      ( node_env "$i"; rabbitmq-server -detached >/dev/null 2>&1 )
    done
    for i in 1 2 3; do
      for _ in $(seq 1 120); do
        rabbitmqctl -n "nf$i@localhost" await_startup --timeout 60 >/dev/null 2>&1 && break
        sleep 1
      done
      rabbitmqctl -n "nf$i@localhost" await_startup --timeout 5 >/dev/null
    done
    echo "brokers up: region-a amqp://guest:guest@127.0.0.1:5691 (mgmt :15691)," \
      "region-b amqp://guest:guest@127.0.0.1:5692 (mgmt :15692), global amqp://guest:guest@127.0.0.1:5693 (mgmt :15693)"
    ;;
  stop)
    for i in 1 2 3; do
      rabbitmqctl -n "nf$i@localhost" stop >/dev/null 2>&1 || true
      if [ -f "$dir/nf$i/pid" ]; then
        kill -9 "$(cat "$dir/nf$i/pid")" 2>/dev/null || true
      fi
    done
    ;;
  pid)
    cat "$dir/nf${3:?node number}/pid"
    ;;
  *)
    echo "usage: $0 start|stop|pid DIR [N]" >&2
    exit 2
    ;;
esac
