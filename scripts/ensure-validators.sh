#!/usr/bin/env bash
# Provides the deployment validators and prints the directory holding them:
#   kubernetes-validate (PyPI; bundles the Kubernetes JSON schemas) for k8s/,
#   check-jsonschema (PyPI; vendors the Compose specification schema) for deploy/ compose files,
#   haproxy (Debian) for deploy/haproxy/haproxy.cfg (`haproxy -c`).
# The Python tools live in a virtualenv under ~/.cache/netqoe-tools (no system site-packages
# touched); haproxy is installed with apt when missing. Everything else goes to stderr.
set -euo pipefail
dir=${NETQOE_TOOLS_DIR:-$HOME/.cache/netqoe-tools}/validators
if [ ! -x "$dir/bin/kubernetes-validate" ] || [ ! -x "$dir/bin/check-jsonschema" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv) >&2
  fi
  rm -rf "$dir"
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 check-jsonschema==0.39.0 >&2
fi
if ! command -v haproxy >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >&2
fi
ln -sf "$(command -v haproxy)" "$dir/bin/haproxy"
echo "$dir/bin"
