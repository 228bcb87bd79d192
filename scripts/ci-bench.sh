#!/usr/bin/env bash
# The CI regression gate: the working tree's server against a baseline commit's, measured
# in one run, interleaved cell by cell, then compared (docs/compare.md).
#
#   scripts/ci-bench.sh [BASE_REF]   # BASE_REF default: the merge-base of HEAD and main
#   scripts/ci-bench.sh --self-test  # the gate's own checks (no baseline build needed)
#
# What it does: builds the working tree (cargo build --release --locked), builds BASE_REF
# in a temporary `git worktree` with a target directory of its own, puts both server
# binaries beside a copy of experiments/ci.toml (targets `base` and `head`), runs it with
# the working tree's runner and client, and applies
# `threadcenter report RUN --baseline-target base --target head`.
#
# Exit status (the comparison's contract):
#   0  no regression          1  a regression
#   2  inconclusive / too noisy to tell
#   3  an error: a build failed, a run failed, bad arguments
# With --self-test: 0 when both checks hold (the planted slowdown is a regression, the A/A
# run is not), 1 when one does not, 3 on an error.
#
# Environment:
#   CI_BENCH_OUT              where runs go (default reports/ci-bench; latest → newest)
#   CI_BENCH_EXPERIMENT       the experiment (default experiments/ci.toml)
#   CI_BENCH_BASE_TARGET_DIR  cargo target dir for the baseline build (default: a
#                             temporary one; set it to a cached path to build faster)
#   CI_BENCH_THRESHOLD        extra --threshold flags for the comparison, e.g. "p99=15%"
set -uo pipefail
cd "$(dirname "$0")/.." || exit 3
root=$PWD
started=$SECONDS

out=${CI_BENCH_OUT:-reports/ci-bench}
experiment=${CI_BENCH_EXPERIMENT:-experiments/ci.toml}
self_test=0
base_ref=""
for arg in "$@"; do
    case $arg in
        --self-test) self_test=1 ;;
        -h | --help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "ci-bench: unknown option $arg" >&2; exit 3 ;;
        *) [ -z "$base_ref" ] || { echo "ci-bench: one BASE_REF only" >&2; exit 3; }
           base_ref=$arg ;;
    esac
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ci-bench.XXXXXX") || exit 3
worktree=""
cleanup() {
    if [ -n "$worktree" ]; then
        git -C "$root" worktree remove --force "$worktree" >/dev/null 2>&1 || true
        git -C "$root" worktree prune >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "ci-bench: $*" >&2; exit 3; }
note() { echo "ci-bench: $*" >&2; }

# The working tree's build runs everything: the runner, the client, and the `head` server.
build_head() {
    note "building the working tree (release)"
    cargo build --release --locked --quiet || fail "the working tree does not build"
    mkdir -p "$tmp/bin" && cp target/release/threadcenter "$tmp/bin/threadcenter" || fail "cannot copy the build"
}

build_base() {
    local ref=$1 commit
    commit=$(git rev-parse --verify --quiet "$ref^{commit}") || fail "unknown BASE_REF $ref"
    note "building the baseline $ref ($commit) in a temporary worktree"
    worktree="$tmp/base-src"
    git worktree add --detach --quiet "$worktree" "$commit" || fail "cannot check out $commit"
    local target=${CI_BENCH_BASE_TARGET_DIR:-$tmp/base-target}
    (cd "$worktree" && CARGO_TARGET_DIR="$target" cargo build --release --locked --quiet) \
        || fail "the baseline $ref does not build"
    mkdir -p "$tmp/targets/base"
    cp "$target/release/threadcenter" "$tmp/targets/base/threadcenter" || fail "cannot copy the baseline build"
}

# Installs target NAME: a copy of the working tree's binary, or with an extra-work
# percentage, a wrapper that plants the test-only slowdown in that server (and in its
# workers, which inherit the environment).
install_head_as() {
    local name=$1 extra=${2:-}
    mkdir -p "$tmp/targets/$name"
    if [ -z "$extra" ]; then
        cp "$tmp/bin/threadcenter" "$tmp/targets/$name/threadcenter"
    else
        printf '#!/bin/sh\nTHREADCENTER_TEST_EXTRA_WORK_PCT=%s exec "%s" "$@"\n' \
            "$extra" "$tmp/bin/threadcenter" > "$tmp/targets/$name/threadcenter"
        chmod +x "$tmp/targets/$name/threadcenter"
    fi
}

# Runs the experiment with the installed targets and compares head with base; prints the
# run directory on stdout (last line) and returns the comparison's exit status.
run_and_compare() {
    local label=$1 dir rc
    cp "$experiment" "$tmp/targets/ci.toml"
    note "$label: running $experiment (base and head interleaved)"
    "$tmp/bin/threadcenter" run "$tmp/targets/ci.toml" --out "$out" > "$tmp/run.out"
    rc=$?
    dir=$(tail -n 1 "$tmp/run.out")
    if [ $rc -eq 1 ]; then
        # Some runs failed. A stalled machine can cost a run now and then (the comparison
        # leaves it out, and says so); more than one in ten means something is broken.
        local done failed
        done=$(sed -n 's/^ *"runs_done": \([0-9]*\).*/\1/p' "$dir/manifest.json")
        failed=$(sed -n 's/^ *"runs_failed": \([0-9]*\).*/\1/p' "$dir/manifest.json")
        sed -n '/## Failed runs/,/## Files/p' "$dir/report.md" | sed '$d' >&2
        if [ $((failed * 10)) -gt "${done:-0}" ]; then
            fail "$label: $failed of $done runs failed; see $dir/report.md"
        fi
        note "$label: $failed of $done runs failed and are left out of the comparison"
    elif [ $rc -ne 0 ]; then
        fail "$label: the run failed (exit $rc); see $dir"
    fi
    # shellcheck disable=SC2086 # CI_BENCH_THRESHOLD holds whole flags
    "$tmp/bin/threadcenter" report "$dir" --baseline-target base --target head \
        $(for t in ${CI_BENCH_THRESHOLD:-}; do printf -- '--threshold %s ' "$t"; done) \
        > "$tmp/compare.out"
    rc=$?
    cat "$tmp/compare.out"
    echo "$dir"
    return $rc
}

elapsed() { echo "$((SECONDS - started)) s"; }

if [ $self_test -eq 1 ]; then
    [ -z "$base_ref" ] || fail "--self-test takes no BASE_REF"
    build_head
    install_head_as base
    install_head_as head
    run_and_compare "A/A (the same build against itself)" > "$tmp/aa.txt"
    aa=$?
    cat "$tmp/aa.txt"
    [ $aa -le 2 ] || fail "A/A: the comparison failed (exit $aa)"
    install_head_as head 30
    run_and_compare "planted slowdown (head does 30% more work per compute)" > "$tmp/planted.txt"
    planted=$?
    cat "$tmp/planted.txt"
    [ $planted -le 2 ] || fail "planted: the comparison failed (exit $planted)"

    verdict() { grep -m1 '^verdict:' "$1" | sed 's/^verdict: //'; }
    echo
    echo "== ci-bench self-test ($(elapsed))"
    echo "A/A:     $(verdict "$tmp/aa.txt")"
    echo "planted: $(verdict "$tmp/planted.txt")"
    ok=1
    if [ $aa -eq 1 ]; then
        echo "FAIL: the A/A run was called a regression"; ok=0
    elif [ $aa -eq 2 ]; then
        echo "note: the A/A run is inconclusive, not a regression: this machine is noisy"
    fi
    if [ $planted -ne 1 ]; then
        echo "FAIL: the planted 30% slowdown was not caught as a regression"; ok=0
    fi
    [ $ok -eq 1 ] && { echo "PASS: the planted slowdown is caught, the A/A run is not"; exit 0; }
    exit 1
fi

if [ -z "$base_ref" ]; then
    main=main
    git rev-parse --verify --quiet main >/dev/null || main=origin/main
    base_ref=$(git merge-base HEAD "$main") || fail "no merge-base with $main: give BASE_REF"
fi
build_head
build_base "$base_ref"
install_head_as head
run_and_compare "working tree against $base_ref" > "$tmp/gate.txt"
rc=$?
cat "$tmp/gate.txt"
echo "ci-bench: exit $rc after $(elapsed)" >&2
exit $rc
