#!/usr/bin/env python3
"""One timed load of bench/ingest.sh: wrk against one target, the CPU of the
target's processes over the load (and, with a webhook, until every delivery is
done), and optionally the target's system calls.

    ingest_run.py --wrk-output F --go-file G --pid server:PID[,PID...] \
        [--pid redis:PID] [--pid other:PID,...] \
        [--redis-port P --due KEY [--drain-timeout S]] \
        [--syscalls perf|strace --syscalls-pid PID --syscalls-out FILE] \
        -- wrk ARGS...

wrk runs bench/callbacks.lua, which creates the go file once every wrk thread
has loaded its callbacks: the measured window starts there (not at wrk's
start, which spends a second or more reading the paths) and ends when wrk
exits. With --due, the window goes on until the sorted set KEY is empty (every
delivery finished: a claimed delivery stays in the due set, scored by its
lease, until its outcome is stored), polled every 10 ms over one connection,
for at most --drain-timeout seconds.

CPU is utime + stime from /proc/PID/stat (the whole process, all threads), in
seconds, per group of processes named by --pid; wrk's own CPU comes from
wait4(). --syscalls attaches `perf stat` (tracepoints raw_syscalls:sys_enter
and syscalls:sys_enter_NAME for the usual ones: counted in the kernel, the
process runs at nearly full speed) or `strace -c -f` (every system call stopped and decoded: the
process runs several times slower, so the counts per callback are those of a
slower server, which batches more per loop turn) to one process for the same
window.

Prints one line `LOAD key=value ...` (wrk's figures parsed from its output,
the window, CPU seconds per group over the load and over the whole window)
and, with --syscalls, `SYSCALLS tool=.. total=.. top=name:count,...`.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def snap(groups):
    return {name: sum(proc_ticks(p) or 0 for p in pids) for name, pids in groups}


def machine_busy():
    """(busy, total) ticks of all CPUs: busy = user+nice+system+irq+softirq+steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0), sum(v[:8])


class Redis:
    """The least of RESP over one loopback connection (ZCARD only)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")

    def zcard(self, key):
        k = key.encode()
        self.s.sendall(b"*2\r\n$5\r\nZCARD\r\n$%d\r\n%s\r\n" % (len(k), k))
        line = self.f.readline()
        if not line.startswith(b":"):
            raise RuntimeError("ZCARD: unexpected reply " + repr(line[:80]))
        return int(line[1:])


def to_ms(v):
    """wrk's 527.00us, 1.08ms, 2.00s, 1.00m -> milliseconds."""
    m = re.match(r"([0-9.]+)([a-z]+)", v)
    if not m:
        return None
    n, u = float(m.group(1)), m.group(2)
    return n * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}.get(u, 1.0)


def parse_wrk(text):
    out = {}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    out["rps"] = float(m.group(1)) if m else 0.0
    for q, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        m = re.search(r"^\s+" + re.escape(q) + r"\s+(\S+)", text, re.M)
        out[key] = to_ms(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["sock_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"^\s+(\d+) requests in", text, re.M)
    out["wrk_requests"] = int(m.group(1)) if m else 0
    m = re.search(r"^\s+Non-2xx or 3xx responses: (\d+)", text, re.M)
    out["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"^BENCH (.*)$", text, re.M)
    if m:
        for kv in m.group(1).split():
            k, _, v = kv.partition("=")
            if v.isdigit():
                out[k] = int(v)
    return out


# The system calls counted one by one with perf (any other is in the total
# only): perf switches every per-task event in and out at each context switch
# of the process, so all ~360 syscall tracepoints would slow it several times.
PERF_SYSCALLS = ("read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
                 "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll", "accept4", "close",
                 "futex", "getrandom", "getpid", "shutdown", "connect", "socket", "setsockopt", "getsockopt", "fcntl",
                 "ioctl", "timerfd_settime")


def tracepoint(name):
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(f"{root}/events/syscalls/sys_enter_{name}"):
            return True
    return False


def start_syscalls(tool, pid, out):
    if tool == "perf":
        cmd = ["perf", "stat", "-x,", "-o", out, "-e", "raw_syscalls:sys_enter"]
        for name in PERF_SYSCALLS:
            if tracepoint(name):
                cmd += ["-e", "syscalls:sys_enter_" + name]
        cmd += ["-p", str(pid)]
    else:
        cmd = ["strace", "-c", "-f", "-q", "-o", out, "-p", str(pid)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(out + ".stderr", "wb"),
                         start_new_session=True)
    # Let it attach before the load starts (strace stops every thread).
    time.sleep(1.0 if tool == "strace" else 0.5)
    return p


def stop_syscalls(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def read_syscalls(tool, out):
    counts = {}
    total = None
    with open(out, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if tool == "perf":
        for line in text.splitlines():
            parts = line.split(",")
            if len(parts) < 3 or not parts[0].strip().isdigit():
                continue
            n, ev = int(parts[0]), parts[2]
            if ev == "raw_syscalls:sys_enter":
                total = n
            elif ev.startswith("syscalls:sys_enter_") and n:
                counts[ev[len("syscalls:sys_enter_"):]] = n
    else:
        # % time  seconds  usecs/call  calls  [errors]  syscall
        for line in text.splitlines():
            parts = line.split()
            # The total line has no usecs/call column: the sum of the others.
            if len(parts) >= 5 and re.match(r"^[0-9.]+$", parts[0]) and parts[-1] != "total":
                counts[parts[-1]] = int(parts[3])
    if total is None:
        total = sum(counts.values())
    return total, counts


def start_fsync(pid, out):
    """perf trace of Redis's fdatasync calls (one syscall: cheap), or None
    when perf cannot trace here."""
    try:
        p = subprocess.Popen(["perf", "trace", "-s", "-e", "fdatasync", "-p", str(pid), "-o", out],
                             stdout=subprocess.DEVNULL, stderr=open(out + ".stderr", "wb"),
                             start_new_session=True)
    except OSError:
        return None
    time.sleep(0.5)
    return p if p.poll() is None else None


def read_fsync(pid, out):
    """(calls, total ms) of fdatasync in thread `pid` (Redis's main thread:
    with appendfsync always it syncs there, once per loop turn)."""
    with open(out, encoding="utf-8", errors="replace") as f:
        text = f.read()
    mine = False
    for line in text.splitlines():
        m = re.match(r"^\s*(\S.*) \((\d+)\), \d+ events", line)
        if m:
            mine = int(m.group(2)) == pid
            continue
        parts = line.split()
        if mine and len(parts) >= 4 and parts[0] == "fdatasync":
            return int(parts[1]), float(parts[3])
    return 0, 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wrk-output", required=True)
    ap.add_argument("--go-file", required=True)
    ap.add_argument("--pid", action="append", default=[], help="name:pid[,pid...]")
    ap.add_argument("--redis-port", type=int)
    ap.add_argument("--due", help="sorted set that must be empty for the deliveries to be done")
    ap.add_argument("--drain-timeout", type=float, default=60)
    ap.add_argument("--syscalls", choices=("perf", "strace"))
    ap.add_argument("--syscalls-pid", type=int)
    ap.add_argument("--syscalls-out")
    ap.add_argument("--fsync-pid", type=int, help="Redis: its fdatasync calls and time (perf trace)")
    ap.add_argument("--fsync-out")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("no wrk command")
    groups = []
    for spec in args.pid:
        name, _, pids = spec.partition(":")
        groups.append((name, [int(p) for p in pids.split(",") if p]))

    redis = Redis(args.redis_port) if args.due else None
    # Attached before the load starts (the process is idle until then), so
    # that its counts cover every callback wrk counts.
    sc = None
    if args.syscalls:
        sc = start_syscalls(args.syscalls, args.syscalls_pid, args.syscalls_out)
    fs = start_fsync(args.fsync_pid, args.fsync_out) if args.fsync_pid else None
    out = open(args.wrk_output, "wb")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(120000):  # at most 10 minutes to load the paths
        if os.path.exists(args.go_file) or p.poll() is not None:
            break
        time.sleep(0.005)
    c0 = snap(groups)
    m0 = machine_busy()
    w0 = proc_ticks(p.pid) or 0
    t0 = time.time()
    _, status, ru = os.wait4(p.pid, 0)
    t1 = time.time()
    c1 = snap(groups)
    m1 = machine_busy()
    out.close()
    wrk_rc = os.waitstatus_to_exitcode(status)
    wrk_cpu = ru.ru_utime + ru.ru_stime - w0 / CLK_TCK
    drain_s, left, timeout = 0.0, 0, 0
    if redis:
        while True:
            left = redis.zcard(args.due)
            if left == 0:
                break
            if time.time() - t1 > args.drain_timeout:
                timeout = 1
                break
            time.sleep(0.01)
        drain_s = time.time() - t1
    t2 = time.time()
    c2 = snap(groups)
    m2 = machine_busy()
    if sc:
        stop_syscalls(sc)
    if fs:
        stop_syscalls(fs)

    with open(args.wrk_output, encoding="utf-8", errors="replace") as f:
        w = parse_wrk(f.read())
    ncpu = os.cpu_count() or 1
    fields = [f"wrk_status={wrk_rc}", f"load_s={t1 - t0:.3f}", f"window_s={t2 - t0:.3f}",
              f"drain_s={drain_s:.3f}", f"drain_left={left}", f"drain_timeout={timeout}",
              f"cpu_wrk_load={wrk_cpu:.3f}"]
    for name, _ in groups:
        fields.append(f"cpu_{name}_load={(c1[name] - c0[name]) / CLK_TCK:.3f}")
        fields.append(f"cpu_{name}={(c2[name] - c0[name]) / CLK_TCK:.3f}")
    # The whole machine (% of one core): shows a disturbed run.
    fields.append(f"machine_busy_pct={100.0 * ncpu * (m1[0] - m0[0]) / max(m1[1] - m0[1], 1):.0f}")
    fields.append(f"machine_busy_window_pct={100.0 * ncpu * (m2[0] - m0[0]) / max(m2[1] - m0[1], 1):.0f}")
    for k, v in w.items():
        if isinstance(v, float):
            v = f"{v:.3f}"
        fields.append(f"{k}={v if v is not None else 'NA'}")
    print("LOAD " + " ".join(fields))
    if fs:
        try:
            n, ms = read_fsync(args.fsync_pid, args.fsync_out)
            print(f"FSYNC calls={n} total_ms={ms:.1f} window_s={t2 - t0:.3f}")
        except OSError:
            pass
    if sc:
        try:
            total, counts = read_syscalls(args.syscalls, args.syscalls_out)
        except OSError as e:
            print(f"SYSCALLS tool={args.syscalls} error={e!r}".replace(" ", "_", 2))
            return 0
        listed = sum(counts.values())
        if args.syscalls == "perf" and total > listed:
            counts["other"] = total - listed
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:12]
        print(f"SYSCALLS tool={args.syscalls} total={total} "
              f"top={','.join(f'{k}:{v}' for k, v in top) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
