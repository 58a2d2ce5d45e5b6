#!/usr/bin/env python3
"""payrelayd on Redis that survives the loss of a machine (SPEC section 3.2,
docs/redis.md "Sentinel" and "WAIT", docs/guarantees.md section 1).

Real processes only, all on loopback with free ports, all killed at exit:
Debian's redis-server for the master and the replicas, redis-sentinel (the
same binary in sentinel mode) for three sentinels (quorum 2), the real
payrelayd, and a local webhook receiver.

- SentinelTest: payrelayd with `sentinels = ...` and `min_replicas = 1` in
  front of a master, two replicas and three sentinels. Discovery; then the
  master is SIGKILLed under callback load and payrelayd follows the
  promoted replica by itself; then a master demoted with REPLICAOF (no
  connection killed) answers -READONLY and payrelayd asks the sentinels
  again; then no sentinel answers; then the sentinels name a replica, which
  ROLE refuses.
- WaitTest: a master and one replica, no sentinel, `min_replicas = 1`:
  a stopped replica (SIGSTOP) turns acks into 503, and the gateway's retry
  is acked once the replica has the write.

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
        python3 tests/integration/test_sentinel.py [-k PATTERN]
"""

import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import fakegw  # noqa: E402
from test_faults import ACK, UNAVAILABLE, Client, epay_callback, Load, trade_no  # noqa: E402

STREAM = "payrelay:events"
CHANNEL = "shop-epay"
MASTER_NAME = "payrelay-test"
WEBHOOK = "orders"
POLL_CHANNEL = "shop-poll"


def sentinel_binary():
    """redis-sentinel (Debian's package), or redis-server in sentinel mode:
    the same program."""
    b = shutil.which("redis-sentinel")
    if b:
        return [b]
    b = shutil.which("redis-server")
    return [b, "--sentinel"] if b else None


class Sentinel:
    def __init__(self, workdir, name, master_port, quorum=2):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = h.free_port()
        self.conf = os.path.join(self.dir, "sentinel.conf")
        self.log = os.path.join(self.dir, "sentinel.log")
        # Sentinel rewrites its file: it must be its own and writable.
        with open(self.conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                    "sentinel monitor %s 127.0.0.1 %d %d\n"
                    "sentinel down-after-milliseconds %s 2000\n"
                    "sentinel failover-timeout %s 10000\n"
                    "sentinel parallel-syncs %s 2\n"
                    % (self.port, self.dir, MASTER_NAME, master_port, quorum,
                       MASTER_NAME, MASTER_NAME, MASTER_NAME))
        self.proc = None

    def start(self):
        argv = sentinel_binary()
        if argv is None:
            raise RuntimeError("redis-sentinel not found (scripts/deps.sh installs it)")
        if argv[-1] == "--sentinel":
            argv = [argv[0], self.conf, "--sentinel"]
        else:
            argv = argv + [self.conf]
        self.proc = h._spawn(argv, self.log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                c = h.Resp(self.port, timeout=1.0)
                try:
                    if c.cmd("PING") == "PONG":
                        return self
                finally:
                    c.close()
            except (OSError, h.RedisError):
                pass
            time.sleep(0.05)
        raise RuntimeError("sentinel did not start: " + open(self.log).read()[-2000:])

    def stop(self):
        if self.proc is not None:
            h._reap(self.proc, signal.SIGKILL, 5)
            self.proc = None

    def cmd(self, *args):
        c = h.Resp(self.port, timeout=2.0)
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def master_addr(self):
        a = self.cmd("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return None if a is None else (a[0].decode(), int(a[1]))


def start_redis(workdir, name, master=None):
    """A redis-server in its own directory; `master`: a RedisServer it
    replicates."""
    extra = ["--repl-diskless-sync", "no"]
    if master is not None:
        extra += ["--replicaof", h.HOST, str(master.port)]
    r = h.RedisServer(os.path.join(workdir, name), extra_args=extra)
    return r.start()


def wait_replicas(master, n, timeout=15.0):
    """Waits until `master` has `n` replicas online and caught up."""
    deadline = time.monotonic() + timeout
    info = ""
    while time.monotonic() < deadline:
        c = master.client()
        try:
            info = c.cmd("INFO", "replication").decode()
        finally:
            c.close()
        online = re.findall(r"slave\d+:.*state=online", info)
        if len(online) >= n:
            return
        time.sleep(0.1)
    raise AssertionError("%d replicas not online within %.0f s:\n%s" % (n, timeout, info))


def config_text(setup, redis_lines, webhook_url=None, extra=""):
    head = h.config_head(setup.port, setup.admin_port, setup.redis_port,
                         redis_timeout_ms=1000, stream=STREAM,
                         writer="tests/integration/test_sentinel.py")
    # redis_lines replace the url line (a url line of their own, or sentinels)
    head = re.sub(r"url = .*\n", lambda m: redis_lines if "url =" in redis_lines
                  else m.group(0) + redis_lines, head, count=1)
    text = head + """
[channel:{channel}]
family = epay
merchant_id = 1001
key = {epay_key}
""".format(channel=CHANNEL, epay_key=setup.epay_key) + extra
    if webhook_url:
        text += """
[webhook:{name}]
url = {url}
secret = {secret}
timeout_ms = 2000
schedule = 0 1 1 1 1 1 1 1
""".format(name=WEBHOOK, url=webhook_url, secret=h.WEBHOOK_SECRET)
    return text


def stream_ids(port):
    """{gateway trade id: number of entries} of the stream at `port`."""
    c = h.Resp(port)
    try:
        out = {}
        for _, f in c.xrange(STREAM):
            t = json.loads(f["event"])["trade_no"]
            out[t] = out.get(t, 0) + 1
        return out
    finally:
        c.close()


def event_id_of(n, tag):
    """The trade id of callback n of `tag` (test_faults.epay_callback)."""
    return trade_no(tag, n)


class HACase(unittest.TestCase):
    """The helpers both classes share."""

    @classmethod
    def make_daemon(cls, redis_lines, webhook_url=None, extra=""):
        cls.binary = h.locate_binary()
        if not cls.binary:
            raise RuntimeError("payrelayd not found: set PAYRELAYD")
        cls.setup = h.Setup(cls.dir, 1)  # the port is not used: redis_lines say where
        with open(cls.setup.config, "w") as f:
            f.write(config_text(cls.setup, redis_lines, webhook_url, extra))
        os.chmod(cls.setup.config, 0o600)
        cls.daemon = h.Daemon(cls.binary, cls.dir, cls.setup.config, cls.setup.port)
        cls.addClassCleanup(cls.daemon.stop, signal.SIGKILL, 5)
        cls.addClassCleanup(cls.no_secret_logged)
        cls.addClassCleanup(cls.daemon.stop_clean)
        cls.daemon.start(wait_ready=True, timeout=20)

    @classmethod
    def no_secret_logged(cls):
        log = cls.daemon.log_text()
        for secret in cls.setup.secrets():
            if secret in log:
                raise AssertionError("a configured secret appears in %s" % cls.daemon.log)

    def send(self, tag, n, client=None):
        c = client or Client(self.setup.port)
        try:
            return c.send(epay_callback(self.setup.epay_key, tag, n))
        finally:
            if client is None:
                c.close()

    def resend_until_acked(self, tag, ns, limit=30.0):
        left = set(ns)
        deadline = time.monotonic() + limit
        c = Client(self.setup.port)
        try:
            while left and time.monotonic() < deadline:
                for n in sorted(left):
                    if self.send(tag, n, c).pair == ACK:
                        left.discard(n)
                if left:
                    time.sleep(0.2)
        finally:
            c.close()
        self.assertFalse(left, "never acked after %.0f s: %s\n%s"
                         % (limit, sorted(left)[:10], self.daemon.log_tail(40)))

    def metrics(self):
        r = h.http(self.setup.admin_port, "GET", "/metrics",
                   headers={"Authorization": "Bearer " + h.ADMIN_TOKEN})
        self.assertEqual(r.status, 200)
        out = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def log_lines(self, msg, start=0):
        return [ln for ln in self.daemon.log_text()[start:].splitlines()
                if ('msg="%s"' % msg) in ln]

    def wait_log_lines(self, msg, n, start=0, timeout=5.0):
        """log_lines once there are `n` of them (or the timeout passed): an
        info line is written at the end of its loop turn, which can be just
        after the answer it goes with."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines(msg, start)
            if len(lines) >= n or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)


class SentinelTest(HACase):
    """A master, two replicas, three sentinels; payrelayd with sentinels
    and min_replicas = 1; a webhook receiver."""

    @classmethod
    def setUpClass(cls):
        cls.dir = h.new_workdir("payrelay-sentinel-")
        cls.master = start_redis(cls.dir, "m")
        cls.addClassCleanup(cls.master.stop, signal.SIGKILL)
        cls.replicas = []
        for name in ("r1", "r2"):
            r = start_redis(cls.dir, name, master=cls.master)
            cls.addClassCleanup(r.stop, signal.SIGKILL)
            cls.replicas.append(r)
        wait_replicas(cls.master, 2)
        cls.sentinels = []
        for i in range(3):
            s = Sentinel(cls.dir, "s%d" % i, cls.master.port)
            cls.addClassCleanup(s.stop)
            cls.sentinels.append(s.start())
        cls.receiver = h.Receiver()
        cls.addClassCleanup(cls.receiver.stop)
        lines = ("sentinels = %s\nmaster_name = %s\nmin_replicas = 1\n"
                 "replica_timeout_ms = 1000\n"
                 % (" ".join("127.0.0.1:%d" % s.port for s in cls.sentinels), MASTER_NAME))
        # a channel polled at a fake gateway: polls follow the master too
        cls.gw = fakegw.FakeGateway("epay", "1001", h.load_vectors("epay.json")["vectors"][0]["key"])
        cls.addClassCleanup(cls.gw.stop)
        poll = """
[channel:{name}]
family = epay
merchant_id = 1001
key = {key}
api_base = {api}
poll_after = 1
poll_gaps = 1 1 1
poll_timeout_ms = 500
""".format(name=POLL_CHANNEL, key=cls.gw.key, api=cls.gw.api_base)
        cls.make_daemon(lines, cls.receiver.url(), poll)
        cls.current = cls.master

    def test_a_discovery(self):
        line = self.daemon.wait_log(r'msg="redis master found"', 5)
        self.assertIn("addr=127.0.0.1:%d" % self.master.port, line)
        for n in range(5):
            self.assertEqual(self.send("D", n).pair, ACK)
        ids = stream_ids(self.master.port)
        for n in range(5):
            self.assertEqual(ids.get(event_id_of(n, "D")), 1)
        # min_replicas = 1: each ack waited for a replica to have it
        self.assertTrue(any(ids.items() <= stream_ids(r.port).items() for r in self.replicas))
        m = self.metrics()
        self.assertEqual(m.get("payrelay_redis_master_known"), 1)
        self.assertEqual(m.get("payrelay_redis_failovers_total"), 0)
        self.assertEqual(self.receiver.wait_count(5, 10) is not None, True)

    def test_a_wait_claims_at_record(self):
        """With min_replicas the record step's answer waits for its WAIT:
        the deliveries it made claimed (claim at record) survive that wait
        and go out from the answer: no claim call for them, and not only
        once their leases (timeout_ms + 5 s) end."""
        with open(os.path.join(h.HERE, "..", "..", "src", "store", "lua",
                               "delivery_claim.lua"), "rb") as f:
            sha = hashlib.sha1(f.read()).hexdigest()
        c = h.Resp(self.current.port)
        try:
            c.cmd("CONFIG", "SET", "slowlog-log-slower-than", "0")
            c.cmd("CONFIG", "SET", "slowlog-max-len", "10000")
            c.cmd("SLOWLOG", "RESET")
            mark = self.receiver.count()
            t0 = time.monotonic()
            for n in range(5):
                self.assertEqual(self.send("CAR", n).pair, ACK)
            reqs = self.receiver.wait_count(mark + 5, 3.0)
            elapsed = time.monotonic() - t0
            self.assertIsNotNone(reqs, "not delivered from the record step's answer\n"
                                 + self.daemon.log_tail(20))
            claims = [e for e in c.cmd("SLOWLOG", "GET", "-1") or []
                      if len(e[3]) > 1 and e[3][0].upper() == b"EVALSHA" and
                      e[3][1].decode() == sha]
            self.assertLessEqual(len(claims), int(elapsed / 0.5) + 2,
                                 "a claim call per delivery: %d in %.2f s"
                                 % (len(claims), elapsed))
            want = sorted(h.event_id(CHANNEL, trade_no("CAR", n), "paid") for n in range(5))
            self.assertEqual(sorted(r.headers.get("webhook-id") for r in reqs[mark:]), want)
        finally:
            c.cmd("CONFIG", "SET", "slowlog-log-slower-than", "10000")
            c.cmd("CONFIG", "SET", "slowlog-max-len", "128")
            c.close()

    def test_b_failover_under_load(self):
        total = 400

        def make(n):
            return epay_callback(self.setup.epay_key, "F", n)

        start = len(self.daemon.log_text())
        load = Load(self.setup.port, make, threads=4, backoff=0.05)

        def bounded():
            """Load's thread, but like a gateway: a callback not acked is
            sent again (0.1 s later) before the next one; `total` at most."""
            c = Client(load.port)
            try:
                while not load.halt.is_set():
                    with load.lock:
                        n = load.next
                        if n >= total:
                            return
                        load.next += 1
                    while not load.halt.is_set():
                        a = c.send(make(n))
                        with load.lock:
                            load.answers.setdefault(n, []).append(a)
                        if a.pair == ACK:
                            break
                        load.halt.wait(0.1)
            finally:
                c.close()
        load.threads = [threading.Thread(target=bounded, daemon=True) for _ in range(4)]
        load.start()
        deadline = time.monotonic() + 10
        while len(load.acked()) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertGreaterEqual(len(load.acked()), 50, self.daemon.log_tail())
        kill_at = time.monotonic()
        self.master.stop(signal.SIGKILL)
        log_at_kill = len(self.daemon.log_text())
        # payrelayd follows by itself: a new "master found" naming a replica
        found = self.daemon.wait_log(r'msg="redis master found".*previous=', 25, start=log_at_kill)
        followed_s = time.monotonic() - kill_at
        self.assertLess(followed_s, 20.0, found)
        port = int(re.search(r"addr=127\.0\.0\.1:(\d+)", found).group(1))
        new = [r for r in self.replicas if r.port == port]
        self.assertEqual(len(new), 1, found)
        new = new[0]
        type(self).current = new
        type(self).other = [r for r in self.replicas if r is not new][0]
        # the load goes on after the failover: acks again
        acked_before = {n for n, a in load.flat() if a.pair == ACK and a.t1 < kill_at}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            after = {n for n, a in load.flat() if a.pair == ACK and a.t0 > kill_at + followed_s}
            if len(after) >= 20 or load.next >= total:
                break
            time.sleep(0.1)
        load.stop()
        flat = load.flat()
        after = {n for n, a in flat if a.pair == ACK and a.t0 > kill_at + followed_s}
        self.assertGreaterEqual(len(after), 1, "nothing acked after the failover:\n"
                                + self.daemon.log_tail(40))
        for n, a in flat:
            self.assertIn(a.pair, (ACK, UNAVAILABLE, (None, a.body)), (n, a))
        # every callback answered success is in the new master exactly once,
        # before anything is re-sent (min_replicas = 1: it was on a replica)
        ids = stream_ids(new.port)
        acked = load.acked()
        missing = [n for n in acked if ids.get(event_id_of(n, "F")) != 1]
        self.assertFalse(missing, "acked but not in the new master once: %s (%d of %d; "
                         "acked before the kill: %d)" % (sorted(missing)[:10], len(missing),
                                                         len(acked), len(acked_before)))
        # nothing was acked while no master was known: in the daemon's own
        # order of events, no callback is recorded between losing the old
        # master and finding the new one
        text = self.daemon.log_text()[start:].splitlines()
        lost = [i for i, ln in enumerate(text)
                if 'msg="redis master moved"' in ln or 'msg="redis disconnected"' in ln]
        self.assertTrue(lost, "no master moved line:\n" + "\n".join(text[-30:]))
        found_i = [i for i, ln in enumerate(text)
                   if 'msg="redis master found"' in ln and "previous=" in ln]
        self.assertTrue(found_i)
        between = [ln for ln in text[lost[0]:found_i[0]]
                   if 'msg="callback recorded"' in ln or 'msg="callback duplicate"' in ln]
        self.assertEqual(between, [], "acks while no master was known")
        # like a gateway: re-send all, then each is there exactly once
        self.resend_until_acked("F", range(load.next))
        ids = stream_ids(new.port)
        wrong = [n for n in range(load.next) if ids.get(event_id_of(n, "F")) != 1]
        self.assertFalse(wrong, "not exactly once after re-sending: %s" % sorted(wrong)[:10])
        # deliveries continue: every recorded event reaches the receiver
        want = {event_id_of(n, "F") for n in range(load.next)}

        def delivered(reqs):
            got = set()
            for r in reqs:
                try:
                    got.add(json.loads(r.body)["trade_no"])
                except (ValueError, KeyError, TypeError):
                    pass
            return want <= got
        self.assertIsNotNone(self.receiver.wait_for(delivered, 30),
                             "not every event delivered after the failover")
        # polls continue: an order registered (admin API) after the failover
        # is polled at the gateway and its payment recorded in the new master
        self.gw.add_order("P1", amount="1.00", trade_id="PT000001", state="paid")
        r = h.http(self.setup.admin_port, "POST", "/v1/orders",
                   body=json.dumps({"channel": POLL_CHANNEL, "out_trade_no": "P1",
                                    "amount": "1.00"}),
                   headers={"Authorization": "Bearer " + h.ADMIN_TOKEN,
                            "Content-Type": "application/json"})
        self.assertEqual(r.status, 201, r.body)
        deadline = time.monotonic() + 15
        while "PT000001" not in stream_ids(new.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(stream_ids(new.port).get("PT000001"), 1,
                         "the poll's payment is not in the new master:\n"
                         + self.daemon.log_tail(20))
        self.assertGreaterEqual(len(self.gw.queries("P1")), 1)
        # the admin API reads the new master
        eid = h.event_id(CHANNEL, trade_no("F", load.next - 1), "paid")
        r = h.http(self.setup.admin_port, "GET", "/v1/events/" + eid,
                   headers={"Authorization": "Bearer " + h.ADMIN_TOKEN})
        self.assertEqual(r.status, 200, r.body)
        m = self.metrics()
        self.assertEqual(m.get("payrelay_redis_failovers_total"), 1)
        self.assertEqual(m.get("payrelay_redis_master_known"), 1)
        print("\nfailover: followed in %.1f s; %d callbacks, %d acked before the kill, "
              "%d after" % (followed_s, load.next, len(acked_before), len(after)),
              file=sys.stderr)

    def test_c_readonly_after_demotion(self):
        """A master demoted with REPLICAOF keeps its clients: payrelayd sees
        -READONLY (or -LOADING), drops the connection and asks the sentinels
        again."""
        cur, other = type(self).current, getattr(type(self), "other", None)
        if cur is self.master or other is None:
            self.skipTest("needs test_b's failover")
        # every sentinel names the master payrelayd uses (one failover only)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
                s.master_addr() != (h.HOST, cur.port) for s in self.sentinels):
            time.sleep(0.1)
        self.assertEqual([s.master_addr() for s in self.sentinels], [(h.HOST, cur.port)] * 3)
        self.assertEqual(self.send("R", 0).pair, ACK)
        # the sentinels name `other` from now on...
        self.repoint(other)
        # ...and the servers swap roles without killing a connection
        c = other.client()
        c.cmd("REPLICAOF", "NO", "ONE")
        c.close()
        c = cur.client()
        c.cmd("REPLICAOF", h.HOST, other.port)
        c.close()
        start = len(self.daemon.log_text())
        wait_replicas(other, 1)
        a = self.send("R", 1)
        # -READONLY, or -LOADING while the demoted server loads its new
        # master's data: either means "master moved"
        moved = self.daemon.wait_log(r'msg="redis master moved".*(READONLY|LOADING)', 10,
                                     start=start)
        self.assertIn("addr=127.0.0.1:%d" % cur.port, moved)
        found = self.daemon.wait_log(r'msg="redis master found".*addr=127\.0\.0\.1:%d'
                                     % other.port, 10, start=start)
        self.assertIn("previous=127.0.0.1:%d" % cur.port, found)
        type(self).current, type(self).other = other, cur
        self.assertIn(a.pair, (ACK, UNAVAILABLE))
        self.resend_until_acked("R", [1, 2, 3])
        ids = stream_ids(other.port)
        for n in (0, 1, 2, 3):
            self.assertEqual(ids.get(event_id_of(n, "R")), 1, n)
        self.assertEqual(self.metrics().get("payrelay_redis_failovers_total"), 2)


    def test_d_no_sentinel_answers(self):
        """Every sentinel down and the connection to the master killed: no
        master is known, callbacks get 503 until a sentinel answers again."""
        cur = type(self).current
        for s in self.sentinels:
            s.stop()
        start = len(self.daemon.log_text())
        c = cur.client()
        c.cmd("CLIENT", "KILL", "TYPE", "normal")
        c.close()
        self.daemon.wait_log(r'msg="no sentinel answered"', 10, start=start)
        self.assertEqual(self.metrics().get("payrelay_redis_master_known"), 0)
        self.assertEqual(self.send("N", 0).pair, UNAVAILABLE)
        for s in self.sentinels[:1]:
            s.start()
        self.daemon.wait_log(r'msg="redis master found".*addr=127\.0\.0\.1:%d' % cur.port,
                             10, start=start)
        self.resend_until_acked("N", [0])
        self.assertEqual(stream_ids(cur.port).get(event_id_of(0, "N")), 1)
        for s in self.sentinels[1:]:
            s.start()

    def repoint(self, server):
        """Every sentinel monitors `server` as the master from now on. All
        forget the old configuration first: one still holding it would
        spread it back to the others, its epoch being newer."""
        for s in self.sentinels:
            s.cmd("SENTINEL", "REMOVE", MASTER_NAME)
        for s in self.sentinels:
            s.cmd("SENTINEL", "MONITOR", MASTER_NAME, h.HOST, server.port, 2)
            s.cmd("SENTINEL", "SET", MASTER_NAME, "down-after-milliseconds", 2000,
                  "failover-timeout", 10000)

    def test_e_sentinels_name_a_replica(self):
        """Step 3 of the guide: the server the sentinels name must say ROLE
        master; a replica is refused, and asked about again."""
        cur, other = type(self).current, type(self).other
        self.repoint(other)  # a replica of cur
        start = len(self.daemon.log_text())
        c = cur.client()
        c.cmd("CLIENT", "KILL", "TYPE", "normal")
        c.close()
        line = self.daemon.wait_log(r'msg="redis server named by the sentinels is no master',
                                    10, start=start)
        self.assertIn("addr=127.0.0.1:%d" % other.port, line)
        self.assertIn('role="slave"', line)
        self.assertEqual(self.send("E", 0).pair, UNAVAILABLE)
        self.assertEqual(self.metrics().get("payrelay_redis_master_known"), 0)
        self.repoint(cur)
        self.daemon.wait_log(r'msg="redis master found".*addr=127\.0\.0\.1:%d' % cur.port,
                             10, start=start)
        self.resend_until_acked("E", [0])
        self.assertEqual(stream_ids(cur.port).get(event_id_of(0, "E")), 1)
        text = self.daemon.log_text()[start:]
        self.assertNotIn('msg="redis master found" addr=127.0.0.1:%d' % other.port, text)


class WaitTest(HACase):
    """A master and one replica, no sentinel; min_replicas = 1."""

    REPLICA_TIMEOUT_MS = 500

    @classmethod
    def setUpClass(cls):
        cls.dir = h.new_workdir("payrelay-wait-")
        cls.master = start_redis(cls.dir, "m")
        cls.addClassCleanup(cls.master.stop, signal.SIGKILL)
        cls.replica = start_redis(cls.dir, "r", master=cls.master)
        cls.addClassCleanup(cls.replica.stop, signal.SIGKILL)
        # a stopped replica must be woken before it is killed
        cls.addClassCleanup(lambda: cls.replica.proc and cls.replica.proc.send_signal(
            signal.SIGCONT))
        wait_replicas(cls.master, 1)
        cls.make_daemon("url = redis://127.0.0.1:%d/0\nmin_replicas = 1\n"
                        "replica_timeout_ms = %d\n" % (cls.master.port, cls.REPLICA_TIMEOUT_MS))

    def test_wait_for_the_replica(self):
        a = self.send("W", 0)
        self.assertEqual(a.pair, ACK)
        self.assertEqual(stream_ids(self.replica.port).get(event_id_of(0, "W")), 1)
        self.replica.proc.send_signal(signal.SIGSTOP)
        try:
            start = len(self.daemon.log_text())
            answers = [self.send("W", n) for n in (1, 2)]
            for a in answers:
                self.assertEqual(a.pair, UNAVAILABLE, a)
                # after the WAIT's timeout, not before; within the request's deadline
                self.assertGreaterEqual(a.elapsed, self.REPLICA_TIMEOUT_MS / 1000.0 - 0.05, a)
                self.assertLess(a.elapsed, (self.REPLICA_TIMEOUT_MS + 1000) / 1000.0 + 0.5, a)
            self.assertEqual(len(self.log_lines("redis write not on enough replicas, "
                                                "answered as failed", start)), 2)
            self.assertEqual(len(self.log_lines("callback recorded", start)), 0)
            # WAIT blocks the connection: a read of the admin API sent while a
            # WAIT is out waits for it, and is still answered (its deadline is
            # timeout_ms + replica_timeout_ms)
            slow = []
            t = threading.Thread(target=lambda: slow.append(self.send("W", 3)), daemon=True)
            t.start()
            # until the master shows payrelayd's connection blocked in WAIT
            deadline = time.monotonic() + 3
            mc = self.master.client()
            try:
                # flags=b: blocked now (cmd= is only the last command run)
                blocked = re.compile(rb"flags=[a-zA-Z]*b[a-zA-Z]* .*cmd=wait")
                while not blocked.search(mc.cmd("CLIENT", "LIST")) and \
                        time.monotonic() < deadline:
                    time.sleep(0.01)
            finally:
                mc.close()
            t0 = time.monotonic()
            eid = h.event_id(CHANNEL, trade_no("W", 0), "paid")
            r = h.http(self.setup.admin_port, "GET", "/v1/events/" + eid,
                       headers={"Authorization": "Bearer " + h.ADMIN_TOKEN})
            waited = time.monotonic() - t0
            t.join(5)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(slow[0].pair, UNAVAILABLE)
            self.assertGreater(waited, 0.05, "the admin read did not wait for the WAIT")
            self.assertLess(waited, (self.REPLICA_TIMEOUT_MS + 1000) / 1000.0)
            print("\nadmin read behind a WAIT on a stopped replica: %.2f s" % waited,
                  file=sys.stderr)
            # the record step ran: the master has them, the replica not yet
            ids = stream_ids(self.master.port)
            self.assertEqual(ids.get(event_id_of(1, "W")), 1)
            # a retry while the replica still sleeps: a duplicate, and still 503
            self.assertEqual(self.send("W", 1).pair, UNAVAILABLE)
        finally:
            self.replica.proc.send_signal(signal.SIGCONT)
        # the gateway's retry: a duplicate, acked once the replica has it
        start = len(self.daemon.log_text())
        self.resend_until_acked("W", [1, 2, 3], limit=15)
        self.assertEqual(len(self.wait_log_lines("callback duplicate", 3, start)), 3)
        for port in (self.master.port, self.replica.port):
            ids = stream_ids(port)
            for n in (0, 1, 2, 3):
                self.assertEqual(ids.get(event_id_of(n, "W")), 1, (port, n))

    def test_a_burst_is_answered_by_one_wait(self):
        """The record steps of one script call (a burst read in one loop
        turn: it came while payrelayd was stopped) all ran before the WAIT
        the first of them sends, so that one WAIT answers them all (issue
        16): duplicates too, after one replsync write sent before it."""
        self.assertEqual(self.send("B", 0).pair, ACK)
        paths = ["/notify/%s?%s" % (CHANNEL, h.form_encode(
            epay_callback(self.setup.epay_key, "B", n))) for n in range(0, 9)]
        mc = self.master.client()
        try:
            def waits():
                m = re.search(rb"cmdstat_wait:calls=(\d+)", mc.cmd("INFO", "commandstats"))
                return int(m.group(1)) if m else 0

            w0, c0 = waits(), self.metrics()["payrelay_redis_record_calls_total"]
            res = h.burst_while_stopped(self.daemon.proc, self.setup.port, paths)
            w1, c1 = waits(), self.metrics()["payrelay_redis_record_calls_total"]
        finally:
            mc.close()
        for st, body in res:
            self.assertEqual((st, body), ACK, self.daemon.log_tail(10))
        print("\n9 callbacks (1 duplicate): %d record calls, %d WAITs"
              % (c1 - c0, w1 - w0), file=sys.stderr)
        # one call carries them (at most three: the accepts and reads may
        # span loop turns), and each call is answered by one WAIT
        self.assertLessEqual(c1 - c0, 3, "record calls for a burst of 9")
        self.assertLessEqual(w1 - w0, c1 - c0, "more WAITs than record calls")
        for port in (self.master.port, self.replica.port):
            ids = stream_ids(port)
            for n in range(9):
                self.assertEqual(ids.get(event_id_of(n, "B")), 1, (port, n))


if __name__ == "__main__":
    if not sentinel_binary():
        print("redis-sentinel is not installed (run scripts/deps.sh): failing")
        sys.exit(1)
    sys.exit(h.run_tests())
