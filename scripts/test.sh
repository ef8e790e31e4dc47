#!/usr/bin/env bash
# The test command: formatting, lints, and every test of the workspace (unit, simulated-link,
# and — as root — the end-to-end tests in network namespaces). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
cargo test --workspace --locked
