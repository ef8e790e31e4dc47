#!/usr/bin/env bash
# The test command: formatting, lints, and every test of the workspace (unit, simulated-link,
# and — as root — the end-to-end tests in network namespaces), then stackd once more with its
# `dpdk` feature (the DPDK backend on net_tap, net_memif and net_af_packet vdevs, no hugepages,
# no NIC). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# The binaries and the fast-path library first: the end-to-end tests run target/debug/joyride,
# joyride-stackd, and the libjoyride_fastpath.so that `joyride run` finds next to joyride (cargo
# test builds the cdylib but does not put it there).
cargo build --workspace --locked
cargo test --workspace --locked
# The programs again on the trap path alone (the run above preloads the fast-path library into
# every dynamic program; the local-path and fast-path tests run both ways by themselves).
JOYRIDE_TEST_NO_FAST_PATH=1 cargo test -p supervisor --locked --test run_programs

# The DPDK backend: its own lints and tests, against the system's libdpdk (install-deps.sh).
cargo clippy -p stackd --features dpdk --all-targets --locked -- -D warnings
cargo test -p stackd --features dpdk --locked
