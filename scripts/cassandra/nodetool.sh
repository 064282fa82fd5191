#!/usr/bin/env bash
# nodetool of the Cassandra started by scripts/ensure-cassandra.sh (JMX on its CQL port + 100):
#   scripts/cassandra/nodetool.sh [--port CQL_PORT] tpstats|flush KS|tablestats KS|…
# Same jars and Java 17 module flags as the server (without them nodetool dies in FileUtils).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${NETQOE_CASSANDRA_PORT:-9042}
if [ "${1:-}" = --port ]; then port=$2; shift 2; fi
version=$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$here/pom.xml")
lib="${NETQOE_CASSANDRA_CACHE:-$HOME/.cache/netqoe}/cassandra-$version/lib"
[ -d "$lib" ] || { echo "nodetool.sh: no Cassandra $version in $lib (run scripts/ensure-cassandra.sh)" >&2; exit 1; }
source "$here/jvm-flags.sh"
exec java "${opens[@]}" -Xmx256m -cp "$lib/*" org.apache.cassandra.tools.NodeTool -p $((port + 100)) "$@"
