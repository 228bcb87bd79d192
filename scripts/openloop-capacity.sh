#!/usr/bin/env bash
# How fast can the open-loop client pace against `ping`, next to the closed loop's
# maximum? Starts one server (1 worker: ping never reaches the pool), then runs, for
# REPS rounds, the closed loop at each concurrency and the open loop at each rate, so
# every setting sees the same machine noise, and prints one line per run plus the
# medians. Needs python3 to read the client's JSON documents.
#
#   scripts/openloop-capacity.sh [BIN] ; env: REPS=3 SECS=3 RATES="..." CONNS=2 PIPELINE=64
set -euo pipefail
BIN=${1:-target/release/threadcenter}
REPS=${REPS:-3}
SECS=${SECS:-3}
RATES=${RATES:-"50000 100000 150000 200000 250000"}
CONNS=${CONNS:-2}
PIPELINE=${PIPELINE:-64}
# shellcheck source=scripts/lib/ab.sh
. "$(dirname "$0")/lib/ab.sh"
start server --workers 1

n=0
for rep in $(seq "$REPS"); do
  for c in 1 2 4; do
    n=$((n + 1))
    "$BIN" client --port "$port" -c "$c" --cmd ping -d "${SECS}s" -q --json "$tmp/$n.json" || true
    echo "closed c=$c $tmp/$n.json" >>"$tmp/runs"
  done
  for r in $RATES; do
    n=$((n + 1))
    "$BIN" client --port "$port" -c "$CONNS" --pipeline "$PIPELINE" --rate "$r" --cmd ping \
      -d "${SECS}s" -q --json "$tmp/$n.json" 2>/dev/null || true
    echo "open rate=$r $tmp/$n.json" >>"$tmp/runs"
  done
done

python3 - "$tmp/runs" <<'PY'
import json, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    model, setting, path = line.split()
    d = json.load(open(path))
    o = d.get("open_loop")
    row = {
        "ok/s": d["throughput_rps"],
        "cores": d["client_cpu"]["cores_used"],
        "p99 us": d["latency_us"]["p99"],
    }
    if o:
        row.update({
            "sent/s": o["sent_rps"],
            "late p50 us": o["lateness_us"]["p50"],
            "late p99 us": o["lateness_us"]["p99"],
            "own late %": 100.0 * o["late_own"] / max(o["sent"], 1),
            "busy max": o["busy_max"],
            "uncorr p99 us": o["uncorrected_latency_us"]["p99"],
            "warnings": len(d["warnings"]),
        })
    rows[(model, setting)].append(row)
    print(model, setting, " ".join(f"{k}={v:.4g}" for k, v in row.items()))
print("\nmedians over", len(next(iter(rows.values()))), "rounds:")
for (model, setting), runs in rows.items():
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{model:6} {setting:12}", " ".join(f"{k}={v:.4g}" for k, v in med.items()))
PY
