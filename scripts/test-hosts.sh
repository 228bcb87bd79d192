#!/usr/bin/env bash
# Test hosts on one machine for multi-host runs (docs/multi-host.md): three network
# namespaces on a bridge, each running Debian's sshd with a throwaway host key and
# authorised key, so `threadcenter run` reaches them over SSH as it would real machines.
#
#   scripts/test-hosts.sh up          build the hosts (root; installs openssh-server if missing)
#   scripts/test-hosts.sh experiment  print an experiment file for them (server on srv,
#                                     the load on lg1 and lg2, srv pinned to core 0 and
#                                     the load hosts to core 1)
#   scripts/test-hosts.sh down        remove everything `up` made (also after a failed up)
#
# Names: namespaces tch-srv, tch-lg1, tch-lg2; bridge tch-br0 (10.231.0.1/24 on the
# machine's side); hosts 10.231.0.2, .3, .4; sshd on port 2222 in each. Keys, sshd's
# configuration and pid files live in $TCH_STATE (default /tmp/threadcenter-test-hosts);
# nothing in ~/.ssh is touched. The only rule added outside the namespaces is
# `iptables -I FORWARD -i tch-br0 -o tch-br0 -j ACCEPT` (dockerd's FORWARD policy drops
# bridged traffic otherwise), and `down` deletes exactly that rule.
set -euo pipefail

STATE=${TCH_STATE:-/tmp/threadcenter-test-hosts}
BRIDGE=tch-br0
SUBNET_PREFIX=10.231.0
PORT=2222
HOSTS=(srv lg1 lg2)
# The host part of each host's address, in the order of HOSTS.
OCTETS=(2 3 4)
FORWARD_RULE=(FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT)

die() {
    echo "test-hosts: $*" >&2
    exit 1
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, a bridge, sshd); try sudo $0 $1"
}

sshd_path() {
    if [ -x /usr/sbin/sshd ]; then
        echo /usr/sbin/sshd
    else
        command -v sshd || true
    fi
}

down() {
    # Best effort, step by step: whatever a failed `up` left is removed too.
    set +e
    for h in "${HOSTS[@]}"; do
        local pidfile="$STATE/sshd-$h.pid"
        if [ -f "$pidfile" ]; then
            local pid
            pid=$(cat "$pidfile")
            # Only the sshd this script started: its pid file, and its command line.
            if [ -n "$pid" ] && grep -q "$STATE/sshd-$h.conf" "/proc/$pid/cmdline" 2>/dev/null; then
                kill "$pid" 2>/dev/null
            fi
        fi
        if ip netns list | grep -qw "tch-$h"; then
            # Every process still in the namespace (sessions, what they started) goes.
            for pid in $(ip netns pids "tch-$h" 2>/dev/null); do
                kill -KILL "$pid" 2>/dev/null
            done
            ip netns del "tch-$h"
        fi
        ip link del "tch-$h-h" 2>/dev/null
    done
    ip link del "$BRIDGE" 2>/dev/null
    while command -v iptables >/dev/null && iptables -C "${FORWARD_RULE[@]}" 2>/dev/null; do
        iptables -D "${FORWARD_RULE[@]}"
    done
    rm -rf "$STATE"
    set -e
}

up() {
    need_root up
    if ip link show "$BRIDGE" >/dev/null 2>&1 || ip netns list | grep -qw tch-srv; then
        die "the test hosts are already up (bridge $BRIDGE exists): run '$0 down' first"
    fi
    if [ -z "$(sshd_path)" ]; then
        echo "test-hosts: installing openssh-server (for sshd)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            --no-install-recommends openssh-server >/dev/null ||
            die "cannot install openssh-server; install it (apt-get install openssh-server) and retry"
    fi
    local sshd
    sshd=$(sshd_path)
    [ -n "$sshd" ] || die "no sshd after installing openssh-server"
    trap 'echo "test-hosts: up failed; removing what it made" >&2; down' ERR
    mkdir -p "$STATE" /run/sshd
    chmod 700 "$STATE"
    ssh-keygen -q -t ed25519 -N '' -C threadcenter-test-hosts -f "$STATE/id"
    ssh-keygen -q -t ed25519 -N '' -C threadcenter-test-host -f "$STATE/host_key"
    cp "$STATE/id.pub" "$STATE/authorized_keys"
    : >"$STATE/known_hosts"

    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET_PREFIX.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # Without iptables there is no dockerd's DROP policy to get past either.
    if command -v iptables >/dev/null; then
        iptables -I "${FORWARD_RULE[@]}"
    fi
    for i in "${!HOSTS[@]}"; do
        local h=${HOSTS[$i]} addr="$SUBNET_PREFIX.${OCTETS[$i]}"
        ip netns add "tch-$h"
        ip link add "tch-$h-h" type veth peer name eth0 netns "tch-$h"
        ip link set "tch-$h-h" master "$BRIDGE" up
        ip -n "tch-$h" addr add "$addr/24" dev eth0
        ip -n "tch-$h" link set eth0 up
        ip -n "tch-$h" link set lo up
        cat >"$STATE/sshd-$h.conf" <<EOF
Port $PORT
ListenAddress $addr
HostKey $STATE/host_key
AuthorizedKeysFile $STATE/authorized_keys
PidFile $STATE/sshd-$h.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 100
MaxStartups 100:30:200
LogLevel ERROR
EOF
        # bash runs ~/.bashrc for every command sshd starts (Debian builds it so). A
        # stock Debian .bashrc returns at once when not interactive; this machine's
        # root's does not (pyenv init: ~0.26 s per ssh step). Each host's sshd sees,
        # in a mount namespace of its own, a .bashrc with that guard first, then the
        # real one, so a test host behaves like a stock host and the machine's files
        # stay as they are.
        local home_rc
        home_rc="$(getent passwd root | cut -d: -f6)/.bashrc"
        if [ -f "$home_rc" ]; then
            { echo 'case $- in *i*) ;; *) return;; esac'; cat "$home_rc"; } >"$STATE/bashrc"
            ip netns exec "tch-$h" unshare -m --propagation private sh -c \
                'mount --bind "$1" "$2" && exec "$3" -f "$4" -E "$5"' sh \
                "$STATE/bashrc" "$home_rc" "$sshd" "$STATE/sshd-$h.conf" "$STATE/sshd-$h.log"
        else
            ip netns exec "tch-$h" "$sshd" -f "$STATE/sshd-$h.conf" -E "$STATE/sshd-$h.log"
        fi
        echo "[$addr]:$PORT $(cut -d' ' -f1,2 "$STATE/host_key.pub")" >>"$STATE/known_hosts"
    done
    # Each sshd answers before `up` returns.
    for i in "${!HOSTS[@]}"; do
        local h=${HOSTS[$i]} addr="$SUBNET_PREFIX.${OCTETS[$i]}" ok=0
        for _ in $(seq 1 100); do
            # shellcheck disable=SC2046 # the options are words
            if ssh $(ssh_options) "root@$addr" true 2>/dev/null; then
                ok=1
                break
            fi
            sleep 0.1
        done
        [ $ok -eq 1 ] || die "sshd on tch-$h ($addr:$PORT) does not answer; see $STATE/sshd-$h.log"
    done
    trap - ERR
    echo "test-hosts: up: ${HOSTS[*]} at $SUBNET_PREFIX.{${OCTETS[*]}}:$PORT; state in $STATE" >&2
}

ssh_options() {
    echo "-p $PORT -i $STATE/id -o IdentitiesOnly=yes -o UserKnownHostsFile=$STATE/known_hosts -o StrictHostKeyChecking=yes -o ConnectTimeout=5"
}

experiment() {
    [ -f "$STATE/id" ] || die "the test hosts are not up: run '$0 up' first"
    local opts='"-p", "'$PORT'", "-i", "'$STATE'/id", "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile='$STATE'/known_hosts", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5"'
    cat <<EOF
# Written by scripts/test-hosts.sh for its namespace hosts: the server on srv (core 0),
# the load on lg1 and lg2 (core 1). docs/multi-host.md explains the keys.
name = "test-hosts"
description = "quick.toml's matrix with the server and the load on separate (namespace) hosts"
repetitions = 1
warmup = "500ms"
duration = "2s"
order = "sequential"

[hosts.srv]
ssh = "root@$SUBNET_PREFIX.${OCTETS[0]}"
ssh_options = [$opts]
cpus = "0"

[hosts.lg1]
ssh = "root@$SUBNET_PREFIX.${OCTETS[1]}"
ssh_options = [$opts]
cpus = "1"

[hosts.lg2]
ssh = "root@$SUBNET_PREFIX.${OCTETS[2]}"
ssh_options = [$opts]
cpus = "1"

[targets.rust]
host = "srv"

[client]
hosts = ["lg1", "lg2"]

[matrix]
workers = [1, 2]
concurrency = [2, 4, 8]
size = [200_000]
EOF
}

case "${1:-}" in
up) up ;;
down)
    need_root down
    down
    echo "test-hosts: down" >&2
    ;;
experiment) experiment ;;
*)
    echo "usage: $0 up|down|experiment   (TCH_STATE=DIR for the keys and sshd files)" >&2
    exit 2
    ;;
esac
