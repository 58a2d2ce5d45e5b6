#!/usr/bin/env python3
"""Helper of bench/deliver.sh (delivery throughput): timing and checks.

Subcommands (all talk to Redis on 127.0.0.1 through one plain socket, RESP):

  record  Runs wrk (the command after --) with bench/callbacks.lua until the
          stream holds --expect events, then stops it (SIGINT: wrk still
          prints its summary and the script's BENCH lines). Prints
          `RECORD events=.. secs=.. rate=.. timeout=0|1`.
  drain   Every delivery of the webhook is recorded but not due yet. Moves all
          of them to due now in one command (ZUNIONSTORE due 1 due WEIGHTS 0:
          every score becomes 0), then polls ZCARD of the due set until it is
          0. Measures the CPU time of the given processes over that window.
          Prints `DRAIN n=.. t0_ms=.. t1_ms=.. secs=.. cpu_NAME=..% ...`.
  mixed   Runs wrk (the command after --) while deliveries flow (schedule
          starting at 0), measuring CPU over wrk's run, then waits until the
          due set is empty. Prints `MIXED t0_ms=.. t1_ms=.. drained_ms=..
          cpu_NAME=..% ...`.
  count   Reads every delivery hash (SCAN inside one Lua script) and, when
          given, nginx's access log of the webhook requests; prints
          `DELIVERIES ...`, `RECEIVER ...` and one `PROBLEM: ...` line per
          failed check; exits 1 when there is one.

CPU figures are % of one core over the window (utime + stime from /proc).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


class RedisError(Exception):
    pass


class Redis:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise RedisError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError("unexpected reply " + repr(line[:40]))


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_ticks(pid):
    """utime + stime of one process, in clock ticks (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks():
    """(busy, total) ticks of all CPUs: busy = user+nice+system+irq+softirq+steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy, sum(v[:8])


class CpuWindow:
    """CPU use of named groups of processes between start() and stop()."""

    def __init__(self, groups):
        self.groups = groups  # [(name, [pid, ...])]

    def snap(self):
        return {name: sum(proc_ticks(p) or 0 for p in pids) for name, pids in self.groups}

    def start(self):
        self.t0 = time.time()
        self.c0 = self.snap()
        self.m0 = machine_ticks()

    def stop(self):
        self.t1 = time.time()
        self.c1 = self.snap()
        self.m1 = machine_ticks()

    def fields(self, extra_secs=0.0):
        secs = max(self.t1 - self.t0, 1e-9)
        out = []
        total = extra_secs * CLK_TCK  # CPU of processes measured elsewhere (wrk)
        for name, _ in self.groups:
            d = self.c1[name] - self.c0[name]
            total += d
            out.append(f"cpu_{name}={100.0 * d / CLK_TCK / secs:.0f}%")
        busy = self.m1[0] - self.m0[0]
        alltk = max(self.m1[1] - self.m0[1], 1)
        ncpu = os.cpu_count() or 1
        # machine: % of one core too (ncpu cores = ncpu * 100 %);
        # rest: what none of the named processes used (softirq, kernel
        # threads, any other process).
        out.append(f"cpu_machine={100.0 * ncpu * busy / alltk:.0f}%")
        out.append(f"cpu_rest={max(0.0, 100.0 * ncpu * busy / alltk - 100.0 * total / CLK_TCK / secs):.0f}%")
        return " ".join(out)


def parse_pids(specs):
    """name:pid[,pid...] ... -> [(name, [pids])]"""
    groups = []
    for spec in specs or []:
        name, _, pids = spec.partition(":")
        groups.append((name, [int(p) for p in pids.split(",") if p]))
    return groups


def zcard(r, key):
    return r.call("ZCARD", key)


def script_stats(r):
    """(calls, usec) of EVALSHA and EVAL so far (INFO commandstats)."""
    calls = usec = 0
    for line in r.call("INFO", "commandstats").decode().splitlines():
        if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
            kv = dict(x.split("=", 1) for x in line.split(":", 1)[1].split(","))
            calls += int(kv["calls"])
            usec += int(kv["usec"])
    return calls, usec


# --- record ---------------------------------------------------------------------

def cmd_record(args):
    r = Redis(args.redis_port)
    start = r.call("XLEN", args.stream)
    out = open(args.wrk_output, "wb")
    p = subprocess.Popen(args.cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    first = None
    timeout = False
    n = start
    while True:
        n = r.call("XLEN", args.stream)
        if first is None and n > start:
            first = time.time()
        if n - start >= args.expect:
            break
        if p.poll() is not None:
            break
        if time.time() - t0 > args.timeout:
            timeout = True
            break
        time.sleep(0.02)
    t1 = time.time()
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    out.close()
    # Late answers of requests in flight: let them land before counting.
    time.sleep(0.3)
    n = r.call("XLEN", args.stream) - start
    secs = t1 - (first or t0)
    print(f"RECORD events={n} secs={secs:.2f} rate={n / secs if secs > 0 else 0:.0f} "
          f"timeout={int(timeout)} wrk_status={p.returncode}")
    return 0


# --- drain ---------------------------------------------------------------------

def cmd_drain(args):
    r = Redis(args.redis_port)
    n = zcard(r, args.due)
    cpu = CpuWindow(parse_pids(args.pid))
    progress = []
    s0 = script_stats(r)
    cpu.start()
    t0 = time.time()
    r.call("ZUNIONSTORE", args.due, 1, args.due, "WEIGHTS", 0)
    timeout = False
    last_p = t0
    while True:
        left = zcard(r, args.due)
        now = time.time()
        if now - last_p >= 1.0:
            progress.append(f"{now - t0:.0f}s:{n - left}")
            last_p = now
        if left == 0:
            break
        if now - t0 > args.timeout:
            timeout = True
            break
        time.sleep(args.interval)
    t1 = time.time()
    cpu.stop()
    s1 = script_stats(r)
    # Scripts run by payrelayd during the drain: one claim per batch and one
    # finish per delivery (our own commands are not scripts).
    print(f"DRAIN n={n} left={left} t0_ms={int(t0 * 1000)} t1_ms={int(t1 * 1000)} "
          f"secs={t1 - t0:.3f} timeout={int(timeout)} scripts={s1[0] - s0[0]} "
          f"script_usec={s1[1] - s0[1]} {cpu.fields()}")
    print("PROGRESS " + " ".join(progress))
    return 0


# --- mixed ---------------------------------------------------------------------

def cmd_mixed(args):
    r = Redis(args.redis_port)
    out = open(args.wrk_output, "wb")
    groups = parse_pids(args.pid)
    go = args.go_file
    p = subprocess.Popen(args.cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    # callbacks.lua makes the go file when every thread has loaded its slice:
    # the measured window starts there.
    for _ in range(60000):
        if os.path.exists(go) or p.poll() is not None:
            break
        time.sleep(0.005)
    cpu = CpuWindow(groups)
    cpu.start()
    w0 = proc_ticks(p.pid) or 0
    t0 = time.time()
    # wait4: wrk's own CPU time comes with its exit status (its /proc entry
    # is gone once it is reaped).
    _, status, ru = os.wait4(p.pid, 0)
    t1 = time.time()
    cpu.stop()
    p.returncode = os.waitstatus_to_exitcode(status)
    out.close()
    wrk_s = ru.ru_utime + ru.ru_stime - w0 / CLK_TCK
    # Then the backlog drains.
    timeout = False
    while zcard(r, args.due) > 0:
        if time.time() - t1 > args.timeout:
            timeout = True
            break
        time.sleep(args.interval)
    t2 = time.time()
    print(f"MIXED t0_ms={int(t0 * 1000)} t1_ms={int(t1 * 1000)} drained_ms={int(t2 * 1000)} "
          f"secs={t1 - t0:.3f} left={zcard(r, args.due)} timeout={int(timeout)} "
          f"wrk_status={p.returncode} cpu_wrk={100.0 * wrk_s / max(t1 - t0, 1e-9):.0f}% "
          f"{cpu.fields(extra_secs=wrk_s)}")
    return 0


# --- count ---------------------------------------------------------------------

SCAN = """
local cursor, out = '0', {}
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    if redis.call('TYPE', k).ok == 'hash' then
      local f = redis.call('HMGET', k, 'event_id', 'state', 'attempts', 'created_ms',
        'delivered_ms', 'last_status', 'webhook')
      out[#out + 1] = k
      for i = 1, 7 do out[#out + 1] = f[i] or '' end
    end
  end
until cursor == '0'
return out
"""


def pct(sorted_vals, q):
    if not sorted_vals:
        return 0
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


def cmd_count(args):
    r = Redis(args.redis_port)
    flat = r.call("EVAL", SCAN, 0, args.prefix + "delivery:*")
    rows = {}
    for i in range(0, len(flat), 8):
        rows[flat[i]] = [x.decode() for x in flat[i + 1:i + 8]]
    problems = []
    states = {}
    attempts_hist = {}
    delivered_ms = []
    latencies = []
    event_ids = {}
    for key, (eid, state, attempts, created, delivered, status, hook) in rows.items():
        states[state] = states.get(state, 0) + 1
        attempts_hist[attempts] = attempts_hist.get(attempts, 0) + 1
        event_ids[eid] = event_ids.get(eid, 0) + 1
        if state == "delivered" and delivered:
            d = int(delivered)
            delivered_ms.append(d)
            if created:
                latencies.append(d - int(created))
    delivered_ms.sort()
    latencies.sort()
    total = len(rows)
    ndel = states.get("delivered", 0)
    ndead = states.get("dead", 0)
    retried = sum(v for k, v in attempts_hist.items() if k not in ("1",))
    line = (f"DELIVERIES total={total} delivered={ndel} dead={ndead} "
            f"pending={states.get('pending', 0)} "
            f"other={total - ndel - ndead - states.get('pending', 0)} "
            f"not_one_attempt={retried} "
            f"attempts={','.join(f'{k or 0}:{v}' for k, v in sorted(attempts_hist.items()))} "
            f"first_ms={delivered_ms[0] if delivered_ms else 0} "
            f"last_ms={delivered_ms[-1] if delivered_ms else 0} "
            f"lat_p50_ms={pct(latencies, 0.50)} lat_p99_ms={pct(latencies, 0.99)} "
            f"lat_max_ms={latencies[-1] if latencies else 0}")
    if args.window:
        w0, w1 = args.window
        created_by_w1 = sum(1 for k, row in rows.items() if row[3] and int(row[3]) <= w1)
        in_window = sum(1 for d in delivered_ms if w0 <= d <= w1)
        by_w1 = sum(1 for d in delivered_ms if d <= w1)
        line += f" delivered_in_window={in_window} backlog_at_end={created_by_w1 - by_w1}"
    print(line)

    if args.expect is not None and total != args.expect:
        problems.append(f"{total} delivery hashes, expected {args.expect} (one per recorded event)")
    if ndel != total:
        problems.append(f"{total - ndel} deliveries not delivered "
                        f"(states: {', '.join(f'{k}={v}' for k, v in sorted(states.items()))})")
    if ndead:
        problems.append(f"{ndead} deliveries dead")
    if retried:
        problems.append(f"{retried} deliveries took other than exactly one attempt "
                        f"(attempts: {attempts_hist})")
    dup_events = sum(1 for v in event_ids.values() if v > 1)
    if dup_events:
        problems.append(f"{dup_events} events have more than one delivery to the webhook")

    if args.access_log:
        seen = {}
        non2xx = 0
        bad_sig = 0
        conns = set()
        lines = 0
        with open(args.access_log, encoding="utf-8", errors="replace") as f:
            for l in f:
                parts = l.split()
                if len(parts) < 5 or parts[3] != args.uri:
                    continue  # not a webhook request (the receiver check of deliver.sh)
                lines += 1
                wid, status, conn, sig = parts[0], parts[1], parts[2], parts[4]
                seen[wid] = seen.get(wid, 0) + 1
                if not status.startswith("2"):
                    non2xx += 1
                if not sig.startswith("v1,") or len(sig) != 47:
                    bad_sig += 1
                conns.add(conn)
        repeated = sum(v - 1 for v in seen.values() if v > 1)
        # Every delivered event must have reached the receiver; a dead or
        # pending one may or may not have.
        want = set(row[0] for row in rows.values() if row[1] == "delivered")
        missing = [e for e in want if e not in seen]
        unexpected = [e for e in seen if e not in event_ids]
        print(f"RECEIVER requests={lines} distinct_ids={len(seen)} repeated={repeated} "
              f"missing={len(missing)} unexpected={len(unexpected)} non2xx={non2xx} "
              f"bad_signature_header={bad_sig} connections={len(conns)}")
        if repeated:
            problems.append(f"the receiver got {repeated} requests for an event id it had already got")
        if missing:
            problems.append(f"the receiver never got {len(missing)} delivered events (e.g. {sorted(missing)[0]})")
        if unexpected:
            problems.append(f"the receiver got {len(unexpected)} event ids that are not deliveries "
                            f"(e.g. {sorted(unexpected)[0]!r})")
        if non2xx:
            problems.append(f"{non2xx} receiver answers were not 2xx")
        if bad_sig:
            problems.append(f"{bad_sig} requests had no well-formed webhook-signature header (v1,<base64 of 32 bytes>)")
    for p in problems:
        print("PROBLEM: " + p)
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd_name", required=True)

    p = sub.add_parser("record")
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--stream", default="payrelay:events")
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--wrk-output", required=True)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("drain")
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--due", required=True)
    p.add_argument("--pid", action="append", help="name:pid[,pid...] (CPU measured)")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--interval", type=float, default=0.01)
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("mixed")
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--due", required=True)
    p.add_argument("--pid", action="append")
    p.add_argument("--go-file", required=True)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--wrk-output", required=True)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_mixed)

    p = sub.add_parser("count")
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--prefix", default="payrelay:")
    p.add_argument("--expect", type=int)
    p.add_argument("--access-log", help="nginx log: webhook-id status connection uri signature")
    p.add_argument("--uri", default="/hook/bench", help="the webhook's path in the access log")
    p.add_argument("--window", type=int, nargs=2, metavar=("T0_MS", "T1_MS"))
    p.set_defaults(func=cmd_count)

    args = ap.parse_args()
    if hasattr(args, "cmd") and args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
