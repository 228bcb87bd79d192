#!/usr/bin/env bash
# --io events against --io threads, side by side: one server build, two servers running
# at once, client runs interleaved (the order alternating each repetition) so drift in
# the machine hits both alike. Prints, per command and connection count, the median
# throughput and latency of each model and the events/threads ratios.
#
#   scripts/io-models.sh                        # release build, 5 repetitions of 3 s
#   REPS=7 DURATION=5s CONNS="1 4 16" CMDS="ping compute" SIZE=1 WORKERS=2 scripts/io-models.sh
#
# Needs python3 (for the summary).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/threadcenter}
REPS=${REPS:-5}
DURATION=${DURATION:-3s}
CONNS=${CONNS:-"1 16"}
CMDS=${CMDS:-"ping compute"}
SIZE=${SIZE:-1}
WORKERS=${WORKERS:-2}

[ -x "$BIN" ] || cargo build --release
# shellcheck source=scripts/lib/ab.sh
. scripts/lib/ab.sh

start threads --workers "$WORKERS" --io threads
threads_port=$port
start events --workers "$WORKERS" --io events
events_port=$port

run() { # model cmd conns rep
    local model=$1 cmd=$2 conns=$3 rep=$4 p
    if [ "$model" = events ]; then p=$events_port; else p=$threads_port; fi
    "$BIN" client --port "$p" --cmd "$cmd" --size "$SIZE" --concurrency "$conns" \
        --duration "$DURATION" --warmup 1s --quiet --json "$tmp/$model-$cmd-$conns-$rep.json"
}
for rep in $(seq "$REPS"); do
    for cmd in $CMDS; do
        for conns in $CONNS; do
            for model in $(alternate "$rep" threads events); do run "$model" "$cmd" "$conns" "$rep"; done
        done
    done
done

python3 - "$tmp" "$REPS" "$CMDS" "$CONNS" "$WORKERS" "$DURATION" "$SIZE" <<'PY'
import json, statistics, sys
tmp, reps, cmds, conns, workers, dur, size = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), *sys.argv[5:]
print(f"--io events vs --io threads: {workers} workers, compute size {size}, {reps} x {dur} per cell, medians")
print(f"{'cmd':>8} {'conns':>5} {'model':>8} {'req/s':>10} {'p50 us':>9} {'p99 us':>9}")
for cmd in cmds:
    for c in conns:
        med = {}
        for model in ("threads", "events"):
            docs = [json.load(open(f"{tmp}/{model}-{cmd}-{c}-{r}.json")) for r in range(1, reps + 1)]
            failed = sum(d["requests"]["failed"] for d in docs)
            med[model] = m = {
                "rps": statistics.median(d["throughput_rps"] for d in docs),
                "p50": statistics.median(d["latency_us"]["p50"] for d in docs),
                "p99": statistics.median(d["latency_us"]["p99"] for d in docs),
                "all": sorted(round(d["throughput_rps"]) for d in docs),
            }
            print(f"{cmd:>8} {c:>5} {model:>8} {m['rps']:>10.0f} {m['p50']:>9.1f} {m['p99']:>9.1f}  runs {m['all']}" + (f"  ({failed} failed)" if failed else ""))
        t, e = med["threads"], med["events"]
        print(f"{cmd:>8} {c:>5}  ratio events/threads: throughput {e['rps']/t['rps']:.3f}, p50 {e['p50']/t['p50']:.3f}, p99 {e['p99']/t['p99']:.3f}")
PY
