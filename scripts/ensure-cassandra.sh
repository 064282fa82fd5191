#!/usr/bin/env bash
# Provides a CQL server for the tests: Apache Cassandra's server (org.apache.cassandra:cassandra-all,
# resolved from Maven Central with scripts/cassandra/pom.xml into a cache outside the clone), one
# node on 127.0.0.1:9042 (CQL) with a small heap, data in a temporary directory, no auth. Idempotent:
# a server already answering CQL on the port is reused. Prints the address (host:port) on stdout
# when the server answers; exits non-zero — never silently — when it cannot be provided.
#
#   NETQOE_CASSANDRA_PORT   CQL port (default 9042)
#   NETQOE_CASSANDRA_CACHE  jar cache (default ~/.cache/netqoe/cassandra-<version>)
#   NETQOE_CASSANDRA_HOME   data, config and log (default /tmp/netqoe-cassandra-<port>)
#   NETQOE_CASSANDRA_HEAP   heap (default 768M)
#   NETQOE_CASSANDRA_ADDRESS listen and CQL address (default 127.0.0.1; the lab's cql-1 uses its own)
#   NETQOE_CASSANDRA_DC     datacenter name (GossipingPropertyFileSnitch, rack1); unset: SimpleSnitch
#
# Stop it with: kill "$(cat "$NETQOE_CASSANDRA_HOME/pid")"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=${NETQOE_CASSANDRA_PORT:-9042}
version=$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$here/cassandra/pom.xml")
cache=${NETQOE_CASSANDRA_CACHE:-$HOME/.cache/netqoe/cassandra-$version}
home=${NETQOE_CASSANDRA_HOME:-/tmp/netqoe-cassandra-$port}
heap=${NETQOE_CASSANDRA_HEAP:-768M}
addr=${NETQOE_CASSANDRA_ADDRESS:-127.0.0.1}
dc=${NETQOE_CASSANDRA_DC:-}
log() { echo "ensure-cassandra: $*" >&2; }

# A CQL server answers: the native protocol's OPTIONS request gets a SUPPORTED frame.
answers() {
  python3 - "$addr" "$port" <<'EOF'
import socket, struct, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.sendall(struct.pack(">BBhBi", 0x04, 0, 1, 0x05, 0))  # v4 OPTIONS
    head = s.recv(9)
    sys.exit(0 if len(head) == 9 and head[4] == 0x06 else 1)  # SUPPORTED
except OSError:
    sys.exit(1)
EOF
}

if answers; then
  log "a CQL server already answers on $addr:$port; reusing it"
  echo "$addr:$port"
  exit 0
fi

command -v java >/dev/null || { log "java is not installed (Cassandra $version needs Java 11 or 17)"; exit 1; }
command -v mvn >/dev/null || { log "mvn is not installed (it resolves cassandra-all from Maven Central)"; exit 1; }
if [ ! -f "$cache/.complete" ]; then
  log "resolving org.apache.cassandra:cassandra-all:$version from Maven Central into $cache"
  mkdir -p "$cache"
  if ! mvn -q -B -f "$here/cassandra/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$cache/lib" -DincludeScope=runtime >"$cache/mvn.log" 2>&1; then
    log "Maven could not provide cassandra-all $version:"
    tail -20 "$cache/mvn.log" >&2
    exit 1
  fi
  touch "$cache/.complete"
fi

mkdir -p "$home"/{data,commitlog,saved_caches,hints,cdc_raw,logs}
storage_port=$((7000 + port - 9042))
cat >"$home/cassandra.yaml" <<EOF
cluster_name: netqoe-test
num_tokens: 16
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
data_file_directories: [$home/data]
commitlog_directory: $home/commitlog
saved_caches_directory: $home/saved_caches
hints_directory: $home/hints
cdc_raw_directory: $home/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$addr:$storage_port"
listen_address: $addr
rpc_address: $addr
storage_port: $storage_port
native_transport_port: $port
start_native_transport: true
endpoint_snitch: $([ -n "$dc" ] && echo GossipingPropertyFileSnitch || echo SimpleSnitch)
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
disk_access_mode: mmap_index_only
# tests create and drop many keyspaces: no snapshot per drop, no waiting on schema agreement
auto_snapshot: false
snapshot_before_compaction: false
write_request_timeout: 5000ms
read_request_timeout: 5000ms
range_request_timeout: 10000ms
request_timeout: 10000ms
EOF
snitch_props=()
if [ -n "$dc" ]; then
  printf 'dc=%s\nrack=rack1\n' "$dc" >"$home/cassandra-rackdc.properties"
  snitch_props=(-Dcassandra-rackdc.properties="file://$home/cassandra-rackdc.properties")
fi
cat >"$home/logback.xml" <<EOF
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$home/logs/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
EOF

# the module access Cassandra needs on Java 17 (its jvm17-server.options): `opens`
source "$(dirname "$0")/cassandra/jvm-flags.sh"
jamm=$(ls "$cache"/lib/jamm-*.jar | head -1)
log "starting Cassandra $version on $addr:$port (heap $heap, data in $home)"
nohup java -Xms"$heap" -Xmx"$heap" -Xss512k -XX:+UseG1GC -XX:ActiveProcessorCount=2 \
  -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$home/logs" \
  "${opens[@]}" -javaagent:"$jamm" "${snitch_props[@]}" \
  -Djava.net.preferIPv4Stack=true \
  -Dcassandra.config="file://$home/cassandra.yaml" \
  -Dlogback.configurationFile="$home/logback.xml" \
  -Dcassandra.logdir="$home/logs" -Dcassandra.storagedir="$home" \
  -Dcassandra-foreground=yes -Dcassandra.jmx.local.port=$((port + 100)) \
  -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=100 \
  -Dcassandra.superuser_setup_delay_ms=0 -Dcassandra.consistent.rangemovement=false \
  -cp "$cache/lib/*" org.apache.cassandra.service.CassandraDaemon >"$home/logs/stdout.log" 2>&1 &
echo $! >"$home/pid"
pid=$(cat "$home/pid")
for _ in $(seq 1 180); do
  if answers; then
    log "Cassandra answers CQL on $addr:$port (pid $pid)"
    echo "$addr:$port"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    log "Cassandra exited while starting; the end of its log:"
    tail -30 "$home/logs/stdout.log" >&2
    tail -30 "$home/logs/system.log" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 1
done
log "Cassandra did not answer within 180 s; the end of its log:"
tail -30 "$home/logs/system.log" >&2 2>/dev/null || tail -30 "$home/logs/stdout.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
