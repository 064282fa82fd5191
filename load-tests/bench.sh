#!/usr/bin/env bash
# netqoe benchmark: baseline (B) and netqoe (P) alternately, B P B P …, on this machine.
#   load-tests/bench.sh [embedded|rabbitmq|both|scylla|scylla-embedded|scylla-rabbitmq|influx]
# Environment: PAIRS (3), DURATION (30 s per run), RATE (offered events/s, 100000), BATCH (100),
#   PROBES (10000), TARGETS (2), WORKERS (2), NETQOE_EXE (the server binary, default the release
#   build: a baseline build side by side), ALIGN_MINUTE (set: each run starts 3 s into a minute, so
#   a run under 57 s opens one 1m window per series; memory per series comparable run to run).
# B, RabbitMQ mode: plain lapin publish (confirms) → consume (acks) of the same batches on a quorum
#   queue of the same broker. B, embedded mode: none (there is no broker hop); P is reported alone.
# P: a fresh release `netqoe run` fed by netqoe-loadgen (open loop), counted at the consumer
#   (events aggregated and committed), with the oracle check, CPU seconds and peak RSS.
# scylla-<bus> modes (scylla = both buses): B is netqoe on the SQLite store, P netqoe on the CQL
#   store (a fresh keyspace on the local Cassandra of scripts/ensure-cassandra.sh), same bus, same
#   load; the JVM's CPU seconds, CQL writes/s and bytes on disk per series per day per tier (after
#   a flush) are reported beside netqoe's CPU per event.
# influx: the peer — Debian's InfluxDB 1.6 (scripts/ensure-influxdb.sh) on the same machine — and
#   netqoe (embedded) take one data set each run (`netqoe-loadgen peer`: PEER_PROBES (500) ×
#   PEER_TARGETS (10) series, PEER_MINUTES (10) × PEER_PER_MINUTE (6) measurements each, batches of
#   BATCH, PEER_CONCURRENCY (8) requests in flight), then are asked the same two questions; events/s,
#   CPU µs per event, query latency, answers and bytes per series per day: target/bench/influx-N.json.
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
# NETQOE_EXE: another netqoe server binary (a baseline build) against the same generator
EXE=${NETQOE_EXE:-$BIN/netqoe}
modes=("$MODE")
[ "$MODE" = both ] && modes=(embedded rabbitmq)
[ "$MODE" = scylla ] && modes=(scylla-embedded scylla-rabbitmq)
case "$MODE" in embedded|scylla-embedded|influx) ;; *) bash scripts/ensure-rabbitmq.sh ;; esac
if [[ "$MODE" == scylla* ]]; then
  cql=$(bash scripts/ensure-cassandra.sh)
  cass_home=${NETQOE_CASSANDRA_HOME:-/tmp/netqoe-cassandra-9042}
  cass_pid=$(cat "$cass_home/pid" 2>/dev/null || true)
  [ -n "$cass_pid" ] || { echo "bench: the CQL server on $cql was not started by ensure-cassandra.sh (no pid file): its CPU cannot be measured" >&2; exit 1; }
fi
# nodetool of the local Cassandra (JMX on CQL port + 100, the server's module flags)
nodetool() { bash scripts/cassandra/nodetool.sh --port "${cql##*:}" "$@"; }

work=$(mktemp -d)
trap 'pkill -f "netqoe --config $work" 2>/dev/null || true; rm -rf "$work"' EXIT
"$BIN/netqoe-loadgen" setup --probes "$PROBES" --out "$work" >/dev/null
# CPU seconds (user + system) of a process so far
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
broker_pid() { rabbitmqctl eval 'os:getpid().' 2>/dev/null | tr -d '"' || true; }
# the queues and exchanges a run declared (its rabbitmq.prefix), deleted through the management
# API once the run is over, so runs leave no benchN.* topology behind on the broker
delete_topology() {
  python3 - "$1" <<'PY'
import base64, json, sys, urllib.parse, urllib.request
prefix, api = sys.argv[1], "http://127.0.0.1:15672/api"
auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
def call(method, path):
    with urllib.request.urlopen(urllib.request.Request(api + path, method=method, headers=auth), timeout=10) as r:
        return json.loads(r.read() or b"null")
gone = 0
for kind in ("queues", "exchanges"):
    for o in call("GET", f"/{kind}/%2f?columns=name"):
        if o["name"].startswith(prefix):
            call("DELETE", f"/{kind}/%2f/" + urllib.parse.quote(o["name"], safe=""))
            gone += 1
print(f"bench: deleted {gone} queues and exchanges named {prefix}*", file=sys.stderr)
PY
}
if [ "$MODE" = influx ]; then
  influx_url=$(bash scripts/ensure-influxdb.sh)
  ihome=${NETQOE_INFLUXDB_HOME:-/tmp/netqoe-influxdb-${NETQOE_INFLUXDB_PORT:-18086}}
  ipid=$(cat "$ihome/pid" 2>/dev/null || true)
  [ -n "$ipid" ] || { echo "bench: InfluxDB on $influx_url was not started by ensure-influxdb.sh (no pid file): its CPU cannot be measured" >&2; exit 1; }
  PEER_PROBES=${PEER_PROBES:-500}
  "$BIN/netqoe-loadgen" setup --probes "$PEER_PROBES" --out "$work/peer" >/dev/null
  for i in $(seq 1 "$PAIRS"); do
    echo "== influx run $i: InfluxDB, then netqoe, the same data set; then both are asked"
    rm -rf "$work/peer/data"
    # the fleet question reads the store's fleet windows (one row per target and minute), so the
    # default http.max_query_windows applies unchanged
    NETQOE__HTTP__BIND="127.0.0.1:$PORT" NETQOE__LOG__LEVEL=warn \
      "$EXE" --config "$work/peer/netqoe.toml" run > "$OUT/influx-$i.server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
    "$BIN/netqoe-loadgen" peer --url "http://127.0.0.1:$PORT" --tokens "$work/peer/tokens.json" --server-pid "$pid" \
      --data-dir "$work/peer/data" --influx "$influx_url" --influx-pid "$ipid" --influx-home "$ihome" \
      --probes "$PEER_PROBES" --targets "${PEER_TARGETS:-10}" --minutes "${PEER_MINUTES:-10}" \
      --per-minute "${PEER_PER_MINUTE:-6}" --batch "$BATCH" --concurrency "${PEER_CONCURRENCY:-8}" \
      --json "$OUT/influx-$i.json" | tee "$OUT/influx-$i.txt"
    kill -TERM "$pid"; wait "$pid" || true
  done
  exit 0
fi

# one netqoe run under load: run_netqoe LABEL BUS STORE(sqlite|scylla) KEYSPACE
run_netqoe() {
  local label=$1 bus=$2 store=$3 ks=$4 json="$OUT/$1.json"
  local env=(NETQOE__BUS__KIND="$bus" NETQOE__RABBITMQ__PREFIX="$label." NETQOE__HTTP__BIND="127.0.0.1:$PORT"
             NETQOE__LOG__LEVEL=warn NETQOE__STORAGE__BACKEND="$store")
  if [ "$store" = scylla ]; then
    env+=(NETQOE__SCYLLA__CONTACT_POINTS="[\"$cql\"]" NETQOE__SCYLLA__KEYSPACE="$ks" NETQOE__SCYLLA__REPLICATION=SimpleStrategy
          NETQOE__SCYLLA__READ_CONSISTENCY=ONE NETQOE__SCYLLA__WRITE_CONSISTENCY=ONE)
    env "${env[@]}" "$EXE" --config "$work/netqoe.toml" migrate >/dev/null
  fi
  rm -rf "$work/data"
  local bp broker0 jvm0 pid status utime stime hwm rss
  bp=$(broker_pid); broker0=$(cpu_of "${bp:-0}"); jvm0=$(cpu_of "${cass_pid:-0}")
  env "${env[@]}" "$EXE" --config "$work/netqoe.toml" run > "$OUT/$label.server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  status=0
  if [ -n "${ALIGN_MINUTE:-}" ]; then
    # start 3 s into a minute, so a run shorter than 57 s opens exactly one 1m window per series
    local sec; sec=$(date +%S); sleep $(( (63 - 10#$sec) % 60 ))
  fi
  "$BIN/netqoe-loadgen" run --url "http://127.0.0.1:$PORT" --tokens "$work/tokens.json" --rate "$RATE" \
    --duration "$DURATION" --batch "$BATCH" --targets "$TARGETS" --workers "$WORKERS" --oracle \
    --json "$json" --server-pid "$pid" 2> >(grep -v '^loadgen:' >&2) || status=$?
  read -r utime stime < <(awk '{print $14, $15}' "/proc/$pid/stat")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  # resident once caught up and checked: the live series' state without the load's queues
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  local broker1 jvm1
  broker1=$(cpu_of "${bp:-0}"); jvm1=$(cpu_of "${cass_pid:-0}")
  curl -sf "http://127.0.0.1:$PORT/metrics" > "$OUT/$label.metrics" || true
  kill -TERM "$pid"; wait "$pid" || true
  if [ "$bus" = rabbitmq ]; then delete_topology "$label." || echo "bench: could not delete the run's topology" >&2; fi
  local disk="{}"
  if [ "$store" = scylla ]; then
    nodetool flush "$ks" >/dev/null 2>&1 || echo "bench: nodetool flush $ks failed; bytes on disk are of the flushed part only" >&2
    disk=$(python3 - "$cass_home/data" "$ks" <<'PY'
import json, os, sys
root, ks = sys.argv[1], sys.argv[2]
out = {}
for d in os.listdir(os.path.join(root, ks)) if os.path.isdir(os.path.join(root, ks)) else []:
    total = 0
    for dp, _, fs in os.walk(os.path.join(root, ks, d)):
        for f in fs:
            try:
                total += os.path.getsize(os.path.join(dp, f))
            except FileNotFoundError:  # compacted away while walking
                pass
    out[d.split("-")[0]] = total
print(json.dumps(out))
PY
)
  fi
  python3 - "$json" "$utime" "$stime" "$hwm" "$status" "$broker0" "$broker1" "$bus" "$jvm0" "$jvm1" "$store" "$OUT/$label.metrics" "$disk" "$rss" <<'PY'
import json, os, sys
p, ut, st, hwm, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
d = json.load(open(p))
# netqoe's CPU during the load (until caught up), not during the oracle's queries afterwards
d["cpu_seconds"] = d.get("server_cpu_s") or (ut + st) / os.sysconf("SC_CLK_TCK")
d["peak_rss_mib"] = hwm / 1024
d["rss_after_mib"] = int(sys.argv[14]) / 1024
d["oracle_exit"] = status
d["broker_cpu_s"] = (float(sys.argv[7]) - float(sys.argv[6])) if sys.argv[8] == "rabbitmq" else None
d["store"] = sys.argv[11]
d["jvm_cpu_s"] = (float(sys.argv[10]) - float(sys.argv[9])) if sys.argv[11] == "scylla" else None
# rollup rows written per tier, and store commits: count, mean and p99 (histogram buckets)
m = {}
for line in open(sys.argv[12]).read().splitlines() if os.path.exists(sys.argv[12]) else []:
    if line.startswith("netqoe_rollups_written_total{") or line.startswith("netqoe_store_write_seconds"):
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
d["rollups_written"] = {k.split('tier="')[1].split('"')[0]: v for k, v in m.items() if k.startswith("netqoe_rollups_written_total")}
n = m.get("netqoe_store_write_seconds_count", 0)
d["commits"] = n
d["commit_mean_ms"] = 1000 * m.get("netqoe_store_write_seconds_sum", 0) / n if n else None
buckets = sorted((float(k.split('le="')[1].split('"')[0]), v) for k, v in m.items() if "_bucket{" in k and "+Inf" not in k)
d["commit_p99_ms"] = next((1000 * le for le, c in buckets if n and c >= 0.99 * n), None)
d["disk_bytes"] = json.loads(sys.argv[13])
json.dump(d, open(p, "w"), indent=1)
PY
}

for mode in "${modes[@]}"; do
  for i in $(seq 1 "$PAIRS"); do
    case "$mode" in
      scylla-*)
        bus=${mode#scylla-}
        echo "== $mode pair $i: B (netqoe on the SQLite store, $bus bus)"
        run_netqoe "$mode-B$i" "$bus" sqlite ""
        echo "== $mode pair $i: P (netqoe on the CQL store, $bus bus)"
        # a keyspace of its own per run (so each run's disk bytes and requests are its own)
        run_netqoe "$mode-P$i" "$bus" scylla "netqoe_bench_${bus}_$(date +%s)_$i"
        continue ;;
      rabbitmq)
        echo "== $mode pair $i: B (baseline)"
        bp=$(broker_pid); b0=$(cpu_of "${bp:-0}")
        "$BIN/netqoe-loadgen" baseline --duration "$DURATION" --batch "$BATCH" --json "$OUT/$mode-B$i.json"
        b1=$(cpu_of "${bp:-0}")
        python3 -c "import json,sys; p=sys.argv[1]; d=json.load(open(p)); d['broker_cpu_s']=float(sys.argv[3])-float(sys.argv[2]); json.dump(d, open(p,'w'), indent=1)" "$OUT/$mode-B$i.json" "$b0" "$b1" ;;
    esac
    echo "== $mode pair $i: P (netqoe)"
    run_netqoe "$mode-P$i" "$mode" sqlite ""
  done
done
python3 - "$OUT" "${modes[@]}" <<'PY'
import json, os, sys, glob, datetime
out, modes = sys.argv[1], sys.argv[2:]
rows, series = [], []
cql_rows = []
for mode in modes:
    i = 1
    while mode.startswith("scylla") and os.path.exists(f"{out}/{mode}-P{i}.json"):
        for side in "BP":
            d = json.load(open(f"{out}/{mode}-{side}{i}.json"))
            c = d.get("consumed_events_per_s") or 0
            n = c * (d.get("duration_s") or 0) or None
            dur = d.get("duration_s") or 0
            per_series_day = None
            n_series = d.get("series") or d.get("probes", 0) * d.get("targets", 0)  # one metric (rtt) per event
            m1_rows = (d.get("oracle") or {}).get("windows") or 0
            if d.get("disk_bytes") and n_series and m1_rows:
                # bytes per series per day per table: bytes per stored row × rows a series has a
                # day (1440 1m, 24 1h, one 1d); the run wrote m1_rows 1m rows and one 1h/1d row
                # per series
                def per_day(t, b):
                    if t.endswith("_1m"):
                        return b / m1_rows * 1440
                    return b / n_series * (24 if t.endswith("_1h") else 1)
                per_series_day = {t: per_day(t, b) for t, b in d["disk_bytes"].items() if t.startswith("rollups")}
            cql_rows.append({"mode": mode, "pair": i, "side": side, "store": d.get("store"), "consumed_events_per_s": c,
                             "p99_ms": d["p99_ms"], "cpu_s": d["cpu_seconds"],
                             # per event consumed: every accepted event, once caught up (consumed
                             # ev/s × the load's duration undercounts when catching up takes longer)
                             "cpu_us_per_event": (1e6 * d["cpu_seconds"] / d["accepted_events"]) if c and d.get("accepted_events") else None,
                             "jvm_us_per_event": (1e6 * d["jvm_cpu_s"] / d["accepted_events"]) if d.get("jvm_cpu_s") and d.get("accepted_events") else None,
                             "jvm_cpu_s": d.get("jvm_cpu_s"), "rollups_written": d.get("rollups_written"),
                             "commits": d.get("commits"), "commit_p99_ms": d.get("commit_p99_ms"),
                             "commit_mean_ms": d.get("commit_mean_ms"), "peak_rss_mib": d["peak_rss_mib"],
                             "disk_bytes": d.get("disk_bytes"), "disk_bytes_per_series_day": per_series_day,
                             "oracle_clean": bool(d.get("oracle") and d["oracle"].get("clean"))})
        i += 1
    while not mode.startswith("scylla") and os.path.exists(f"{out}/{mode}-P{i}.json"):
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
json.dump({"meta": meta, "rows": rows, "cql_rows": cql_rows}, open(f"{out}/results.json", "w"), indent=1)
lines = [f"{'mode':9} {'pair':>4} {'B ev/s':>10} {'P ev/s':>10} {'P/B':>6} {'p99 ms':>8} {'p99.9':>8} {'CPU s':>7} {'RSS MiB':>8} {'gen CPU':>8} {'brk B':>6} {'brk P':>6} {'pct err':>8} oracle"]
for r in rows:
    b = f"{r['B_events_per_s']:.0f}" if r["B_events_per_s"] else "-"
    ratio = f"{r['ratio_P_B']:.2f}" if r["ratio_P_B"] is not None else "-"
    f = lambda v, w, d=1: f"{v:>{w}.{d}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"
    lines.append(f"{r['mode']:9} {r['pair']:>4} {b:>10} {r['P_consumed_events_per_s']:>10.0f} {ratio:>6} {r['p99_ms']:>8.1f} {r['p999_ms']:>8.1f} {r['cpu_s']:>7.1f} {r['peak_rss_mib']:>8.1f} {f(r['loadgen_cpu_s'], 8)} {f(r['broker_cpu_s_B'], 6)} {f(r['broker_cpu_s_P'], 6)} {f(r['max_pct_err'], 8, 4)} {'clean' if r['oracle_clean'] else 'DIFF'}")
if cql_rows:
    lines = [] if not rows else lines + [""]
    lines.append(f"{'mode':16} {'pair':>4} {'store':6} {'ev/s':>8} {'p99 ms':>7} {'CPU s':>6} {'µs/ev':>6} {'JVM s':>6} {'JVM µs':>6} {'rows/s':>7} {'commit p99':>10} {'RSS MiB':>7} oracle")
    for r in cql_rows:
        f = lambda v, w, d=1: f"{v:>{w}.{d}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"
        dur = float(os.environ.get("DURATION") or 30)
        rps = sum((r["rollups_written"] or {}).values()) / dur if r["rollups_written"] else None
        lines.append(f"{r['mode']:16} {r['pair']:>4} {r['store'] or '-':6} {r['consumed_events_per_s']:>8.0f} {r['p99_ms']:>7.1f} {r['cpu_s']:>6.1f} {f(r['cpu_us_per_event'], 6, 2)} {f(r['jvm_cpu_s'], 6)} {f(r['jvm_us_per_event'], 6, 2)} {f(rps, 7, 0)} {f(r['commit_p99_ms'], 10)} {r['peak_rss_mib']:>7.1f} {'clean' if r['oracle_clean'] else 'DIFF'}")
        if r["disk_bytes_per_series_day"]:
            tiers = ", ".join(f"{t} {b:.0f}" for t, b in sorted(r["disk_bytes_per_series_day"].items()) if b)
            lines.append(f"{'':16} bytes on disk per series per day (after flush): {tiers}")
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
