#!/usr/bin/env bash
# Installs what building, running and testing joyride needs on Debian 12 (as root). Idempotent
# and quick when everything is present: it asks apt only for what is missing.
set -euo pipefail

packages=(
  build-essential pkg-config   # cc for crates with C parts
  iproute2 iputils-ping        # namespaces, veth, TAP set-up; ping as a peer in tests
  python3 curl                 # kernel-side peers in the interop and stackd tests
  busybox-static               # a static httpd and wget for the supervisor's tests (the trap
                               # path alone must serve them; build-essential's gcc builds the
                               # tests' static C programs)
  procps                       # ps/pgrep in test clean-up
  tcpdump                      # reads back the pcap files stackd writes, in its tests
  libdpdk-dev libclang-dev     # stackd's `dpdk` feature: DPDK 22.11 (pkg-config finds it) and
                               # libclang for bindgen. Installing them on a fresh Debian 12 may
                               # upgrade systemd/udev, which resets /dev/net/tun's mode: harmless.
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The toolchain is pinned in rust-toolchain.toml (with clippy and rustfmt); rustup installs the
# pinned components on first use if they are missing.
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
rustup component add clippy rustfmt >/dev/null 2>&1 || true
