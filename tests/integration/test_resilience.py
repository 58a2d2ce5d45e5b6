#!/usr/bin/env python3
"""Integration tests of payrelayd when things go wrong underneath the delivery
engine and the poller (docs/guarantees.md sections 7 and 8, the "Not tested"
lines; docs/delivery.md "Leases and several instances"; docs/reconciliation.md
"Several instances" and "Shutdown and reload"):

- Redis is SIGKILLed while deliveries are in flight and comes back (AOF):
  nothing is marked delivered that could not be stored, every event arrives.
- A late success after a delivery's lease was taken over by a second
  instance (the first instance's Redis traffic is held back by a proxy).
- A poll result `other`; SIGTERM with a poll in flight; a poll whose
  outcome arrives after the lease was taken over (`state=lost`).

A lease is the attempt's (query's) time limit + 5 s, and the HTTP exchange
itself cannot outlast its time limit, so a lease is taken over only when the
instance's Redis traffic is slow. RedisProxy (below) makes it slow for one
instance: it sits between that instance and redis-server and holds back the
bytes of one direction on demand, then lets them through in order.

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
        python3 tests/integration/test_resilience.py [-k PATTERN]

Exits 0 when every test passes, 1 otherwise.
"""

import json
import os
import select
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import fakegw  # noqa: E402

PREFIX = "payrelay:"
STREAM = "payrelay:events"
EPAY = h.load_vectors("epay.json")["vectors"]
EPAY_MID, EPAY_KEY = "1001", EPAY[0]["key"]
LEASE_EXTRA_MS = 5000  # a claim's lease: the time limit + 5000 ms
SLOW = max(1.0, h.TIME_SCALE)


def now_ms():
    return int(time.time() * 1000)


def wait_until(pred, timeout, step=0.05):
    """pred()'s first true value within `timeout` s, else None."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(step)


# --------------------------------------------------------------------------
# a TCP proxy in front of redis-server that can hold back one direction


class RedisProxy:
    """127.0.0.1:<port> -> redis. `hold_up()` holds what clients send
    (commands reach Redis only at `release()`); `arm_down(marker)` holds
    what Redis answers from the first read that contains `marker` on (the
    client gets those replies only at `release()`). Held bytes are sent in
    order, nothing is dropped."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.lock = threading.Lock()
        self.hold = {"up": False, "down": False}
        self.marker = None
        self.triggered = threading.Event()   # the down marker was seen
        self.held_bytes = {"up": 0, "down": 0}
        self._stop = threading.Event()
        self._socks = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((h.HOST, 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def hold_up(self):
        with self.lock:
            self.hold["up"] = True

    def arm_down(self, marker):
        with self.lock:
            self.marker = marker.encode() if isinstance(marker, str) else marker

    def release(self):
        with self.lock:
            self.hold = {"up": False, "down": False}
            self.marker = None

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                u = socket.create_connection((h.HOST, self.upstream), timeout=h.TIMEOUT)
            except OSError:
                c.close()
                continue
            with self.lock:
                self._socks += [c, u]
            for src, dst, d in ((c, u, "up"), (u, c, "down")):
                threading.Thread(target=self._pump, args=(src, dst, d), daemon=True).start()

    def _pump(self, src, dst, direction):
        pending, tail = b"", b""
        src.settimeout(h.TIMEOUT)
        dst.settimeout(h.TIMEOUT)
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([src], [], [], 0.02)
                if r:
                    data = src.recv(65536)
                    if not data:
                        break
                    pending += data
                    with self.lock:
                        if (direction == "down" and self.marker is not None
                                and not self.hold["down"] and self.marker in tail + data):
                            self.hold["down"] = True
                            self.triggered.set()
                    tail = (tail + data)[-256:]
                with self.lock:
                    held = self.hold[direction]
                    self.held_bytes[direction] = len(pending) if held else 0
                if pending and not held:
                    dst.sendall(pending)
                    pending = b""
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        self.thread.join(5)


# --------------------------------------------------------------------------
# configuration and shared helpers


def config_text(setup, redis_port, port, admin_port, extra, redis_timeout_ms=1000,
                shutdown_timeout=3):
    return h.config_head(port, admin_port, redis_port, shutdown_timeout=shutdown_timeout,
                         redis_timeout_ms=redis_timeout_ms, stream=STREAM,
                         writer="tests/integration/test_resilience.py") + extra


def epay_channel(api_base=None, **opts):
    text = "\n[channel:shop-epay]\nfamily = epay\nmerchant_id = %s\nkey = %s\n" % (
        EPAY_MID, EPAY_KEY)
    if api_base:
        text += "api_base = %s\n" % api_base
    text += "".join("%s = %s\n" % kv for kv in opts.items())
    return text


def webhook(name, url, **opts):
    keys = {"url": url, "secret": h.WEBHOOK_SECRET, "events": "order.paid"}
    keys.update(opts)
    return "\n[webhook:%s]\n" % name + "".join("%s = %s\n" % kv for kv in keys.items())


class ResilienceCase(h.DaemonClassCase):
    """DaemonClassCase plus helpers. `cls.daemon` is instance A."""

    workdir_prefix = "payrelay-rs-"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.r = cls.redis.client()
        cls.addClassCleanup(cls.r.close)
        cls.daemon.instance = cls.instance_of(cls.daemon)

    @staticmethod
    def instance_of(d):
        line = d.wait_log(r"\binstance=", timeout=2.0 * h.TIME_SCALE)
        return h.logfmt(line).get("instance")

    @classmethod
    def second_config(cls, text):
        """A config file that differs from `text` only in the listen ports
        (and, with a proxy, in the Redis port: B talks to Redis directly)."""
        port, admin = h.free_port(), h.free_port()
        text = text.replace("listen = 127.0.0.1:%d\n" % cls.setup.port,
                            "listen = 127.0.0.1:%d\n" % port)
        text = text.replace("listen = 127.0.0.1:%d\n" % cls.setup.admin_port,
                            "listen = 127.0.0.1:%d\n" % admin)
        text = text.replace("redis://127.0.0.1:%d/" % getattr(cls, "proxy_port", cls.redis.port),
                            "redis://127.0.0.1:%d/" % cls.redis.port)
        path = os.path.join(cls.dir, "second.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path, port, admin

    # --- Redis ----------------------------------------------------------------

    def deliveries(self):
        out = {}
        for k in self.r.keys(PREFIX + "delivery:*"):
            rec = self.r.hgetall(k)
            out[k[len(PREFIX + "delivery:"):]] = rec
        return out

    def hash(self, did):
        return self.r.hgetall(PREFIX + "delivery:" + did)

    def zscore(self, key, member):
        s = self.r.cmd("ZSCORE", PREFIX + key, member)
        return None if s is None else float(s)

    @staticmethod
    def brief(rec):
        return {k: v for k, v in (rec or {}).items() if k != "event"}

    # --- the public listener and the admin API ---------------------------------

    def callback(self, trade_no, port=None):
        """One signed epay callback (paid); returns its event id."""
        p = {k: v for k, v in EPAY[0]["params"].items() if k != "sign"}
        p["trade_no"] = trade_no
        p["out_trade_no"] = "OUT-" + trade_no
        p["trade_status"] = "TRADE_SUCCESS"
        p["sign"] = h.epay_md5_sign(p, EPAY_KEY)
        reply = h.http(port or self.setup.port, "GET",
                       "/notify/shop-epay?%s" % h.form_encode(p))
        self.assertEqual((reply.status, reply.body), (200, b"success"),
                         "%r\n%s" % (reply, self.log_tail()))
        return h.event_id("shop-epay", trade_no, "paid")

    def admin(self, method, path, body=None, admin_port=None):
        hd = {"Authorization": "Bearer " + h.ADMIN_TOKEN}
        if body is not None:
            body = json.dumps(body)
            hd["Content-Type"] = "application/json"
        reply = h.http(admin_port or self.setup.admin_port, method, path, body=body, headers=hd)
        try:
            reply.json = json.loads(reply.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            reply.json = None
        return reply

    def register(self, otn, amount="1.00", admin_port=None):
        reply = self.admin("POST", "/v1/orders", {"channel": "shop-epay", "out_trade_no": otn,
                                                  "amount": amount}, admin_port)
        self.assertEqual(reply.status, 201, "%r\n%s" % (reply, self.log_tail()))
        return reply.json

    def order_hash(self, otn):
        return self.r.hgetall(PREFIX + "order:shop-epay:" + otn)

    # --- logs -------------------------------------------------------------------

    def log_tail(self, n=25):
        return "\n".join("--- %s (tail) ---\n%s" % (os.path.basename(d.log), d.log_tail(n))
                         for d in self.daemons)

    def records(self, msg, daemon=None, **want):
        ds = [daemon] if daemon else self.daemons
        return [rec for d in ds for rec in h.log_records(d.log_text(), msg)
                if all(rec.get(k) == str(v) for k, v in want.items())]

    def wait_records(self, n, msg, timeout, daemon=None, **want):
        got = wait_until(lambda: len(self.records(msg, daemon, **want)) >= n, timeout)
        if not got:
            self.fail("want %d log lines msg=%r %r within %.1f s, got %r\n%s"
                      % (n, msg, want, timeout, self.records(msg, daemon, **want),
                         self.log_tail()))
        return self.records(msg, daemon, **want)

    def assertAlive(self, *ds):
        for d in ds or self.daemons:
            self.assertTrue(d.alive(), "%s died:\n%s" % (d.log, self.log_tail(40)))

    def assertNoSanitizerReport(self, d):
        log = d.log_text()
        self.assertFalse("Sanitizer" in log or "runtime error:" in log
                         or h.VALGRIND_ERROR_RE.search(log),
                         "sanitizer report in %s:\n%s" % (d.log, d.log_tail(60)))


# ==========================================================================
# 1. Redis goes away while deliveries are in flight


class RedisGoneTest(ResilienceCase):
    """AOF with fsync on every write: the claims taken before the SIGKILL
    survive it, as they would on a production Redis with persistence."""

    redis_args = ("--appendonly", "yes", "--appendfsync", "always")
    TIMEOUT_MS = 2000
    HOLD_S = 1.0
    IN_FLIGHT = 4
    EVENTS = 6

    @classmethod
    def setUpClass(cls):
        # the first IN_FLIGHT requests are held HOLD_S, then answered 200
        cls.rcv = h.Receiver(script=["slow:%s" % cls.HOLD_S] * cls.IN_FLIGHT, default="ok")
        cls.addClassCleanup(cls.rcv.stop)
        super().setUpClass()

    @classmethod
    def config_for(cls, setup):
        return config_text(setup, setup.redis_port, setup.port, setup.admin_port,
                           epay_channel() + webhook("orders", cls.rcv.url(),
                                                    timeout_ms=cls.TIMEOUT_MS,
                                                    max_in_flight=cls.IN_FLIGHT,
                                                    schedule="0 1 1"))

    def test_01_redis_sigkill_with_deliveries_in_flight(self):
        d, rcv = self.daemon, self.rcv
        eids = [self.callback("T-GONE-%02d" % i) for i in range(self.EVENTS)]
        first = rcv.wait_count(self.IN_FLIGHT, 5.0 * SLOW)
        self.assertIsNotNone(first, "deliveries did not start\n" + self.log_tail())
        self.assertEqual(rcv.count(), self.IN_FLIGHT, "more than max_in_flight at once")
        claimed = {}
        for did, rec in self.deliveries().items():
            if rec.get("lease_owner"):
                claimed[did] = rec
        self.assertEqual(len(claimed), self.IN_FLIGHT,
                         {k: self.brief(v) for k, v in self.deliveries().items()})
        for rec in claimed.values():
            self.assertEqual(rec.get("lease_owner"), d.instance)
        lease_until = max(int(r["lease_until_ms"]) for r in claimed.values())

        # Redis dies while the receiver still holds the requests
        self.redis.stop(signal.SIGKILL)
        killed = time.monotonic()
        answered = rcv.wait_for(
            lambda rs: len([r for r in rs if r.outcome == "answered" and r.status == 200])
            >= self.IN_FLIGHT, 5.0 * SLOW)
        self.assertIsNotNone(answered, "the receiver did not answer: %r" % rcv.snapshot())
        # every answer reached the daemon, none could be stored
        not_stored = self.wait_records(self.IN_FLIGHT, "delivery outcome not recorded, the "
                                       "lease will expire", 3.0 * SLOW, d)
        self.assertEqual({x.get("delivery") for x in not_stored}, set(claimed))
        self.assertAlive(d)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - killed)))
        self.assertAlive(d)

        # Redis comes back with its AOF: the outcomes were never stored
        self.redis.start()
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        after = self.deliveries()
        self.assertEqual(len(after), self.EVENTS, "deliveries lost with Redis")
        for did, rec in claimed.items():
            now = after[did]
            self.assertEqual(now.get("state"), "pending",
                             "marked %s without a stored outcome: %r"
                             % (now.get("state"), self.brief(now)))
            self.assertEqual(now.get("attempts"), "0", self.brief(now))
            self.assertNotIn("delivered_ms", now)
            self.assertEqual(now.get("lease_owner"), d.instance, self.brief(now))

        # the unclaimed two go out once the daemon is back; the leased ones
        # only when their leases expire
        unclaimed = set(after) - set(claimed)
        ok = wait_until(lambda: all(self.hash(x).get("state") == "delivered"
                                    for x in unclaimed), 10.0 * SLOW)
        self.assertTrue(ok, "unclaimed deliveries not sent after Redis came back: %r\n%s"
                        % ({x: self.brief(self.hash(x)) for x in unclaimed}, self.log_tail()))
        if now_ms() < lease_until - 300:
            for did in claimed:
                self.assertEqual(self.hash(did).get("state"), "pending",
                                 "re-sent before its lease expired: %r"
                                 % self.brief(self.hash(did)))

        ok = wait_until(lambda: all(r.get("state") == "delivered"
                                    for r in self.deliveries().values()),
                        (lease_until - now_ms()) / 1000.0 + 6.0 * SLOW, 0.1)
        final = self.deliveries()
        self.assertTrue(ok, "not all delivered: %r\n%s"
                        % ({k: self.brief(v) for k, v in final.items()}, self.log_tail()))
        self.assertAlive(d)
        for did, rec in final.items():
            self.assertEqual(rec.get("attempts"), "1",
                             "the unstored outcome must not count: %r" % self.brief(rec))
            self.assertNotIn("lease_owner", rec)
        self.assertEqual(self.r.cmd("ZCARD", PREFIX + "wh:orders:due"), 0)
        self.assertEqual(self.r.cmd("ZCARD", PREFIX + "wh:orders:dead"), 0)

        time.sleep(0.6)  # a tick: nothing more may come
        reqs = rcv.snapshot()
        got = {}
        for r in reqs:
            got.setdefault(r.headers.get("webhook-id"), []).append(r)
        ok_ids = {e for e, rs in got.items()
                  if any(r.status == 200 and r.outcome == "answered" for r in rs)}
        self.assertEqual(set(eids) - ok_ids, set(), "events never delivered")
        self.assertEqual(set(got), set(eids))
        claimed_eids = {claimed[x]["event_id"] for x in claimed}
        for e, rs in got.items():
            want = 2 if e in claimed_eids else 1
            self.assertEqual(len(rs), want, "requests for %s: %r" % (e, rs))
        for e in claimed_eids:
            self.assertGreaterEqual(got[e][1].time * 1000, lease_until - 1000 - 100,
                                    "sent again before the lease expired")
        dup = len(reqs) - len(eids)
        sys.stderr.write("[%d requests for %d events: %d duplicates, as documented] "
                         % (len(reqs), len(eids), dup))
        self.assertEqual(dup, self.IN_FLIGHT)


# ==========================================================================
# 2. a late success after the lease was taken over


class LateSuccessTest(ResilienceCase):
    """Instance A (cls.daemon) talks to Redis through RedisProxy; instance B
    directly. Two webhooks get the same event, so one callback makes two
    deliveries: /a and /b."""

    TIMEOUT_MS = 3000
    HOLD_S = 1.0

    @classmethod
    def setUpClass(cls):
        cls.rcv = h.Receiver(script={"/a": ["slow:%s" % cls.HOLD_S, "ok"],
                                     "/b": ["slow:%s" % cls.HOLD_S, "slow:2"]}, default="ok")
        cls.addClassCleanup(cls.rcv.stop)
        super().setUpClass()

    @classmethod
    def config_for(cls, setup):
        cls.proxy = RedisProxy(setup.redis_port)
        cls.proxy_port = cls.proxy.port
        cls.addClassCleanup(cls.proxy.stop)
        hooks = "".join(webhook(n, cls.rcv.url("/" + n), timeout_ms=cls.TIMEOUT_MS,
                                schedule="0 1 1") for n in ("a", "b"))
        return config_text(setup, cls.proxy.port, setup.port, setup.admin_port,
                           epay_channel() + hooks)

    def monitor(self):
        m = self.redis.client()
        self.addCleanup(m.close)
        self.assertEqual(m.cmd("MONITOR"), "OK")
        return m

    def wait_monitor(self, m, pred, timeout):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            m.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                line = m._reply()
            except (socket.timeout, OSError):
                break
            line = line.decode() if isinstance(line, bytes) else str(line)
            seen.append(line)
            if pred(line):
                return line
        self.fail("not seen in MONITOR within %.1f s; last lines: %r" % (timeout, seen[-10:]))

    def test_02_late_success_after_takeover(self):
        a, rcv, proxy = self.daemon, self.rcv, self.proxy
        eid = self.callback("T-LATE-1")
        self.assertIsNotNone(rcv.wait_for(lambda rs: {r.path for r in rs} == {"/a", "/b"},
                                          5.0 * SLOW), self.log_tail())
        dls = {rec["webhook"]: (did, rec) for did, rec in self.deliveries().items()}
        self.assertEqual(set(dls), {"a", "b"})
        for name, (did, rec) in dls.items():
            self.assertEqual(rec.get("lease_owner"), a.instance, self.brief(rec))
        lease_until = max(int(rec["lease_until_ms"]) for _d, rec in dls.values())
        did_a, did_b = dls["a"][0], dls["b"][0]

        # A's Redis becomes slow: A's outcomes reach Redis only at release()
        proxy.hold_up()
        b_conf, b_port, _ = self.second_config(self.config_text)
        b = self.start_daemon(config=b_conf, port=b_port, name="payrelayd-b")
        b.instance = self.instance_of(b)
        self.assertNotEqual(a.instance, b.instance)
        # A gets both 200s and cannot store them in time
        self.wait_records(1, "delivered", 5.0 * SLOW, a, delivery=did_a)
        self.wait_records(1, "delivered", 5.0 * SLOW, a, delivery=did_b)
        self.wait_records(2, "delivery outcome not recorded, the lease will expire",
                          5.0 * SLOW, a)
        self.assertGreater(proxy.held_bytes["up"], 0, "nothing of A's was held back")
        for did in (did_a, did_b):
            rec = self.hash(did)
            self.assertEqual((rec.get("state"), rec.get("attempts"), rec.get("lease_owner")),
                             ("pending", "0", a.instance), self.brief(rec))

        # B takes both over when the lease expires: /a is answered at once, /b is held
        got = rcv.wait_for(lambda rs: len(rs) >= 4,
                           (lease_until - now_ms()) / 1000.0 + 5.0 * SLOW)
        self.assertIsNotNone(got, "B did not take over: %r\n%s" % (rcv.snapshot(), self.log_tail()))
        self.assertGreaterEqual(min(r.time for r in got[2:]) * 1000, lease_until - 100,
                                "taken over before the lease expired")
        rec_a = wait_until(lambda: (lambda r: r if r.get("state") == "delivered" else None)(
            self.hash(did_a)), 3.0 * SLOW)
        self.assertTrue(rec_a, "B did not deliver /a: %r\n%s"
                        % (self.brief(self.hash(did_a)), self.log_tail()))
        rec_b = self.hash(did_b)
        self.assertEqual((rec_b.get("state"), rec_b.get("lease_owner")), ("pending", b.instance),
                         "B must hold /b's lease now: %r" % self.brief(rec_b))
        self.assertEqual(rec_a.get("attempts"), "1", self.brief(rec_a))

        # A's late successes arrive: /a is settled already, /b is B's (in flight)
        m = self.monitor()
        proxy.release()
        late = set()  # A's two finish calls, in either order

        def both_late(line):
            for did in (did_a, did_b):
                if ("evalsha" in line.lower() and '"%s"' % did in line
                        and '"%s"' % a.instance in line and '"ok"' in line):
                    late.add(did)
            return late == {did_a, did_b}
        self.wait_monitor(m, both_late, 5.0 * SLOW)
        self.r.cmd("PING")  # after A's scripts: MONITOR shows a command before it runs
        late_a = self.hash(did_a)
        self.assertEqual(late_a, rec_a, "A's late success changed a settled delivery")
        late_b = self.hash(did_b)
        self.assertEqual((late_b.get("state"), late_b.get("attempts")), ("delivered", "1"),
                         "A's late success must be recorded: %r" % self.brief(late_b))
        self.assertNotIn("lease_owner", late_b)

        # then B's own success for /b: settled, nothing changes
        self.wait_records(1, "delivered", 5.0 * SLOW, b, delivery=did_b)
        ok = rcv.wait_for(lambda rs: len([r for r in rs if r.path == "/b"
                                          and r.outcome == "answered"]) >= 2, 5.0 * SLOW)
        self.assertIsNotNone(ok, rcv.snapshot())
        time.sleep(0.5)
        self.assertEqual(self.hash(did_b), late_b, "B's success changed a settled delivery")
        # B says so when its outcome is dropped (A's own finish calls had
        # timed out on its side: it never saw their answers).
        b.wait_log(r'msg="delivery outcome dropped".*delivery=%s reason="already settled"'
                   % did_b, timeout=5)
        for did, name in ((did_a, "a"), (did_b, "b")):
            rec = self.hash(did)
            self.assertEqual((rec.get("state"), rec.get("attempts")), ("delivered", "1"),
                             self.brief(rec))
            self.assertIsNone(self.zscore("wh:%s:due" % name, did))
            self.assertIsNone(self.zscore("wh:%s:dead" % name, did))
        # the receiver saw each event twice (at least once, duplicates documented)
        reqs = rcv.snapshot()
        self.assertEqual(sorted(r.path for r in reqs), ["/a", "/a", "/b", "/b"])
        self.assertEqual({r.headers.get("webhook-id") for r in reqs}, {eid})
        self.assertTrue(all(r.status == 200 for r in reqs), reqs)
        self.assertAlive(a, b)


# ==========================================================================
# 3. polls: `other`, SIGTERM with a poll in flight


class PollTest(ResilienceCase):

    POLL_TIMEOUT_MS = 2000

    @classmethod
    def setUpClass(cls):
        cls.gw = fakegw.FakeGateway("epay", EPAY_MID, EPAY_KEY, hang_s=30.0)
        cls.addClassCleanup(cls.gw.stop)
        super().setUpClass()

    @classmethod
    def config_for(cls, setup):
        return config_text(setup, setup.redis_port, setup.port, setup.admin_port,
                           epay_channel(cls.gw.api_base, poll_after=1, poll_gaps="1",
                                        poll_timeout_ms=cls.POLL_TIMEOUT_MS))

    def test_03a_other_result_is_final(self):
        otn = "R-OTHER-1"
        self.gw.add_order(otn, amount="1.00", state="refunded")
        self.register(otn)
        q = self.gw.wait_count(1, 4.0 * SLOW, otn)
        self.assertIsNotNone(q, "not polled\n" + self.log_tail())
        rec = self.wait_records(1, "order polled", 3.0 * SLOW, self.daemon,
                                out_trade_no=otn)[0]
        self.assertEqual((rec.get("result"), rec.get("state")), ("other", "other"), rec)
        o = self.order_hash(otn)
        self.assertEqual((o.get("state"), o.get("last_result"), o.get("polls")),
                         ("other", "other", "1"), o)
        self.assertNotIn("lease_owner", o)
        self.assertIsNone(self.zscore("ch:shop-epay:orders:due", otn),
                          "an `other` order stays in the due set")
        ttl = self.r.cmd("TTL", PREFIX + "order:shop-epay:" + otn)
        self.assertGreater(ttl, 2592000 - 60, "hash kept dedup_ttl: ttl %r" % ttl)
        # a couple of poll gaps (1 s each): never polled again
        time.sleep(3.0)
        self.assertEqual(self.gw.count(otn), 1, self.gw.queries(otn))
        self.assertEqual(self.order_hash(otn).get("state"), "other")
        reply = self.admin("POST", "/v1/orders/shop-epay/%s/poll" % otn)
        self.assertEqual(reply.status, 409, reply)
        self.assertEqual(reply.json.get("state"), "other", reply)
        self.assertEqual(self.gw.count(otn), 1)
        self.assertEqual(self.r.xrange(STREAM), [], "an `other` result records no event")

    def test_03b_sigterm_with_a_poll_in_flight(self):
        otn = "R-TERM-1"
        self.gw.add_order(otn, amount="1.00", state="unpaid")
        self.gw.script(otn, ["hang"])
        d = self.daemon
        self.register(otn)
        q = self.gw.wait_count(1, 4.0 * SLOW, otn)
        self.assertIsNotNone(q, "not polled\n" + self.log_tail())
        o = self.order_hash(otn)
        self.assertEqual(o.get("lease_owner"), d.instance, o)
        lease_until = int(o["lease_until_ms"])
        time.sleep(0.2)
        self.assertEqual(q[0].outcome, "pending", "the query is not in flight: %r" % q)

        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc, in_time = d.wait(timeout=3 * h.TIME_SCALE + 2)
        took = time.monotonic() - t0
        self.assertNoSanitizerReport(d)
        self.assertTrue(in_time, "no exit within shutdown_timeout + 2 s\n" + self.log_tail())
        self.assertEqual(rc, 0, self.log_tail())
        # shutdown_timeout is 3 s; a query in flight is cancelled at once
        # (reconciliation.md), not waited for: poll_timeout_ms is 2 s
        self.assertLess(took, 1.5 * h.TIME_SCALE,
                        "took %.1f s: the query in flight was not cancelled at once" % took)
        gone = self.gw.wait_for(lambda rs: q[0].outcome != "pending", 2.0)
        self.assertIsNotNone(gone)
        self.assertEqual(q[0].outcome, "client-gone", "the query was not cancelled: %r" % q)
        # the lease is left to expire, and the cancelled poll does not count
        o = self.order_hash(otn)
        self.assertEqual((o.get("state"), o.get("polls"), o.get("lease_owner")),
                         ("pending", "0", d.instance), o)
        self.assertEqual(self.zscore("ch:shop-epay:orders:due", otn), float(lease_until))

        d2 = self.start_daemon(name="payrelayd-restarted")
        d2.instance = self.instance_of(d2)
        q2 = self.gw.wait_count(2, (lease_until - now_ms()) / 1000.0 + 4.0 * SLOW, otn)
        self.assertIsNotNone(q2, "not polled again after the lease expired\n" + self.log_tail())
        self.assertGreaterEqual(q2[1].time * 1000, lease_until - 50,
                                "polled again before the lease expired")
        rec = self.wait_records(1, "order polled", 3.0 * SLOW, d2, out_trade_no=otn)[0]
        self.assertEqual((rec.get("result"), rec.get("state"), rec.get("poll")),
                         ("unpaid", "pending", "1"), rec)
        o = self.order_hash(otn)
        self.assertEqual((o.get("state"), o.get("polls"), o.get("last_result")),
                         ("pending", "1", "unpaid"), o)


# ==========================================================================
# 3c. a poll outcome after the lease was taken over: `lost`


class PollLostTest(ResilienceCase):
    """A (cls.daemon) talks to Redis through RedisProxy: the reply to the
    claim that leased the order is held until B has polled it. A long Redis
    timeout, so that A waits for that reply instead of giving up."""

    POLL_TIMEOUT_MS = 500

    @classmethod
    def setUpClass(cls):
        cls.gw = fakegw.FakeGateway("epay", EPAY_MID, EPAY_KEY, hang_s=30.0)
        cls.addClassCleanup(cls.gw.stop)
        super().setUpClass()

    @classmethod
    def config_for(cls, setup):
        cls.proxy = RedisProxy(setup.redis_port)
        cls.proxy_port = cls.proxy.port
        cls.addClassCleanup(cls.proxy.stop)
        return config_text(setup, cls.proxy.port, setup.port, setup.admin_port,
                           epay_channel(cls.gw.api_base, poll_after=1, poll_gaps="30",
                                        poll_timeout_ms=cls.POLL_TIMEOUT_MS),
                           redis_timeout_ms=30000)

    def test_03c_late_poll_outcome_is_lost(self):
        a, gw, proxy = self.daemon, self.gw, self.proxy
        otn = "R-LOST-1"
        gw.add_order(otn, amount="1.00", state="unpaid")
        # B's query (first to reach the gateway) sees the truth, A's late one `refunded`
        gw.script(otn, ["state", "refunded"])
        self.register(otn)
        proxy.arm_down(otn)  # the claim reply that names the order
        self.assertTrue(proxy.triggered.wait(5.0 * SLOW), "A never claimed the order\n"
                        + self.log_tail())
        o = wait_until(lambda: (lambda x: x if x.get("lease_owner") else None)(
            self.order_hash(otn)), 2.0)
        self.assertTrue(o, self.order_hash(otn))
        self.assertEqual(o.get("lease_owner"), a.instance, o)
        lease_until = int(o["lease_until_ms"])

        b_conf, b_port, b_admin = self.second_config(self.config_text)
        b = self.start_daemon(config=b_conf, port=b_port, name="payrelayd-b")
        b.instance = self.instance_of(b)
        q = gw.wait_count(1, (lease_until - now_ms()) / 1000.0 + 4.0 * SLOW, otn)
        self.assertIsNotNone(q, "B did not poll after the lease expired\n" + self.log_tail())
        self.assertGreaterEqual(q[0].time * 1000, lease_until - 50)
        rec_b = self.wait_records(1, "order polled", 3.0 * SLOW, b, out_trade_no=otn)[0]
        self.assertEqual((rec_b.get("result"), rec_b.get("state")), ("unpaid", "pending"), rec_b)
        before = self.order_hash(otn)
        self.assertEqual((before.get("state"), before.get("polls")), ("pending", "1"), before)
        self.assertNotIn("lease_owner", before)
        score = self.zscore("ch:shop-epay:orders:due", otn)
        self.assertEqual(score, float(before["next_poll_ms"]))
        self.assertEqual(gw.count(otn), 1, "A polled while its claim reply was held")

        # A finally gets its claim reply, polls (refunded: `other`) and reports late
        proxy.release()
        self.assertIsNotNone(gw.wait_count(2, 3.0 * SLOW, otn), self.log_tail())
        rec_a = self.wait_records(1, "order polled", 3.0 * SLOW, a, out_trade_no=otn)[0]
        self.assertEqual((rec_a.get("result"), rec_a.get("state")), ("other", "lost"), rec_a)
        after = self.order_hash(otn)
        self.assertEqual(after.get("state"), "pending", "A's late `other` overwrote B's state")
        self.assertEqual(after.get("next_poll_ms"), before["next_poll_ms"], after)
        self.assertEqual(self.zscore("ch:shop-epay:orders:due", otn), score,
                         "A's late outcome rescheduled the order")
        self.assertNotIn("lease_owner", after)
        # documented: polls and last_* are still updated
        self.assertEqual((after.get("polls"), after.get("last_result")), ("2", "other"), after)
        self.assertEqual(self.r.xrange(STREAM), [])
        self.assertAlive(a, b)


if __name__ == "__main__":
    sys.exit(h.run_tests())
