#!/usr/bin/env bash
# Mutation testing of the riskiest code (#16), behind its own command, bounded in time:
#   bash scripts/mutants.sh [actors|sqlite|all]   (default: actors)
# actors: actors/src/{aggregator,writer,pipeline}.rs against the actors crate's own tests (in-memory
#         bus and store; ~25 min on 2 cores).
# sqlite: the embedded store's group commit, journal dedup and store SQL (src/sqlite/) against
#         the tests that drive it (lib and tests/it: store_contract, embedded_dedup, batch_ids, kill, drain,
#         sqlite_migration; ~60-80 s per mutant, 69 mutants).
# Each part stops after NETQOE_MUTANTS_BUDGET_S seconds (default 2400). Results: mutants.out/
# under the target directory (missed.txt lists the mutants no test noticed).
# Installs cargo-mutants from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-actors}
budget=${NETQOE_MUTANTS_BUDGET_S:-2400}
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
out=${CARGO_TARGET_DIR:-target}/mutants
mkdir -p "$out"
run() {
  local name=$1; shift
  echo "mutants: $name (budget ${budget}s)"
  # timeout ends a run that would exceed the budget; what was tested so far is in the output
  timeout --signal=INT "$budget" cargo mutants --no-shuffle --timeout 60 --output "$out/$name" "$@" || true
  local missed="$out/$name/mutants.out/missed.txt"
  if [ -f "$missed" ]; then
    echo "mutants: $name: $(wc -l < "$out/$name/mutants.out/caught.txt") caught, $(wc -l < "$missed") missed," \
      "$(wc -l < "$out/$name/mutants.out/timeout.txt" 2>/dev/null || echo 0) timed out, $(wc -l < "$out/$name/mutants.out/unviable.txt") unviable"
    sed 's/^/  missed: /' "$missed"
  fi
}
case $what in
  actors|all) run actors -p netqoe-actors --file aggregator.rs --file writer.rs --file pipeline.rs ;;&
  # --cargo-arg passes the target selection to both `cargo build` and `cargo test`, so each mutant builds only
  # these test binaries (arguments after `--` would reach `cargo test` alone, after a full build).
  # -F narrows to the group commit, journal dedup, store SQL and consumer functions.
  sqlite|all) run sqlite --file 'src/sqlite/*.rs' \
      -F 'prune_tx|publish_tx|commit_tx|seen_before|run_group|attempt|upsert_rollup|insert_window_events|consume_loop' \
      --cargo-arg=--lib --cargo-arg=--test=it ;;
  actors) ;;
  sqlite) ;;
  *) echo "usage: $0 [actors|sqlite|all]" >&2; exit 2 ;;
esac
