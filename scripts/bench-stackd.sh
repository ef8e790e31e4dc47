#!/usr/bin/env bash
# joyride-stackd against the kernel's TCP: throughput per busy core and round-trip latency, at
# MTU 1500 and 9000 (stackd/benches/stack_vs_kernel.rs says what is measured and how).
# Needs root: it makes network namespaces and veth pairs of its own and removes them after.
# Extra arguments go to the benchmark, e.g. `scripts/bench-stackd.sh --runs 5 --mtu 1500`, or
# `--paths kernel,shm,shm-trap,shm-rings` for the rows of programs under `joyride run`.
# Run it on an otherwise idle machine: busy time of anything else counts against both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "bench-stackd.sh: needs root (network namespaces, veth pairs, packet sockets)" >&2
    exit 1
fi
# The shm-trap and shm-rings paths run their programs under target/release/joyride, with the
# fast-path library beside it: neither is built by `cargo bench -p stackd`.
cargo build --release --locked --workspace
exec cargo bench --locked -p stackd --bench stack_vs_kernel -- "$@"
