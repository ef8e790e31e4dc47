#!/usr/bin/env bash
# Same-host connections: unmodified iperf3, sockperf, redis and nginx+wrk, server and client on
# one machine, in five modes measured in one run:
#   kernel  both on kernel loopback (127.0.0.1), no joyride;
#   fast    both under `joyride run` (fast-path library preloaded): the local path, spliced
#           carriers and joined rings;
#   trap    both under `joyride run --no-fast-path`: the local path by carrier splicing alone;
#   tap     the server under `joyride run` (fast path), the client a kernel program reaching
#           10.77.0.2 over the TAP: joyride serving a kernel peer through fbsd-tcp, the
#           server's payload through shared-memory rings;
#   taptrap the same with the server under `joyride run --no-fast-path`: its payload through
#           the carrier (the trap path's data plane), which shows what the rings save.
# For each workload the modes take turns run by run (the order rotating), so that the noise of
# a shared machine falls on all of them alike; the table at the end gives, per mode, the median
# over runs with min–max and the ratio of the median to the kernel's.
# CPU per message (sockperf, redis) is user+system time of every process of the run divided by
# the round trips or requests it handled: the client tree from its rusage (/usr/bin/time, so the
# supervisor of a joyride client counts), everything that lives in the namespace (the server,
# its supervisor, joyride-stackd) from /proc/PID/stat before and after the client ran.
# Needs root: it makes one network namespace with joyride-stackd on a TAP (jr0, 10.77.0.2/24,
# kernel side 10.77.0.1/24, all inside the namespace) and removes it, and every process it
# started, on exit.
#   scripts/bench-local.sh [--runs N] [--quick]     (default 5 runs; --quick: 1 run, shorter)
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
RUNS=5
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs)
            [ $# -ge 2 ] || { usage >&2; exit 2; }
            RUNS=$2
            shift 2
            ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --quick) QUICK=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench-local.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
if [ "$QUICK" -eq 1 ]; then RUNS=1; fi
# Ports are base + 100 * mode + run: a fresh port per server spares TIME_WAIT worries.
case "$RUNS" in
    '' | *[!0-9]*) echo "bench-local.sh: --runs takes a number from 1 to 99" >&2; exit 2 ;;
esac
if [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 99 ]; then
    echo "bench-local.sh: --runs takes a number from 1 to 99" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bench-local.sh: needs root (a network namespace with a TAP, seccomp listeners)" >&2
    exit 1
fi
for tool in iperf3 sockperf redis-server redis-benchmark nginx wrk python3 ip ss /usr/bin/time; do
    command -v "$tool" >/dev/null || {
        echo "bench-local.sh: missing $tool (acceptance/lib/install-deps.sh lists the packages)" >&2
        exit 1
    }
done

if [ "$QUICK" -eq 1 ]; then
    IPERF_SECS=2 SOCKPERF_SECS=2 REDIS_REQUESTS=20000 WRK_SECS=2
else
    IPERF_SECS=5 SOCKPERF_SECS=4 REDIS_REQUESTS=100000 WRK_SECS=4
fi

cargo build --release --locked --workspace || exit 1
BIN="$(pwd)/target/release"
for b in joyride joyride-stackd libjoyride_fastpath.so; do
    [ -e "$BIN/$b" ] || { echo "bench-local.sh: $BIN/$b is missing after the build" >&2; exit 1; }
done

NS="jrbench$$"
WORK=$(mktemp -d /tmp/jrbench.XXXXXX)
SOCK="$WORK/stackd.sock"
RESULTS="$WORK/results.tsv"
STACKD=""
SERVER=""
TICK=$(getconf CLK_TCK)
: >"$RESULTS"

cleanup() {
    local ps sig
    # Every process this script started runs inside the namespace: end those by pid, then
    # remove the namespace.
    for sig in TERM KILL; do
        ps=$(ip netns pids "$NS" 2>/dev/null)
        if [ -n "$ps" ]; then
            # shellcheck disable=SC2086
            kill -"$sig" $ps 2>/dev/null
            sleep 0.5
        fi
    done
    ip netns del "$NS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

die() {
    echo "bench-local.sh: $*" >&2
    exit 1
}
nsx() { ip netns exec "$NS" "$@"; }

# --- the namespace and joyride-stackd --------------------------------------------------------
ip netns add "$NS" || die "cannot create the network namespace $NS"
nsx ip link set lo up || die "cannot bring lo up in $NS"
ip netns exec "$NS" "$BIN/joyride-stackd" --backend tap --iface jr0 --addr 10.77.0.2/24 \
    --host-addr 10.77.0.1/24 --control "$SOCK" >"$WORK/stackd.log" 2>&1 &
STACKD=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { tail -5 "$WORK/stackd.log" >&2; die "stackd's control socket never appeared"; }
for _ in $(seq 50); do nsx ip -4 addr show jr0 2>/dev/null | grep -q 10.77.0.1/ && break; sleep 0.1; done
nsx ip -4 addr show jr0 2>/dev/null | grep -q 10.77.0.1/ || die "jr0 never got 10.77.0.1"
# The kernel side must not own stackd's address, or "joyride" traffic would be the kernel's.
if nsx ip -4 addr show | grep -q "inet 10.77.0.2/"; then
    die "10.77.0.2 is a kernel address in $NS: joyride would not be in the path"
fi
chmod 755 "$WORK" # nginx's workers (nobody) read the page from here
mkdir -p "$WORK/www" "$WORK/ng"
head -c 768 /dev/urandom | base64 -w 0 | head -c 1024 >"$WORK/www/index.html"

# --- one run -------------------------------------------------------------------------------------
MODES=(kernel fast trap tap taptrap)

# The prefix that runs a server (server_prefix) or a client (client_prefix) in MODE.
server_prefix() {
    case "$1" in
        kernel) PREFIX=() ;;
        fast | tap) PREFIX=("$BIN/joyride" run --stackd "$SOCK" --) ;;
        trap | taptrap) PREFIX=("$BIN/joyride" run --stackd "$SOCK" --no-fast-path --) ;;
    esac
}
client_prefix() {
    case "$1" in
        kernel | tap | taptrap) PREFIX=() ;;
        fast) PREFIX=("$BIN/joyride" run --stackd "$SOCK" --) ;;
        trap) PREFIX=("$BIN/joyride" run --stackd "$SOCK" --no-fast-path --) ;;
    esac
}
# Where a client of MODE connects, and what a server of MODE binds.
connect_addr() { if [ "$1" = kernel ]; then echo 127.0.0.1; else echo 10.77.0.2; fi; }
bind_addr() { if [ "$1" = kernel ]; then echo 127.0.0.1; else echo 0.0.0.0; fi; }

# Is something listening on PORT for MODE? Kernel sockets show in ss; joyride's listeners are
# stackd's (their carriers are unix sockets), so ask it. Neither probe connects: a probe
# connection would be taken for a client (iperf3 -1 would then serve nobody).
listening() { # mode port
    if [ "$1" = kernel ]; then
        [ -n "$(nsx ss -Hltn "sport = :$2" 2>/dev/null)" ]
    else
        nsx "$BIN/joyride" ss --stackd "$SOCK" 2>/dev/null | grep -q "LISTEN .*:$2 "
    fi
}

# Starts the server (in the background, in this shell, so that it can be waited for) and waits,
# bounded, for its listener. Sets SERVER.
start_server() { # mode port log cmd...
    local mode=$1 port=$2 log=$3
    shift 3
    server_prefix "$mode"
    ip netns exec "$NS" "${PREFIX[@]}" "$@" >"$log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do
        listening "$mode" "$port" && return 0
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    echo "  server of $mode did not listen on $port: $(tail -3 "$log" | tr '\n' ' ')" >&2
    return 1
}

descendants() { # pid: its process tree below it
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child"
        descendants "$child"
    done
}

# Ends the server: SIGTERM (joyride forwards it to its program), up to 5 s to exit, then SIGKILL
# for whatever of its tree is left.
stop_server() {
    [ -n "$SERVER" ] || return 0
    local tree p
    tree=$(descendants "$SERVER")
    kill -TERM "$SERVER" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER" 2>/dev/null
    for p in $tree; do
        if [ -d "/proc/$p" ] && ip netns identify "$p" 2>/dev/null | grep -qx "$NS"; then
            kill -KILL "$p" 2>/dev/null
        fi
    done
    wait "$SERVER" 2>/dev/null
    SERVER=""
}

# CPU ticks (utime, stime and those of reaped children) of every process in the namespace, as
# "pid ticks" lines.
ns_ticks() {
    local p
    for p in $(ip netns pids "$NS" 2>/dev/null); do
        # Fields after the ")" that ends the command name: utime is the 12th, then stime,
        # cutime, cstime.
        sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk -v p="$p" '{print p, $12 + $13 + $14 + $15}'
    done
}

# Runs the client, bounded by LIMIT seconds, with its standard output in OUT and its standard
# error in OUT.err (iperf3 warns there, which would spoil its JSON); afterwards CLIENT_CPU is the
# CPU seconds of the whole run (the client tree and every process of the namespace that lived
# through it). Returns the client's status.
run_client() { # mode limit out cmd...
    local mode=$1 limit=$2 out=$3 status before after ns_cpu client_cpu
    shift 3
    client_prefix "$mode"
    before=$(ns_ticks)
    /usr/bin/time -o "$WORK/time" -f '%U %S' \
        timeout -k 5 "$limit" ip netns exec "$NS" "${PREFIX[@]}" "$@" >"$out" 2>"$out.err"
    status=$?
    after=$(ns_ticks)
    ns_cpu=$(awk -v tick="$TICK" 'NR == FNR { b[$1] = $2; next } ($1 in b) { s += $2 - b[$1] }
        END { printf "%.4f", s / tick }' <(echo "$before") <(echo "$after"))
    client_cpu=$(awk '{ printf "%.4f", $1 + $2 }' <(tail -1 "$WORK/time"))
    CLIENT_CPU=$(python3 -c "print(round($ns_cpu + ${client_cpu:-0}, 4))")
    return "$status"
}

record() { # workload mode run value
    printf '%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}
note() { echo "  $*" >&2; }

# The mode order of run R: rotated by one each run.
modes_of_run() {
    local r=$1 i
    for i in 0 1 2 3 4; do echo "${MODES[$(((i + r) % 5))]}"; done
}
mode_index() { case "$1" in kernel) echo 0 ;; fast) echo 1 ;; trap) echo 2 ;; tap) echo 3 ;; taptrap) echo 4 ;; esac; }

gbps() {
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,3))' 2>/dev/null
}

# --- the workloads ---------------------------------------------------------------------------------
iperf_run() { # name write-size-args base mode run
    local name=$1 base=$3 mode=$4 run=$5 port g
    # shellcheck disable=SC2206
    local size=($2)
    port=$((base + 100 * $(mode_index "$mode") + run))
    start_server "$mode" "$port" "$WORK/srv.log" iperf3 -s -1 -B "$(bind_addr "$mode")" -p "$port" ||
        { stop_server; return; }
    if run_client "$mode" $((IPERF_SECS + 30)) "$WORK/out" \
        iperf3 -c "$(connect_addr "$mode")" -p "$port" -t "$IPERF_SECS" "${size[@]}" -J &&
        g=$(gbps <"$WORK/out") && [ -n "$g" ]; then
        record "$name" "$mode" "$run" "$g"
        note "$name run $run $mode: $g Gbit/s"
    else
        note "$name run $run $mode: FAILED ($(grep -a -m1 '"error"' "$WORK/out" | tr -s ' \t')$(tail -2 "$WORK/out.err" | tr '\n' ' '))"
    fi
    stop_server
}

sockperf_run() { # mode run
    local mode=$1 run=$2 port p50 p99 msgs
    port=$((22000 + 100 * $(mode_index "$mode") + run))
    start_server "$mode" "$port" "$WORK/srv.log" sockperf sr --tcp -i "$(bind_addr "$mode")" -p "$port" ||
        { stop_server; return; }
    run_client "$mode" $((SOCKPERF_SECS + 30)) "$WORK/out" \
        sockperf pp --tcp -i "$(connect_addr "$mode")" -p "$port" -t "$SOCKPERF_SECS" -m 64 --mps 500000
    cat "$WORK/out.err" >>"$WORK/out"
    p50=$(grep -a "percentile 50.000" "$WORK/out" | tail -1 | awk '{print $NF}')
    p99=$(grep -a "percentile 99.000" "$WORK/out" | tail -1 | awk '{print $NF}')
    # CPU covers the whole client run, warm-up included: count every round trip of it.
    msgs=$(grep -a "\[Total Run\]" "$WORK/out" | tail -1 | sed -n 's/.*ReceivedMessages=\([0-9]*\).*/\1/p')
    if [ -n "$p50" ] && [ -n "$p99" ] && [ "${msgs:-0}" -gt 0 ]; then
        record sockperf-p50 "$mode" "$run" "$p50"
        record sockperf-p99 "$mode" "$run" "$p99"
        record sockperf-cpu "$mode" "$run" "$(python3 -c "print(round($CLIENT_CPU * 1e6 / $msgs, 3))")"
        note "sockperf run $run $mode: p50 $p50 us, p99 $p99 us, $msgs round trips, CPU $CLIENT_CPU s"
    else
        note "sockperf run $run $mode: FAILED ($(tail -2 "$WORK/out" | tr '\n' ' '))"
    fi
    stop_server
}

redis_run() { # mode run
    local mode=$1 run=$2 port rps
    port=$((23000 + 100 * $(mode_index "$mode") + run))
    start_server "$mode" "$port" "$WORK/srv.log" redis-server --port "$port" --bind "$(bind_addr "$mode")" \
        --save '' --appendonly no --protected-mode no || { stop_server; return; }
    run_client "$mode" 120 "$WORK/out" \
        redis-benchmark -h "$(connect_addr "$mode")" -p "$port" -c 50 -n "$REDIS_REQUESTS" -t set,get --csv
    rps=$(tr -d '"' <"$WORK/out" | awk -F, '/^(SET|GET),/ { s += $2; n++ } END { if (n == 2) print s / 2 }')
    if [ -n "$rps" ]; then
        record redis-rps "$mode" "$run" "$rps"
        record redis-cpu "$mode" "$run" "$(python3 -c "print(round($CLIENT_CPU * 1e6 / (2 * $REDIS_REQUESTS), 3))")"
        note "redis run $run $mode: $rps req/s, CPU $CLIENT_CPU s"
    else
        note "redis run $run $mode: FAILED ($(tail -2 "$WORK/out" "$WORK/out.err" | tr '\n' ' '))"
    fi
    stop_server
}

nginx_conf() { # listen
    cat <<C
daemon off; worker_processes 1; error_log $WORK/ng/err.log; pid $WORK/ng/nginx.pid;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $WORK/ng; proxy_temp_path $WORK/ng;
  fastcgi_temp_path $WORK/ng; uwsgi_temp_path $WORK/ng; scgi_temp_path $WORK/ng;
  server { listen $1; root $WORK/www; } }
C
}

nginx_run() { # mode run
    local mode=$1 run=$2 port rps
    port=$((24000 + 100 * $(mode_index "$mode") + run))
    nginx_conf "$(bind_addr "$mode"):$port" >"$WORK/nginx.conf"
    start_server "$mode" "$port" "$WORK/srv.log" nginx -c "$WORK/nginx.conf" || { stop_server; return; }
    run_client "$mode" $((WRK_SECS + 30)) "$WORK/out" \
        wrk -t1 -c32 -d"${WRK_SECS}s" "http://$(connect_addr "$mode"):$port/"
    rps=$(awk '/Requests\/sec/ { print $2 }' "$WORK/out")
    if grep -q "Non-2xx" "$WORK/out"; then
        note "nginx run $run $mode: FAILED (non-2xx answers)"
    elif [ -n "$rps" ]; then
        record nginx-rps "$mode" "$run" "$rps"
        note "nginx run $run $mode: $rps req/s"
    else
        note "nginx run $run $mode: FAILED ($(tail -2 "$WORK/out" "$WORK/out.err" | tr '\n' ' '))"
    fi
    stop_server
}

START=$(date +%s)
echo "bench-local.sh: $RUNS run(s) per mode; progress on stderr" >&2
for run in $(seq "$RUNS"); do
    for mode in $(modes_of_run "$run"); do iperf_run iperf3-128K "" 20000 "$mode" "$run"; done
done
for run in $(seq "$RUNS"); do
    for mode in $(modes_of_run "$run"); do iperf_run iperf3-1K "-l 1K" 21000 "$mode" "$run"; done
done
for run in $(seq "$RUNS"); do
    for mode in $(modes_of_run "$run"); do sockperf_run "$mode" "$run"; done
done
for run in $(seq "$RUNS"); do
    for mode in $(modes_of_run "$run"); do redis_run "$mode" "$run"; done
done
for run in $(seq "$RUNS"); do
    for mode in $(modes_of_run "$run"); do nginx_run "$mode" "$run"; done
done
echo "bench-local.sh: measured in $(($(date +%s) - START)) s" >&2

# --- the table -------------------------------------------------------------------------------------
python3 - "$RESULTS" "$RUNS" "$IPERF_SECS" "$SOCKPERF_SECS" "$REDIS_REQUESTS" "$WRK_SECS" <<'PY'
import statistics
import sys

path, runs, iperf_s, sockperf_s, redis_n, wrk_s = sys.argv[1:]
values = {}
with open(path) as f:
    for line in f:
        workload, mode, _run, value = line.split("\t")
        values.setdefault((workload, mode), []).append(float(value))

rows = [
    ("iperf3-128K", f"iperf3, 1 stream, 128 KiB writes, {iperf_s} s: Gbit/s ↑"),
    ("iperf3-1K", f"iperf3, 1 stream, 1 KiB writes, {iperf_s} s: Gbit/s ↑"),
    ("sockperf-p50", f"sockperf TCP ping-pong 64 B, {sockperf_s} s: p50 µs ↓"),
    ("sockperf-p99", "sockperf: p99 µs ↓"),
    ("sockperf-cpu", "sockperf: CPU µs per round trip ↓"),
    ("redis-rps", f"redis-benchmark SET/GET, 50 clients, {redis_n} each: req/s ↑"),
    ("redis-cpu", "redis: CPU µs per request ↓"),
    ("nginx-rps", f"nginx + wrk, 1 KiB page, 32 connections, {wrk_s} s: req/s ↑"),
]
modes = ["kernel", "fast", "trap", "tap", "taptrap"]


def fmt(x):
    if x >= 10000:
        return f"{x / 1000:.1f}k"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


print()
print(f"Median of {runs} run(s) (min–max), and the median's ratio to the kernel's median")
print("(↑ higher is better, ↓ lower is better).")
print()
print("| workload | " + " | ".join(modes) + " |")
print("|---|" + "---|" * len(modes))
for key, label in rows:
    kernel = values.get((key, "kernel"))
    kernel_median = statistics.median(kernel) if kernel else None
    cells = []
    for mode in modes:
        v = values.get((key, mode))
        if not v:
            cells.append("failed")
            continue
        median = statistics.median(v)
        cell = fmt(median)
        if len(v) > 1:
            cell += f" ({fmt(min(v))}–{fmt(max(v))})"
        if len(v) < int(runs):
            cell += f" [{len(v)} of {runs} runs]"
        if mode != "kernel" and kernel_median:
            cell += f", {median / kernel_median:.2f}×"
        cells.append(cell)
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
