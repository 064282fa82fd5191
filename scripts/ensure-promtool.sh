#!/usr/bin/env bash
# Prints the path of a promtool, extracting it from Debian's prometheus package when none is on
# PATH (no service is installed or started: only the .deb's files are unpacked).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
dir=${NETQOE_TOOLS_DIR:-$HOME/.cache/netqoe-tools}/prometheus
if [ ! -x "$dir/usr/bin/promtool" ]; then
  mkdir -p "$dir"
  tmp=$(mktemp -d)
  (cd "$tmp" && (apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null; }))
  dpkg-deb -x "$tmp"/prometheus_*.deb "$dir"
  rm -rf "$tmp"
fi
echo "$dir/usr/bin/promtool"
