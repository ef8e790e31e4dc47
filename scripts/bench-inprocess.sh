#!/usr/bin/env bash
# The cost of an intercepted call that needs no stackd round trip (getsockname on a connected
# socket), in one run: the kernel's own call on loopback, joyride's fast path (answered inside
# the program by the preloaded library after the first call) and the trap path (each call a
# seccomp notification to the supervisor). Medians of RUNS runs (default 5). Needs root and gcc;
# makes a network namespace with joyride-stackd on a TAP and removes it after.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
[ "$(id -u)" -eq 0 ] || { echo "bench-inprocess.sh: needs root" >&2; exit 1; }
cargo build --release --locked -p stackd -p supervisor -p fast-path
BIN=$PWD/target/release
WORK=$(mktemp -d /tmp/jr-inproc.XXXXXX)
NS=jrinproc$$
cleanup() {
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
gcc -O2 -o "$WORK/name_cost" fast-path/benches/name_cost.c
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" "$BIN/joyride-stackd" --control "$WORK/stackd.sock" >"$WORK/stackd.log" 2>&1 &
for _ in $(seq 100); do [ -S "$WORK/stackd.sock" ] && break; sleep 0.1; done
run() { # mode -> ns per call
    case $1 in
        kernel) ip netns exec "$NS" "$WORK/name_cost" 127.0.0.1 7400 "$2" ;;
        fast) ip netns exec "$NS" "$BIN/joyride" run --stackd "$WORK/stackd.sock" -- "$WORK/name_cost" 10.77.0.2 7401 "$2" ;;
        trap) ip netns exec "$NS" "$BIN/joyride" run --no-fast-path --stackd "$WORK/stackd.sock" -- "$WORK/name_cost" 10.77.0.2 7402 "$2" ;;
    esac | sed -n 's/^getsockname_ns=\([0-9.]*\).*/\1/p'
}
declare -A results
for _ in $(seq "$RUNS"); do
    results[kernel]+="$(run kernel 2000000) "
    results[fast]+="$(run fast 2000000) "
    results[trap]+="$(run trap 20000) "
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "| getsockname on a connected socket | ns per call, median of $RUNS | runs |"
echo "|---|---|---|"
for mode in kernel fast trap; do
    echo "| $mode | $(echo "${results[$mode]}" | median) | ${results[$mode]}|"
done
