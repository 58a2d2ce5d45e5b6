#!/usr/bin/env bash
# bench/ingest.sh — ingest throughput and ack latency of payrelayd (SPEC §9).
#
# Starts, all on 127.0.0.1 and all inside one temporary directory:
#   redis-server (no persistence), payrelayd with one epay channel, and nginx
#   answering a static "success" on /notify/ (the ceiling).
# Pre-signs N (>= 200,000) distinct epay callbacks (bench/gen_requests.py), then drives each
# server with wrk for the same duration, the same connections and threads and
# the same Lua script (bench/callbacks.lua) over keep-alive connections:
#   1. nginx, worker_processes 1   (one event loop against one event loop:
#                                    payrelayd is single-threaded)
#   2. payrelayd
#   3. nginx, worker_processes auto (one worker per core)
# and prints requests/s, p50/p99 latency, the ratio payrelayd/nginx and the checks:
#   - every response is 200 with body "success" (no socket errors, no timeouts);
#   - payrelay:events gained exactly one entry per distinct callback sent, and
#     no event id twice.
# A failed check exits 1. The speed targets (payrelayd >= 40 % of nginx with
# one worker; p99 <= 5 ms) are reported PASS/MISS and do not change the exit status.
#
# Usage: bench/ingest.sh [--duration 10s] [--connections 32] [--threads 2]
#                        [--build DIR] [--callbacks N] [--nginx-only] [--keep]
#                        [--idle-wait S]
set -euo pipefail

DURATION=10s
CONNECTIONS=32
THREADS=2
BUILD=build
COUNT=""
NGINX_ONLY=0
KEEP=0
IDLE_WAIT=60
RATIO_TARGET=0.40
P99_TARGET_MS=5

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    cat <<'EOF'
Options:
  --duration D      wrk duration per target (wrk syntax: 10s, 1m; default 10s)
  --connections C   keep-alive connections (default 32)
  --threads T       wrk threads (default 2)
  --build DIR       meson build directory holding src/payrelayd (default build,
                    relative to the repository)
  --callbacks N     distinct signed callbacks to pre-sign (default: 30,000 per
                    second of --duration, at least 200,000: 300,000 for 10s)
  --nginx-only      measure nginx alone (no payrelayd needed)
  --keep            keep the temporary directory (configs, logs, wrk outputs)
  --idle-wait S     before each run, wait up to S seconds (default 60) for the
                    machine to be idle (<= 10 % busy); 0: do not wait
EOF
}

die() { echo "ingest.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
    --duration=*) DURATION=${1#*=}; shift ;;
    --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
    --connections=*) CONNECTIONS=${1#*=}; shift ;;
    --threads) THREADS=${2:?--threads needs a value}; shift 2 ;;
    --threads=*) THREADS=${1#*=}; shift ;;
    --build) BUILD=${2:?--build needs a value}; shift 2 ;;
    --build=*) BUILD=${1#*=}; shift ;;
    --callbacks) COUNT=${2:?--callbacks needs a value}; shift 2 ;;
    --callbacks=*) COUNT=${1#*=}; shift ;;
    --nginx-only) NGINX_ONLY=1; shift ;;
    --keep) KEEP=1; shift ;;
    --idle-wait) IDLE_WAIT=${2:?--idle-wait needs a value}; shift 2 ;;
    --idle-wait=*) IDLE_WAIT=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# Duration in whole seconds (for the timeouts that bound each wrk run).
case "$DURATION" in
*h) DUR_S=$(( ${DURATION%h} * 3600 )) ;;
*m) DUR_S=$(( ${DURATION%m} * 60 )) ;;
*s) DUR_S=${DURATION%s} ;;
*) DUR_S=$DURATION ;;
esac
[[ "$DUR_S" =~ ^[0-9]+$ ]] && [ "$DUR_S" -ge 1 ] && [ "$DUR_S" -le 3600 ] ||
    die "--duration must be 1s..1h, got $DURATION"
[[ "$CONNECTIONS" =~ ^[0-9]+$ ]] && [ "$CONNECTIONS" -ge 1 ] && [ "$CONNECTIONS" -le 10000 ] ||
    die "--connections must be 1..10000"
[[ "$THREADS" =~ ^[0-9]+$ ]] && [ "$THREADS" -ge 1 ] && [ "$THREADS" -le "$CONNECTIONS" ] ||
    die "--threads must be 1..connections"
[[ "$IDLE_WAIT" =~ ^[0-9]+$ ]] || die "--idle-wait must be a number of seconds"
# Enough distinct callbacks that a server at up to 30,000 callbacks/s never
# runs out (no duplicates), and never fewer than 200,000.
if [ -z "$COUNT" ]; then
    COUNT=$((DUR_S * 30000))
    [ "$COUNT" -ge 200000 ] || COUNT=200000
fi
[[ "$COUNT" =~ ^[0-9]+$ ]] && [ "$COUNT" -ge "$THREADS" ] && [ "$COUNT" -le 10000000 ] ||
    die "--callbacks must be threads..10000000"

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=ingest.sh
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
REPO=$(cd "$BENCH_DIR/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
DAEMON="$BUILD/src/payrelayd"
VECTORS="$REPO/../shared/vectors/epay.json"

if [ "$NGINX_ONLY" = 0 ] && [ ! -x "$DAEMON" ]; then
    die "$DAEMON not found: build first (meson setup build && ninja -C build), or use --nginx-only"
fi

# --- tools (Debian packages), installed only when missing -------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v python3 >/dev/null || need+=(python3)
command -v ps >/dev/null || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        die "missing tools; install as root: apt-get install -y ${need[*]}"
    fi
    echo "ingest.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends "${need[@]}" >&2
    # The Debian nginx package starts a system nginx on port 80: not ours to
    # stop, and it does not disturb the loopback ports used here.
fi

# --- temporary directory and cleanup ------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/payrelay-bench.XXXXXX")
REDIS_PID="" DAEMON_PID="" NGINX_PID="" NOTIFY_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$NGINX_PID" nginx
    stop_pid "$DAEMON_PID" payrelayd
    stop_pid "$REDIS_PID" redis-server
    stop_pid "$NOTIFY_PID" "notify listener" 2
    if [ "$KEEP" = 1 ]; then
        echo "ingest.sh: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ------------------------------------------------------------------

cpu_ticks() { # pids...: sum of utime+stime in clock ticks
    local t=0 p f
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }
        t=$((t + $(echo "$f" | awk '{print $12 + $13}')))
    done
    echo "$t"
}

machine_busy_ticks() { # all CPUs: user+nice+system+irq+softirq+steal
    awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

child_ticks() { # CPU time of this shell's reaped children (cutime + cstime)
    local f
    f=$(cat "/proc/$$/stat")
    f=${f##*) }
    echo "$f" | awk '{print $14 + $15}'
}

to_ms() { # wrk duration (527.00us, 1.08ms, 2.00s, 1.00m) -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

CLK_TCK=$(getconf CLK_TCK)
label() {
    case "$1" in
    nginx-1w) echo "nginx (1 worker)" ;;
    nginx-auto) echo "nginx (auto: $(nproc) workers)" ;;
    *) echo "$1" ;;
    esac
}
TARGETS=()
declare -A RPS P50 P99 BAD ERRS SRVCPU SRVDETAIL WRKCPU RESTCPU ISSUED DIST_I DIST_A WRAPS

wait_idle() { # name: waits (up to IDLE_WAIT s) for a quiet machine before a run
    local name=$1 waited=0 b0 b1 t0 t1 busy
    [ "$IDLE_WAIT" -gt 0 ] || return 0
    while :; do
        b0=$(machine_busy_ticks); t0=$(awk '$1 == "cpu" {s = 0; for (i = 2; i <= NF; i++) s += $i; print s; exit}' /proc/stat)
        sleep 1
        b1=$(machine_busy_ticks); t1=$(awk '$1 == "cpu" {s = 0; for (i = 2; i <= NF; i++) s += $i; print s; exit}' /proc/stat)
        busy=$(( (b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1) ))
        [ "$busy" -le 10 ] && return 0
        waited=$((waited + 1))
        if [ "$waited" -ge "$IDLE_WAIT" ]; then
            NOTES+=("the machine was ${busy}% busy (other processes) just before the run against $(label "$name"): its figures are disturbed")
            return 0
        fi
        [ "$waited" = 1 ] && echo "ingest.sh: machine ${busy}% busy, waiting up to ${IDLE_WAIT}s for it to settle" >&2
    done
}

run_wrk() { # name port server-pids...
    local name=$1 port=$2 out="$TMP/wrk-$1.txt" wpid wrk_pid rc i
    local s0 s1 w0 c0 c1 m0 m1 ts0 ts1 line
    shift 2
    wait_idle "$name"
    echo "ingest.sh: wrk -t$THREADS -c$CONNECTIONS -d$DURATION against $name (127.0.0.1:$port)" >&2
    rm -f "$TMP/go-$name"
    timeout --signal=INT --kill-after=10 $((DUR_S + 60)) \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 2s --latency \
        -s "$BENCH_DIR/callbacks.lua" "http://127.0.0.1:$port/" -- "$PATHS_FILE" "$THREADS" "$TMP/go-$name" \
        >"$out" 2>&1 &
    wpid=$!
    # wrk loads the paths in every thread's init(); the last one creates the
    # go file (callbacks.lua) and the run starts: CPU figures cover the run only.
    for ((i = 0; i < 6000; i++)); do
        [ -e "$TMP/go-$name" ] && break
        kill -0 "$wpid" 2>/dev/null || break
        sleep 0.01
    done
    wrk_pid=$(ps -o pid= --ppid "$wpid" | head -n 1 | tr -d ' ')
    local p per0=() per1=() comms=()
    for p in "$@"; do per0+=("$(cpu_ticks "$p")"); comms+=("$(cat "/proc/$p/comm" 2>/dev/null || echo "?")"); done
    s0=$(cpu_ticks "$@")
    w0=$(cpu_ticks ${wrk_pid:-})
    c0=$(child_ticks)
    m0=$(machine_busy_ticks)
    ts0=$(date +%s.%N)
    rc=0
    wait "$wpid" || rc=$?
    ts1=$(date +%s.%N)
    m1=$(machine_busy_ticks)
    c1=$(child_ticks)
    s1=$(cpu_ticks "$@")
    for p in "$@"; do per1+=("$(cpu_ticks "$p")"); done
    if [ "$rc" != 0 ]; then
        cat "$out" >&2
        echo "ingest.sh: wrk against $name failed (exit status $rc)" >&2
        return 1
    fi
    cat "$out" >&2
    TARGETS+=("$name")
    RPS[$name]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    P50[$name]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    P99[$name]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    ERRS[$name]=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10; f = 1} END {if (!f) print 0}' "$out")
    line=$(grep '^BENCH non_success=' "$out" || true)
    [ -n "$line" ] || { echo "ingest.sh: no BENCH line from callbacks.lua" >&2; return 1; }
    BAD[$name]=$(sed -n 's/.* non_success=\([0-9]*\).*/\1/p' <<<"$line")
    ISSUED[$name]=$(sed -n 's/.* issued=\([0-9]*\).*/\1/p' <<<"$line")
    DIST_I[$name]=$(sed -n 's/.* distinct_issued=\([0-9]*\).*/\1/p' <<<"$line")
    DIST_A[$name]=$(sed -n 's/.* distinct_answered=\([0-9]*\).*/\1/p' <<<"$line")
    WRAPS[$name]=$(sed -n 's/.* wraps=\([0-9]*\).*/\1/p' <<<"$line")
    # % of one core over the run: servers from /proc; wrk = its whole CPU time
    # (reaped by this shell: cutime/cstime) less what it had used at "Running".
    SRVCPU[$name]=$(awk -v d="$((s1 - s0))" -v hz="$CLK_TCK" -v a="$ts0" -v b="$ts1" \
        'BEGIN {v = 100 * d / hz / (b - a); printf "%.0f%%", v < 0 ? 0 : v}')
    WRKCPU[$name]=$(awk -v d="$((c1 - c0 - w0))" -v hz="$CLK_TCK" -v a="$ts0" -v b="$ts1" \
        'BEGIN {v = 100 * d / hz / (b - a); printf "%.0f%%", v < 0 ? 0 : v}')
    # Server CPU by process name (payrelayd and redis-server apart).
    SRVDETAIL[$name]=$(for ((i = 0; i < ${#comms[@]}; i++)); do
        echo "${comms[i]} $((per1[i] - per0[i]))"
    done | awk -v hz="$CLK_TCK" -v a="$ts0" -v b="$ts1" '
        { if (!($1 in t)) o[n++] = $1; t[$1] += $2 }
        END { for (i = 0; i < n; i++) {
            v = 100 * t[o[i]] / hz / (b - a)
            if (v < 0) printf "%s%s (exited)", (i ? ", " : ""), o[i]
            else printf "%s%s %.0f%%", (i ? ", " : ""), o[i], v } }')
    # The rest of the machine's busy time: softirq (loopback TCP), kernel
    # threads, and any other process (a build running beside the benchmark).
    RESTCPU[$name]=$(awk -v d="$((m1 - m0 - (s1 - s0) - (c1 - c0 - w0)))" -v hz="$CLK_TCK" -v a="$ts0" -v b="$ts1" \
        'BEGIN {v = 100 * d / hz / (b - a); printf "%.0f%%", v < 0 ? 0 : v}')
}

start_nginx() { # workers
    local dir="$TMP/nginx-$1"
    mkdir -p "$dir/tmp"
    sed -e "s|@WORKERS@|$1|" -e "s|@PREFIX@|$dir|g" -e "s|@PORT@|$NGINX_PORT|" \
        "$BENCH_DIR/nginx.conf.in" >"$dir/nginx.conf"
    nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
        >"$dir/stderr.log" 2>&1 &
    NGINX_PID=$!
    if ! wait_port "$NGINX_PORT" 10 "$NGINX_PID"; then
        cat "$dir/stderr.log" "$dir/error.log" >&2 2>/dev/null || true
        die "nginx did not start"
    fi
    local r
    r=$(http_get "$NGINX_PORT" "$(head -n 1 "$PATHS_FILE")")
    [ "$r" = "200 success" ] || die "nginx answered '$r' instead of '200 success'"
}

nginx_pids() { # the master and its workers, into the array NGINX_PIDS
    local w
    NGINX_PIDS=("$NGINX_PID")
    for w in $(ps -o pid= --ppid "$NGINX_PID" 2>/dev/null); do NGINX_PIDS+=("$w"); done
}

stop_nginx() { stop_pid "$NGINX_PID" nginx; NGINX_PID=""; }

# --- the run ------------------------------------------------------------------
read -r REDIS_PORT DAEMON_PORT ADMIN_PORT NGINX_PORT <<<"$(free_ports 4)"

echo "ingest.sh: temporary directory $TMP" >&2
PATHS_FILE="$TMP/paths.txt"
gen_args=(--out "$PATHS_FILE" --count "$COUNT" --channel bench-epay --pid 1001 --extra 1)
[ -f "$VECTORS" ] && gen_args+=(--vectors "$VECTORS")
python3 "$BENCH_DIR/gen_requests.py" "${gen_args[@]}"
[ "$(wc -l <"$PATHS_FILE")" -eq "$COUNT" ] || die "gen_requests.py wrote the wrong number of paths"

FAIL=()
NOTES=()

if [ "$NGINX_ONLY" = 0 ]; then
    start_redis

    ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    cat >"$TMP/payrelayd.conf" <<EOF
; payrelayd for bench/ingest.sh (generated)
[daemon]
listen = 127.0.0.1:$DAEMON_PORT
log_level = warn

[admin]
listen = 127.0.0.1:$ADMIN_PORT
token = $ADMIN_TOKEN

[redis]
url = redis://127.0.0.1:$REDIS_PORT/0

[channel:bench-epay]
family = epay
merchant_id = 1001
key = $(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import gen_requests; print(gen_requests.DEFAULT_KEY)' "$BENCH_DIR")
EOF
    chmod 600 "$TMP/payrelayd.conf" # it holds the channel key
    # Readiness: the log line msg=ready (logged at info level, so hidden at
    # log_level = warn) or, as systemd sees it, READY=1 on $NOTIFY_SOCKET.
    start_notify_listener "$((DUR_S * 3 + 600))"
    echo "ingest.sh: starting $DAEMON" >&2
    NOTIFY_SOCKET="$TMP/notify.sock" "$DAEMON" -c "$TMP/payrelayd.conf" 2>"$TMP/payrelayd.log" &
    DAEMON_PID=$!
    ready=0
    for ((i = 0; i < 300; i++)); do
        if grep -Eq 'msg="?ready' "$TMP/payrelayd.log"; then ready=1; break; fi
        if grep -q 'READY=1' "$TMP/notify.log" 2>/dev/null; then ready=1; break; fi
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$ready" != 1 ]; then
        if kill -0 "$DAEMON_PID" 2>/dev/null && wait_port "$DAEMON_PORT" 1 "$DAEMON_PID"; then
            # A build without libsystemd: the sanity callback below decides.
            NOTES+=("payrelayd gave no readiness signal within 30 s (msg=ready, READY=1) but listens")
        else
            echo "--- payrelayd stderr ---" >&2
            tail -n 30 "$TMP/payrelayd.log" >&2
            die "payrelayd was not ready (msg=ready in its log or READY=1 on NOTIFY_SOCKET) within 30 s"
        fi
    fi

    # Sanity: one callback outside the benchmark set, sent twice (new, then
    # duplicate): both acked, one stream entry. A 503 (Redis not reachable
    # yet) is retried for up to 10 s, as a gateway would.
    SANITY=$(head -n 1 "$PATHS_FILE.extra")
    for ((i = 0; i < 20; i++)); do
        r1=$(http_get "$DAEMON_PORT" "$SANITY")
        [ "${r1%% *}" = 503 ] || break
        sleep 0.5
    done
    r2=$(http_get "$DAEMON_PORT" "$SANITY")
    XLEN0=$(rcli xlen payrelay:events)
    if [ "$r1" != "200 success" ] || [ "$r2" != "200 success" ] || [ "$XLEN0" != 1 ]; then
        echo "--- payrelayd stderr ---" >&2
        tail -n 30 "$TMP/payrelayd.log" >&2
        die "sanity callback: answers '$r1' / '$r2', payrelay:events has $XLEN0 entries (want 200 success twice, 1 entry)"
    fi
fi

start_nginx 1
nginx_pids
run_wrk nginx-1w "$NGINX_PORT" "${NGINX_PIDS[@]}"
stop_nginx

if [ "$NGINX_ONLY" = 0 ]; then
    run_wrk payrelayd "$DAEMON_PORT" "$DAEMON_PID" "$REDIS_PID"
    sleep 1 # let the last in-flight callbacks land
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        set +e; wait "$DAEMON_PID"; st=$?; set -e
        FAIL+=("payrelayd died during the run (exit status $st); last log lines: $(tail -n 3 "$TMP/payrelayd.log" | tr '\n' '|')")
    fi
    XLEN1=$(rcli xlen payrelay:events)
    NEW=$((XLEN1 - XLEN0))
    # The exact check: every callback sent is in the stream once, nothing else
    # is; those in flight when wrk stopped are re-sent if missing.
    CHECK_RC=0
    : >"$TMP/check_stream.txt"
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        python3 "$BENCH_DIR/check_stream.py" --paths "$PATHS_FILE" --wrk-output "$TMP/wrk-payrelayd.txt" \
            --known "$PATHS_FILE.extra" --redis-port "$REDIS_PORT" --port "$DAEMON_PORT" \
            >"$TMP/check_stream.txt" 2>&1 || CHECK_RC=$?
    else
        CHECK_RC=1
    fi
    STREAM_LINE=$(grep '^STREAM ' "$TMP/check_stream.txt" || true)
    sv() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$STREAM_LINE"; }
    DAEMON_ERRORS=$(grep -c 'level=error' "$TMP/payrelayd.log" || true)
    DAEMON_WARNS=$(grep -c 'level=warn' "$TMP/payrelayd.log" || true)
    DAEMON_RSS=$(awk '/^VmHWM:/ {print $2 " kB"}' "/proc/$DAEMON_PID/status" 2>/dev/null || echo "?")
    REDIS_MEM=$(rcli info memory | awk -F: '/^used_memory_human:/ {gsub(/\r/, ""); print $2}')
fi

start_nginx auto
nginx_pids
run_wrk nginx-auto "$NGINX_PORT" "${NGINX_PIDS[@]}"
stop_nginx

if [ "$NGINX_ONLY" = 0 ]; then
    # SIGTERM: the daemon should exit cleanly and promptly (SPEC §7).
    DAEMON_EXIT="(had died)"
    kill -0 "$DAEMON_PID" 2>/dev/null || DAEMON_PID=""
    t0=$(date +%s.%N)
    [ -z "$DAEMON_PID" ] || kill -TERM "$DAEMON_PID" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    if [ -z "$DAEMON_PID" ]; then
        :
    elif kill -0 "$DAEMON_PID" 2>/dev/null; then
        NOTES+=("payrelayd still running 15 s after SIGTERM (killed)")
        DAEMON_EXIT="did not exit within 15 s"
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    else
        set +e; wait "$DAEMON_PID"; DAEMON_EXIT="exit status $?"; set -e
        DAEMON_EXIT="$DAEMON_EXIT after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
    fi
    DAEMON_PID=""
fi

# --- report ---------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }

echo
echo "payrelay ingest benchmark: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, keep-alive, $COUNT distinct signed epay callbacks"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
echo
printf '%-26s %8s %9s %9s %12s %10s %11s %8s %9s\n' target "req/s" p50 p99 non-success "sock errs" "server CPU" "wrk CPU" "rest CPU"
for t in "${TARGETS[@]}"; do
    printf '%-26s %8s %7sms %7sms %12s %10s %11s %8s %9s\n' "$(label "$t")" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" \
        "${BAD[$t]}" "${ERRS[$t]}" "${SRVCPU[$t]}" "${WRKCPU[$t]}" "${RESTCPU[$t]}"
    [ "${BAD[$t]}" = 0 ] || FAIL+=("$(label "$t"): ${BAD[$t]} responses were not 200 \"success\" ($(grep '^BENCH first_non_success' "$TMP/wrk-$t.txt" | cut -d' ' -f3-))")
    [ "${ERRS[$t]}" = 0 ] || FAIL+=("$(label "$t"): ${ERRS[$t]} socket errors/timeouts ($(grep 'Socket errors' "$TMP/wrk-$t.txt" | sed 's/^ *//'))")
done
echo "(CPU: % of one core during the run, $(nproc) cores = $(( $(nproc) * 100 ))%; server = payrelayd + redis-server, or nginx"
echo " master + workers; rest = softirq (loopback TCP), kernel threads and any other process on the machine)"
for t in "${TARGETS[@]}"; do echo " server CPU of $(label "$t"): ${SRVDETAIL[$t]}"; done
echo

if [ "$NGINX_ONLY" = 0 ]; then
    R1=$(ratio "${RPS[payrelayd]}" "${RPS[nginx-1w]}")
    RA=$(ratio "${RPS[payrelayd]}" "${RPS[nginx-auto]}")
    v=$(awk -v r="$R1" -v t="$RATIO_TARGET" 'BEGIN {print (r != "n/a" && r >= t) ? "PASS" : "MISS"}')
    echo "ratio payrelayd / nginx (1 worker):  $R1   target >= $RATIO_TARGET: $v"
    echo "ratio payrelayd / nginx (auto):      $RA   (for information)"
    v=$(awk -v p="${P99[payrelayd]}" -v t="$P99_TARGET_MS" 'BEGIN {print (p <= t) ? "PASS" : "MISS"}')
    echo "p99 payrelayd at $CONNECTIONS connections:     ${P99[payrelayd]} ms   target <= $P99_TARGET_MS ms: $v"
    if [ -n "$STREAM_LINE" ]; then
        echo "stream payrelay:events:              $NEW new entries after the run; distinct callbacks sent $(sv distinct_sent) (answered ${DIST_A[payrelayd]}, $(sv unanswered) in flight when wrk stopped)"
        echo "                                     missing after the run $(sv missing_after_run), re-sent $(sv resent), missing at the end $(sv missing_final); repeated event ids $(sv repeated); entries never sent $(sv unexpected)"
    fi
    if [ "${WRAPS[payrelayd]}" != 0 ]; then
        echo "wrap-around:                         yes: the $COUNT callbacks ran out, $(( ${ISSUED[payrelayd]} - ${DIST_I[payrelayd]} )) requests were duplicates (acked, nothing recorded)"
    else
        echo "wrap-around:                         none (${ISSUED[payrelayd]} requests issued, $COUNT pre-signed)"
    fi
    echo "payrelayd: $DAEMON_ERRORS error / $DAEMON_WARNS warning log lines, peak RSS $DAEMON_RSS, redis used_memory $REDIS_MEM, SIGTERM: $DAEMON_EXIT"
    if [ "$DAEMON_ERRORS" != 0 ] || [ "$DAEMON_WARNS" != 0 ]; then
        echo "first log lines at warning/error level:"
        grep -E 'level=(warn|error)' "$TMP/payrelayd.log" | head -n 5 | sed 's/^/  /'
    fi
    if [ "$CHECK_RC" != 0 ] || [ -z "$STREAM_LINE" ]; then
        while IFS= read -r l; do FAIL+=("stream: ${l#PROBLEM: }"); done < <(grep -v '^STREAM ' "$TMP/check_stream.txt")
        [ -n "$STREAM_LINE" ] || FAIL+=("stream: not checked (check_stream.py gave no result)")
    fi
    [ "$(sv no_id)" = 0 ] || [ -z "$STREAM_LINE" ] || NOTES+=("$(sv no_id) stream entries have no id field (told apart by out_trade_no)")
fi
for n in "${NOTES[@]}"; do echo "note: $n"; done

if [ ${#FAIL[@]} -gt 0 ]; then
    echo
    for f in "${FAIL[@]}"; do echo "CHECK FAILED: $f"; done
    exit 1
fi
echo
echo "checks: OK (every response 200 \"success\"$([ "$NGINX_ONLY" = 0 ] && echo ", one stream entry per distinct callback"))"
