#!/usr/bin/env bash
# Provides InfluxDB 1.x (Debian's `influxdb` package, 1.6) for `load-tests/bench.sh influx`: the
# peer many operators run instead of netqoe (Telegraf's ping plugin into InfluxDB, percentiles at
# query time). One server on 127.0.0.1 with its own configuration and data in a temporary
# directory, no auth, no usage reporting, no self-monitoring database; the TSM cache is written to
# disk 5 s after the last write, so bytes on disk can be measured after a short run. Idempotent: a
# server already answering /ping on the port is reused. Prints the base URL on stdout when it
# answers; exits non-zero — never silently — when it cannot be provided.
#
#   NETQOE_INFLUXDB_PORT  HTTP port (default 18086; the RPC port is this + 2)
#   NETQOE_INFLUXDB_HOME  config, data, WAL and log (default /tmp/netqoe-influxdb-<port>)
#
# Stop it with: kill "$(cat "$NETQOE_INFLUXDB_HOME/pid")"
set -euo pipefail
port=${NETQOE_INFLUXDB_PORT:-18086}
home=${NETQOE_INFLUXDB_HOME:-/tmp/netqoe-influxdb-$port}
url="http://127.0.0.1:$port"
log() { echo "ensure-influxdb: $*" >&2; }
answers() { curl -sf -o /dev/null "$url/ping"; }

if answers; then
  log "InfluxDB already answers on $url"
  echo "$url"
  exit 0
fi
if ! command -v influxd >/dev/null 2>&1; then
  log "installing Debian's influxdb"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null) ||
    { log "could not install influxdb"; exit 1; }
fi
mkdir -p "$home"
cat > "$home/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$((port + 2))"
[meta]
  dir = "$home/meta"
  logging-enabled = false
[data]
  dir = "$home/data"
  wal-dir = "$home/wal"
  index-version = "inmem"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "5s"
  max-series-per-database = 0
  max-values-per-tag = 0
[coordinator]
  query-timeout = "0s"
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
  pprof-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
  suppress-logo = true
EOF
log "starting influxd on $url (data in $home)"
nohup influxd -config "$home/influxdb.conf" > "$home/influxd.log" 2>&1 &
echo $! > "$home/pid"
for _ in $(seq 1 100); do
  if answers; then
    echo "$url"
    exit 0
  fi
  if ! kill -0 "$(cat "$home/pid")" 2>/dev/null; then
    log "influxd exited; its log:"
    tail -20 "$home/influxd.log" >&2
    exit 1
  fi
  sleep 0.2
done
log "influxd did not answer on $url within 20 s"
exit 1
