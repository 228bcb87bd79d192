# Sourced by the A/B scripts (stage-timing-overhead.sh, tls-vs-plaintext.sh, io-models.sh): two servers
# of one build running at once, client runs alternated between them; and for `start`
# alone by openloop-capacity.sh. Needs BIN set.
# Sets up $tmp (removed on exit) and kills every server started here on exit.

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME ARGS...: starts `$BIN server --port 0 ARGS...` and sets $port once its
# readiness line is out. Not in a subshell, so that `pids` keeps its pid for the cleanup.
start() {
    local name=$1; shift
    "$BIN" server --port 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pids+=($!)
    for _ in $(seq 200); do
        if grep -q '^threadcenter listening' "$tmp/$name.out"; then
            port=$(sed -n 's/.*addr=[^ ]*:\([0-9]*\).*/\1/p' "$tmp/$name.out")
            return
        fi
        sleep 0.05
    done
    echo "server $name did not start: $(cat "$tmp/$name.err")" >&2
    exit 1
}

# alternate REP A B: prints "A B" for odd repetitions and "B A" for even ones, so that
# neither side always follows the other.
alternate() {
    if [ $(($1 % 2)) -eq 1 ]; then echo "$2 $3"; else echo "$3 $2"; fi
}
