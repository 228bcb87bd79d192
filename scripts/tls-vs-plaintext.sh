#!/usr/bin/env bash
# TLS against plaintext, side by side: one server build, two servers running at once
# (one plaintext, one with --tls-cert/--tls-key), client runs interleaved so drift in
# the machine hits both alike. Prints the median throughput and latency of each and the
# TLS/plaintext ratios, at each --size.
#
#   scripts/tls-vs-plaintext.sh                 # release build, 3 repetitions of 5 s
#   REPS=5 DURATION=10s SIZES="1 500000" CONCURRENCY=4 WORKERS=2 scripts/tls-vs-plaintext.sh
#
# Needs openssl (for a throwaway CA and certificate) and python3 (for the summary).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/threadcenter}
REPS=${REPS:-3}
DURATION=${DURATION:-5s}
SIZES=${SIZES:-"1 500000"}
CONCURRENCY=${CONCURRENCY:-4}
WORKERS=${WORKERS:-2}

[ -x "$BIN" ] || cargo build --release
# shellcheck source=scripts/lib/ab.sh
. scripts/lib/ab.sh

# A CA and a server certificate for localhost/127.0.0.1 signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=threadcenter throwaway CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$tmp/key.pem" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$tmp/ext.cnf"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 1 -extfile "$tmp/ext.cnf" -out "$tmp/cert.pem" 2>/dev/null

start plain --workers "$WORKERS"
plain_port=$port
start tls --workers "$WORKERS" --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
tls_port=$port

run() { # mode size rep
    local mode=$1 size=$2 rep=$3 args=()
    if [ "$mode" = tls ]; then
        args=(--port "$tls_port" --tls --ca "$tmp/ca.pem")
    else
        args=(--port "$plain_port")
    fi
    "$BIN" client "${args[@]}" --concurrency "$CONCURRENCY" --duration "$DURATION" \
        --warmup 1s --size "$size" --quiet --json "$tmp/$mode-$size-$rep.json"
}
for rep in $(seq "$REPS"); do
    for size in $SIZES; do
        for mode in $(alternate "$rep" plain tls); do run "$mode" "$size" "$rep"; done
    done
done

python3 - "$tmp" "$REPS" "$SIZES" "$CONCURRENCY" "$WORKERS" "$DURATION" <<'PY'
import json, statistics, sys
tmp, reps, sizes, conc, workers, dur = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), *sys.argv[4:]
print(f"TLS vs plaintext: {workers} workers, {conc} client threads, {reps} x {dur} per cell, medians")
print(f"{'size':>8} {'mode':>6} {'req/s':>10} {'p50 us':>9} {'p99 us':>9}")
for size in sizes:
    med = {}
    for mode in ("plain", "tls"):
        docs = [json.load(open(f"{tmp}/{mode}-{size}-{r}.json")) for r in range(1, reps + 1)]
        failed = sum(d["requests"]["failed"] for d in docs)
        m = {
            "rps": statistics.median(d["throughput_rps"] for d in docs),
            "p50": statistics.median(d["latency_us"]["p50"] for d in docs),
            "p99": statistics.median(d["latency_us"]["p99"] for d in docs),
        }
        med[mode] = m
        print(f"{size:>8} {mode:>6} {m['rps']:>10.0f} {m['p50']:>9.1f} {m['p99']:>9.1f}" + (f"  ({failed} failed)" if failed else ""))
    p, t = med["plain"], med["tls"]
    print(f"{size:>8}  ratio TLS/plain: throughput {t['rps']/p['rps']:.3f}, p50 {t['p50']/p['p50']:.3f}, p99 {t['p99']/p['p99']:.3f}")
PY
