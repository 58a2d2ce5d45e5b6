#!/usr/bin/env bash
# The README's first command. Installs what is missing, builds, and sets up a
# whole demo inside this checkout, in .demo/ (git-ignored): a generated admin
# token and config (mode 0600) with a channel of each gateway family and a
# webhook, a redis-server of its own, the demo webhook receiver
# (scripts/demo_receiver.py) and payrelayd, all on loopback. Then it prints a
# tour and waits; Ctrl-C stops everything it started, by PID.
#
# Usage: scripts/demo.sh           set up, print the tour, wait for Ctrl-C
#        scripts/demo.sh --check   the same set-up in .demo/check/ on free
#                                  ports, then sends a callback of each family
#                                  and checks that each is acked, recorded,
#                                  delivered with a valid signature and seen by
#                                  payrelayctl; also a failing receiver, a dead
#                                  delivery and its replay. Stops everything;
#                                  exit 0, or 1 with the reason (no TTY needed).
# PAYRELAY_DEMO_BUILD=DIR runs the binaries of an existing build directory
# (scripts/test.sh passes its own) instead of building build/.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

mode=tour
case "${1:-}" in
'') ;;
--check) mode=check ;;
-h | --help)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
  ;;
*)
  echo "usage: scripts/demo.sh [--check]" >&2
  exit 2
  ;;
esac

say() { echo "demo: $*" >&2; }
die() {
  echo "demo: FAILED: $*" >&2
  exit 1
}

if [ -n "${PAYRELAY_DEMO_BUILD:-}" ]; then
  build=$PAYRELAY_DEMO_BUILD
  [ -x "$build/src/payrelayd" ] || die "PAYRELAY_DEMO_BUILD=$build holds no src/payrelayd"
else
  bash scripts/deps.sh
  bash scripts/build.sh build --buildtype=debugoptimized
  build=build
fi
bin=$top/$build/src
case "$build" in /*) bin=$build/src ;; esac

# --check lives in .demo/check, so it can run (in CI, or from scripts/test.sh)
# beside an interactive demo of the same checkout.
if [ "$mode" = check ]; then
  rel=.demo/check
  # Retries 2 s apart: the check sees a delivery die within seconds.
  schedule="0 2 2"
else
  rel=.demo
  # Long enough to type `deliveries list --pending`, short enough to wait for.
  schedule="0 10 20"
fi
dir=$top/$rel
conf=$dir/payrelayd.conf

# A process's start time (in clock ticks since boot): with its PID, it names
# that process and no later one that reuses the PID.
starttime() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null; }

# A demo of this directory that is still running would lose its data below.
if [ -f "$dir/pids" ]; then
  while read -r name pid since; do
    if [ -n "$since" ] && [ "$(starttime "$pid")" = "$since" ]; then
      die "a demo is still running in $rel/: $name has PID $pid (Ctrl-C it, or kill $pid)"
    fi
  done <"$dir/pids"
fi
if [ -e "$top/.demo" ] && ! [ -w "$top/.demo" ]; then
  die ".demo/ belongs to another user (an earlier run with sudo?): sudo rm -rf .demo"
fi
if [ "$mode" = check ]; then
  rm -rf "$dir"
else
  mkdir -p "$dir"
  find "$dir" -mindepth 1 -maxdepth 1 ! -name check -exec rm -rf {} +
fi
umask 077
mkdir -p "$dir/redis"

# --- what stops it all: by PID, payrelayd first (it hands its leases back
# to Redis), then the receiver and Redis. Each process runs in a session of
# its own (setsid), so Ctrl-C reaches only this script, which stops them in
# that order.
pids=()     # "name pid", in start order
payrelayd_status=
alive() {
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $s != Z* ]]
}
stop_one() { # name pid: SIGTERM, up to 10 s, then SIGKILL; reaps it
  local name=$1 pid=$2 i rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    say "$name (PID $pid) still runs 10 s after SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  [ "$name" = payrelayd ] && payrelayd_status=$rc
  return 0
}
stopped=
stop_all() {
  local i
  [ -n "$stopped" ] && return 0
  stopped=1
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    # shellcheck disable=SC2086 # "name pid": two arguments
    stop_one ${pids[i]}
  done
  rm -f "$dir/pids"
}
trap 'stop_all' EXIT
trap 'echo >&2; say "stopping"; stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM HUP

started() { # name pid
  pids+=("$1 $2")
  printf '%s %s %s\n' "$1" "$2" "$(starttime "$2")" >>"$dir/pids"
}
# Waits up to $1 seconds for the command after it to succeed, while $pid lives.
wait_for() {
  local secs=$1 name=$2 pid=$3 i
  shift 3
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$pid" || return 1
    sleep 0.1
  done
  return 1
}

# --- ports: the usual ones for the tour when they are free, any free ones
# otherwise, and always free ones for --check (a Redis on 6379 or a demo
# already running must not matter). Held together, so they differ.
if [ "$mode" = check ]; then want="0 0 0 0"; else want="8787 8788 9000 0"; fi
# shellcheck disable=SC2086
read -r port admin_port receiver_port redis_port < <(python3 - $want <<'PY'
import socket, sys
held = []
for want in sys.argv[1:]:
    for p in (int(want), 0):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            s.close()
            continue
        held.append(s)
        break
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
)
[ -n "$redis_port" ] || die "no free loopback ports"

# --- secrets and the config: generated at every start, readable only by you.
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$dir/admin.token"
python3 -c 'import base64, secrets; print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())' \
  >"$dir/webhook.secret"
secret=$(cat "$dir/webhook.secret")
cat >"$conf" <<EOF
; payrelayd demo configuration, written by scripts/demo.sh at every start (do
; not edit: the next start overwrites it). Keys are the demo keys of
; ../shared/vectors; the admin token and the webhook secret were generated.
; It holds secrets, so it is mode 0600; docs/configuration.md has every key.

[daemon]
listen = 127.0.0.1:$port
shutdown_timeout = 5
log_level = info

[admin]
listen = 127.0.0.1:$admin_port
token_file = admin.token          ; relative to this file; payrelayctl -c reads it too

[redis]
url = redis://127.0.0.1:$redis_port/0   ; the demo's own redis-server, data in $rel/redis
prefix = payrelay:

[stream]
key = payrelay:events

; No api_base anywhere: the demo talks to no gateway, so nothing is polled
; (registered orders are only amount-checked) and nothing leaves this machine.

[channel:shop-epay]
family = epay
merchant_id = 1001
key = 89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i

[channel:shop-gatepay]
family = gatepay
merchant_id = 098f6bcd4621d373cade4e832627b4f6
key = 5ebe2294ecd0e0f08eab7690d2a6ee69
; gatepay's signature can be re-cut (SPEC 2.5), so payrelayd normally asks the
; gateway's query API to confirm each payment (confirm = query). No gateway is
; reachable here, so confirmation is off, and payrelayd warns about it at start
; ("confirm = off on a gatepay channel"): expected in the demo, not in production.
confirm = off

[channel:shop-payindex]
family = payindex
merchant_id = 10002
key = t4ig5acnpx4fet4zapshjacjd9o4bhbi

; The demo receiver (scripts/demo_receiver.py) checks each delivery's
; signature with this secret (also in webhook.secret) and prints it.
[webhook:demo-receiver]
url = http://127.0.0.1:$receiver_port/payrelay
secret = $secret
timeout_ms = 3000
schedule = $schedule               ; seconds before each attempt, then dead
EOF
chmod 600 "$dir/admin.token" "$dir/webhook.secret" "$conf"

"$bin/payrelayd" -c "$conf" --check-config >"$dir/check-config.out" 2>&1 ||
  die "the generated $rel/payrelayd.conf is invalid: $(cat "$dir/check-config.out")"

# --- Redis, the receiver, payrelayd
setsid redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" \
  --appendonly yes --appendfsync always --save '' \
  --logfile "$dir/redis/redis.log" --daemonize no </dev/null >/dev/null 2>&1 &
redis_pid=$!
started redis-server "$redis_pid"
wait_for 10 redis-server "$redis_pid" redis-cli -h 127.0.0.1 -p "$redis_port" ping ||
  die "redis-server did not answer on 127.0.0.1:$redis_port within 10 s: $(tail -n 5 "$dir/redis/redis.log" 2>/dev/null)"

# The tour's receiver prints to this terminal; --check's to a file it reads.
if [ "$mode" = check ]; then exec 3>"$dir/receiver.out"; else exec 3>&1; fi
setsid python3 "$top/scripts/demo_receiver.py" --port "$receiver_port" \
  --secret-file "$rel/webhook.secret" --fail-file "$rel/receiver.fail" \
  </dev/null >&3 2>"$dir/receiver.err" 3>&- &
receiver_pid=$!
exec 3>&-
started demo_receiver "$receiver_pid"
wait_for 10 demo_receiver "$receiver_pid" curl -sf -m 1 "http://127.0.0.1:$receiver_port/" ||
  die "the demo receiver did not answer on 127.0.0.1:$receiver_port within 10 s: $(cat "$dir/receiver.err")"

setsid "$bin/payrelayd" -c "$conf" </dev/null >/dev/null 2>"$dir/payrelayd.log" &
payrelayd_pid=$!
started payrelayd "$payrelayd_pid"
ctl() { "$bin/payrelayctl" -c "$conf" --timeout 5 "$@"; }
wait_for 15 payrelayd "$payrelayd_pid" "$bin/payrelayctl" -c "$conf" --timeout 1 status ||
  die "payrelayd was not ready within 15 s; its log ($rel/payrelayd.log):
$(tail -n 15 "$dir/payrelayd.log")"

# The only warning a start may log is the one the config comment announces.
if grep 'level=warn' "$dir/payrelayd.log" | grep -v 'confirm = off on a gatepay channel' >&2; then
  die "payrelayd warned at start (above)"
fi

# --- the tour
if [ "$mode" = tour ]; then
  mapfile -t cb < <(python3 scripts/demo_callback.py -c "$conf" --script shop-epay demo-1001 1.00)
  epay_curl=${cb[0]} evt1=${cb[1]}
  mapfile -t cb < <(python3 scripts/demo_callback.py -c "$conf" --script shop-gatepay demo-1002 1.88)
  gatepay_curl=${cb[0]}
  as_root=
  if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ]; then
    as_root="
      You ran it with sudo: $rel/ and its secrets belong to root, so run the
      commands below as root too (next time, run demo.sh as yourself)."
  fi
  send_test=
  if "$bin/payrelayctl" send-test --help >/dev/null 2>&1; then
    send_test="
   (or let payrelayctl sign one: payrelayctl -c $rel/payrelayd.conf send-test --help)"
  fi
  cat <<EOF

demo: payrelayd is ready: callbacks on 127.0.0.1:$port, admin API on 127.0.0.1:$admin_port,
      its own redis-server on 127.0.0.1:$redis_port, the demo receiver on 127.0.0.1:$receiver_port.
      Everything lives in $rel/ (config, token, logs); Ctrl-C here stops it all.
      The receiver prints each delivery below.$as_root In another terminal:

  cd '$top' && export PATH='$bin':\$PATH

1. A gateway's signed callback (epay, as a GET); payrelayd acks it with "success":
   $epay_curl$send_test
2. The recorded event, and the receiver's line here ("verified $evt1 ..."):
   payrelayctl -c $rel/payrelayd.conf events show $evt1
3. Make the receiver fail, then a gatepay payment (POST):
   touch $rel/receiver.fail
   $gatepay_curl
   payrelayctl -c $rel/payrelayd.conf deliveries list --pending
   (it is retried 10 s later and 20 s after that, then it is dead:)
   payrelayctl -c $rel/payrelayd.conf deliveries list --dead
4. Heal the receiver and replay what died:
   rm $rel/receiver.fail
   payrelayctl -c $rel/payrelayd.conf replay --webhook demo-receiver --dead
5. How it is doing:
   payrelayctl -c $rel/payrelayd.conf status
   curl -s -H "Authorization: Bearer \$(cat $rel/admin.token)" http://127.0.0.1:$admin_port/metrics | grep -E '^payrelay_(callbacks|deliveries)_'
   tail -f $rel/payrelayd.log
Sign more: python3 scripts/demo_callback.py shop-payindex demo-1003 9.99

EOF
  # Until Ctrl-C, or until one of them dies by itself.
  set +e
  wait -n "$redis_pid" "$receiver_pid" "$payrelayd_pid"
  rc=$?
  for p in "${pids[@]}"; do
    read -r name pid <<<"$p"
    alive "$pid" || say "$name (PID $pid) exited by itself (status $rc): see $rel/"
  done
  exit 1
fi

# --- --check: what the tour shows, asserted
failed() {
  say "payrelayd's log ($rel/payrelayd.log), last lines:"
  tail -n 20 "$dir/payrelayd.log" >&2 || true
  say "the receiver's output ($rel/receiver.out):"
  cat "$dir/receiver.out" >&2 || true
  die "$*"
}
# Waits up to $1 seconds for the receiver to print a line matching $2.
receiver_said() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    grep -qxF -- "$2" "$dir/receiver.out" && return 0
    sleep 0.1
  done
  return 1
}
# Waits up to $1 seconds for `payrelayctl --json deliveries list $2` to list
# event $3 (with the fields $4 set: "k=v,k=v").
deliveries_list_has() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    if ctl --json deliveries list "$2" --webhook demo-receiver 2>/dev/null |
      python3 -c '
import json, sys
evt, want = sys.argv[1], dict(kv.split("=", 1) for kv in sys.argv[2].split(",") if kv)
d = json.load(sys.stdin)
rows = d.get("deliveries", d) if isinstance(d, dict) else d
ok = any(r.get("event_id") == evt and all(str(r.get(k)) == v for k, v in want.items()) for r in rows)
sys.exit(0 if ok else 1)' "$3" "${4:-}"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
# Sends a signed callback; checks the exact ack, the recorded event and its
# signed delivery. Sets $evt.
callback() { # channel order amount
  local cmd ack answer cb
  mapfile -t cb < <(python3 scripts/demo_callback.py -c "$conf" --script "$1" "$2" "$3")
  [ ${#cb[@]} = 3 ] || failed "$1: scripts/demo_callback.py failed"
  cmd=${cb[0]} evt=${cb[1]} ack=${cb[2]}
  answer=$(eval "$cmd -m 5 -w '|%{http_code}'") || failed "$1: curl failed: $cmd"
  [ "$answer" = "$ack|200" ] || failed "$1: the callback was answered \"$answer\", not \"$ack|200\""
  ctl --json events show "$evt" >"$dir/event.json" || failed "$1: payrelayctl events show $evt failed"
  python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
want = {"id": sys.argv[2], "type": "order.paid", "channel": sys.argv[3],
        "out_trade_no": sys.argv[4], "amount": sys.argv[5], "source": "callback"}
bad = {k: e.get(k) for k in want if e.get(k) != want[k]}
sys.exit("recorded event differs: %r, wanted %r" % (bad, want) if bad else 0)' \
    "$dir/event.json" "$evt" "$1" "$2" "$3" || failed "$1: events show $evt"
  answer=$(ctl events show "$evt") || failed "$1: payrelayctl events show $evt failed"
  grep -qx "id: $evt" <<<"$answer" || failed "$1: events show $evt (table) has no id line"
}

t0=$SECONDS
callback shop-epay check-epay-1 1.00
receiver_said 10 "verified $evt order.paid shop-epay 1.00" ||
  failed "shop-epay: the receiver did not print a verified delivery of $evt within 10 s"
evt_epay=$evt
callback shop-gatepay check-gatepay-1 1.88
receiver_said 10 "verified $evt order.paid shop-gatepay 1.88" ||
  failed "shop-gatepay: the receiver did not print a verified delivery of $evt within 10 s"
callback shop-payindex check-payindex-1 100.00
receiver_said 10 "verified $evt order.paid shop-payindex 100.00" ||
  failed "shop-payindex: the receiver did not print a verified delivery of $evt within 10 s"
say "check: a callback of each family acked, recorded, delivered and verified"

# A gateway's retry is acked again and delivered no second time.
callback shop-epay check-epay-1 1.00
[ "$evt" = "$evt_epay" ] || failed "the same callback gave another event id"

# The receiver refuses what payrelayd did not sign.
answer=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -H 'webhook-id: evt_forged' -H "webhook-timestamp: $(date +%s)" \
  -H 'webhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' \
  --data '{"id":"evt_forged"}' "http://127.0.0.1:$receiver_port/payrelay") || true
[ "$answer" = 400 ] || failed "the receiver answered a forged delivery $answer, not 400"
receiver_said 5 "REFUSED  bad signature webhook-id=evt_forged -> 400" ||
  failed "the receiver printed no REFUSED line for a forged delivery"

# A failing receiver: pending, retried, dead; healed and replayed.
touch "$dir/receiver.fail"
callback shop-payindex check-payindex-2 2.50
receiver_said 10 "failing  $evt order.paid shop-payindex 2.50 ($rel/receiver.fail exists) -> 500" ||
  failed "the receiver did not print a failing delivery of $evt"
deliveries_list_has 5 --pending "$evt" "last_status=500" ||
  failed "deliveries list --pending did not show $evt with last status 500"
out=$(ctl deliveries list --pending) || failed "payrelayctl deliveries list --pending failed"
grep -q "$evt" <<<"$out" || failed "deliveries list --pending (table) did not show $evt"
deliveries_list_has 15 --dead "$evt" "attempts=3" ||
  failed "$evt did not become a dead delivery after 3 attempts"
out=$(ctl deliveries list --dead) || failed "payrelayctl deliveries list --dead failed"
grep -q "$evt" <<<"$out" || failed "deliveries list --dead (table) did not show $evt"
rm -f "$dir/receiver.fail"
out=$(ctl replay --webhook demo-receiver --dead) || failed "payrelayctl replay --webhook demo-receiver --dead failed"
[ "$out" = "replayed 1 dead delivery of demo-receiver" ] || failed "replay printed \"$out\""
receiver_said 10 "verified $evt order.paid shop-payindex 2.50" ||
  failed "the replayed delivery of $evt did not reach the receiver"
deliveries_list_has 1 --dead "$evt" && failed "$evt is still dead after its replay"
say "check: a failing receiver seen pending, then dead; replayed and delivered"

out=$(ctl status) || failed "payrelayctl status: $out"
grep -q "^payrelayd at 127.0.0.1:$admin_port: ready" <<<"$out" || failed "payrelayctl status said: $out"
metrics=$(curl -sS -m 5 -H "Authorization: Bearer $(cat "$dir/admin.token")" \
  "http://127.0.0.1:$admin_port/metrics") || failed "GET /metrics failed"
for m in 'payrelay_callbacks_total{channel="shop-epay",result="recorded"} 1' \
  'payrelay_callbacks_total{channel="shop-epay",result="duplicate"} 1' \
  'payrelay_callbacks_total{channel="shop-gatepay",result="recorded"} 1' \
  'payrelay_callbacks_total{channel="shop-payindex",result="recorded"} 2' \
  'payrelay_deliveries_total{webhook="demo-receiver",outcome="delivered"} 4' \
  'payrelay_deliveries_total{webhook="demo-receiver",outcome="dead"} 1' \
  'payrelay_deliveries_dead{webhook="demo-receiver"} 0'; do
  grep -qxF "$m" <<<"$metrics" || failed "/metrics lacks the line: $m"
done
[ "$(grep -c '^verified ' "$dir/receiver.out")" = 4 ] ||
  failed "the receiver verified $(grep -c '^verified ' "$dir/receiver.out") deliveries, not 4"
say "check: payrelayctl status and /metrics agree"

stop_all
for p in "${pids[@]}"; do
  read -r name pid <<<"$p"
  ! alive "$pid" || die "$name (PID $pid) still runs after the demo stopped"
done
if pgrep -f -- "$dir/" >/dev/null; then
  die "processes of $rel/ still run: $(pgrep -af -- "$dir/")"
fi
[ "$payrelayd_status" = 0 ] || die "payrelayd exited with status $payrelayd_status on SIGTERM, not 0"
say "check: OK in $((SECONDS - t0)) s; everything it started has stopped"
