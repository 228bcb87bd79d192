#!/usr/bin/env bash
# What one request costs the server, counted rather than timed: system calls, context
# switches and CPU time of the server process and its workers per request, with
# `perf stat` attached while the client sends a fixed number of requests. Counts hold
# up on a loaded machine where throughput does not, so they show what a change saves
# (a pipe write per batch instead of per task, a wakeup less) even when timing cannot.
#
# REQUESTS is per connection. Each server is NAME=COMMAND (a threadcenter binary and its `server` flags); the rounds
# alternate between them, and the medians are printed.
#
#   scripts/per-request-cost.sh 'before=/tmp/tc-before server --workers 2 --io events' \
#                               'after=target/release/threadcenter server --workers 2 --io events'
#   REQUESTS=20000 ROUNDS=5 CMD=compute SIZE=1 CONNS="1 16" scripts/per-request-cost.sh ...
#
# Needs perf (linux-perf) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/threadcenter}
REQUESTS=${REQUESTS:-40000}
ROUNDS=${ROUNDS:-3}
CMD=${CMD:-compute}
SIZE=${SIZE:-1}
CONNS=${CONNS:-"1 4 16"}

[ $# -ge 1 ] || { echo "usage: $0 NAME=COMMAND ..." >&2; exit 2; }
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }
[ -x "$BIN" ] || cargo build --release
# shellcheck source=scripts/lib/ab.sh
. scripts/lib/ab.sh

names=()
declare -A ports pids_of
for spec in "$@"; do
    name=${spec%%=*}
    read -r -a cmd <<<"${spec#*=}"
    BIN_SAVED=$BIN BIN=${cmd[0]}
    start "$name" "${cmd[@]:2}"
    BIN=$BIN_SAVED
    names+=("$name")
    ports[$name]=$port
    pids_of[$name]=${pids[-1]}
done

k=${#names[@]}
for round in $(seq "$ROUNDS"); do
    for conns in $CONNS; do
        for j in $(seq 0 $((k - 1))); do
            name=${names[$(((j + round) % k))]}
            server=${pids_of[$name]}
            # The server and its worker processes (whichever are alive now).
            targets=$(echo "$server" $(pgrep -P "$server" || true) | tr ' ' ',')
            "$BIN" client --port "${ports[$name]}" --cmd "$CMD" --size "$SIZE" --concurrency "$conns" \
                --requests 2000 --quiet >/dev/null
            perf stat -x, -e raw_syscalls:sys_enter,context-switches,task-clock -p "$targets" -- \
                "$BIN" client --port "${ports[$name]}" --cmd "$CMD" --size "$SIZE" \
                --concurrency "$conns" --requests "$REQUESTS" --warmup 0s --quiet \
                --json "$tmp/$name-$conns-$round.json" 2>"$tmp/$name-$conns-$round.perf" >/dev/null
        done
    done
done

python3 - "$tmp" "$ROUNDS" "$CONNS" "$REQUESTS" "$CMD" "$SIZE" "${names[@]}" <<'PY'
import json, os, statistics, sys
tmp, rounds, conns, requests, cmd, size, *names = sys.argv[1:]
print(f"per request to the server (+ workers): {cmd} size {size}, {requests} requests, "
      f"medians of {rounds} rounds; load {os.getloadavg()[0]:.2f}")
print(f"{'conns':>5} {'server':>12} {'syscalls':>9} {'ctx sw':>7} {'cpu us':>7} {'req/s':>9}")
for c in conns.split():
    for name in names:
        rows = []
        for r in range(1, int(rounds) + 1):
            counts = {}
            for line in open(f"{tmp}/{name}-{c}-{r}.perf"):
                f = line.split(",")
                if len(f) > 2 and f[0].replace(".", "").isdigit():
                    counts[f[2]] = float(f[0])
            doc = json.load(open(f"{tmp}/{name}-{c}-{r}.json"))
            n = doc["requests"]["sent"]
            rows.append((counts.get("raw_syscalls:sys_enter", 0) / n,
                         counts.get("context-switches", 0) / n,
                         counts.get("task-clock", 0) * 1e3 / n,  # msec -> us
                         doc["throughput_rps"]))
        med = [statistics.median(x[i] for x in rows) for i in range(4)]
        print(f"{c:>5} {name:>12} {med[0]:>9.2f} {med[1]:>7.2f} {med[2]:>7.2f} {med[3]:>9.0f}")
PY
