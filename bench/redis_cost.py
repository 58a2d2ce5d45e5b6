#!/usr/bin/env python3
"""What one callback costs Redis, counted rather than timed (issue 16).

The machine this runs on is shared, so req/s says little; Redis's own
counters do not depend on what else runs. For each configuration (no
webhook, one webhook) this starts a private redis-server (`appendonly yes`,
`appendfsync always`, as docs/redis.md recommends and bench/ingest.sh runs),
a payrelayd of the given build with the configuration's webhook pointing at
a local receiver (tests/integration/harness.py's, keep-alive, 200), sends
a warm-up, then N distinct signed epay paid callbacks (each a new order) over
a few keep-alive connections, waits until every delivery is done, and
reports per callback, as deltas of Redis's INFO over the measured part:

  commands   INFO commandstats `calls`, in total and by command: the
             scripts (evalsha) and the commands they ran (Redis counts
             both), without the INFO/MEMORY/ZCARD calls of this tool
  cpu_us     INFO cpu used_cpu_sys + used_cpu_user, in µs (the only figure
             that depends on the machine; fsync's CPU included)
  exec_us    INFO commandstats usec of the scripts (evalsha): Redis's time
             running them, without I/O and fsync; steadier than cpu_us
  reads      INFO stats total_reads_processed: the client socket reads Redis
             made (each a loop wake-up, a read and a reply write)
  aof_bytes  INFO persistence aof_current_size
  keys       DBSIZE (after delivery)
  mem_bytes  INFO memory used_memory (after delivery and MEMORY PURGE)

    python3 bench/redis_cost.py [--build build] [-n 2000] [--webhooks 0,1] [--rounds 3]

Each configuration runs --rounds times (a fresh Redis and daemon each);
every figure is the median. Only cpu_us varies from run to run (the
machine, and how many callbacks share one of Redis's loop turns and its
fsync); the counts and bytes do not, or barely.

Needs redis-server in PATH and ../shared/vectors (or PAYRELAY_VECTORS).
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness as h  # noqa: E402

PREFIX = "payrelay:"
STREAM = "payrelay:events"
OWN = {"info", "memory|purge", "zcard", "dbsize", "ping"}


def info(r, section):
    text = r.cmd("INFO", section)
    if isinstance(text, bytes):
        text = text.decode()
    return text


def snapshot(r):
    """(calls by command, cpu seconds, aof bytes, keys, used memory)."""
    calls = {}
    for m in re.finditer(r"^cmdstat_([a-z|_-]+):calls=(\d+),usec=(\d+)", info(r, "commandstats"),
                         re.M):
        calls[m.group(1)] = int(m.group(2))
        calls["usec:" + m.group(1)] = int(m.group(3))
    cpu = info(r, "cpu")
    secs = sum(float(re.search(r"^%s:([0-9.]+)" % k, cpu, re.M).group(1))
               for k in ("used_cpu_sys", "used_cpu_user"))
    aof = int(re.search(r"^aof_current_size:(\d+)", info(r, "persistence"), re.M).group(1))
    st = info(r, "stats")
    reads = int(re.search(r"^total_reads_processed:(\d+)", st, re.M).group(1))
    r.cmd("MEMORY", "PURGE")
    mem = int(re.search(r"^used_memory:(\d+)", info(r, "memory"), re.M).group(1))
    return calls, secs, aof, int(r.cmd("DBSIZE")), mem, reads


def signed_query(key, params, i, tag):
    p = {k: v for k, v in params.items() if k != "sign"}
    p["trade_no"] = "T-%s-%06d" % (tag, i)
    p["out_trade_no"] = "%s-%06d" % (tag, i)
    p["trade_status"] = "TRADE_SUCCESS"
    p["sign"] = h.epay_md5_sign(p, key)
    return "/notify/shop-epay?" + h.form_encode(p)


def send_all(port, paths, conns):
    """Sends every path over `conns` keep-alive connections; every answer
    must be 200 `success`."""
    errors = []

    def worker(part):
        c = http.client.HTTPConnection(h.HOST, port, timeout=10)
        try:
            for path in part:
                c.request("GET", path)
                r = c.getresponse()
                body = r.read()
                if (r.status, body) != (200, b"success"):
                    errors.append((r.status, body[:80]))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(paths[i::conns],)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("callbacks not answered success: %d, e.g. %r" % (len(errors), errors[0]))


def wait_delivered(r, rcv, n, timeout):
    deadline = time.monotonic() + timeout
    while True:
        with rcv.lock:
            got = len(rcv.requests)
        if got >= n and int(r.cmd("ZCARD", PREFIX + "wh:bench:due")) == 0:
            return
        if time.monotonic() > deadline:
            sys.exit("only %d of %d deliveries done within %.0f s" % (got, n, timeout))
        time.sleep(0.02)


def run(binary, n, webhook, conns, workdir, fsync="always"):
    vec = h.load_vectors("epay.json")["vectors"][0]
    redis = h.RedisServer(workdir, extra_args=("--appendonly", "yes", "--appendfsync", fsync))
    redis.start()
    rcv = None
    d = None
    try:
        r = redis.client()
        port, admin = h.free_port(), h.free_port()
        text = h.config_head(port, admin, redis.port, writer="bench/redis_cost.py") + """
[channel:shop-epay]
family = epay
merchant_id = 1001
key = {key}
""".format(key=vec["key"])
        if webhook:
            rcv = h.Receiver()
            text += "\n[webhook:bench]\nurl = %s\nsecret = %s\n" % (rcv.url("/hook/bench"),
                                                                    h.WEBHOOK_SECRET)
        conf = os.path.join(workdir, "payrelayd.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(conf, 0o600)
        d = h.Daemon(binary, workdir, conf, port)
        d.start(wait_ready=True)
        warm = 50
        send_all(port, [signed_query(vec["key"], vec["params"], i, "W") for i in range(warm)],
                 conns)
        if webhook:
            wait_delivered(r, rcv, warm, 30)
        paths = [signed_query(vec["key"], vec["params"], i, "B") for i in range(n)]
        time.sleep(0.2)
        before = snapshot(r)
        send_all(port, paths, conns)
        if webhook:
            wait_delivered(r, rcv, warm + n, 120)
        else:
            time.sleep(0.2)
        after = snapshot(r)
        if int(r.cmd("XLEN", STREAM)) != warm + n:
            sys.exit("the stream holds %s events, expected %d" % (r.cmd("XLEN", STREAM), warm + n))
        d.stop(signal.SIGTERM)
        r.close()
        return before, after
    finally:
        if d is not None and d.alive():
            d.stop(signal.SIGKILL)
        if rcv is not None:
            rcv.stop()
        redis.stop(signal.SIGKILL)


def report(label, n, runs):
    """Each figure per callback, the median over the runs ((before, after)
    snapshots); the commands by name from the median run by total."""
    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    per = []
    for before, after in runs:
        calls = {k: v - before[0].get(k, 0) for k, v in after[0].items()}
        usec = {k[5:]: v for k, v in calls.items() if k.startswith("usec:") and k[5:] not in OWN}
        calls = {k: v for k, v in calls.items()
                 if v > 0 and k not in OWN and not k.startswith("usec:")}
        # commands a script ran are inside its own usec: count the top level
        top = sum(v for k, v in usec.items() if k in ("evalsha", "eval")) or sum(usec.values())
        per.append((sum(calls.values()) / n, calls,
                    (after[1] - before[1]) * 1e6 / n, (after[2] - before[2]) / n,
                    (after[3] - before[3]) / n, (after[4] - before[4]) / n,
                    (after[5] - before[5]) / n, top / n))
    total = med([p[0] for p in per])
    calls = next(p[1] for p in per if p[0] == total)
    print("%s: per callback (n=%d, median of %d runs)" % (label, n, len(runs)))
    print("  commands   %.2f  (%s)" % (total, ", ".join(
        "%s %.2f" % (k, v / n) for k, v in sorted(calls.items(), key=lambda kv: -kv[1]))))
    print("  exec_us    %.1f  (Redis's own time in the scripts, commandstats usec)"
          % med([p[7] for p in per]))
    print("  cpu_us     %.1f  (runs: %s)" % (med([p[2] for p in per]),
                                           " ".join("%.1f" % p[2] for p in per)))
    print("  reads      %.2f  (socket reads Redis processed: fewer, fuller reads cost less)"
          % med([p[6] for p in per]))
    print("  aof_bytes  %.0f" % med([p[3] for p in per]))
    print("  keys       %.2f" % med([p[4] for p in per]))
    print("  mem_bytes  %.0f" % med([p[5] for p in per]))
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build", help="meson build directory (src/payrelayd)")
    p.add_argument("--binary", help="payrelayd to run (default: BUILD/src/payrelayd)")
    p.add_argument("-n", type=int, default=2000, help="callbacks measured")
    p.add_argument("--webhooks", default="0,1", help="configurations: 0 (none), 1 (one)")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="runs per configuration (medians)")
    p.add_argument("--fsync", default="always", choices=("always", "everysec", "no"),
                   help="Redis's appendfsync: always (as recommended); no leaves the fsync "
                   "per Redis loop turn out of cpu_us, and with it most of the noise")
    p.add_argument("--keep", action="store_true", help="keep the run's directory (Redis's AOF)")
    p.add_argument("--dir", default=os.environ.get("BENCH_TMP", "/var/tmp"),
                   help="where Redis's AOF goes (a disk, as in production)")
    a = p.parse_args()
    binary = a.binary or os.path.join(a.build, "src", "payrelayd")
    if not os.access(binary, os.X_OK):
        sys.exit("no payrelayd at %s" % binary)
    for w in a.webhooks.split(","):
        runs = []
        for _ in range(a.rounds):
            workdir = tempfile.mkdtemp(prefix="payrelay-cost-", dir=a.dir)
            try:
                runs.append(run(binary, a.n, w == "1", a.connections, workdir, a.fsync))
            finally:
                if a.keep:
                    print("kept %s" % workdir)
                else:
                    shutil.rmtree(workdir, ignore_errors=True)
        report("%s webhook" % ("one" if w == "1" else "no"), a.n, runs)


if __name__ == "__main__":
    main()
