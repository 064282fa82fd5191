#!/usr/bin/env bash
# How cost grows (#20 scope 4): events/s, p99 and peak RSS of the embedded netqoe against the
# number of live series (probes × targets: 1k, 10k, 100k, 1M) at 100-event batches, and against
# the batch size (10, 100, 1000 events per request) at 10k series — each point one
# `bench.sh embedded` run (open-loop load, consumer-side rate, the oracle) with PAIRS=1.
#   load-tests/growth.sh            RATE (offered events/s, 100000), DURATION (s per point, 20)
#   load-tests/growth.sh --report   the table and plot again from the points' JSON, no runs
# Results: target/bench/growth/{POINT.json,POINT.log}, target/bench/growth.txt (table),
# target/bench/growth.svg (plot). Loopback only; every run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/bench
mkdir -p "$OUT/growth"
RATE=${RATE:-100000}
DURATION=${DURATION:-20}
# label probes targets batch
points=(
  "series-1k 500 2 100"
  "series-10k 5000 2 100"
  "series-100k 10000 10 100"
  "series-1m 10000 100 100"
  "batch-10 5000 2 10"
  "batch-1000 5000 2 1000"
)
[ "${1:-}" = --report ] && points=()
for p in "${points[@]}"; do
  read -r label probes targets batch <<<"$p"
  echo "== $label: $probes probes × $targets targets, batches of $batch, $RATE events/s offered for $DURATION s"
  if PAIRS=1 DURATION=$DURATION RATE=$RATE PROBES=$probes TARGETS=$targets BATCH=$batch \
    bash load-tests/bench.sh embedded > "$OUT/growth/$label.log" 2>&1; then
    cp "$OUT/embedded-P1.json" "$OUT/growth/$label.json"
  else
    echo "growth: $label failed (its log: $OUT/growth/$label.log)" >&2
    cp "$OUT/embedded-P1.json" "$OUT/growth/$label.json" 2>/dev/null || true
  fi
done
python3 - "$OUT" "$RATE" "$DURATION" <<'PY'
import json, os, sys
out, rate, duration = sys.argv[1], sys.argv[2], sys.argv[3]
rows = []
for label in ["series-1k", "series-10k", "series-100k", "series-1m", "batch-10", "batch-1000"]:
    p = f"{out}/growth/{label}.json"
    if not os.path.exists(p):
        continue
    d = json.load(open(p))
    rows.append({"point": label, "series": d.get("series"), "batch": d.get("batch"),
                 "consumed_events_per_s": d.get("consumed_events_per_s"),
                 "accepted_events_per_s": d.get("accepted_events_per_s"),
                 "p99_ms": d.get("p99_ms"), "peak_rss_mib": d.get("peak_rss_mib"),
                 "cpu_us_per_event": 1e6 * d["cpu_seconds"] / d["accepted_events"] if d.get("accepted_events") else None,
                 "oracle_clean": bool(d.get("oracle") and d["oracle"].get("clean"))})
# memory per live series: the slope of peak RSS between series points (the process's fixed part cancels)
ser = [r for r in rows if r["point"].startswith("series-") and r["series"] and r["peak_rss_mib"]]
for a, b in zip(ser, ser[1:]):
    b["kib_per_added_series"] = (b["peak_rss_mib"] - a["peak_rss_mib"]) * 1024 / (b["series"] - a["series"])
json.dump({"rate": rate, "duration_s": duration, "rows": rows}, open(f"{out}/growth.json", "w"), indent=1)
f = lambda v, w, d=1: f"{v:>{w}.{d}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"
lines = [f"offered {rate} events/s for {duration} s per point (embedded, release, 2 cores shared with the generator)",
         f"{'point':12} {'series':>8} {'batch':>6} {'consumed/s':>11} {'p99 ms':>8} {'RSS MiB':>8} {'KiB/series+':>11} {'µs/event':>9} oracle"]
for r in rows:
    lines.append(f"{r['point']:12} {r['series'] or 0:>8} {r['batch'] or 0:>6} {f(r['consumed_events_per_s'], 11, 0)} {f(r['p99_ms'], 8)} "
                 f"{f(r['peak_rss_mib'], 8)} {f(r.get('kib_per_added_series'), 11, 2)} {f(r['cpu_us_per_event'], 9, 2)} {'clean' if r['oracle_clean'] else 'DIFF'}")
text = "\n".join(lines)
print(text)
open(f"{out}/growth.txt", "w").write(text + "\n")
# plot: consumed events/s, p99 and RSS against series (log x), one panel each
import math
W, H, pad = 900, 260, 60
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{3*H}" font-family="sans-serif" font-size="12">']
lo, hi = math.log10(min(r["series"] for r in ser)), math.log10(max(r["series"] for r in ser))
for k, (key, title) in enumerate([("consumed_events_per_s", "consumed events/s"), ("p99_ms", "p99 ms (ingest answer)"), ("peak_rss_mib", "peak RSS MiB")]):
    pts = [(r["series"], r[key]) for r in ser if isinstance(r.get(key), (int, float))]
    if not pts:
        continue
    off = k * H
    top = max(v for _, v in pts) or 1
    x = lambda s: pad + (W - 2 * pad) * ((math.log10(s) - lo) / ((hi - lo) or 1))
    y = lambda v: off + H - pad + 10 - (H - 2 * pad) * v / top
    svg.append(f'<text x="{pad}" y="{off + 20}">{title} against live series (max {top:.1f})</text>')
    svg.append(f'<line x1="{pad}" y1="{off + H - pad + 10}" x2="{W - pad}" y2="{off + H - pad + 10}" stroke="black"/>')
    svg.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{" ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in pts)}"/>')
    for r in ser:
        if not isinstance(r.get(key), (int, float)):
            # a point without this figure (the pipeline did not catch up): marked on the axis
            svg.append(f'<text x="{x(r["series"]) - 40:.1f}" y="{off + H - pad}" fill="#d62728">✕ did not catch up</text>')
    for s, v in pts:
        svg.append(f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="3" fill="#1f77b4"/><text x="{x(s) - 10:.1f}" y="{off + H - pad + 26}">{s:,}</text>'
                   f'<text x="{x(s) + 5:.1f}" y="{y(v) - 5:.1f}">{v:.0f}</text>')
svg.append("</svg>")
open(f"{out}/growth.svg", "w").write("\n".join(svg))
print(f"results: {out}/growth.json, {out}/growth.txt, {out}/growth.svg")
PY
