# bench/lib.sh: shell helpers shared by bench/ingest.sh and bench/deliver.sh.
# Sourced, not run. The caller sets PROG (its name, for messages), TMP (its
# temporary directory), REDIS_PORT, and defines die.

stop_pid() { # pid name [seconds] [signal]
    local pid=$1 name=$2 secs=${3:-10} sig=${4:-TERM} i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$PROG: $name (pid $pid) ignored SIG$sig for ${secs}s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

free_ports() { # count: prints that many distinct free loopback ports
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_port() { # port seconds pid
    local port=$1 secs=$2 pid=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

http_get() { # port path: prints "STATUS BODY"
    python3 - "$1" "$2" <<'EOF'
import http.client, sys
try:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
    c.request("GET", sys.argv[2])
    r = c.getresponse()
    print(r.status, r.read().decode("utf-8", "replace").replace("\n", " ")[:200])
except Exception as e:
    print("ERR", repr(e)[:200])
EOF
}

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

start_redis() { # redis-server on 127.0.0.1:$REDIS_PORT, no persistence, in $TMP: sets REDIS_PID
    local i
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$TMP" --logfile "$TMP/redis.log" --daemonize no &
    REDIS_PID=$!
    for ((i = 0; i < 100; i++)); do
        [ "$(rcli ping 2>/dev/null)" = PONG ] && break
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ "$(rcli ping 2>/dev/null)" = PONG ] || { cat "$TMP/redis.log" >&2; die "redis-server did not start"; }
}

# systemd-style readiness without systemd: a NOTIFY_SOCKET at $TMP/notify.sock
# whose datagrams become lines of $TMP/notify.log, for at most $1 seconds.
# Sets NOTIFY_PID.
start_notify_listener() {
    local i
    timeout "$1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as f:
    while True:
        f.write(s.recv(4096).replace(b"\n", b" ") + b"\n")
' "$TMP/notify.sock" "$TMP/notify.log" &
    NOTIFY_PID=$!
    for ((i = 0; i < 50; i++)); do [ -S "$TMP/notify.sock" ] && break; sleep 0.1; done
    : >>"$TMP/notify.log"
}
