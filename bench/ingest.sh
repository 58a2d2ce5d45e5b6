#!/usr/bin/env bash
# bench/ingest.sh — payrelayd as users run it, beside the ceiling and the peers, in one run.
#
# Targets (TARGETS, in this order within each round):
#   nginx             nginx answering a static "success" (the ceiling; no Redis)
#   node              ../shared/peers/notify.js: Node, fastify + ioredis (verify, SET NX, XADD)
#   php               ../shared/peers/notify.php: PHP-FPM (pm = static) + phpredis behind nginx
#   payrelayd         the shipped configuration (conf/payrelayd.conf: log_level = info, logged
#                     to a pipe read by another process, as journald reads it) plus one
#                     webhook ([webhook:bench], only url and secret: every other key at its
#                     default) to a local receiver (nginx `return 204`)
#   payrelayd-nohook  the same without the webhook (the peers' own job: verify, dedup, record)
#   payrelayd-lean    log_level = warn, no webhook (for reference)
# Every target but nginx gets a fresh redis-server per round with `appendonly yes` and
# `appendfsync always` (docs/redis.md), its AOF on the disk under BENCH_TMP.
#
# ROUNDS rounds; each round runs every target once, in turn, so that a slow minute of the
# machine hits all of them alike. Per target and round: fresh Redis, server started, one
# sanity callback, WARMUP seconds of load on other callbacks, then the measured load
# `wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s` over the same pre-signed distinct epay GET
# callbacks (key testkey1234567890, pid 1001, as the peers expect; bench/gen_requests.py,
# bench/callbacks.lua). With the webhook, the window goes on after the load until every
# delivery is done. Then the checks, and everything of that round is stopped.
# After the rounds, a separate short pass per payrelayd target counts its system calls
# (perf stat on the syscall tracepoints; strace -c -f when perf cannot).
#
# Reports the medians over the rounds (req/s, p50, p99, CPU µs per callback of the server
# processes, of Redis and of the helpers, syscalls per callback, ratios to Node and PHP, the
# time from the end of the load until every delivery is done) and the checks (every answer
# 200 "success"; every callback sent recorded once; with the webhook, every event delivered
# once, as the delivery hashes and the receiver's request count say). Writes it, with every
# round's raw figures, to $RESULTS/ingest-YYYYMMDD-HHMM.md and prints it.
# Exits 1 when a check failed, 2 on a setup error, 0 otherwise whatever the speed.
#
# Settings are environment variables:
#   ROUNDS=3 DURATION=10 (seconds of measured load per target and round) WARMUP=2
#   CONNECTIONS=32 THREADS=1 TARGETS="nginx node php payrelayd payrelayd-nohook payrelayd-lean"
#   SYSCALL_SECS=5 (0: no syscall pass) SYSCALL_TOOL=auto|perf|strace
#   IDLE_WAIT=30 (seconds to wait for a quiet machine before each load; 0: do not wait)
#   DRAIN_TIMEOUT=60 BUILD=build CALLBACKS=(40000 per second of DURATION, at least 100000)
#   PHP_CHILDREN=8 NGINX_WORKERS=1 FASTIFY=auto (a major version) SCRATCH=$BUILD/bench-peers
#   PEERS=../shared/peers RESULTS=bench/results BENCH_TMP=/var/tmp KEEP=0
# Needs root to install what is missing (apt-get install -y: wrk nginx-light php-fpm
# php-redis nodejs npm redis-server redis-tools strace linux-perf python3 procps; npm
# install fastify ioredis into SCRATCH).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
TARGETS=${TARGETS:-"nginx node php payrelayd payrelayd-nohook payrelayd-lean"}
SYSCALL_SECS=${SYSCALL_SECS:-5}
# More redis-server options for every target's Redis (an experiment, e.g.
# "--auto-aof-rewrite-percentage 0"; split on spaces). Empty: Redis's defaults
# plus appendonly yes, appendfsync always, as docs/redis.md recommends.
REDIS_EXTRA=${REDIS_EXTRA:-}
SYSCALL_TOOL=${SYSCALL_TOOL:-auto}
IDLE_WAIT=${IDLE_WAIT:-30}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-60}
BUILD=${BUILD:-build}
CALLBACKS=${CALLBACKS:-}
PHP_CHILDREN=${PHP_CHILDREN:-8}
NGINX_WORKERS=${NGINX_WORKERS:-1}
FASTIFY=${FASTIFY:-auto}
KEEP=${KEEP:-0}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
BENCH_KEY=testkey1234567890 # the peers' key (../shared/peers)
BENCH_PID=1001

case "${1:-}" in
-h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
"") ;;
*) echo "ingest.sh: no arguments (settings are environment variables: see --help)" >&2; exit 2 ;;
esac

die() { echo "ingest.sh: $*" >&2; exit 2; }
say() { echo "ingest.sh: $*" >&2; }
isnum() { [[ "$1" =~ ^[0-9]+$ ]]; }

isnum "$ROUNDS" && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 50 ] || die "ROUNDS must be 1..50"
isnum "$DURATION" && [ "$DURATION" -ge 1 ] && [ "$DURATION" -le 600 ] || die "DURATION must be 1..600 seconds"
isnum "$WARMUP" && [ "$WARMUP" -le 60 ] || die "WARMUP must be 0..60 seconds"
isnum "$CONNECTIONS" && [ "$CONNECTIONS" -ge 1 ] && [ "$CONNECTIONS" -le 1000 ] || die "CONNECTIONS must be 1..1000"
isnum "$THREADS" && [ "$THREADS" -ge 1 ] && [ "$THREADS" -le "$CONNECTIONS" ] || die "THREADS must be 1..CONNECTIONS"
isnum "$SYSCALL_SECS" && [ "$SYSCALL_SECS" -le 60 ] || die "SYSCALL_SECS must be 0..60"
isnum "$IDLE_WAIT" || die "IDLE_WAIT must be a number of seconds"
isnum "$DRAIN_TIMEOUT" && [ "$DRAIN_TIMEOUT" -ge 1 ] && [ "$DRAIN_TIMEOUT" -le 600 ] || die "DRAIN_TIMEOUT must be 1..600"
isnum "$PHP_CHILDREN" && [ "$PHP_CHILDREN" -ge 1 ] && [ "$PHP_CHILDREN" -le 256 ] || die "PHP_CHILDREN must be 1..256"
isnum "$NGINX_WORKERS" && [ "$NGINX_WORKERS" -ge 1 ] && [ "$NGINX_WORKERS" -le 64 ] || die "NGINX_WORKERS must be 1..64"
case "$SYSCALL_TOOL" in auto|perf|strace) ;; *) die "SYSCALL_TOOL must be auto, perf or strace" ;; esac
for t in $TARGETS; do
    case "$t" in nginx|node|php|payrelayd|payrelayd-nohook|payrelayd-lean) ;; *) die "unknown target in TARGETS: $t" ;; esac
done
# Enough distinct callbacks that a server at up to 40,000/s never runs out
# (nginx's static answer may: it records nothing, so repeats do not matter).
if [ -z "$CALLBACKS" ]; then
    CALLBACKS=$((DURATION * 40000))
    [ "$CALLBACKS" -ge 100000 ] || CALLBACKS=100000
fi
isnum "$CALLBACKS" && [ "$CALLBACKS" -ge 1000 ] && [ "$CALLBACKS" -le 5000000 ] || die "CALLBACKS must be 1000..5000000"
WARM_COUNT=$((WARMUP * 40000 + 1000))

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROG=ingest.sh
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
REPO=$(cd "$BENCH_DIR/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
SCRATCH=${SCRATCH:-$BUILD/bench-peers}
PEERS=${PEERS:-$REPO/../shared/peers}
RESULTS=${RESULTS:-$REPO/bench/results}
DAEMON="$BUILD/src/payrelayd"
SHIPPED_CONF="$REPO/conf/payrelayd.conf"
VECTORS="$REPO/../shared/vectors/epay.json"
has() { case " $TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }
has_daemon() { case " $TARGETS " in *" payrelayd"*) return 0 ;; esac; return 1; }

if has_daemon; then
    [ -x "$DAEMON" ] || die "$DAEMON not found: build first (bash scripts/build.sh build --buildtype=debugoptimized)"
    [ -f "$SHIPPED_CONF" ] || die "$SHIPPED_CONF not found"
fi
if has node; then [ -f "$PEERS/notify.js" ] || die "$PEERS/notify.js not found (set PEERS)"; fi
if has php; then [ -f "$PEERS/notify.php" ] || die "$PEERS/notify.php not found (set PEERS)"; fi

# --- tools (Debian packages), installed only when missing ----------------------
php_fpm_bin() { ls /usr/sbin/php-fpm[0-9]* 2>/dev/null | sort -V | tail -n 1; }
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v python3 >/dev/null || need+=(python3)
command -v ps >/dev/null || need+=(procps)
if has_daemon || has node || has php; then
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v redis-cli >/dev/null || need+=(redis-tools)
fi
if has nginx || has php || has payrelayd; then command -v nginx >/dev/null || need+=(nginx-light); fi
if has php; then
    [ -n "$(php_fpm_bin)" ] || need+=(php-fpm)
    # phpredis: the module's ini in the FPM SAPI's conf.d
    ls /etc/php/*/fpm/conf.d/*redis.ini >/dev/null 2>&1 || need+=(php-redis)
fi
if has node; then
    command -v node >/dev/null || need+=(nodejs)
    command -v npm >/dev/null || need+=(npm)
fi
if has_daemon && [ "$SYSCALL_SECS" -gt 0 ]; then
    case "$SYSCALL_TOOL" in
    perf) command -v perf >/dev/null || need+=(linux-perf) ;;
    strace) command -v strace >/dev/null || need+=(strace) ;;
    auto) command -v perf >/dev/null || command -v strace >/dev/null || need+=(strace) ;;
    esac
fi
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing tools; install as root: apt-get install -y ${need[*]}"
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt-get to finish rather than fail on its lock; refresh
    # the package lists only when a package is not found.
    apt_install() { apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" >&2; }
    if ! apt_install "${need[@]}"; then
        apt-get -o DPkg::Lock::Timeout=600 update >&2
        apt_install "${need[@]}" || die "apt-get install ${need[*]} failed"
    fi
    # Debian's nginx and php-fpm packages may start system services on their
    # own ports: not ours to stop, and they do not disturb the loopback ports here.
fi
[ "$SYSCALL_TOOL" != auto ] || {
    SYSCALL_TOOL=strace
    if command -v perf >/dev/null &&
        perf stat -x, -e raw_syscalls:sys_enter -o /dev/null -- true >/dev/null 2>&1; then
        SYSCALL_TOOL=perf
    fi
}

# Node: fastify + ioredis in a scratch folder (kept between runs). fastify 5
# wants Node 20 or later (some of its dependencies Node 22): older Node gets 4.
NODE_FASTIFY="" NODE_IOREDIS=""
if has node; then
    node_major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$FASTIFY" = auto ]; then
        if [ "$node_major" -ge 22 ]; then FASTIFY=5; else FASTIFY=4; fi
    fi
    isnum "$FASTIFY" || die "FASTIFY must be a major version number or auto"
    mkdir -p "$SCRATCH/node"
    have=$(cd "$SCRATCH/node" && node -p 'try { require("fastify/package.json").version } catch (e) { "" }' 2>/dev/null || true)
    if [ "${have%%.*}" != "$FASTIFY" ] || [ ! -d "$SCRATCH/node/node_modules/ioredis" ]; then
        say "npm install fastify@$FASTIFY ioredis@5 into $SCRATCH/node"
        [ -f "$SCRATCH/node/package.json" ] || echo '{"private": true}' >"$SCRATCH/node/package.json"
        (cd "$SCRATCH/node" && npm install --no-audit --no-fund --loglevel=error "fastify@$FASTIFY" ioredis@5 >&2) ||
            die "npm install failed in $SCRATCH/node"
    fi
    cp "$PEERS/notify.js" "$SCRATCH/node/notify.js"
    NODE_FASTIFY=$(cd "$SCRATCH/node" && node -p 'require("fastify/package.json").version')
    NODE_IOREDIS=$(cd "$SCRATCH/node" && node -p 'require("ioredis/package.json").version')
fi
PHP_FPM=""
if has php; then PHP_FPM=$(php_fpm_bin); [ -n "$PHP_FPM" ] || die "no php-fpm binary in /usr/sbin"; fi

# --- temporary directory and cleanup -------------------------------------------
mkdir -p "$BENCH_TMP"
TMP=$(mktemp -d "$BENCH_TMP/payrelay-ingest.XXXXXX")
chmod 700 "$TMP"
FSTYPE=$(stat -f -c %T "$TMP")
PIDS_NAMES=() # "pid name signal" of everything running now, stopped in reverse order
REDIS_PORT=""

track() { PIDS_NAMES+=("$1 $2 ${3:-TERM}"); }
stop_all() {
    local i pid name sig
    for ((i = ${#PIDS_NAMES[@]} - 1; i >= 0; i--)); do
        read -r pid name sig <<<"${PIDS_NAMES[i]}"
        stop_pid "$pid" "$name" 10 "$sig"
    done
    PIDS_NAMES=()
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [ "$KEEP" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

machine_busy_pct() { # % of all CPUs busy over one second
    local b0 t0 b1 t1
    read -r b0 t0 < <(awk '$1 == "cpu" {s = 0; for (i = 2; i <= NF; i++) s += $i; print $2 + $3 + $4 + $7 + $8 + $9, s; exit}' /proc/stat)
    sleep 1
    read -r b1 t1 < <(awk '$1 == "cpu" {s = 0; for (i = 2; i <= NF; i++) s += $i; print $2 + $3 + $4 + $7 + $8 + $9, s; exit}' /proc/stat)
    echo $(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
}

NOTES=()
[ -z "$REDIS_EXTRA" ] || NOTES+=("every Redis ran with REDIS_EXTRA=\"$REDIS_EXTRA\": an experiment, not the configuration docs/redis.md recommends")
wait_idle() { # what
    local waited=0 busy
    [ "$IDLE_WAIT" -gt 0 ] || return 0
    while :; do
        busy=$(machine_busy_pct)
        [ "$busy" -le 10 ] && return 0
        waited=$((waited + 1))
        if [ "$waited" -ge "$IDLE_WAIT" ]; then
            NOTES+=("the machine was ${busy}% busy (other processes) just before $1: its figures are disturbed")
            return 0
        fi
        [ "$waited" = 1 ] && say "machine ${busy}% busy, waiting up to ${IDLE_WAIT}s for it to settle"
    done
}

children() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' | paste -sd, -; }
kv() { awk -v k="$2=" '{for (i = 1; i <= NF; i++) if (index($i, k) == 1) {print substr($i, length(k) + 1); exit}}' <<<"$1"; }

# Redis as docs/redis.md recommends: every acknowledged write on disk.
start_redis_aof() { # dir
    local dir=$1 i
    mkdir -p "$dir"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly yes --appendfsync always --dir "$dir" --logfile "$dir/redis.log" \
        $REDIS_EXTRA --daemonize no &
    REDIS_PID=$!
    track "$REDIS_PID" redis-server
    for ((i = 0; i < 100; i++)); do
        [ "$(rcli ping 2>/dev/null)" = PONG ] && break
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ "$(rcli ping 2>/dev/null)" = PONG ] || { cat "$dir/redis.log" >&2; die "redis-server did not start"; }
    [ "$(rcli config get appendfsync | tail -n 1)" = always ] || die "redis-server: appendfsync is not always"
}

# nginx from a generated configuration; $1 dir, $2 port, $3 the server's locations.
start_nginx_conf() {
    local dir=$1 port=$2 body=$3
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
# generated by bench/ingest.sh
user root;
worker_processes $NGINX_WORKERS;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
	worker_connections 4096;
}
http {
	access_log off;
	server_tokens off;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	# Keep-alive for the whole run (nginx closes after 1000 requests by default).
	keepalive_timeout 75s;
	keepalive_requests 100000000;
	server {
		listen 127.0.0.1:$port;
$body
	}
}
EOF
    nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' >"$dir/stderr.log" 2>&1 &
    NGINX_LAST=$!
    track "$NGINX_LAST" nginx QUIT
    if ! wait_port "$port" 10 "$NGINX_LAST"; then
        cat "$dir/stderr.log" "$dir/error.log" >&2 2>/dev/null || true
        die "nginx did not start ($dir)"
    fi
    sleep 0.2 # the workers
    NGINX_LAST_PIDS="$NGINX_LAST,$(children "$NGINX_LAST")"
    NGINX_LAST_PIDS=${NGINX_LAST_PIDS%,}
}

# payrelayd: the shipped conf/payrelayd.conf with this run's ports, Redis and key;
# $2 = hook | nohook | lean.
start_daemon() {
    local dir=$1 variant=$2
    mkdir -p "$dir"
    # Every line of the shipped file kept but the addresses and the key, so the
    # bench follows the shipped defaults when they change.
    sed -e "s|^listen = 127.0.0.1:8787|listen = 127.0.0.1:$SRV_PORT|" \
        -e "s|^listen = 127.0.0.1:8788|listen = 127.0.0.1:$ADMIN_PORT|" \
        -e "s|^url = redis://127.0.0.1:6379/0|url = redis://127.0.0.1:$REDIS_PORT/0|" \
        -e "/^\[channel:/,/^\[/s|^key = [^ ;]*|key = $BENCH_KEY|" \
        "$SHIPPED_CONF" >"$dir/payrelayd.conf"
    grep -q "127.0.0.1:$SRV_PORT" "$dir/payrelayd.conf" && grep -q "127.0.0.1:$ADMIN_PORT" "$dir/payrelayd.conf" &&
        grep -q "redis://127.0.0.1:$REDIS_PORT/0" "$dir/payrelayd.conf" && grep -q "^key = $BENCH_KEY" "$dir/payrelayd.conf" ||
        die "conf/payrelayd.conf changed shape: bench/ingest.sh could not set its listen, redis url and key"
    [ "$(grep -c '^\[channel:' "$dir/payrelayd.conf")" = 1 ] || die "conf/payrelayd.conf has not exactly one channel"
    grep -q '^merchant_id = 1001' "$dir/payrelayd.conf" || die "conf/payrelayd.conf: the channel's merchant_id is not 1001"
    CHANNEL=$(sed -n 's/^\[channel:\(.*\)\]$/\1/p' "$dir/payrelayd.conf")
    if [ "$variant" = lean ]; then
        sed -i -e 's/^log_level = .*/log_level = warn/' "$dir/payrelayd.conf"
        grep -q '^log_level = warn' "$dir/payrelayd.conf" || die "could not set log_level = warn"
    fi
    if [ "$variant" = hook ]; then
        cat >>"$dir/payrelayd.conf" <<EOF

; added by bench/ingest.sh: one webhook, every key but url and secret at its default
[webhook:bench]
url = http://127.0.0.1:$RECV_PORT/hook/bench
secret = whsec_$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')
EOF
    fi
    chmod 600 "$dir/payrelayd.conf" # it holds the channel key
    "$DAEMON" --check-config -c "$dir/payrelayd.conf" >"$dir/check-config.log" 2>&1 ||
        { cat "$dir/check-config.log" >&2; die "payrelayd --check-config refused $dir/payrelayd.conf"; }
    # stderr into a pipe read by another process, as journald reads it: the
    # reader counts the lines and keeps those at warning level and above.
    mkfifo "$dir/log.fifo"
    awk -v keep="$dir/warnings.log" '
        { n++ }
        /level=(warn|error)/ { if (k++ < 200) { print > keep; fflush(keep) } }
        END { print n + 0 > "/dev/stdout" }' <"$dir/log.fifo" >"$dir/loglines" &
    READER_PID=$!
    track "$READER_PID" "log reader"
    "$DAEMON" -c "$dir/payrelayd.conf" 2>"$dir/log.fifo" </dev/null &
    DAEMON_PID=$!
    track "$DAEMON_PID" payrelayd
}

# The first answer: "200 success", retried while the server starts (refused
# connections, 503 while payrelayd connects to Redis) for up to 20 s.
sanity() { # port path
    local r i
    for ((i = 0; i < 100; i++)); do
        r=$(http_get "$1" "$2")
        case "$r" in "ERR "*|"503 "*) sleep 0.2 ;; *) break ;; esac
    done
    echo "$r"
}

wait_due_empty() { # seconds
    local i
    for ((i = 0; i < $1 * 20; i++)); do
        [ "$(rcli zcard "$DUE")" = 0 ] && return 0
        sleep 0.05
    done
    return 1
}

# --- callbacks ------------------------------------------------------------------
say "temporary directory $TMP ($FSTYPE)"
[ "$FSTYPE" != tmpfs ] || NOTES+=("BENCH_TMP=$BENCH_TMP is a tmpfs: Redis's fsync costs nothing there, set BENCH_TMP to a directory on disk")
ALL="$TMP/all.txt"
gen_args=(--out "$ALL" --count "$CALLBACKS" --extra "$((WARM_COUNT + 1))" --channel CHANNEL
    --pid "$BENCH_PID" --key "$BENCH_KEY")
[ -f "$VECTORS" ] && gen_args+=(--vectors "$VECTORS")
say "pre-signing $CALLBACKS + $((WARM_COUNT + 1)) distinct epay callbacks"
python3 "$BENCH_DIR/gen_requests.py" "${gen_args[@]}"
[ "$(wc -l <"$ALL")" -eq "$CALLBACKS" ] || die "gen_requests.py wrote the wrong number of paths"
# Paths per target: the query string is the same, the path differs (Node's
# handler answers on /n; PHP's nginx sends every path to notify.php).
paths_for() { # target channel: writes $TMP/paths-<target>{,.sanity,.warm}
    local t=$1 prefix
    case "$t" in
    node) prefix="/n?" ;;
    *) prefix="/notify/$2?" ;;
    esac
    sed "s|^/notify/CHANNEL?|$prefix|" "$ALL" >"$TMP/paths-$t"
    sed -n "1s|^/notify/CHANNEL?|$prefix|p" "$ALL.extra" >"$TMP/paths-$t.sanity"
    sed -n "2,\$s|^/notify/CHANNEL?|$prefix|p" "$ALL.extra" >"$TMP/paths-$t.warm"
    cat "$TMP/paths-$t.sanity" "$TMP/paths-$t.warm" >"$TMP/paths-$t.known"
}
SHIPPED_CHANNEL=$(sed -n 's/^\[channel:\(.*\)\]$/\1/p' "$SHIPPED_CONF" 2>/dev/null | head -n 1)
for t in $TARGETS; do
    case "$t" in
    payrelayd*) paths_for "$t" "$SHIPPED_CHANNEL" ;;
    *) paths_for "$t" bench-epay ;;
    esac
done

RAW="$TMP/raw.txt"
: >"$RAW"
FAILS=()

wrk_cmd() { # port paths-file duration go-file
    echo wrk -t"$THREADS" -c"$CONNECTIONS" -d"$3"s --timeout 2s --latency -s "$BENCH_DIR/callbacks.lua" \
        "http://127.0.0.1:$1/" -- "$2" "$THREADS" "$4"
}

# One target, one round. $3 = measure (a round) or syscalls (the syscall pass).
run_one() {
    local t=$1 round=$2 mode=$3 d="$TMP/$1-$2" dur=$DURATION
    local srv="" other="" stream="" field="" load="" sys="" fsy="" st problems=() r xlen=- dlv=- recv=- lines=- rw=-
    [ "$mode" = measure ] || dur=$SYSCALL_SECS
    mkdir -p "$d"
    read -r REDIS_PORT SRV_PORT ADMIN_PORT RECV_PORT <<<"$(free_ports 4)"
    DAEMON_PID="" DUE=""
    wait_idle "$t (round $round)"
    say "[$t round $round] starting"
    [ "$t" = nginx ] || start_redis_aof "$d/redis"
    case "$t" in
    nginx)
        start_nginx_conf "$d/nginx" "$SRV_PORT" '		location /notify/ {
			default_type text/plain;
			return 200 "success";
		}'
        srv=$NGINX_LAST_PIDS
        ;;
    node)
        REDIS_PORT=$REDIS_PORT PORT=$SRV_PORT node "$SCRATCH/node/notify.js" >"$d/node.log" 2>&1 &
        srv=$!
        track "$srv" node
        stream=events field=trade_no
        ;;
    php)
        mkdir -p "$d/php"
        sed "s/16379/$REDIS_PORT/g" "$PEERS/notify.php" >"$d/php/notify.php"
        grep -q "$REDIS_PORT" "$d/php/notify.php" || die "notify.php: no Redis port 16379 to replace"
        cat >"$d/php/php-fpm.conf" <<EOF
; generated by bench/ingest.sh
[global]
pid = $d/php/php-fpm.pid
error_log = $d/php/php-fpm.log
daemonize = no
[bench]
user = root
group = root
listen = $d/php/php-fpm.sock
listen.mode = 0666
listen.backlog = 4096
pm = static
pm.max_children = $PHP_CHILDREN
EOF
        "$PHP_FPM" -R -F -y "$d/php/php-fpm.conf" >"$d/php/stderr.log" 2>&1 &
        local fpm=$!
        track "$fpm" php-fpm QUIT
        for ((r = 0; r < 100; r++)); do [ -S "$d/php/php-fpm.sock" ] && break; sleep 0.1; done
        [ -S "$d/php/php-fpm.sock" ] || { cat "$d/php/stderr.log" "$d/php/php-fpm.log" >&2 2>/dev/null; die "php-fpm did not start"; }
        start_nginx_conf "$d/nginx" "$SRV_PORT" "		location / {
			include /etc/nginx/fastcgi_params;
			fastcgi_param SCRIPT_FILENAME $d/php/notify.php;
			fastcgi_pass unix:$d/php/php-fpm.sock;
		}"
        sleep 0.3
        srv="$NGINX_LAST_PIDS,$fpm,$(children "$fpm")"
        srv=${srv%,}
        stream=events field=trade_no
        ;;
    payrelayd*)
        local variant=hook
        [ "$t" = payrelayd-nohook ] && variant=nohook
        [ "$t" = payrelayd-lean ] && variant=lean
        if [ "$variant" = hook ]; then
            start_nginx_conf "$d/receiver" "$RECV_PORT" '		location /hook/ {
			return 204;
		}
		location = /nginx_status {
			stub_status;
		}'
            other="$NGINX_LAST_PIDS"
            DUE="payrelay:wh:bench:due"
        fi
        start_daemon "$d" "$variant"
        srv=$DAEMON_PID
        other="${other:+$other,}$READER_PID"
        stream=payrelay:events field=out_trade_no
        ;;
    esac

    r=$(sanity "$SRV_PORT" "$(cat "$TMP/paths-$t.sanity")")
    if [ "$r" != "200 success" ]; then
        [ -z "$DAEMON_PID" ] || tail -n 20 "$d/warnings.log" >&2 2>/dev/null || true
        die "[$t round $round] the sanity callback was answered '$r', not '200 success'"
    fi
    if [ "$WARMUP" -gt 0 ]; then
        say "[$t round $round] warm-up ${WARMUP}s"
        timeout -k 10 $((WARMUP + 120)) $(wrk_cmd "$SRV_PORT" "$TMP/paths-$t.warm" "$WARMUP" "$d/go-warm") \
            >"$d/wrk-warm.txt" 2>&1 || problems+=("warm-up: wrk failed")
        grep -q '^BENCH non_success=0 ' "$d/wrk-warm.txt" ||
            problems+=("warm-up: answers other than 200 \"success\" ($(grep '^BENCH' "$d/wrk-warm.txt" | tr '\n' ' '))")
        if [ -n "$DUE" ] && ! wait_due_empty "$DRAIN_TIMEOUT"; then
            problems+=("warm-up: deliveries not done within ${DRAIN_TIMEOUT}s")
        fi
        sleep 0.5
    fi

    local pids=(--pid "server:$srv")
    [ "$t" = nginx ] || pids+=(--pid "redis:$REDIS_PID")
    [ -z "$other" ] || pids+=(--pid "other:$other")
    local extra=()
    [ -z "$DUE" ] || extra+=(--redis-port "$REDIS_PORT" --due "$DUE" --drain-timeout "$DRAIN_TIMEOUT")
    [ "$mode" = measure ] || extra+=(--syscalls "$SYSCALL_TOOL" --syscalls-pid "$DAEMON_PID" --syscalls-out "$d/syscalls.txt")
    # Redis's fdatasync waits (perf trace), in the same pass: with its CPU,
    # how busy Redis's one thread is.
    [ "$mode" = measure ] || [ "$SYSCALL_TOOL" != perf ] || extra+=(--fsync-pid "$REDIS_PID" --fsync-out "$d/fsync.txt")
    say "[$t round $round] wrk -t$THREADS -c$CONNECTIONS -d${dur}s$([ "$mode" = measure ] || echo " under $SYSCALL_TOOL")"
    st=0
    load=$(timeout -k 10 $((dur + DRAIN_TIMEOUT + 600)) python3 "$BENCH_DIR/ingest_run.py" \
        --wrk-output "$d/wrk.txt" --go-file "$d/go" "${pids[@]}" "${extra[@]}" -- \
        $(wrk_cmd "$SRV_PORT" "$TMP/paths-$t" "$dur" "$d/go")) || st=$?
    sys=$(grep '^SYSCALLS ' <<<"$load" || true)
    fsy=$(grep '^FSYNC ' <<<"$load" || true)
    load=$(grep '^LOAD ' <<<"$load" || true)
    [ "$st" = 0 ] && [ -n "$load" ] || die "[$t round $round] the load helper failed (status $st); wrk said: $(tail -n 5 "$d/wrk.txt" 2>/dev/null | tr '\n' '|')"
    say "[$t round $round] $(kv "$load" rps) req/s, p99 $(kv "$load" p99_ms) ms$([ -z "$DUE" ] || echo ", deliveries done $(kv "$load" drain_s) s after the load")"

    # --- checks ---
    [ "$(kv "$load" wrk_status)" = 0 ] || problems+=("wrk exited with status $(kv "$load" wrk_status)")
    [ "$(kv "$load" non_success)" = 0 ] ||
        problems+=("$(kv "$load" non_success) answers were not 200 \"success\" ($(grep '^BENCH first_non_success' "$d/wrk.txt" | cut -d' ' -f3-))")
    [ "$(kv "$load" sock_errors)" = 0 ] || problems+=("wrk: $(grep 'Socket errors' "$d/wrk.txt" | sed 's/^ *//')")
    if [ "$(kv "$load" wraps)" != 0 ]; then
        if [ "$t" = nginx ]; then
            [ -n "${NGINX_WRAPPED:-}" ] || NOTES+=("nginx ran through the $CALLBACKS callbacks (it records nothing: repeats do not matter)")
            NGINX_WRAPPED=1
        else
            problems+=("the $CALLBACKS pre-signed callbacks ran out: later requests were duplicates (set CALLBACKS higher)")
        fi
    fi
    [ "$(kv "$load" drain_timeout)" = 0 ] || problems+=("$(kv "$load" drain_left) deliveries not done ${DRAIN_TIMEOUT}s after the load")
    if [ -n "$DAEMON_PID" ] && ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        problems+=("payrelayd died during the run")
    fi
    if [ "$t" != nginx ]; then
        # Every callback sent once in the stream (those in flight when wrk
        # stopped are re-sent, as a gateway would), nothing repeated.
        python3 "$BENCH_DIR/check_stream.py" --paths "$TMP/paths-$t" --wrk-output "$d/wrk.txt" \
            --known "$TMP/paths-$t.known" --redis-port "$REDIS_PORT" --port "$SRV_PORT" \
            --stream "$stream" --field "$field" >"$d/check_stream.txt" 2>&1 || true
        local sl
        sl=$(grep '^STREAM ' "$d/check_stream.txt" || true)
        [ -n "$sl" ] || problems+=("stream not checked: $(head -c 300 "$d/check_stream.txt")")
        while IFS= read -r l; do problems+=("stream: ${l#PROBLEM: }"); done < <(grep '^PROBLEM: ' "$d/check_stream.txt" || true)
        xlen=$(rcli xlen "$stream")
    fi
    if [ -n "$DUE" ]; then
        # Every recorded event (warm-up, sanity and re-sent ones too) delivered
        # exactly once: its delivery hash says delivered after one attempt, and
        # the receiver answered exactly one request per event.
        wait_due_empty "$DRAIN_TIMEOUT" || problems+=("deliveries still due ${DRAIN_TIMEOUT}s after the checks")
        sleep 0.3
        python3 "$BENCH_DIR/deliver_check.py" count --redis-port "$REDIS_PORT" --expect "$xlen" >"$d/count.txt" 2>&1 || true
        while IFS= read -r l; do problems+=("deliveries: ${l#PROBLEM: }"); done < <(grep '^PROBLEM: ' "$d/count.txt" || true)
        dlv=$(sed -n 's/^DELIVERIES total=[0-9]* delivered=\([0-9]*\).*/\1/p' "$d/count.txt")
        [ -n "$dlv" ] || problems+=("deliveries not counted: $(head -c 300 "$d/count.txt")")
        recv=$(http_get "$RECV_PORT" /nginx_status | awk '{for (i = 1; i < NF; i++) if ($i == "handled") {print $(i + 4) - 1; exit}}')
        [ "${recv:-x}" = "$xlen" ] || problems+=("the receiver answered ${recv:-?} webhook requests for $xlen recorded events")
    fi
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        set +e; timeout 30 tail --pid="$DAEMON_PID" -f /dev/null; wait "$DAEMON_PID"; r=$?; set -e
        [ "$r" = 0 ] || problems+=("payrelayd exited with status $r on SIGTERM")
        set +e; timeout 10 tail --pid="$READER_PID" -f /dev/null; set -e
        lines=$(cat "$d/loglines" 2>/dev/null || echo 0)
        # Warnings, one note per distinct message at the end.
        [ ! -s "$d/warnings.log" ] || sed "s|^|$t |" "$d/warnings.log" >>"$TMP/warnings-all"
    fi
    # Redis's AOF rewrites in the round (auto-aof-rewrite-percentage 100 from
    # 64 MB: each forks and writes the whole data set, beside the load).
    [ "$t" = nginx ] || rw=$(grep -c 'Background append only file rewriting started' "$d/redis/redis.log" 2>/dev/null || true)
    stop_all

    local checks=ok
    if [ ${#problems[@]} -gt 0 ]; then
        checks=FAIL
        for p in "${problems[@]}"; do FAILS+=("[$t round $round] $p"); done
    fi
    echo "ROUND target=$t round=$round mode=$mode $(sed 's/^LOAD //' <<<"$load") stream_len=$xlen deliveries=$dlv receiver_requests=$recv log_lines=$lines aof_rewrites=${rw:-0} checks=$checks" >>"$RAW"
    [ -z "$sys" ] || echo "$sys target=$t answered=$(kv "$load" answered)" >>"$RAW"
    [ -z "$fsy" ] || echo "$fsy target=$t answered=$(kv "$load" answered) cpu_redis=$(kv "$load" cpu_redis)" >>"$RAW"
    say "[$t round $round] checks $checks"
}

# --- the run --------------------------------------------------------------------
T_START=$(date +%s)
STAMP=$(date -u +%Y%m%d-%H%M)
for ((round = 1; round <= ROUNDS; round++)); do
    for t in $TARGETS; do run_one "$t" "$round" measure; done
done
if [ "$SYSCALL_SECS" -gt 0 ]; then
    for t in $TARGETS; do
        case "$t" in payrelayd*) run_one "$t" sys syscalls ;; esac
    done
fi
T_END=$(date +%s)
if [ -s "$TMP/warnings-all" ]; then
    while IFS= read -r l; do NOTES+=("payrelayd logged at warning level or above: $l"); done < <(
        sed -nE 's/^([^ ]+) .*(level=[a-z]+ msg="[^"]*").*/\1 \2/p' "$TMP/warnings-all" | awk '
            { t = $1; $1 = ""; m = substr($0, 2); if (!(m in n)) o[k++] = m; n[m]++
              if (index(" " ts[m] " ", " " t " ") == 0) ts[m] = ts[m] (ts[m] == "" ? "" : " ") t }
            END { for (i = 0; i < k && i < 20; i++) print o[i] " (" n[o[i]] " times; " ts[o[i]] ")" }')
fi

# --- report -----------------------------------------------------------------------
ver() { "$@" 2>&1 | head -n 1 || true; }
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "elapsed_s=$((T_END - T_START))"
    echo "commit=$(git -C "$REPO" log -1 --format='%h "%s"' 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)')"
    echo "build=$BUILD ($(sed -n "s/^buildtype *= *//p" <(meson introspect --buildoptions "$BUILD" 2>/dev/null | python3 -c 'import json,sys; print("buildtype = " + next(o["value"] for o in json.load(sys.stdin) if o["name"] == "buildtype"))' 2>/dev/null) || true))"
    echo "params=ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS CALLBACKS=$CALLBACKS PHP_CHILDREN=$PHP_CHILDREN NGINX_WORKERS=$NGINX_WORKERS SYSCALL_SECS=$SYSCALL_SECS SYSCALL_TOOL=$SYSCALL_TOOL IDLE_WAIT=$IDLE_WAIT${REDIS_EXTRA:+ REDIS_EXTRA=${REDIS_EXTRA// /_}}"
    echo "targets=$TARGETS"
    echo "machine=$(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "disk=$BENCH_TMP ($FSTYPE, $(df --output=source "$TMP" | tail -n 1))"
    echo "wrk=$(ver wrk -v | awk '{print $1, $2}')"
    command -v nginx >/dev/null && echo "nginx=$(ver nginx -v | sed 's/^nginx version: //')"
    command -v redis-server >/dev/null && echo "redis=$(ver redis-server --version | awk '{print $3}' | sed 's/v=//')"
    has node && echo "node=$(node --version), fastify $NODE_FASTIFY, ioredis $NODE_IOREDIS"
    has php && echo "php=$("$PHP_FPM" -v | head -n 1 | awk '{print $1, $2}') (FPM), phpredis $("$PHP_FPM" -i 2>/dev/null | sed -n 's/^Redis Version => //p' | head -n 1), opcache $("$PHP_FPM" -i 2>/dev/null | sed -n 's/^opcache.enable => \([^ ]*\).*/\1/p' | head -n 1), pm = static, $PHP_CHILDREN children"
    has_daemon && echo "payrelayd=$("$DAEMON" --version 2>&1 | head -n 1)"
    for n in "${NOTES[@]}"; do echo "note=$n"; done
    for f in "${FAILS[@]}"; do echo "fail=$f"; done
} >"$TMP/meta.txt"
mkdir -p "$RESULTS"
OUT="$RESULTS/ingest-$STAMP.md"
python3 "$BENCH_DIR/ingest_report.py" --raw "$RAW" --meta "$TMP/meta.txt" >"$OUT" ||
    die "ingest_report.py failed (raw figures in $RAW; KEEP=1 keeps them)"
cat "$OUT"
echo
say "results written to $OUT"
[ ${#FAILS[@]} -eq 0 ] || exit 1
