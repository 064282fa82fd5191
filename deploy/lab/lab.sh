#!/usr/bin/env bash
# The multi-machine lab (#17): bash deploy/lab/lab.sh up|down|status|firewall-test|check|fault …|heal …|suite [short]
# Hosts are network namespaces nq-<host> on 10.77.0.0/16 (see deploy/lab/README.md); needs root.
# NETQOE_BIN / NETQOE_LOADGEN: the binaries (default target/debug/{netqoe,netqoe-loadgen}).
set -euo pipefail
exec python3 "$(dirname "$0")/lab.py" "$@"
