#!/usr/bin/env bash
# The whole test suite: formatting, clippy (-D warnings), every unit, property, contract and
# integration test. Starts RabbitMQ first (installing it if needed) for the broker tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-rabbitmq.sh
echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo test --workspace --locked
