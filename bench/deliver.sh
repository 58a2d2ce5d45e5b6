#!/usr/bin/env bash
# bench/deliver.sh — delivery throughput of payrelayd to an internal webhook (SPEC §5.2, §9).
#
# Starts, all on 127.0.0.1 and all inside one temporary directory:
#   redis-server (no persistence), payrelayd with one epay channel and one
#   [webhook:bench] (max_in_flight = --in-flight), and nginx as the receiver:
#   one worker, `return 200` on the webhook path (the request body is read and
#   discarded), unlimited keep-alive, no access log.
#
# Drain method (the measured one), --runs times:
#   1. the webhook's schedule starts with 3600 s, so recording an event
#      schedules its delivery an hour from now: N events are recorded (wrk with
#      bench/callbacks.lua over N pre-signed distinct callbacks) and nothing is
#      delivered yet;
#   2. one Redis command makes every delivery due at once (ZUNIONSTORE of the
#      due set onto itself with WEIGHTS 0: every score becomes 0); the delivery
#      engine picks them up at its next tick (every 500 ms, included in the time);
#   3. the time from that command until the due set is empty is the drain time;
#      N / drain time is the delivery rate. CPU of payrelayd, redis and nginx is
#      measured over the same window.
# Checks after each run: every delivery hash is `delivered` after exactly one
# attempt, none dead or pending, one delivery per event; nginx's request
# counter (stub_status) grew by exactly N, over at most --in-flight connections.
# One more run, the verification run, has nginx write an access log (event id
# from the webhook-id header, status, connection, webhook-signature): every
# event delivered must appear in it exactly once, nothing else may, and every
# request must carry a well-formed signature header. Its time is reported apart
# (the log costs the receiver).
#
# Mixed method (for information, --mixed-duration, 0 to skip): payrelayd
# restarted with a schedule starting at 0 (deliveries due at once), wrk drives
# callbacks for the duration while deliveries flow; reports the ingest rate,
# the delivery rate during the same window, the backlog left when wrk stopped,
# and the delay from recording to delivery.
#
# Prints the figures, PASS/MISS against the target (>= 5,000 deliveries/s,
# median of the drain runs) and exits 1 only when a check fails.
#
# Usage: bench/deliver.sh [--events N] [--in-flight K] [--runs R]
#                         [--mixed-duration 10s] [--no-verify] [--build DIR]
#                         [--perf FILE] [--keep] [--idle-wait S]
set -euo pipefail

EVENTS=50000
INFLIGHT=32
RUNS=3
MIXED_DURATION=10s
VERIFY=1
BUILD=build
PERF_OUT=""
KEEP=0
IDLE_WAIT=60
THREADS=2
CONNECTIONS=32
TARGET_RATE=5000
HOOK=bench

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    cat <<'EOF'
Options:
  --events N          events recorded, then delivered, per drain run (default 50000)
  --in-flight K       the webhook's max_in_flight (default 32)
  --runs R            timed drain runs (default 3; the verification run comes on top)
  --mixed-duration D  wrk duration of the mixed run (wrk syntax: 10s, 1m; default 10s;
                      0: no mixed run)
  --no-verify         no verification run (access-log check of every delivery)
  --build DIR         meson build directory holding src/payrelayd (default build,
                      relative to the repository)
  --perf FILE         perf record --call-graph dwarf of payrelayd during the first drain
                      run, into FILE
  --keep              keep the temporary directory (configs, logs, wrk outputs)
  --idle-wait S       before each measured phase, wait up to S seconds (default 60)
                      for the machine to be idle (<= 10 % busy); 0: do not wait
EOF
}

die() { echo "deliver.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --events) EVENTS=${2:?--events needs a value}; shift 2 ;;
    --events=*) EVENTS=${1#*=}; shift ;;
    --in-flight) INFLIGHT=${2:?--in-flight needs a value}; shift 2 ;;
    --in-flight=*) INFLIGHT=${1#*=}; shift ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --mixed-duration) MIXED_DURATION=${2:?--mixed-duration needs a value}; shift 2 ;;
    --mixed-duration=*) MIXED_DURATION=${1#*=}; shift ;;
    --no-verify) VERIFY=0; shift ;;
    --build) BUILD=${2:?--build needs a value}; shift 2 ;;
    --build=*) BUILD=${1#*=}; shift ;;
    --perf) PERF_OUT=${2:?--perf needs a file}; shift 2 ;;
    --perf=*) PERF_OUT=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    --idle-wait) IDLE_WAIT=${2:?--idle-wait needs a value}; shift 2 ;;
    --idle-wait=*) IDLE_WAIT=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case "$MIXED_DURATION" in
*m) MIXED_S=$(( ${MIXED_DURATION%m} * 60 )) ;;
*s) MIXED_S=${MIXED_DURATION%s} ;;
*) MIXED_S=$MIXED_DURATION ;;
esac
[[ "$MIXED_S" =~ ^[0-9]+$ ]] && [ "$MIXED_S" -le 600 ] || die "--mixed-duration must be 0..10m"
[[ "$EVENTS" =~ ^[0-9]+$ ]] && [ "$EVENTS" -ge 100 ] && [ "$EVENTS" -le 1000000 ] ||
    die "--events must be 100..1000000"
[[ "$INFLIGHT" =~ ^[0-9]+$ ]] && [ "$INFLIGHT" -ge 1 ] && [ "$INFLIGHT" -le 1024 ] ||
    die "--in-flight must be 1..1024 (the range of max_in_flight)"
[[ "$RUNS" =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] && [ "$RUNS" -le 20 ] || die "--runs must be 1..20"
[[ "$IDLE_WAIT" =~ ^[0-9]+$ ]] || die "--idle-wait must be a number of seconds"
# Callbacks to pre-sign: N for the drain runs (the same N every run: Redis is
# flushed between runs), and enough for the mixed run at up to 25,000/s.
COUNT=$EVENTS
[ $((MIXED_S * 25000)) -le "$COUNT" ] || COUNT=$((MIXED_S * 25000))

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=deliver.sh
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
REPO=$(cd "$BENCH_DIR/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
DAEMON="$BUILD/src/payrelayd"
VECTORS="$REPO/../shared/vectors/epay.json"
HELPER="$BENCH_DIR/deliver_check.py"
[ -x "$DAEMON" ] || die "$DAEMON not found: build first (meson setup build && ninja -C build)"

# --- tools (Debian packages), installed only when missing -------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v python3 >/dev/null || need+=(python3)
command -v ps >/dev/null || need+=(procps)
if [ -n "$PERF_OUT" ] && ! command -v perf >/dev/null; then need+=(linux-perf); fi
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        die "missing tools; install as root: apt-get install -y ${need[*]}"
    fi
    echo "deliver.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends "${need[@]}" >&2
fi

# --- temporary directory and cleanup ------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/payrelay-deliver.XXXXXX")
REDIS_PID="" DAEMON_PID="" NGINX_PID="" NOTIFY_PID="" PERF_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$PERF_PID" perf 10 INT
    stop_pid "$NGINX_PID" nginx
    stop_pid "$DAEMON_PID" payrelayd
    stop_pid "$REDIS_PID" redis-server
    stop_pid "$NOTIFY_PID" "notify listener" 2
    if [ "$KEEP" = 1 ]; then
        echo "deliver.sh: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ------------------------------------------------------------------

machine_busy_pct() { # % of all CPUs busy over one second
    local b0 t0 b1 t1
    read -r b0 t0 < <(awk '$1 == "cpu" {s = 0; for (i = 2; i <= NF; i++) s += $i; print $2 + $3 + $4 + $7 + $8 + $9, s; exit}' /proc/stat)
    sleep 1
    read -r b1 t1 < <(awk '$1 == "cpu" {s = 0; for (i = 2; i <= NF; i++) s += $i; print $2 + $3 + $4 + $7 + $8 + $9, s; exit}' /proc/stat)
    echo $(( (b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1) ))
}

NOTES=() FAIL=()
R_COUNT_LINE="" RECEIVER_LINE=""

wait_idle() { # what: waits (up to IDLE_WAIT s) for a quiet machine
    local what=$1 waited=0 busy
    [ "$IDLE_WAIT" -gt 0 ] || return 0
    while :; do
        busy=$(machine_busy_pct)
        [ "$busy" -le 10 ] && return 0
        waited=$((waited + 1))
        if [ "$waited" -ge "$IDLE_WAIT" ]; then
            NOTES+=("the machine was ${busy}% busy (other processes) just before $what: its figures are disturbed")
            return 0
        fi
        [ "$waited" = 1 ] && echo "deliver.sh: machine ${busy}% busy, waiting up to ${IDLE_WAIT}s for it to settle" >&2
    done
}

# nginx: the receiver. $1 = "log" for the verification run's access log.
start_nginx() {
    local mode=$1 dir="$TMP/nginx-$1" log="" hooklog=""
    mkdir -p "$dir/tmp"
    if [ "$mode" = log ]; then
        # Only webhook requests; buffer: a write per 64 KiB, not per request.
        log="log_format hook '\$http_webhook_id \$status \$connection \$uri \$http_webhook_signature';"
        hooklog="access_log $dir/access.log hook buffer=64k;"
    fi
    cat >"$dir/nginx.conf" <<EOF
# nginx as the webhook receiver of bench/deliver.sh (generated).
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
	worker_connections 4096;
}

http {
	access_log off;
	$log
	server_tokens off;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	keepalive_timeout 75s;
	keepalive_requests 100000000;

	server {
		listen 127.0.0.1:$NGINX_PORT;

		# The webhook: 200 at once. nginx reads and discards the body
		# (ngx_http_discard_request_body), so keep-alive goes on.
		location /hook/ {
			$hooklog
			return 200;
		}

		location = /nginx_status {
			stub_status;
		}

		location / {
			return 404;
		}
	}
}
EOF
    nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
        >"$dir/stderr.log" 2>&1 &
    NGINX_PID=$!
    NGINX_DIR=$dir
    if ! wait_port "$NGINX_PORT" 10 "$NGINX_PID"; then
        cat "$dir/stderr.log" "$dir/error.log" >&2 2>/dev/null || true
        die "nginx did not start"
    fi
    # Two POSTs with bodies on one keep-alive connection: both must be 200
    # (the second proves the first body was consumed).
    local r
    r=$(python3 - "$NGINX_PORT" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
out = []
for body in (b'{"x":"' + b"a" * 600 + b'"}', b"{}"):
    c.request("POST", "/hook/check", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    out.append(str(r.status))
print(" ".join(out))
EOF
)
    [ "$r" = "200 200" ] || die "nginx answered '$r' to two POSTs on one connection instead of '200 200'"
    NGINX_PIDS=("$NGINX_PID")
    local w
    for w in $(ps -o pid= --ppid "$NGINX_PID" 2>/dev/null); do NGINX_PIDS+=("$w"); done
}

stop_nginx() { stop_pid "$NGINX_PID" nginx 10 QUIT; NGINX_PID=""; }

nginx_counts() { # prints "accepts requests" from stub_status
    python3 - "$NGINX_PORT" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/nginx_status")
lines = c.getresponse().read().decode().splitlines()
a, h, r = lines[2].split()
print(a, r)
EOF
}

# payrelayd with the webhook's schedule $1.
NOTIFY_LINES=0
start_daemon() {
    local schedule=$1 i ready=0
    cat >"$TMP/payrelayd.conf" <<EOF
; payrelayd for bench/deliver.sh (generated)
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
key = $MERCHANT_KEY

[webhook:$HOOK]
url = http://127.0.0.1:$NGINX_PORT/hook/$HOOK
secret = $WEBHOOK_SECRET
max_in_flight = $INFLIGHT
timeout_ms = 10000
schedule = $schedule
EOF
    chmod 600 "$TMP/payrelayd.conf" # it holds the channel key
    NOTIFY_LINES=$(wc -l <"$TMP/notify.log" 2>/dev/null || echo 0)
    echo "deliver.sh: starting $DAEMON (schedule = $schedule)" >&2
    NOTIFY_SOCKET="$TMP/notify.sock" "$DAEMON" -c "$TMP/payrelayd.conf" 2>>"$TMP/payrelayd.log" &
    DAEMON_PID=$!
    for ((i = 0; i < 300; i++)); do
        if awk -v n="$NOTIFY_LINES" 'NR > n && /READY=1/ {f = 1} END {exit !f}' "$TMP/notify.log"; then ready=1; break; fi
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$ready" != 1 ]; then
        if kill -0 "$DAEMON_PID" 2>/dev/null && wait_port "$DAEMON_PORT" 1 "$DAEMON_PID"; then
            NOTES+=("payrelayd gave no readiness signal (READY=1) within 30 s but listens")
        else
            echo "--- payrelayd stderr ---" >&2
            tail -n 30 "$TMP/payrelayd.log" >&2
            die "payrelayd was not ready (READY=1 on NOTIFY_SOCKET) within 30 s"
        fi
    fi
}

stop_daemon() { # SIGTERM: must exit 0 promptly
    local st
    [ -n "$DAEMON_PID" ] || return 0
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        set +e; wait "$DAEMON_PID"; st=$?; set -e
        FAIL+=("payrelayd had died (exit status $st); last log lines: $(tail -n 3 "$TMP/payrelayd.log" | tr '\n' '|')")
        DAEMON_PID=""
        return 0
    fi
    kill -TERM "$DAEMON_PID"
    set +e; timeout 20 tail --pid="$DAEMON_PID" -f /dev/null; wait "$DAEMON_PID"; st=$?; set -e
    [ "$st" = 0 ] || FAIL+=("payrelayd exited with status $st on SIGTERM")
    DAEMON_PID=""
}

daemon_alive() { # what
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        FAIL+=("payrelayd died during $1; last log lines: $(tail -n 3 "$TMP/payrelayd.log" | tr '\n' '|')")
        return 1
    fi
}

kv() { # line key: the value of key=value in line
    awk -v k="$2=" '{for (i = 1; i <= NF; i++) if (index($i, k) == 1) {print substr($i, length(k) + 1); exit}}' <<<"$1"
}

DUE="payrelay:wh:$HOOK:due"

# Records N events with nothing due; then delivers them and checks.
# $1 = run name, $2 = "log" (verification run) or "nolog".
declare -A R_SECS R_RATE R_STEADY R_CPU_D R_CPU_R R_CPU_N R_CPU_REST R_ING R_REQS R_CONNS R_FIRST R_BATCH R_RUS
drain_run() {
    local name=$1 mode=$2 out="$TMP/$1" rec drain count a0 r0 a1 r1 first last t0
    mkdir -p "$out"
    R_COUNT_LINE=""
    rcli flushall >/dev/null
    wait_idle "recording ($name)"
    echo "deliver.sh: [$name] recording $EVENTS events (wrk -t$THREADS -c$CONNECTIONS)" >&2
    rec=$(python3 "$HELPER" record --redis-port "$REDIS_PORT" --expect "$EVENTS" --timeout 300 \
        --wrk-output "$out/wrk.txt" -- \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d300s --timeout 2s -s "$BENCH_DIR/callbacks.lua" \
        "http://127.0.0.1:$DAEMON_PORT/" -- "$EVENTS_FILE" "$THREADS" "$out/go")
    echo "deliver.sh: [$name] $rec" >&2
    local bad errs
    bad=$(sed -n 's/^BENCH non_success=\([0-9]*\).*/\1/p' "$out/wrk.txt")
    errs=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10; f = 1} END {if (!f) print 0}' "$out/wrk.txt")
    [ "${bad:-x}" = 0 ] || FAIL+=("[$name] recording: ${bad:-no BENCH line:} callbacks not answered 200 \"success\"")
    [ "$errs" = 0 ] || NOTES+=("[$name] recording: wrk counted $errs socket errors when it was stopped ($(grep 'Socket errors' "$out/wrk.txt" | sed 's/^ *//'))")
    [ "$(kv "$rec" timeout)" = 0 ] || FAIL+=("[$name] recording: $EVENTS events not recorded within 300 s")
    daemon_alive "recording ($name)" || return 1
    local xlen zc
    xlen=$(rcli xlen payrelay:events)
    zc=$(rcli zcard "$DUE")
    if [ "$xlen" != "$EVENTS" ] || [ "$zc" != "$EVENTS" ]; then
        FAIL+=("[$name] after recording: payrelay:events has $xlen entries and $DUE $zc members, want $EVENTS each")
        return 1
    fi
    R_ING[$name]=$(kv "$rec" rate)

    read -r a0 r0 < <(nginx_counts)
    wait_idle "the drain ($name)"
    if [ -n "$PERF_OUT" ] && [ "$name" = run1 ]; then
        perf record --call-graph dwarf -F 999 -p "$DAEMON_PID" -o "$PERF_OUT" >"$out/perf.txt" 2>&1 &
        PERF_PID=$!
        sleep 0.5
    fi
    echo "deliver.sh: [$name] delivering: every delivery due now" >&2
    drain=$(python3 "$HELPER" drain --redis-port "$REDIS_PORT" --due "$DUE" --timeout 300 \
        --pid "payrelayd:$DAEMON_PID" --pid "redis:$REDIS_PID" --pid "nginx:$(IFS=,; echo "${NGINX_PIDS[*]}")")
    if [ -n "$PERF_PID" ]; then stop_pid "$PERF_PID" perf 30 INT; PERF_PID=""; fi
    echo "deliver.sh: [$name] $(head -n 1 <<<"$drain")" >&2
    echo "deliver.sh: [$name] $(tail -n 1 <<<"$drain")" >&2
    daemon_alive "the drain ($name)" || return 1
    [ "$(kv "$drain" timeout)" = 0 ] || FAIL+=("[$name] $(kv "$drain" left) deliveries still due 300 s after they were released")
    # Let the last finish scripts land and the access log be flushed.
    sleep 0.3
    [ "$mode" != log ] || kill -USR1 "$NGINX_PID" # reopen logs: flushes the buffer
    sleep 0.5
    read -r a1 r1 < <(nginx_counts)
    R_REQS[$name]=$((r1 - r0 - 1)) # less our own second status request
    R_CONNS[$name]=$((a1 - a0 - 1))
    [ "${R_REQS[$name]}" = "$EVENTS" ] ||
        FAIL+=("[$name] nginx answered ${R_REQS[$name]} webhook requests, want $EVENTS (one per delivery)")
    # Keep-alive (SPEC §5.2): never more new connections than requests in flight.
    [ "${R_CONNS[$name]}" -le "$INFLIGHT" ] ||
        FAIL+=("[$name] ${R_CONNS[$name]} new connections to nginx for max_in_flight = $INFLIGHT: connections are not kept alive")

    count=$(python3 "$HELPER" count --redis-port "$REDIS_PORT" --expect "$EVENTS" \
        $([ "$mode" = log ] && echo "--access-log $NGINX_DIR/access.log --uri /hook/$HOOK")) || true
    echo "$count" >"$out/count.txt"
    while IFS= read -r l; do
        case "$l" in
        PROBLEM:*) FAIL+=("[$name] ${l#PROBLEM: }") ;;
        DELIVERIES*) R_COUNT_LINE=$l ;;
        RECEIVER*) RECEIVER_LINE=$l ;;
        esac
    done <<<"$count"
    echo "deliver.sh: [$name] $R_COUNT_LINE" >&2
    first=$(kv "$R_COUNT_LINE" first_ms)
    last=$(kv "$R_COUNT_LINE" last_ms)
    t0=$(kv "$drain" t0_ms)
    R_SECS[$name]=$(kv "$drain" secs)
    R_RATE[$name]=$(awk -v n="$EVENTS" -v s="${R_SECS[$name]}" 'BEGIN {printf "%.0f", (s > 0 ? n / s : 0)}')
    R_STEADY[$name]=$(awk -v n="$EVENTS" -v a="$first" -v b="$last" 'BEGIN {printf "%.0f", (b > a ? (n - 1) * 1000 / (b - a) : 0)}')
    R_FIRST[$name]=$((first - t0))
    R_CPU_D[$name]=$(kv "$drain" cpu_payrelayd)
    R_CPU_R[$name]=$(kv "$drain" cpu_redis)
    R_CPU_N[$name]=$(kv "$drain" cpu_nginx)
    R_CPU_REST[$name]=$(kv "$drain" cpu_rest)
    # Scripts during the drain: a finish per delivery, the rest are claims.
    R_BATCH[$name]=$(awk -v n="$EVENTS" -v c="$(kv "$drain" scripts)" 'BEGIN {printf "%.1f", (c > n ? n / (c - n) : 0)}')
    R_RUS[$name]=$(awk -v n="$EVENTS" -v u="$(kv "$drain" script_usec)" 'BEGIN {printf "%.0f", u / n}')
}

# --- the run ------------------------------------------------------------------
read -r REDIS_PORT DAEMON_PORT ADMIN_PORT NGINX_PORT <<<"$(free_ports 4)"
ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
WEBHOOK_SECRET=whsec_$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')
MERCHANT_KEY=$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import gen_requests; print(gen_requests.DEFAULT_KEY)' "$BENCH_DIR")

PATHS_FILE="$TMP/callbacks.txt"
EVENTS_FILE="$TMP/events.txt"
echo "deliver.sh: pre-signing $COUNT distinct callbacks" >&2
vec=()
[ -f "$VECTORS" ] && vec=(--vectors "$VECTORS")
python3 "$BENCH_DIR/gen_requests.py" --out "$PATHS_FILE" --count "$COUNT" --extra 1 "${vec[@]}" >&2
head -n "$EVENTS" "$PATHS_FILE" >"$EVENTS_FILE"

start_redis

# systemd-style readiness: READY=1 on NOTIFY_SOCKET (payrelayd logs msg=ready
# only at info level).
start_notify_listener 3600

start_nginx nolog
# Drain runs: the first attempt of every delivery an hour after recording
# (then retries after 1 s and 1 s: any failure shows up as attempts > 1).
start_daemon "3600 1 1"

# Sanity: one callback outside the set; its delivery released and delivered.
SANITY=$(head -n 1 "$PATHS_FILE.extra")
for ((i = 0; i < 20; i++)); do
    r1=$(http_get "$DAEMON_PORT" "$SANITY")
    [ "${r1%% *}" = 503 ] || break
    sleep 0.5
done
[ "$r1" = "200 success" ] || die "sanity callback answered '$r1'"
[ "$(rcli zcard "$DUE")" = 1 ] || die "sanity callback: $DUE has $(rcli zcard "$DUE") members, want 1 (is the webhook configured?)"
s=$(python3 "$HELPER" drain --redis-port "$REDIS_PORT" --due "$DUE" --timeout 15) ||
    die "sanity delivery: the drain helper failed"
sleep 0.2
c=$(python3 "$HELPER" count --redis-port "$REDIS_PORT" --expect 1) ||
    die "sanity delivery: $(kv "$s" secs) s, $c"
echo "deliver.sh: sanity delivery OK ($(kv "$s" secs) s after release)" >&2

for ((run = 1; run <= RUNS; run++)); do
    drain_run "run$run" nolog || true
done
if [ "$VERIFY" = 1 ]; then
    stop_nginx
    start_nginx log
    drain_run verify log || true
    stop_nginx
    start_nginx nolog
fi
DAEMON_RSS=$(awk '/^VmHWM:/ {print $2 " kB"}' "/proc/$DAEMON_PID/status" 2>/dev/null || echo "?")

# Mixed: deliveries due at once while wrk drives callbacks.
MIXED_LINE="" MIXED_COUNT=""
if [ "$MIXED_S" -gt 0 ] && [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    stop_daemon
    rcli flushall >/dev/null
    start_daemon "0 1 1"
    wait_idle "the mixed run"
    echo "deliver.sh: [mixed] wrk -t$THREADS -c$CONNECTIONS -d${MIXED_S}s while delivering" >&2
    mkdir -p "$TMP/mixed"
    read -r a0 r0 < <(nginx_counts)
    MIXED_LINE=$(python3 "$HELPER" mixed --redis-port "$REDIS_PORT" --due "$DUE" --timeout 300 \
        --go-file "$TMP/mixed/go" --wrk-output "$TMP/mixed/wrk.txt" \
        --pid "payrelayd:$DAEMON_PID" --pid "redis:$REDIS_PID" --pid "nginx:$(IFS=,; echo "${NGINX_PIDS[*]}")" -- \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${MIXED_S}s" --timeout 2s -s "$BENCH_DIR/callbacks.lua" \
        "http://127.0.0.1:$DAEMON_PORT/" -- "$PATHS_FILE" "$THREADS" "$TMP/mixed/go")
    echo "deliver.sh: [mixed] $MIXED_LINE" >&2
    sleep 0.5
    read -r a1 r1 < <(nginx_counts)
    M_XLEN=$(rcli xlen payrelay:events)
    MIXED_COUNT=$(python3 "$HELPER" count --redis-port "$REDIS_PORT" --expect "$M_XLEN" \
        --window "$(kv "$MIXED_LINE" t0_ms)" "$(kv "$MIXED_LINE" t1_ms)") || true
    while IFS= read -r l; do
        case "$l" in PROBLEM:*) FAIL+=("[mixed] ${l#PROBLEM: }") ;; esac
    done <<<"$MIXED_COUNT"
    MIXED_COUNT=$(grep '^DELIVERIES' <<<"$MIXED_COUNT" || true)
    M_REQS=$((r1 - r0 - 1))
    [ "$M_REQS" = "$M_XLEN" ] || FAIL+=("[mixed] nginx answered $M_REQS webhook requests for $M_XLEN recorded events")
    M_RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$TMP/mixed/wrk.txt")
    M_BAD=$(sed -n 's/^BENCH non_success=\([0-9]*\).*/\1/p' "$TMP/mixed/wrk.txt")
    M_ERRS=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10; f = 1} END {if (!f) print 0}' "$TMP/mixed/wrk.txt")
    M_WRAPS=$(sed -n 's/^BENCH .* wraps=\([0-9]*\).*/\1/p' "$TMP/mixed/wrk.txt")
    [ "${M_BAD:-x}" = 0 ] || FAIL+=("[mixed] ${M_BAD:-no BENCH line:} callbacks not answered 200 \"success\"")
    [ "$M_ERRS" = 0 ] || FAIL+=("[mixed] wrk: $M_ERRS socket errors/timeouts")
    [ "${M_WRAPS:-0}" = 0 ] || NOTES+=("[mixed] the $COUNT callbacks ran out: later requests were duplicates (nothing recorded)")
    [ "$(kv "$MIXED_LINE" timeout)" = 0 ] || FAIL+=("[mixed] backlog not delivered within 300 s after wrk stopped")
fi

# SIGTERM: the daemon should exit cleanly.
stop_daemon
DAEMON_ERRORS=$(grep -c 'level=error' "$TMP/payrelayd.log" || true)
DAEMON_WARNS=$(grep -c 'level=warn' "$TMP/payrelayd.log" || true)

# --- report ---------------------------------------------------------------------
echo
echo "payrelay delivery benchmark: $EVENTS events per run, one webhook, max_in_flight = $INFLIGHT, receiver nginx (1 worker, return 200, keep-alive)"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
echo
printf '%-8s %7s %8s %8s %9s %10s %10s %6s %6s %5s %8s %6s %6s %9s\n' run events "drain s" "deliv/s" "steady/s" "1st deliv" payrelayd redis nginx rest requests conns batch "script us"
names=()
for ((run = 1; run <= RUNS; run++)); do names+=("run$run"); done
[ "$VERIFY" = 1 ] && names+=(verify)
rates=()
for n in "${names[@]}"; do
    [ -n "${R_SECS[$n]:-}" ] || { printf '%-8s (failed: see the checks)\n' "$n"; continue; }
    printf '%-8s %7s %8s %8s %9s %8sms %10s %6s %6s %5s %8s %6s %6s %9s\n' "$n" "$EVENTS" "${R_SECS[$n]}" "${R_RATE[$n]}" "${R_STEADY[$n]}" \
        "${R_FIRST[$n]}" "${R_CPU_D[$n]}" "${R_CPU_R[$n]}" "${R_CPU_N[$n]}" "${R_CPU_REST[$n]}" "${R_REQS[$n]}" "${R_CONNS[$n]}" \
        "${R_BATCH[$n]}" "${R_RUS[$n]}"
    [ "$n" = verify ] || rates+=("${R_RATE[$n]}")
done
echo "(drain s: from making every delivery due until the due set is empty; deliv/s = events / drain s;"
echo " steady/s: first to last delivered_ms; 1st deliv: release to first delivery (the engine ticks every"
echo " 500 ms); CPU: % of one core over the drain, $(nproc) cores = $(( $(nproc) * 100 ))%; rest = softirq, kernel"
echo " threads, this script's poller and any other process; requests, conns: nginx stub_status deltas"
echo " (conns: new connections; 0 = all kept alive from the run before); batch: deliveries per claim"
echo " script; script us: redis time in payrelayd's scripts (claims + finishes) per delivery, from INFO"
echo " commandstats; verify: the run with nginx's access log on, not in the median)"
for n in "${names[@]}"; do
    [ -n "${R_ING[$n]:-}" ] && echo " recording in $n: $(printf '%s' "${R_ING[$n]}") events/s (wrk, for information)"
done
[ -z "$RECEIVER_LINE" ] || echo "verification: $RECEIVER_LINE"
echo

if [ -n "$MIXED_LINE" ]; then
    echo "mixed (wrk -t$THREADS -c$CONNECTIONS -d${MIXED_S}s driving callbacks while deliveries flow, schedule starting at 0):"
    m_secs=$(kv "$MIXED_LINE" secs)
    m_in=$(kv "$MIXED_COUNT" delivered_in_window)
    echo "  ingest:     $M_RPS callbacks/s (wrk), $M_XLEN events recorded"
    echo "  deliveries: $m_in during wrk's ${m_secs} s = $(awk -v n="$m_in" -v s="$m_secs" 'BEGIN {printf "%.0f", (s > 0 ? n / s : 0)}')/s;" \
        "backlog when wrk stopped $(kv "$MIXED_COUNT" backlog_at_end), drained $(awk -v a="$(kv "$MIXED_LINE" t1_ms)" -v b="$(kv "$MIXED_LINE" drained_ms)" 'BEGIN {printf "%.1f", (b - a) / 1000}') s later"
    echo "  record -> delivered: p50 $(kv "$MIXED_COUNT" lat_p50_ms) ms, p99 $(kv "$MIXED_COUNT" lat_p99_ms) ms, max $(kv "$MIXED_COUNT" lat_max_ms) ms"
    echo "  CPU during wrk: payrelayd $(kv "$MIXED_LINE" cpu_payrelayd), redis $(kv "$MIXED_LINE" cpu_redis), nginx $(kv "$MIXED_LINE" cpu_nginx), wrk $(kv "$MIXED_LINE" cpu_wrk), rest $(kv "$MIXED_LINE" cpu_rest)"
    echo "  $MIXED_COUNT"
    echo
fi

MEDIAN=""
if [ ${#rates[@]} -gt 0 ]; then
    MEDIAN=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)}')
    v=$(awk -v r="$MEDIAN" -v t="$TARGET_RATE" 'BEGIN {print (r >= t) ? "PASS" : "MISS"}')
    echo "deliveries/s, median of ${#rates[@]} drain run(s) at max_in_flight = $INFLIGHT: $MEDIAN   target >= $TARGET_RATE: $v"
fi
echo "payrelayd: $DAEMON_ERRORS error / $DAEMON_WARNS warning log lines, peak RSS $DAEMON_RSS"
if [ "$DAEMON_ERRORS" != 0 ] || [ "$DAEMON_WARNS" != 0 ]; then
    echo "first log lines at warning/error level:"
    grep -E 'level=(warn|error)' "$TMP/payrelayd.log" | sed -n '1,5s/^/  /p'
fi
for n in "${NOTES[@]}"; do echo "note: $n"; done

if [ ${#FAIL[@]} -gt 0 ]; then
    echo
    for f in "${FAIL[@]}"; do echo "CHECK FAILED: $f"; done
    exit 1
fi
echo
echo "checks: OK (every delivery delivered once, none dead or retried; nginx saw one request per delivery$([ "$VERIFY" = 1 ] && echo ", and in the verification run each event id exactly once"))"
