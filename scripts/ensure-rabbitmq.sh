#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672 (guest/guest) with the management
# plugin enabled: installs Debian's rabbitmq-server if it is missing and starts it if it is down.
# Idempotent; safe to run on every test run.
set -euo pipefail

log() { echo "ensure-rabbitmq: $*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  log "installing rabbitmq-server (Debian package)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rabbitmq-server >/dev/null
fi

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! port_open; then
  log "starting rabbitmq-server"
  $SUDO rabbitmq-server -detached || true
  for _ in $(seq 1 60); do
    port_open && break
    sleep 1
  done
fi
if ! port_open; then
  log "RabbitMQ did not come up on 127.0.0.1:5672"
  exit 1
fi
$SUDO rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1 || true
if ! $SUDO rabbitmq-plugins list -e 2>/dev/null | grep -q 'rabbitmq_management '; then
  log "enabling rabbitmq_management"
  $SUDO rabbitmq-plugins enable rabbitmq_management >/dev/null
fi
log "RabbitMQ is up on 127.0.0.1:5672 (management on :15672)"
