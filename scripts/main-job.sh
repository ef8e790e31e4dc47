#!/usr/bin/env bash
# The main job: for now the engine's own demo — two fbsd-tcp stacks moving 64 MiB each way
# over a simulated link with 5% loss, reordering, duplication and jitter, in virtual time.
# Arguments are passed to the demo (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo run --release --locked -p fbsd-tcp --example lossy_link -- "$@"
