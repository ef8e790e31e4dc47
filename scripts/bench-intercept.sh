#!/usr/bin/env bash
# The cost of one call joyride intercepts (getsockname on a stackd socket) against a bare
# seccomp-notify round trip and the native call, in one run (supervisor/benches/intercept_cost.rs
# says what is measured and how). Needs root and gcc: it makes a network namespace with a TAP for
# joyride-stackd and removes it after. Extra arguments go to the benchmark, e.g.
# `scripts/bench-intercept.sh --rounds 11 --calls 20000 --batch 100`.
# On a VM with few CPUs a wake-up that crosses CPUs can cost several times a context switch, so
# the stackd figures jump between two levels from run to run as the scheduler places the
# supervisor and the daemon; `taskset -c 0 scripts/bench-intercept.sh` keeps every process on one
# CPU and gives the steadier, lower level.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "bench-intercept.sh: needs root (network namespaces, a TAP, seccomp listeners)" >&2
    exit 1
fi
# The bench finds joyride-stackd next to joyride in target/release.
cargo build --release --locked -p stackd -p supervisor
exec cargo bench --locked -p supervisor --bench intercept_cost -- "$@"
