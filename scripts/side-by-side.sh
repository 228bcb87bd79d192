#!/usr/bin/env bash
# Several servers side by side under one client: every server runs at once, and each
# repetition runs the client against each of them in turn, the order rotating, so that
# drift in the machine hits all alike. Prints, per command, size and connection count,
# every server's median throughput and p50, and its ratio to the first server.
#
# A server is NAME=COMMAND (a threadcenter binary and its `server` flags, started here
# with --port 0 and stopped on exit) or NAME@PORT (already listening on 127.0.0.1:PORT,
# for a reference server started by hand: a fixed-answer server, the seed's Python one).
#
#   scripts/side-by-side.sh 'before=/tmp/tc-before server --workers 2 --io events' \
#                           'after=target/release/threadcenter server --workers 2 --io events'
#   REPS=7 DURATION=3s CMDS="ping compute" SIZES="1 10000" CONNS="1 4 16" scripts/side-by-side.sh ...
#
# The client is $BIN (target/release/threadcenter). Needs python3 (for the summary).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/threadcenter}
REPS=${REPS:-5}
DURATION=${DURATION:-3s}
CONNS=${CONNS:-"1 4 16"}
CMDS=${CMDS:-"ping compute"}
SIZES=${SIZES:-1}
THREADS=${THREADS:-}

[ $# -ge 1 ] || { echo "usage: $0 NAME=COMMAND|NAME@PORT ..." >&2; exit 2; }
[ -x "$BIN" ] || cargo build --release
# shellcheck source=scripts/lib/ab.sh
. scripts/lib/ab.sh

names=()
declare -A ports
for spec in "$@"; do
    if [[ $spec == *=* ]]; then
        name=${spec%%=*}
        read -r -a cmd <<<"${spec#*=}"
        # ab.sh's `start` runs $BIN; this server's own binary may differ.
        BIN_SAVED=$BIN BIN=${cmd[0]}
        start "$name" "${cmd[@]:2}"
        BIN=$BIN_SAVED
    elif [[ $spec == *@* ]]; then
        name=${spec%%@*}
        port=${spec#*@}
    else
        echo "not NAME=COMMAND or NAME@PORT: $spec" >&2
        exit 2
    fi
    names+=("$name")
    ports[$name]=$port
done

threads_flag=()
[ -n "$THREADS" ] && threads_flag=(--threads "$THREADS")
k=${#names[@]}
for rep in $(seq "$REPS"); do
    for cmd in $CMDS; do
        sizes=$SIZES
        [ "$cmd" = ping ] && sizes=1
        for size in $sizes; do
            for conns in $CONNS; do
                for j in $(seq 0 $((k - 1))); do
                    name=${names[$(((j + rep) % k))]}
                    "$BIN" client --port "${ports[$name]}" --cmd "$cmd" --size "$size" \
                        --concurrency "$conns" "${threads_flag[@]}" --duration "$DURATION" \
                        --warmup 1s --quiet --json "$tmp/$name-$cmd-$size-$conns-$rep.json" ||
                        echo "client failed against $name ($cmd $size $conns)" >&2
                done
            done
        done
    done
done

python3 - "$tmp" "$REPS" "$CMDS" "$SIZES" "$CONNS" "$DURATION" "${names[@]}" <<'PY'
import json, os, statistics, sys
tmp, reps, cmds, sizes, conns, dur, *names = sys.argv[1:]
reps = int(reps)
print(f"{len(names)} servers side by side, {reps} x {dur} per cell, medians; load {os.getloadavg()[0]:.2f}")
print(f"{'cmd':>8} {'size':>7} {'conns':>5} {'server':>12} {'req/s':>10} {'p50 us':>9} {'ratio':>6}  runs")
for cmd in cmds.split():
    for size in (["1"] if cmd == "ping" else sizes.split()):
        for c in conns.split():
            first = None
            for name in names:
                docs = []
                for r in range(1, reps + 1):
                    try:
                        docs.append(json.load(open(f"{tmp}/{name}-{cmd}-{size}-{c}-{r}.json")))
                    except (OSError, ValueError):
                        pass
                if not docs:
                    print(f"{cmd:>8} {size:>7} {c:>5} {name:>12}  (no run)")
                    continue
                failed = sum(d["requests"]["failed"] for d in docs)
                rps = statistics.median(d["throughput_rps"] for d in docs)
                p50 = statistics.median(d["latency_us"]["p50"] for d in docs)
                first = first or rps
                runs = sorted(round(d["throughput_rps"]) for d in docs)
                print(f"{cmd:>8} {size:>7} {c:>5} {name:>12} {rps:>10.0f} {p50:>9.1f} {rps / first:>6.2f}  {runs}"
                      + (f"  ({failed} failed)" if failed else ""))
PY
