#!/usr/bin/env bash
# The cost of per-request stage timing: one server build, two servers running at once
# (one timing stages, one with --no-stage-timing), client runs at --size 1 alternated
# between them so drift in the machine hits both alike. Prints each run, the median
# throughput and latency of each, and the ratios.
#
#   scripts/stage-timing-overhead.sh            # release build, 5 repetitions of 5 s
#   REPS=7 DURATION=10s CONCURRENCY=4 WORKERS=2 POOL=thread scripts/stage-timing-overhead.sh
#
# Needs python3 (for the summary).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/threadcenter}
REPS=${REPS:-5}
DURATION=${DURATION:-5s}
SIZE=${SIZE:-1}
CONCURRENCY=${CONCURRENCY:-4}
WORKERS=${WORKERS:-2}
POOL=${POOL:-process}

[ -x "$BIN" ] || cargo build --release
# shellcheck source=scripts/lib/ab.sh
. scripts/lib/ab.sh
start on --workers "$WORKERS" --pool "$POOL"
on_port=$port
start off --workers "$WORKERS" --pool "$POOL" --no-stage-timing
off_port=$port

for rep in $(seq "$REPS"); do
    for mode in $(alternate "$rep" on off); do
        if [ "$mode" = on ]; then p=$on_port; else p=$off_port; fi
        "$BIN" client --port "$p" --concurrency "$CONCURRENCY" --duration "$DURATION" \
            --warmup 1s --size "$SIZE" --quiet --json "$tmp/$mode-$rep.json"
    done
done

python3 - "$tmp" "$REPS" "$SIZE" "$CONCURRENCY" "$WORKERS" "$POOL" "$DURATION" <<'PY'
import json, statistics, sys
tmp, reps, size, conc, workers, pool, dur = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
print(f"stage timing on vs off: --size {size}, {workers} {pool} workers, {conc} client threads, {reps} x {dur} alternated")
docs = {m: [json.load(open(f"{tmp}/{m}-{r}.json")) for r in range(1, reps + 1)] for m in ("on", "off")}
for m in ("on", "off"):
    print(f"  {m:>3} req/s per run: " + " ".join(f"{d['throughput_rps']:.0f}" for d in docs[m]))
med = {}
for m in ("on", "off"):
    failed = sum(d["requests"]["failed"] for d in docs[m])
    med[m] = {
        "rps": statistics.median(d["throughput_rps"] for d in docs[m]),
        "p50": statistics.median(d["latency_us"]["p50"] for d in docs[m]),
        "p99": statistics.median(d["latency_us"]["p99"] for d in docs[m]),
    }
    x = med[m]
    print(f"  {m:>3} median: {x['rps']:.0f} req/s, p50 {x['p50']:.1f} us, p99 {x['p99']:.1f} us" + (f" ({failed} failed)" if failed else ""))
on, off = med["on"], med["off"]
print(f"  ratio on/off: throughput {on['rps']/off['rps']:.3f}, p50 {on['p50']/off['p50']:.3f}, p99 {on['p99']/off['p99']:.3f}")
PY
