#!/usr/bin/env bash
# The main job: an unmodified, statically linked web server (busybox httpd) runs under
# `joyride run`, its sockets on joyride-stackd's user-space TCP/IP stack, and the host's curl
# downloads a file from it through the stack's TAP — checked by SHA-256.
#
# Everything happens in a network namespace this script creates (stackd's TAP jr0 and its
# addresses 10.77.0.0/24 live only there) and is removed on exit, even on failure.
# Options: --size BYTES (default 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
size=$((64 * 1024 * 1024))
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    *) echo "usage: $0 [--size BYTES]" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
cargo build --release --locked -p stackd -p supervisor
bin=$PWD/target/release

ns="jrdemo$$"
work=$(mktemp -d /tmp/jrdemo.XXXXXX)
cleanup() {
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
nsx() { ip netns exec "$ns" "$@"; }

ip netns add "$ns"
nsx ip link set lo up
nsx "$bin/joyride-stackd" --control "$work/stackd.sock" >"$work/stackd.log" 2>&1 &
for _ in $(seq 100); do [ -S "$work/stackd.sock" ] && break; sleep 0.1; done
[ -S "$work/stackd.sock" ] || { cat "$work/stackd.log"; echo "stackd did not start" >&2; exit 1; }

mkdir "$work/www"
head -c "$size" /dev/urandom >"$work/www/file"
want=$(sha256sum <"$work/www/file" | cut -d' ' -f1)
echo "joyride run --stackd $work/stackd.sock -- busybox httpd -f -p 8080 -h $work/www"
nsx "$bin/joyride" run --stackd "$work/stackd.sock" -- busybox httpd -f -p 8080 -h "$work/www" \
  >"$work/httpd.log" 2>&1 &
for _ in $(seq 100); do
  nsx timeout 1 bash -c 'exec 3<>/dev/tcp/10.77.0.2/8080' 2>/dev/null && break
  sleep 0.1
done

start=$(date +%s.%N)
got=$(nsx curl -sf --max-time 120 http://10.77.0.2:8080/file | sha256sum | cut -d' ' -f1)
end=$(date +%s.%N)
echo "joyride ss (the daemon's sockets while httpd listens):"
nsx "$bin/joyride" ss --stackd "$work/stackd.sock"
if [ "$got" != "$want" ]; then
  echo "FAIL: SHA-256 of the download $got differs from the file's $want" >&2
  exit 1
fi
seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
echo "curl fetched $size bytes from busybox httpd under joyride in ${seconds}s; SHA-256 $got matches"
