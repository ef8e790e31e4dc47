#!/usr/bin/env bash
# sockperf ping-pong latency, side by side in one run: the kernel's TCP between two network
# namespaces over a veth pair, and two joyride-stackd instances over the shm wire with sockperf
# (server in epoll, client in blocking calls) under `joyride run` on each, with stackd's
# default --busy-poll and with --busy-poll 0. Rounds alternate; prints each round and the
# medians of sockperf's p50 (half a round trip, as sockperf reports it).
#
#   scripts/bench-sockperf-wire.sh [ROUNDS]     # as root; needs sockperf (apt-get install sockperf)
#
# Everything runs in namespaces this script creates (addresses 10.98.0.0/24 and 10.99.9.0/24
# exist only there), and each round's namespaces, processes and files are removed after it
# (and on exit, failure included).
set -euo pipefail

ROUNDS=${1:-3}
SECONDS_PER_RUN=3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release
TAG=jrsw$$
WORK=$(mktemp -d /tmp/$TAG.XXXXXX)
NAMESPACES=()

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
command -v sockperf >/dev/null || { echo "needs sockperf: apt-get install sockperf" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --locked --workspace --quiet)

cleanup() {
    remove_namespaces
    rm -rf "$WORK"
}
trap cleanup EXIT

netns() {
    ip netns add "$1"
    NAMESPACES+=("$1")
    ip -n "$1" link set lo up
}

# Appends the p50 of one sockperf ping-pong run (its output on stdin), in µs, to FILE ("-" if
# it reported none).
p50_to() {
    local p
    p=$(grep -a "percentile 50.000" | tail -1 | awk '{print $NF}')
    echo "${p:--}" >>"$1"
}

# Kills what runs in the namespaces made so far and removes them.
remove_namespaces() {
    for ns in "${NAMESPACES[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    sleep 0.2
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    NAMESPACES=()
}

wait_for_socket() {
    for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
    echo "no control socket at $1" >&2
    return 1
}

kernel_round() {
    local a=${TAG}ka$1 b=${TAG}kb$1
    netns "$a"; netns "$b"
    ip link add "${TAG}a" type veth peer name "${TAG}b"
    ip link set "${TAG}a" netns "$a"; ip link set "${TAG}b" netns "$b"
    ip -n "$a" addr add 10.98.0.1/24 dev "${TAG}a"; ip -n "$b" addr add 10.98.0.2/24 dev "${TAG}b"
    ip -n "$a" link set "${TAG}a" up; ip -n "$b" link set "${TAG}b" up
    (ip netns exec "$b" sockperf sr --tcp -i 10.98.0.2 -p 11112 >/dev/null 2>&1 &)
    sleep 0.5
    timeout 30 ip netns exec "$a" sockperf pp --tcp -i 10.98.0.2 -p 11112 -t $SECONDS_PER_RUN \
        -m 64 2>&1 | p50_to "$WORK/kernel"
}

# stackd_round NAME RESULT_FILE [STACKD_ARGS...]
stackd_round() {
    local ns=${TAG}s$1 dir=$WORK/s$1 result=$2
    shift 2
    mkdir -p "$dir"
    netns "$ns"
    for side in a b; do
        local addr=10.99.9.1/24
        [ $side = b ] && addr=10.99.9.2/24
        (ip netns exec "$ns" "$BIN/joyride-stackd" --backend shm --iface "$dir/wire" \
            --addr $addr --control "$dir/$side.sock" "$@" >"$dir/$side.log" 2>&1 &)
        wait_for_socket "$dir/$side.sock"
    done
    (ip netns exec "$ns" "$BIN/joyride" run --stackd "$dir/b.sock" -- \
        sockperf sr --tcp -i 10.99.9.2 -p 11112 >/dev/null 2>&1 &)
    sleep 0.5
    timeout 30 ip netns exec "$ns" "$BIN/joyride" run --stackd "$dir/a.sock" -- \
        sockperf pp --tcp -i 10.99.9.2 -p 11112 -t $SECONDS_PER_RUN -m 64 2>&1 | p50_to "$result"
}

median() {
    sort -n | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'
}

: >"$WORK/kernel"; : >"$WORK/stackd"; : >"$WORK/stackd-nopoll"
for round in $(seq "$ROUNDS"); do
    kernel_round "$round"
    remove_namespaces
    stackd_round "$round" "$WORK/stackd"
    remove_namespaces
    stackd_round "n$round" "$WORK/stackd-nopoll" --busy-poll 0
    remove_namespaces
    echo "round $round: sockperf p50 µs: kernel $(tail -1 "$WORK/kernel")," \
        "stackd $(tail -1 "$WORK/stackd"), stackd --busy-poll 0 $(tail -1 "$WORK/stackd-nopoll")"
done
echo "median of $ROUNDS rounds, sockperf p50 µs: kernel $(grep -v - "$WORK/kernel" | median)," \
    "stackd $(grep -v - "$WORK/stackd" | median)," \
    "stackd --busy-poll 0 $(grep -v - "$WORK/stackd-nopoll" | median)"
