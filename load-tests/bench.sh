#!/usr/bin/env bash
# netqoe benchmark: baseline (B) and netqoe (P) alternately, B P B P …, on this machine.
#   load-tests/bench.sh [embedded|rabbitmq|both]
# Environment: PAIRS (3), DURATION (30 s per run), RATE (offered events/s, 100000), BATCH (100),
#   PROBES (10000), TARGETS (2), WORKERS (2).
# B, RabbitMQ mode: plain lapin publish (confirms) → consume (acks) of the same batches on a quorum
#   queue of the same broker. B, embedded mode: none (there is no broker hop); P is reported alone.
# P: a fresh release `netqoe run` fed by netqoe-loadgen (open loop), counted at the consumer
#   (events aggregated and committed), with the oracle check, CPU seconds and peak RSS.
# Results: target/bench/results.json, target/bench/summary.txt, target/bench/plot.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-both}
PAIRS=${PAIRS:-3}
DURATION=${DURATION:-30}
RATE=${RATE:-100000}
BATCH=${BATCH:-100}
PROBES=${PROBES:-10000}
TARGETS=${TARGETS:-2}
WORKERS=${WORKERS:-2}
PORT=${PORT:-18999}
OUT=target/bench
mkdir -p "$OUT"
cargo build --release -q -p netqoe -p netqoe-loadgen
BIN=target/release
modes=("$MODE")
[ "$MODE" = both ] && modes=(embedded rabbitmq)
[ "$MODE" != embedded ] && bash scripts/ensure-rabbitmq.sh

work=$(mktemp -d)
trap 'pkill -f "netqoe --config $work" 2>/dev/null || true; rm -rf "$work"' EXIT
"$BIN/netqoe-loadgen" setup --probes "$PROBES" --out "$work" >/dev/null
# CPU seconds (user + system) of a process so far
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
broker_pid() { rabbitmqctl eval 'os:getpid().' 2>/dev/null | tr -d '"' || true; }
for mode in "${modes[@]}"; do
  for i in $(seq 1 "$PAIRS"); do
    if [ "$mode" = rabbitmq ]; then
      echo "== $mode pair $i: B (baseline)"
      bp=$(broker_pid); b0=$(cpu_of "${bp:-0}")
      "$BIN/netqoe-loadgen" baseline --duration "$DURATION" --batch "$BATCH" --json "$OUT/$mode-B$i.json"
      b1=$(cpu_of "${bp:-0}")
      python3 -c "import json,sys; p=sys.argv[1]; d=json.load(open(p)); d['broker_cpu_s']=float(sys.argv[3])-float(sys.argv[2]); json.dump(d, open(p,'w'), indent=1)" "$OUT/$mode-B$i.json" "$b0" "$b1"
    fi
    bp=$(broker_pid); broker0=$(cpu_of "${bp:-0}")
    echo "== $mode pair $i: P (netqoe)"
    rm -rf "$work/data"
    NETQOE__BUS__KIND=$mode NETQOE__RABBITMQ__PREFIX="bench$i." NETQOE__HTTP__BIND="127.0.0.1:$PORT" NETQOE__LOG__LEVEL=warn \
      "$BIN/netqoe" --config "$work/netqoe.toml" run > "$OUT/$mode-P$i.server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
    status=0
    "$BIN/netqoe-loadgen" run --url "http://127.0.0.1:$PORT" --tokens "$work/tokens.json" --rate "$RATE" \
      --duration "$DURATION" --batch "$BATCH" --targets "$TARGETS" --workers "$WORKERS" --oracle \
      --json "$OUT/$mode-P$i.json" --server-pid "$pid" 2> >(grep -v '^loadgen:' >&2) || status=$?
    read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    broker1=$(cpu_of "${bp:-0}")
    kill -TERM "$pid"; wait "$pid" || true
    python3 - "$OUT/$mode-P$i.json" "$utime" "$stime" "$hwm" "$status" "$broker0" "$broker1" "$mode" <<'PY'
import json, os, sys
p, ut, st, hwm, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
d = json.load(open(p))
# netqoe's CPU during the load (until caught up), not during the oracle's queries afterwards
d["cpu_seconds"] = d.get("server_cpu_s") or (ut + st) / os.sysconf("SC_CLK_TCK")
d["peak_rss_mib"] = hwm / 1024
d["oracle_exit"] = status
d["broker_cpu_s"] = (float(sys.argv[7]) - float(sys.argv[6])) if sys.argv[8] == "rabbitmq" else None
json.dump(d, open(p, "w"), indent=1)
PY
  done
done
python3 - "$OUT" "${modes[@]}" <<'PY'
import json, os, sys, glob, datetime
out, modes = sys.argv[1], sys.argv[2:]
rows, series = [], []
for mode in modes:
    i = 1
    while os.path.exists(f"{out}/{mode}-P{i}.json"):
        p = json.load(open(f"{out}/{mode}-P{i}.json"))
        b = json.load(open(f"{out}/{mode}-B{i}.json")) if os.path.exists(f"{out}/{mode}-B{i}.json") else None
        c = p.get("consumed_events_per_s") or 0
        rows.append({"mode": mode, "pair": i, "B_events_per_s": b and b["events_per_s"], "P_consumed_events_per_s": c,
                     "P_accepted_events_per_s": p["accepted_events_per_s"], "ratio_P_B": (c / b["events_per_s"]) if b else None,
                     "p99_ms": p["p99_ms"], "p999_ms": p["p999_ms"], "cpu_s": p["cpu_seconds"], "peak_rss_mib": p["peak_rss_mib"],
                     "loadgen_cpu_s": p.get("loadgen_cpu_s"), "broker_cpu_s_P": p.get("broker_cpu_s"),
                     "broker_cpu_s_B": b and b.get("broker_cpu_s"),
                     "max_pct_err": (p.get("oracle") or {}).get("max_percentile_rel_error"),
                     "oracle_clean": bool(p.get("oracle") and p["oracle"].get("clean"))})
        series.append((f"{mode} P{i}", p["timeline"]))
        i += 1
meta = {"date": datetime.datetime.utcnow().isoformat() + "Z", "nproc": os.cpu_count(),
        "env": {k: os.environ.get(k) for k in ["PAIRS", "DURATION", "RATE", "BATCH", "PROBES", "TARGETS", "WORKERS"]}}
json.dump({"meta": meta, "rows": rows}, open(f"{out}/results.json", "w"), indent=1)
lines = [f"{'mode':9} {'pair':>4} {'B ev/s':>10} {'P ev/s':>10} {'P/B':>6} {'p99 ms':>8} {'p99.9':>8} {'CPU s':>7} {'RSS MiB':>8} {'gen CPU':>8} {'brk B':>6} {'brk P':>6} {'pct err':>8} oracle"]
for r in rows:
    b = f"{r['B_events_per_s']:.0f}" if r["B_events_per_s"] else "-"
    ratio = f"{r['ratio_P_B']:.2f}" if r["ratio_P_B"] is not None else "-"
    f = lambda v, w, d=1: f"{v:>{w}.{d}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"
    lines.append(f"{r['mode']:9} {r['pair']:>4} {b:>10} {r['P_consumed_events_per_s']:>10.0f} {ratio:>6} {r['p99_ms']:>8.1f} {r['p999_ms']:>8.1f} {r['cpu_s']:>7.1f} {r['peak_rss_mib']:>8.1f} {f(r['loadgen_cpu_s'], 8)} {f(r['broker_cpu_s_B'], 6)} {f(r['broker_cpu_s_P'], 6)} {f(r['max_pct_err'], 8, 4)} {'clean' if r['oracle_clean'] else 'DIFF'}")
text = "\n".join(lines)
print(text)
open(f"{out}/summary.txt", "w").write(text + "\n")
# plot: accepted events/s and p99 per second for every P run
W, H, pad = 900, 420, 50
maxs = max((pt["second"] for _, tl in series for pt in tl), default=1) or 1
maxr = max((pt["accepted_events"] for _, tl in series for pt in tl), default=1) or 1
maxl = max((pt["p99_ms"] for _, tl in series for pt in tl), default=1) or 1
colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{2*H}" font-family="sans-serif" font-size="12">',
       f'<text x="{pad}" y="20">accepted events/s per second (max {maxr:.0f})</text>',
       f'<text x="{pad}" y="{H+20}">p99 latency ms per second (max {maxl:.1f})</text>']
for k, (name, tl) in enumerate(series):
    c = colors[k % len(colors)]
    for off, key, top in [(0, "accepted_events", maxr), (H, "p99_ms", maxl)]:
        pts = " ".join(f"{pad + (W-2*pad)*pt['second']/maxs:.1f},{off + H - pad - (H-2*pad)*pt[key]/top:.1f}" for pt in tl)
        svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}"/>')
    svg.append(f'<text x="{W-200}" y="{40+15*k}" fill="{c}">{name}</text>')
for off in (0, H):
    svg.append(f'<line x1="{pad}" y1="{off+H-pad}" x2="{W-pad}" y2="{off+H-pad}" stroke="black"/><line x1="{pad}" y1="{off+pad}" x2="{pad}" y2="{off+H-pad}" stroke="black"/>')
svg.append("</svg>")
open(f"{out}/plot.svg", "w").write("\n".join(svg))
print(f"results: {out}/results.json, {out}/summary.txt, {out}/plot.svg")
PY
