#!/usr/bin/env bash
# Criterion micro-benchmarks of the hot paths (benches/hot_paths.rs: frame codec, request
# parse and response encode, histogram record and merge, compute per step), saved as a
# named baseline and compared against it later.
#
#   scripts/bench-baseline.sh save NAME [FILTER]     # run, and keep the results as NAME
#   scripts/bench-baseline.sh compare NAME [FILTER]  # run, and compare with NAME
#   scripts/bench-baseline.sh list                   # the baselines saved so far
#
# e.g. on main: `scripts/bench-baseline.sh save main`; on a branch:
# `scripts/bench-baseline.sh compare main frame` (FILTER is criterion's: a substring of
# the benchmark names). They are these cargo commands:
#
#   cargo bench --bench hot_paths -- --save-baseline NAME [FILTER]
#   cargo bench --bench hot_paths -- --baseline NAME [FILTER]
#
# Criterion prints each benchmark's change with its confidence interval and p-value, and
# writes HTML under target/criterion/report/. It never fails on a slowdown: the gate that
# decides is scripts/ci-bench.sh (docs/compare.md). Baselines live in target/criterion/,
# so both commands must run in the same checkout (or with the same CARGO_TARGET_DIR), on
# the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
[ $# -ge 1 ] || usage 2
case $1 in
    save | compare)
        [ $# -ge 2 ] || usage 2
        flag=--save-baseline
        [ "$1" = compare ] && flag=--baseline
        name=$2
        shift 2
        exec cargo bench --bench hot_paths -- "$flag" "$name" "$@"
        ;;
    list)
        dir=${CARGO_TARGET_DIR:-target}/criterion
        [ -d "$dir" ] || { echo "no criterion results in $dir yet"; exit 0; }
        # target/criterion/GROUP/BENCH/NAME/benchmark.json; `new` is the last run and
        # `base` criterion's own "previous run".
        echo "benchmarks  baseline"
        find "$dir" -mindepth 4 -maxdepth 4 -name benchmark.json -printf '%h\n' |
            awk -F/ '{print $NF}' | grep -vx new | sort | uniq -c
        ;;
    -h | --help) usage 0 ;;
    *) usage 2 ;;
esac
