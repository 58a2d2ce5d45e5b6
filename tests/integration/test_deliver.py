#!/usr/bin/env python3
"""Integration tests of the webhook delivery engine of payrelayd (SPEC sections
4, 5.2, 7, 8): signing, retries, dead letters, Retry-After, filters, leases
after a SIGKILL, SIGTERM with requests in flight, the circuit breaker.

Every test runs its own redis-server, payrelayd and local webhook receiver
(harness.Receiver) on free loopback ports, records callbacks through the
public listener and then watches the receiver, the daemon's log and Redis.

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
        python3 tests/integration/test_deliver.py [-k PATTERN]

Exits 0 when every test passes, 1 otherwise (also when no redis-server is
installed: that is a broken setup, not a pass).
"""

import base64
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

BINARY = h.locate_binary()
PREFIX = "payrelay:"
STREAM = "payrelay:events"
EPAY = h.load_vectors("epay.json")["vectors"]
SW = h.load_vectors("standard_webhooks.json")["vectors"]
LEASE_EXTRA_MS = 5000  # a claim pushes the due score to now + timeout_ms + 5000
TICK = 0.5             # the engine looks for due deliveries about this often

# secrets of these tests (never to be seen in a log)
SECRET_A = "whsec_" + base64.b64encode(b"payrelay-deliver-test-key-A-0123").decode()
SECRET_B = "whsec_" + base64.b64encode(b"payrelay-deliver-test-key-B-4567").decode()
RAW_SECRET = "raw-webhook-secret-5b1e9c0d7a3f"


def now_ms():
    return int(time.time() * 1000)


def secret_strings(secret):
    """What of a configured secret must never be logged."""
    out = [secret]
    if secret.startswith("whsec_"):
        out.append(secret[len("whsec_"):])
    return out


class DeliverCase(unittest.TestCase):
    """One fresh redis-server per test; daemons and receivers on demand."""

    def setUp(self):
        if not BINARY or not os.access(BINARY, os.X_OK):
            raise RuntimeError("payrelayd not found: set PAYRELAYD (got %r)" % BINARY)
        self.dir = h.new_workdir("payrelay-dl-")
        self.daemons = []
        self.secrets = [h.ADMIN_TOKEN, EPAY[0]["key"]]
        # registered first, so it runs last: no secret in any daemon's log
        self.addCleanup(self.check_logs_for_secrets)
        self.redis = h.RedisServer(self.dir)
        self.addCleanup(self.redis.stop, signal.SIGKILL)
        self.redis.start()
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        self.port = h.free_port()
        self.admin_port = h.free_port()
        self.config = os.path.join(self.dir, "payrelayd.conf")

    # --- set-up pieces ------------------------------------------------------

    def receiver(self, script=(), default="ok", hang_s=30.0):
        rcv = h.Receiver(script=script, default=default, hang_s=hang_s)
        self.addCleanup(rcv.stop)
        return rcv

    def write_config(self, webhooks, shutdown_timeout=3, path=None, port=None, admin_port=None):
        """`webhooks`: [(name, {key: value})] in order. Returns the path."""
        text = h.config_head(port or self.port, admin_port or self.admin_port, self.redis.port,
                             shutdown_timeout=shutdown_timeout, stream=STREAM,
                             writer="tests/integration/test_deliver.py") + """
[channel:shop-epay]
family = epay
merchant_id = 1001
key = {epay_key}

[channel:shop-other]
family = epay
merchant_id = 1001
key = {epay_key}
""".format(epay_key=EPAY[0]["key"])
        for name, keys in webhooks:
            text += "\n[webhook:%s]\n" % name
            for k, v in keys.items():
                text += "%s = %s\n" % (k, v)
                if k == "secret":
                    for s in v.split():
                        self.secrets.extend(secret_strings(s))
        with open(path or self.config, "w", encoding="utf-8") as f:
            f.write(text)
        return path or self.config

    def start_daemon(self, webhooks=None, shutdown_timeout=3, config=None, port=None):
        """Starts a payrelayd (writing the config first when `webhooks` is
        given) and waits for it to be ready."""
        if webhooks is not None:
            self.write_config(webhooks, shutdown_timeout)
        d = h.Daemon(BINARY, self.dir, config or self.config, port or self.port,
                     name="payrelayd-%d" % len(self.daemons))
        self.daemons.append(d)
        self.addCleanup(d.stop, signal.SIGKILL, 5)
        # Runs first (cleanups are LIFO): a clean exit with no sanitizer report.
        self.addCleanup(d.stop_clean)
        d.start(wait_ready=True)
        try:
            line = d.wait_log(r"\binstance=", timeout=1.0)
            d.instance = h.logfmt(line).get("instance")
        except RuntimeError:
            d.instance = None  # test_08a insists on it
        return d

    def check_logs_for_secrets(self):
        for d in self.daemons:
            text = d.log_text()
            for s in self.secrets:
                self.assertNotIn(s, text, "a configured secret appears in %s" % d.log)

    # --- callbacks --------------------------------------------------------

    def callback(self, channel="shop-epay", trade_no=None, trade_status="TRADE_SUCCESS",
                 port=None):
        """Records one signed epay GET callback; returns its event id."""
        p = {k: v for k, v in EPAY[0]["params"].items() if k != "sign"}
        if trade_no is not None:
            p["trade_no"] = trade_no
        p["trade_status"] = trade_status
        p["sign"] = h.epay_md5_sign(p, EPAY[0]["key"])
        reply = h.http(port or self.port, "GET", "/notify/%s?%s" % (channel, h.form_encode(p)))
        self.assertEqual((reply.status, reply.body), (200, b"success"), self.ctx(reply))
        status = "paid" if trade_status == "TRADE_SUCCESS" else trade_status
        return h.event_id(channel, p["trade_no"], status)

    # --- what Redis holds -------------------------------------------------

    def delivery_id(self, eid, webhook, timeout=3.0):
        """The id of the delivery of event `eid` to `webhook` (looked up)."""
        deadline = time.monotonic() + timeout
        while True:
            for k in self.r.keys(PREFIX + "delivery:*"):
                if self.r.cmd("TYPE", k) != "hash":
                    continue
                rec = self.r.hgetall(k)
                if rec.get("event_id") == eid and rec.get("webhook") == webhook:
                    return k[len(PREFIX + "delivery:"):]
            if time.monotonic() > deadline:
                self.fail("no delivery of %s to %s in Redis\n%s"
                          % (eid, webhook, self.log_tail()))
            time.sleep(0.05)

    def deliveries(self, webhook=None):
        out = {}
        for k in self.r.keys(PREFIX + "delivery:*"):
            if self.r.cmd("TYPE", k) == "hash":
                rec = self.r.hgetall(k)
                if webhook is None or rec.get("webhook") == webhook:
                    out[k[len(PREFIX + "delivery:"):]] = rec
        return out

    def hash(self, did):
        return self.r.hgetall(PREFIX + "delivery:" + did)

    def wait_hash(self, did, pred, timeout, what="condition"):
        deadline = time.monotonic() + timeout
        while True:
            rec = self.hash(did)
            if pred(rec):
                return rec
            if time.monotonic() > deadline:
                self.fail("delivery %s: no %s within %.1f s; hash: %r\n%s"
                          % (did, what, timeout, self.brief(rec), self.log_tail()))
            time.sleep(0.05)

    def wait_delivered(self, did, timeout):
        return self.wait_hash(did, lambda r: r.get("state") == "delivered", timeout,
                              "state=delivered")

    def due_score(self, webhook, did):
        s = self.r.cmd("ZSCORE", PREFIX + "wh:%s:due" % webhook, did)
        return None if s is None else float(s)

    def dead_score(self, webhook, did):
        s = self.r.cmd("ZSCORE", PREFIX + "wh:%s:dead" % webhook, did)
        return None if s is None else float(s)

    def stream_event_bytes(self, eid):
        for _entry, flat in self.r.cmd("XRANGE", STREAM, "-", "+") or []:
            fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
            if fields.get("id", b"").decode() == eid:
                return fields["event"]
        self.fail("event %s is not in the stream" % eid)

    def script_calls(self, sha):
        """The argument counts of the EVALSHA calls of script `sha` in the
        slow log (every call: slowlog-log-slower-than 0), oldest first."""
        out = []
        for entry in self.r.cmd("SLOWLOG", "GET", "-1") or []:
            args = [a.decode() if isinstance(a, bytes) else str(a) for a in entry[3]]
            if len(args) > 1 and args[0].upper() == "EVALSHA" and args[1] == sha:
                # the slow log keeps 31 arguments and "... (N more arguments)"
                m = re.match(r"\.\.\. \((\d+) more arguments\)$", args[-1])
                out.append(len(args) - 1 + int(m.group(1)) if m else len(args))
        return out[::-1]

    # --- diagnostics ------------------------------------------------------

    @staticmethod
    def brief(rec):
        return {k: v for k, v in (rec or {}).items() if k != "event"}

    def log_tail(self, n=25):
        out = []
        for d in self.daemons:
            out.append("--- %s (tail) ---\n%s" % (os.path.basename(d.log), d.log_tail(n)))
        return "\n".join(out)

    def ctx(self, reply):
        return "%r\n%s" % (reply, self.log_tail(15))

    def log_records(self, msg, daemon=None):
        ds = [daemon] if daemon else self.daemons
        return [rec for d in ds for rec in h.log_records(d.log_text(), msg)]

    def wait_log_record(self, msg, timeout, **want):
        """Waits for a log line with msg=`msg` and the given key=values."""
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.log_records(msg):
                if all(rec.get(k) == str(v) for k, v in want.items()):
                    return rec
            if time.monotonic() > deadline:
                self.fail("no log line msg=%r with %r within %.1f s\n%s"
                          % (msg, want, timeout, self.log_tail()))
            time.sleep(0.05)

    # --- checks -------------------------------------------------------------

    def assertSigned(self, req, secrets):
        """`req` carries the Standard Webhooks headers, one valid v1
        signature per secret, in config order, each made with its secret only."""
        hd = req.headers
        mid, ts, sig = hd.get("webhook-id"), hd.get("webhook-timestamp"), hd.get("webhook-signature")
        self.assertTrue(mid and ts and sig, "missing webhook-* headers: %r" % hd)
        self.assertRegex(ts, r"^\d+$")
        sigs = h.webhook_signatures(sig)
        self.assertEqual(len(sigs), len(secrets), "signatures: %r" % sig)
        self.assertEqual(" ".join(sigs), sig, "signatures are separated by one space: %r" % sig)
        for i, (s, secret) in enumerate(zip(sigs, secrets)):
            self.assertRegex(s, r"^v1,[A-Za-z0-9+/]{43}=$")
            self.assertEqual(h.webhook_verify(secret, mid, ts, req.body, s), 0,
                             "signature %d (%s) is not HMAC-SHA256 with secret %d" % (i, s, i))
            for j, other in enumerate(secrets):
                if other != secret:
                    self.assertIsNone(h.webhook_verify(other, mid, ts, req.body, s),
                                      "signature %d also verifies with secret %d" % (i, j))


# ==========================================================================


class VerifierSelfTest(unittest.TestCase):
    """The tests' own Standard Webhooks code reproduces the shared vectors."""

    def test_vectors(self):
        self.assertEqual(len(SW), 2)
        for v in SW:
            self.assertEqual(h.webhook_sign(v["secret"], v["msg_id"], v["timestamp"],
                                            v["payload"]), v["signature"], v["description"])
            hdr = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + v["signature"]
            self.assertEqual(h.webhook_verify(v["secret"], v["msg_id"], v["timestamp"],
                                              v["payload"].encode(), hdr), 1)
            self.assertIsNone(h.webhook_verify(v["secret"], v["msg_id"], v["timestamp"] + 1,
                                               v["payload"], v["signature"]))
            self.assertIsNone(h.webhook_verify(v["secret"], v["msg_id"], v["timestamp"],
                                               v["payload"] + " ", v["signature"]))
        self.assertEqual(h.webhook_key("plain"), b"plain")

    def test_logfmt(self):
        rec = h.logfmt('level=warn msg="delivery failed" webhook=w error="Timeout \\"x\\"" n=1')
        self.assertEqual(rec, {"level": "warn", "msg": "delivery failed", "webhook": "w",
                               "error": 'Timeout "x"', "n": "1"})


class DeliveryTest(DeliverCase):

    # --- 1. delivered and signed ------------------------------------------

    def test_01_delivered_and_signed(self):
        rcv = self.receiver()
        self.start_daemon([("orders", {"url": rcv.url("/hook"), "secret": SECRET_A,
                                       "timeout_ms": 500, "schedule": "0 1 1"})])
        t0 = time.time()
        eid = self.callback()
        reqs = rcv.wait_count(1, 3.0)
        self.assertIsNotNone(reqs, "no webhook POST within 3 s\n" + self.log_tail())
        did = self.delivery_id(eid, "orders")
        rec = self.wait_delivered(did, 3.0)
        time.sleep(0.7)  # more than a tick: nothing else may come
        reqs = rcv.snapshot()
        self.assertEqual(len(reqs), 1, reqs)
        req = reqs[0]
        self.assertEqual((req.method, req.path), ("POST", "/hook"))
        self.assertEqual(req.body, self.stream_event_bytes(eid))
        self.assertEqual(json.loads(req.body.decode("utf-8"))["id"], eid)
        self.assertEqual(req.headers.get("content-type"), "application/json")
        version = h.project_version() or r"\S+"
        self.assertRegex(req.headers.get("user-agent", ""), r"^payrelay/%s$" % re.escape(version))
        self.assertEqual(req.headers.get("webhook-id"), eid)
        self.assertLess(abs(int(req.headers["webhook-timestamp"]) - time.time()), 10)
        self.assertSigned(req, [SECRET_A])
        self.assertEqual(req.status, 200)

        self.assertEqual(rec.get("attempts"), "1", self.brief(rec))
        self.assertEqual(rec.get("last_status"), "200", self.brief(rec))
        self.assertTrue(rec.get("delivered_ms", "").isdigit(), self.brief(rec))
        self.assertLessEqual(abs(int(rec["delivered_ms"]) - req.time * 1000), 3000)
        self.assertGreaterEqual(int(rec["delivered_ms"]), int(t0 * 1000) - 1000)
        self.assertNotIn("lease_owner", rec)
        self.assertNotIn("lease_until_ms", rec)
        self.assertIsNone(self.due_score("orders", did))
        self.assertIsNone(self.dead_score("orders", did))
        self.wait_log_record("delivered", 2.0, webhook="orders", delivery=did, event=eid,
                             status=200, attempt=1)

    # --- 2. two secrets (rotation) and a raw secret -------------------------

    def test_02_two_secrets_and_raw_secret(self):
        rcv = self.receiver()
        self.start_daemon([
            ("rotating", {"url": rcv.url("/rot"), "secret": "%s %s" % (SECRET_A, SECRET_B),
                          "timeout_ms": 500, "schedule": "0 1 1"}),
            ("raw", {"url": rcv.url("/raw"), "secret": RAW_SECRET,
                     "timeout_ms": 500, "schedule": "0 1 1"}),
        ])
        eid = self.callback()
        self.assertIsNotNone(rcv.wait_count(1, 3.0, "/rot"), self.log_tail())
        self.assertIsNotNone(rcv.wait_count(1, 3.0, "/raw"), self.log_tail())
        rot = rcv.snapshot("/rot")[0]
        self.assertEqual(rot.headers.get("webhook-id"), eid)
        self.assertSigned(rot, [SECRET_A, SECRET_B])
        raw = rcv.snapshot("/raw")[0]
        self.assertSigned(raw, [RAW_SECRET])
        # the raw secret is the key itself, not base64 of anything
        self.assertEqual(h.webhook_key(RAW_SECRET), RAW_SECRET.encode())
        for wh in ("rotating", "raw"):
            rec = self.wait_delivered(self.delivery_id(eid, wh), 3.0)
            self.assertEqual(rec.get("attempts"), "1")

    # --- 3. fails twice, then succeeds --------------------------------------

    def test_03_retried_until_delivered(self):
        rcv = self.receiver(script=["fail", "fail"], default="ok")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                       "timeout_ms": 500, "schedule": "0 1 1"})])
        eid = self.callback()
        did = self.delivery_id(eid, "orders")
        self.assertIsNotNone(rcv.wait_count(1, 3.0), self.log_tail())
        rec = self.wait_hash(did, lambda r: r.get("attempts") == "1", 2.0, "attempts=1")
        self.assertEqual(rec.get("state"), "pending", self.brief(rec))
        self.assertEqual(rec.get("last_status"), "500", self.brief(rec))
        self.assertIn("500", rec.get("last_error", ""), self.brief(rec))
        self.assertTrue(rec.get("last_attempt_ms", "").isdigit(), self.brief(rec))
        delay = int(rec["due_ms"]) - int(rec["last_attempt_ms"])
        self.assertTrue(900 - 50 <= delay <= 1100 + 50,
                        "next due %d ms after the failed attempt, want 1000 +-10%%" % delay)
        score = self.due_score("orders", did)
        self.assertIsNotNone(score, "a failed delivery must stay in the due set")
        self.assertEqual(int(score), int(rec["due_ms"]))

        rec = self.wait_delivered(did, 5.0)
        self.assertEqual(rec.get("attempts"), "3", self.brief(rec))
        self.assertEqual(rec.get("last_status"), "200", self.brief(rec))
        time.sleep(0.6)
        reqs = rcv.snapshot()
        self.assertEqual([r.status for r in reqs], [500, 500, 200], reqs)
        self.assertEqual({r.headers.get("webhook-id") for r in reqs}, {eid})
        self.assertEqual(len({r.body for r in reqs}), 1, "the body changed between attempts")
        for a, b in zip(reqs, reqs[1:]):
            self.assertGreaterEqual(b.mono - a.mono, 0.9 - 0.05,
                                    "retry came %.2f s after the failure (schedule 1 s +-10%%)"
                                    % (b.mono - a.mono))
        self.assertIsNone(self.due_score("orders", did))
        failed = [x for x in self.log_records("delivery failed") if x.get("delivery") == did]
        self.assertEqual(len(failed), 2, failed)
        for x in failed:
            self.assertEqual(x.get("webhook"), "orders", x)
            self.assertEqual(x.get("status"), "500", x)
            self.assertIn("error", x)
            self.assertTrue(x.get("next_in_ms", "").isdigit(), x)
        self.wait_log_record("delivered", 1.0, delivery=did, status=200, attempt=3)

    # --- 4. always failing: dead ------------------------------------------------

    def test_04_dead_after_the_last_attempt(self):
        rcv = self.receiver(default="fail")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                       "timeout_ms": 500, "schedule": "0 1"})])
        t0 = time.time()
        eid = self.callback()
        did = self.delivery_id(eid, "orders")
        rec = self.wait_hash(did, lambda r: r.get("state") == "dead", 5.0, "state=dead")
        self.assertEqual(rec.get("attempts"), "2", self.brief(rec))
        self.assertEqual(rec.get("last_status"), "500", self.brief(rec))
        self.assertTrue(rec.get("dead_ms", "").isdigit(), self.brief(rec))
        self.assertGreaterEqual(int(rec["dead_ms"]), int(t0 * 1000) + 850)
        self.assertIsNone(self.due_score("orders", did), "a dead delivery is not due")
        score = self.dead_score("orders", did)
        self.assertIsNotNone(score, "not in the dead set")
        self.assertLess(abs(score - int(rec["dead_ms"])), 5000)
        self.wait_log_record("delivery dead", 1.0, webhook="orders", delivery=did)
        time.sleep(1.5)  # no third attempt
        self.assertEqual([r.status for r in rcv.snapshot()], [500, 500])
        self.assertEqual(self.hash(did).get("state"), "dead")

    # --- 5. hanging receiver: timeout ---------------------------------------

    def test_05_timeout_is_a_failed_attempt(self):
        rcv = self.receiver(script=["hang"], default="ok", hang_s=5.0)
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                       "timeout_ms": 500, "schedule": "0 1 1"})])
        eid = self.callback()
        did = self.delivery_id(eid, "orders")
        first = rcv.wait_count(1, 3.0)
        self.assertIsNotNone(first, self.log_tail())
        rec = self.wait_hash(did, lambda r: r.get("attempts") == "1", 2.5, "attempts=1")
        # counted within timeout_ms (+ slack) of the request, not after the receiver's 5 s
        self.assertLess(time.monotonic() - first[0].mono, 2.0)
        self.assertEqual(rec.get("state"), "pending", self.brief(rec))
        self.assertEqual(rec.get("last_status"), "0", self.brief(rec))
        self.assertRegex(rec.get("last_error", ""), r"(?i)time", self.brief(rec))
        rec = self.wait_delivered(did, 4.0)
        self.assertEqual(rec.get("attempts"), "2", self.brief(rec))
        reqs = rcv.snapshot()
        self.assertEqual(reqs[0].outcome, "client-gone", "the timed-out request was not closed")
        self.assertEqual(reqs[-1].status, 200)
        failed = [x for x in self.log_records("delivery failed") if x.get("delivery") == did]
        self.assertTrue(failed, self.log_tail())
        self.assertEqual(failed[0].get("status"), "0", failed[0])
        self.assertRegex(failed[0].get("error", ""), r"(?i)time", failed[0])

    # --- 6. filters ---------------------------------------------------------------

    def test_06_event_and_channel_filters(self):
        rcv = self.receiver()
        common = {"secret": SECRET_A, "timeout_ms": 500, "schedule": "0 1 1"}
        self.start_daemon([
            ("a", dict(common, url=rcv.url("/a"), events="order.paid")),
            ("b", dict(common, url=rcv.url("/b"), channels="shop-other")),
            ("c", dict(common, url=rcv.url("/c"), events="order.status")),
        ])
        paid = self.callback(trade_no="T-PAID-1")
        self.assertIsNotNone(rcv.wait_count(1, 3.0, "/a"), self.log_tail())
        closed = self.callback(trade_no="T-CLOSED-1", trade_status="TRADE_CLOSED")
        self.assertIsNotNone(rcv.wait_count(1, 3.0, "/c"), self.log_tail())
        other = self.callback(channel="shop-other", trade_no="T-OTHER-1")
        self.assertIsNotNone(rcv.wait_count(1, 3.0, "/b"), self.log_tail())
        self.assertIsNotNone(rcv.wait_count(2, 3.0, "/a"), self.log_tail())
        time.sleep(1.0)  # let anything misrouted arrive
        got = {p: [r.headers.get("webhook-id") for r in rcv.snapshot(p)] for p in ("/a", "/b", "/c")}
        self.assertEqual(got, {"/a": [paid, other], "/b": [other], "/c": [closed]})
        in_redis = {}
        for rec in self.deliveries().values():
            in_redis.setdefault(rec["webhook"], set()).add(rec["event_id"])
            self.assertEqual(rec.get("state"), "delivered", self.brief(rec))
        self.assertEqual(in_redis, {"a": {paid, other}, "b": {other}, "c": {closed}})
        for wh in ("a", "b", "c"):
            self.assertEqual(self.r.cmd("ZCARD", PREFIX + "wh:%s:due" % wh), 0)

    # --- 7. Retry-After --------------------------------------------------------------

    def test_07_retry_after_is_honoured(self):
        rcv = self.receiver(script=["status:429:retry_after=2"], default="ok")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                       "timeout_ms": 500, "schedule": "0 1 30"})])
        eid = self.callback()
        did = self.delivery_id(eid, "orders")
        reqs = rcv.wait_count(2, 6.0)
        self.assertIsNotNone(reqs, "no second attempt within 6 s: %r\n%s"
                             % (rcv.snapshot(), self.log_tail()))
        gap = reqs[1].mono - reqs[0].mono
        self.assertGreaterEqual(gap, 2.0 - 0.02, "second attempt %.2f s after a 429 with "
                                "Retry-After: 2" % gap)
        self.assertLess(gap, 27.0)
        rec = self.wait_delivered(did, 2.0)
        self.assertEqual(rec.get("attempts"), "2", self.brief(rec))

    def test_07b_retry_after_is_capped_by_the_schedule(self):
        rcv = self.receiver(script=["status:503:retry_after=100"], default="ok")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                       "timeout_ms": 500, "schedule": "0 1 2"})])
        eid = self.callback()
        did = self.delivery_id(eid, "orders")
        reqs = rcv.wait_count(2, 6.0)
        self.assertIsNotNone(reqs, "no second attempt within 6 s (Retry-After: 100 must be "
                             "capped at the schedule's largest delay, 2 s)\n" + self.log_tail())
        gap = reqs[1].mono - reqs[0].mono
        self.assertGreaterEqual(gap, 1.8 - 0.02, "Retry-After ignored: %.2f s" % gap)
        self.assertLessEqual(gap, 2.2 + TICK + 0.3, "%.2f s: beyond the schedule's max" % gap)
        self.wait_delivered(did, 2.0)


# ==========================================================================


class CrashAndShutdownTest(DeliverCase):

    # --- 8. SIGKILL with deliveries in flight --------------------------------

    def test_08a_sigkill_lease_expires_and_another_instance_delivers(self):
        rcv = self.receiver(script=["hang"], default="ok", hang_s=30.0)
        cfg = [("orders", {"url": rcv.url(), "secret": SECRET_A,
                           "timeout_ms": 2000, "schedule": "0 1 1"})]
        d1 = self.start_daemon(cfg)
        self.assertTrue(d1.instance, "no instance=... logged at start\n" + self.log_tail())
        eid = self.callback()
        did = self.delivery_id(eid, "orders")
        first = rcv.wait_count(1, 3.0)
        self.assertIsNotNone(first, self.log_tail())
        rec = self.wait_hash(did, lambda r: "lease_owner" in r, 1.0, "lease_owner")
        self.assertEqual(rec["lease_owner"], d1.instance, self.brief(rec))
        lease_until = int(rec.get("lease_until_ms", "0"))
        want = first[0].time * 1000 + 2000 + LEASE_EXTRA_MS
        self.assertLess(abs(lease_until - want), 1500,
                        "lease_until_ms %d, want about claim + timeout_ms + 5000 (%d)"
                        % (lease_until, want))
        score = self.due_score("orders", did)
        self.assertIsNotNone(score)
        self.assertLess(abs(score - lease_until), 1500, "due score not pushed to the lease")

        d1.stop(signal.SIGKILL)
        d2 = self.start_daemon()
        self.assertNotEqual(d2.instance, d1.instance)
        rec = self.wait_delivered(did, (lease_until - now_ms()) / 1000.0 + 4.0)
        reqs = rcv.snapshot()
        self.assertGreaterEqual(len(reqs), 2, reqs)
        self.assertIn(200, [r.status for r in reqs if r.outcome == "answered"])
        second = reqs[1]
        self.assertGreaterEqual(second.time * 1000, lease_until - 100,
                                "re-delivered before the lease expired")
        self.assertEqual(second.headers.get("webhook-id"), eid)
        self.assertNotIn("lease_owner", rec)
        self.assertIsNone(self.due_score("orders", did))
        self.wait_log_record("delivered", 1.0, delivery=did, status=200)
        delivered_by = [x for x in self.log_records("delivered", d2) if x.get("delivery") == did]
        self.assertTrue(delivered_by, "the restarted daemon did not log the delivery")

    def test_08b_sigkill_midway_every_event_arrives(self):
        rcv = self.receiver(default="slow:0.3")
        cfg = [("orders", {"url": rcv.url(), "secret": SECRET_A, "timeout_ms": 1000,
                           "max_in_flight": 4, "schedule": "0 1 1"})]
        d1 = self.start_daemon(cfg)
        eids = [self.callback(trade_no="T-KILL-%02d" % i) for i in range(20)]
        self.assertIsNotNone(rcv.wait_count(6, 5.0), self.log_tail())
        d1.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        self.assertLess(rcv.count(), 20, "everything was delivered before the kill")
        self.start_daemon()
        deadline = killed_at + 1.0 + LEASE_EXTRA_MS / 1000.0 + 6.0
        while time.monotonic() < deadline:
            states = [r.get("state") for r in self.deliveries("orders").values()]
            if len(states) == 20 and all(s == "delivered" for s in states):
                break
            time.sleep(0.1)
        pending = {k: self.brief(v) for k, v in self.deliveries("orders").items()
                   if v.get("state") != "delivered"}
        self.assertEqual(pending, {}, "not delivered after the restart\n" + self.log_tail())
        reqs = rcv.snapshot()
        answered = {r.headers.get("webhook-id") for r in reqs
                    if r.status == 200 and r.outcome == "answered"}
        self.assertEqual(set(eids) - answered, set(), "events that never reached the receiver")
        self.assertLessEqual(len(reqs), 20 + 4, "more duplicates than requests in flight: %d"
                             % len(reqs))
        self.assertLessEqual(rcv.max_active, 4, "more than max_in_flight requests at once")

    def test_08c_batched_claim_and_finish_sigkill_and_lease_expiry(self):
        """One claim call leases a whole batch; SIGKILL with the batch in
        flight: no delivery is taken over before its lease ends, then
        another instance claims them again in batches and stores their
        outcomes several per finish call, each delivered once."""
        n = 12
        lua = os.path.join(h.HERE, "..", "..", "src", "store", "lua")
        with open(os.path.join(lua, "delivery_finish.lua"), "rb") as f:
            finish_sha = hashlib.sha1(f.read()).hexdigest()
        with open(os.path.join(lua, "delivery_claim.lua"), "rb") as f:
            claim_sha = hashlib.sha1(f.read()).hexdigest()
        rcv = self.receiver(default="hang", hang_s=30.0)
        cfg = [("orders", {"url": rcv.url(), "secret": SECRET_A, "timeout_ms": 2000,
                           "max_in_flight": 16, "schedule": "3600 1 1"})]
        d1 = self.start_daemon(cfg)
        eids = [self.callback(trade_no="T-BATCH-%02d" % i) for i in range(n)]
        dids = [self.delivery_id(e, "orders") for e in eids]
        # every script call from now on, with its arguments
        self.r.cmd("CONFIG", "SET", "slowlog-log-slower-than", "0")
        self.r.cmd("CONFIG", "SET", "slowlog-max-len", "10000")
        self.r.cmd("SLOWLOG", "RESET")
        self.r.cmd("ZUNIONSTORE", PREFIX + "wh:orders:due", 1, PREFIX + "wh:orders:due",
                   "WEIGHTS", 0)  # all due now, at once
        self.assertIsNotNone(rcv.wait_count(n, 5.0), self.log_tail())
        # the batch, then (kicked: there may be more) one that finds none
        claims = self.script_calls(claim_sha)
        self.assertLessEqual(len(claims), 2, "claim calls: %r" % claims)
        leases = set()
        for did in dids:
            rec = self.wait_hash(did, lambda r: "lease_owner" in r, 1.0, "lease_owner")
            self.assertEqual(rec["lease_owner"], d1.instance)
            leases.add(rec["lease_until_ms"])
        self.assertEqual(len(leases), 1, "one lease for the batch: %r" % leases)
        lease_until = int(leases.pop())

        d1.stop(signal.SIGKILL)
        # the answers after the restart leave together (gate), so that
        # their outcomes meet in one loop turn however slow the build is
        # (ASan): what is measured is that such outcomes share a finish call
        rcv.set_script(default="gate:%d" % n)
        self.r.cmd("SLOWLOG", "RESET")
        d2 = self.start_daemon()
        for did in dids:
            self.wait_delivered(did, (lease_until - now_ms()) / 1000.0 + 6.0)
        later = [r for r in rcv.snapshot() if r.status == 200 and r.outcome == "answered"]
        self.assertEqual(sorted(r.headers.get("webhook-id") for r in later), sorted(eids),
                         "each event delivered once after the kill")
        for r in later:
            self.assertGreaterEqual(r.time * 1000, lease_until - 100,
                                    "re-delivered before the lease expired")
        for did in dids:
            rec = self.hash(did)
            self.assertEqual(rec.get("attempts"), "1", self.brief(rec))
            self.assertNotIn("lease_owner", rec)
            self.assertIsNone(self.due_score("orders", did))
        finishes = self.script_calls(finish_sha)
        self.assertLess(len(finishes), n, "one finish call per delivery: not batched")
        self.assertEqual(sum((argc - 7) // 6 for argc in finishes), n, finishes)
        self.assertEqual(len([x for x in self.log_records("delivered", d2)]), n)

    def test_08d_finish_batch_judges_each_outcome(self):
        """One finish call with outcomes of deliveries in every state a
        late answer can meet (delivery_finish.lua run as payrelayd runs
        it): each is judged alone, as a single call would be."""
        with open(os.path.join(h.HERE, "..", "..", "src", "store", "lua",
                               "delivery_finish.lua"), encoding="utf-8") as f:
            script = f.read()
        due = PREFIX + "wh:orders:due"

        def delivery(did, state, owner=None, **extra):
            fields = ["id", did, "event_id", "evt_" + did, "webhook", "orders", "state", state,
                      "attempts", "0", "created_ms", "1000", "due_ms", "1000"]
            if owner is not None:
                fields += ["lease_owner", owner, "lease_until_ms", "99999999999999"]
            for k, v in extra.items():
                fields += [k, v]
            self.r.cmd("HSET", PREFIX + "delivery:" + did, *fields)
            if state == "pending":
                self.r.cmd("ZADD", due, 99999999999999, did)

        delivery("dlv_settled", "delivered", delivered_ms="2000")
        delivery("dlv_taken", "pending", owner="B")       # our lease expired, B holds it
        delivery("dlv_late_ok", "pending", owner="B")     # a late success still counts
        delivery("dlv_ours_ok", "pending", owner="A")
        delivery("dlv_ours_retry", "pending", owner="A")
        delivery("dlv_ours_dead", "pending", owner="A")
        delivery("dlv_ours_probe", "pending", owner="A")
        outcomes = [("dlv_settled", "ok", 0, 200, ""), ("dlv_taken", "retry", 5000, 500, "HTTP 500"),
                    ("dlv_late_ok", "ok", 0, 200, ""), ("dlv_ours_ok", "ok", 0, 204, ""),
                    ("dlv_ours_retry", "retry", 5000, 0, "timed out"),
                    ("dlv_ours_dead", "dead", 0, 500, "HTTP 500"),
                    ("dlv_ours_probe", "probe", 7000, 0, "refused")]
        args = [PREFIX, "A", 3000, 60]
        for did, outcome, nxt, status, err in outcomes:
            args += ["orders", did, outcome, nxt, status, err]
        got = self.r.cmd("EVAL", script, 0, *args)
        self.assertEqual([x.decode() for x in got],
                         ["settled", "lost", "ok", "ok", "retry", "dead", "probe"])
        st = {did: self.hash(did) for did, *_ in outcomes}
        self.assertEqual(st["dlv_settled"].get("delivered_ms"), "2000")
        self.assertNotIn("history", st["dlv_settled"])
        self.assertEqual((st["dlv_taken"]["state"], st["dlv_taken"]["lease_owner"]), ("pending", "B"))
        self.assertNotIn("history", st["dlv_taken"])
        for did in ("dlv_late_ok", "dlv_ours_ok"):
            self.assertEqual((st[did]["state"], st[did]["attempts"]), ("delivered", "1"), st[did])
            self.assertNotIn("lease_owner", st[did])
            self.assertIsNone(self.due_score("orders", did))
            self.assertGreater(int(self.r.cmd("TTL", PREFIX + "delivery:" + did)), 0)
            # no empty error in the history: the hash stays compact
            self.assertEqual(json.loads(st[did]["history"]),
                             [{"at_ms": 3000, "outcome": "ok",
                               "status": int(st[did]["last_status"])}])
        self.assertEqual(self.r.cmd("OBJECT", "ENCODING", PREFIX + "delivery:dlv_ours_ok"),
                         b"listpack")
        r = st["dlv_ours_retry"]
        self.assertEqual((r["state"], r["attempts"], r["due_ms"], r["last_error"]),
                         ("pending", "1", "5000", "timed out"))
        self.assertEqual(self.due_score("orders", "dlv_ours_retry"), 5000)
        r = st["dlv_ours_dead"]
        self.assertEqual((r["state"], r["attempts"], r["dead_ms"]), ("dead", "1", "3000"))
        self.assertIsNone(self.due_score("orders", "dlv_ours_dead"))
        self.assertEqual(self.dead_score("orders", "dlv_ours_dead"), 3000)
        r = st["dlv_ours_probe"]
        self.assertEqual((r["state"], r["attempts"], r["due_ms"]), ("pending", "0", "7000"))
        self.assertEqual(self.due_score("orders", "dlv_ours_probe"), 7000)

    # --- 9. SIGTERM with a delivery in flight ----------------------------------

    def test_09a_sigterm_lets_an_in_flight_delivery_finish(self):
        rcv = self.receiver(default="slow:1")
        d = self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                           "timeout_ms": 5000, "schedule": "0 1 1"})],
                              shutdown_timeout=3)
        eid = self.callback()
        did = self.delivery_id(eid, "orders")
        self.assertIsNotNone(rcv.wait_count(1, 3.0), self.log_tail())
        time.sleep(0.1)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc, in_time = d.wait(timeout=3 + 2)
        took = time.monotonic() - t0
        self.assertTrue(in_time, "no exit within shutdown_timeout + 2 s\n" + self.log_tail())
        self.assertEqual(rc, 0, self.log_tail())
        rec = self.hash(did)
        self.assertEqual(rec.get("state"), "delivered",
                         "%r\n%s" % (self.brief(rec), self.log_tail()))
        self.assertEqual(rec.get("attempts"), "1", self.brief(rec))
        self.assertNotIn("lease_owner", rec)
        self.assertEqual(rcv.snapshot()[0].outcome, "answered")
        self.assertLess(took, 3 + 1, "took %.1f s" % took)

    def test_09b_sigterm_hands_back_a_hanging_delivery(self):
        rcv = self.receiver(default="hang", hang_s=30.0)
        d = self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                           "timeout_ms": 10000, "schedule": "0 1 1"})],
                              shutdown_timeout=3)
        eid = self.callback()
        did = self.delivery_id(eid, "orders")
        self.assertIsNotNone(rcv.wait_count(1, 3.0), self.log_tail())
        rec = self.wait_hash(did, lambda r: "lease_owner" in r, 1.0, "lease_owner")
        self.assertEqual(rec.get("attempts"), "0")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc, in_time = d.wait(timeout=3 + 2)
        self.assertTrue(in_time, "no exit within shutdown_timeout + 2 s\n" + self.log_tail())
        self.assertEqual(rc, 0, self.log_tail())
        self.assertGreaterEqual(time.monotonic() - t0, 1.0,
                                "in-flight requests must be given time to finish")
        rec = self.hash(did)
        self.assertEqual(rec.get("state"), "pending", self.brief(rec))
        self.assertNotIn("lease_owner", rec, "lease not released: %r" % self.brief(rec))
        self.assertNotIn("lease_until_ms", rec, "lease not released: %r" % self.brief(rec))
        self.assertEqual(rec.get("attempts"), "0", "a cancelled request is not an attempt")
        score = self.due_score("orders", did)
        self.assertIsNotNone(score, "a released delivery must be due again")
        self.assertLessEqual(score, now_ms() + 1000, "released delivery is not due now")


    # --- several instances share one Redis -----------------------------------

    def test_12_two_instances_deliver_each_event_once(self):
        rcv = self.receiver(default="slow:0.1")
        cfg = [("orders", {"url": rcv.url(), "secret": SECRET_A, "timeout_ms": 2000,
                           "max_in_flight": 4, "schedule": "0 1 1"})]
        self.start_daemon(cfg)
        port2 = h.free_port()
        conf2 = self.write_config(cfg, path=os.path.join(self.dir, "second.conf"),
                                  port=port2, admin_port=h.free_port())
        d2 = self.start_daemon(config=conf2, port=port2)
        self.assertNotEqual(self.daemons[0].instance, d2.instance)
        eids = [self.callback(trade_no="T-TWO-%02d" % i, port=(self.port, port2)[i % 2])
                for i in range(24)]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = [r.get("state") for r in self.deliveries("orders").values()]
            if len(states) == 24 and all(x == "delivered" for x in states):
                break
            time.sleep(0.1)
        pending = {k: self.brief(v) for k, v in self.deliveries("orders").items()
                   if v.get("state") != "delivered"}
        self.assertEqual(pending, {}, self.log_tail())
        time.sleep(0.6)
        got = sorted(r.headers.get("webhook-id") for r in rcv.snapshot())
        self.assertEqual(got, sorted(eids), "each event exactly once with two instances")
        for rec in self.deliveries("orders").values():
            self.assertEqual(rec.get("attempts"), "1", self.brief(rec))
        by = [len([x for x in self.log_records("delivered", d)]) for d in self.daemons]
        self.assertEqual(sum(by), 24, by)
        # the per-process cap holds for each (two processes: at most 2 x 4 at once)
        self.assertLessEqual(rcv.max_active, 8)


# ==========================================================================


class ClaimAtRecordTest(DeliverCase):
    """Claim at record: a new event's delivery that is due now, with room
    for it and the breaker closed, is made already leased to this instance
    by the record step, and its first attempt starts from the record step's
    answer: no claim call. Everything else (retries, due-later deliveries,
    probes, lease expiry) goes through the claim path."""

    def claim_sha(self):
        with open(os.path.join(h.HERE, "..", "..", "src", "store", "lua",
                               "delivery_claim.lua"), "rb") as f:
            return hashlib.sha1(f.read()).hexdigest()

    def log_script_calls(self):
        """From now on, every script call goes to the slow log."""
        self.r.cmd("CONFIG", "SET", "slowlog-log-slower-than", "0")
        self.r.cmd("CONFIG", "SET", "slowlog-max-len", "100000")
        self.r.cmd("SLOWLOG", "RESET")

    def assertFewClaims(self, since, why):
        """No more claim calls than the engine's tick makes by itself since
        monotonic time `since` (one per TICK, and the one of each end):
        a claim per recorded event would be many more."""
        claims = len(self.script_calls(self.claim_sha()))
        ticks = int((time.monotonic() - since) / TICK) + 2
        self.assertLessEqual(claims, ticks, "%d claim calls in %.2f s (ticks: %d): %s"
                             % (claims, time.monotonic() - since, ticks, why))
        return claims

    def concurrent_callbacks(self, trade_nos):
        """Sends one callback per trade id, all at once (threads), so that
        their record steps are in flight together; returns the event ids."""
        replies = {}

        def send(tn):
            p = {k: v for k, v in EPAY[0]["params"].items() if k != "sign"}
            p["trade_no"] = tn
            p["sign"] = h.epay_md5_sign(p, EPAY[0]["key"])
            replies[tn] = h.http(self.port, "GET", "/notify/shop-epay?" + h.form_encode(p))

        threads = [threading.Thread(target=send, args=(tn,), daemon=True) for tn in trade_nos]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for tn in trade_nos:
            self.assertIn(tn, replies, "no answer to %s" % tn)
            self.assertEqual((replies[tn].status, replies[tn].body), (200, b"success"),
                             self.ctx(replies[tn]))
        return [h.event_id("shop-epay", tn, "paid") for tn in trade_nos]

    def test_13a_fresh_deliveries_cost_no_claim_call(self):
        n = 40
        rcv = self.receiver(default="ok")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                       "timeout_ms": 2000, "schedule": "0 1 1"})])
        self.log_script_calls()
        t0 = time.monotonic()
        # one at a time: each record step is its own loop turn, where a
        # claim per event (the path before claim at record) is n calls
        eids = [self.callback(trade_no="T-CAR-%02d" % i) for i in range(n)]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = [r.get("state") for r in self.deliveries("orders").values()]
            if len(states) == n and all(x == "delivered" for x in states):
                break
            time.sleep(0.05)
        self.assertFewClaims(t0, "fresh deliveries were claimed one by one")
        reqs = rcv.snapshot()
        self.assertEqual(sorted(r.headers.get("webhook-id") for r in reqs), sorted(eids),
                         "each event exactly once\n" + self.log_tail())
        for req in reqs:
            self.assertSigned(req, [SECRET_A])
            self.assertEqual(req.body, self.stream_event_bytes(req.headers["webhook-id"]))
        for rec in self.deliveries("orders").values():
            self.assertEqual((rec.get("state"), rec.get("attempts")), ("delivered", "1"),
                             self.brief(rec))
            self.assertNotIn("lease_owner", rec)
        self.assertEqual(len(self.log_records("delivered")), n)

    def test_13b_sigkill_with_claimed_at_record_in_flight(self):
        """SIGKILL while the receiver holds attempts started from the record
        step's answer: their leases (made by the record step) keep them
        from anyone until they end, then the restarted daemon claims and
        delivers each (at least once: the killed attempts may have reached
        the receiver; docs/guarantees.md section 7)."""
        n = 8
        rcv = self.receiver(default="hang", hang_s=30.0)
        cfg = [("orders", {"url": rcv.url(), "secret": SECRET_A, "timeout_ms": 2000,
                           "max_in_flight": 16, "schedule": "3600 1 1"})]
        # a first delay of 3600 s: nothing is claimed at record
        d1 = self.start_daemon(cfg)
        eid = self.callback(trade_no="T-CARK-LATER")
        did = self.delivery_id(eid, "orders")
        time.sleep(0.2)
        self.assertNotIn("lease_owner", self.hash(did), "a due-later delivery was claimed")
        self.assertGreater(self.due_score("orders", did), now_ms() + 3000 * 1000)
        self.assertEqual(rcv.count(), 0)
        d1.stop(signal.SIGKILL)

        cfg[0][1]["schedule"] = "0 1 1"
        d1 = self.start_daemon(cfg)
        self.log_script_calls()
        t0 = time.monotonic()
        before = now_ms()
        eids = [self.callback(trade_no="T-CARK-%02d" % i) for i in range(n)]
        after = now_ms()
        dids = [self.delivery_id(e, "orders") for e in eids]
        self.assertIsNotNone(rcv.wait_count(n, 5.0), self.log_tail())
        self.assertFewClaims(t0, "the attempts were not started from the record step")
        leases = []
        for did in dids:
            rec = self.hash(did)
            self.assertEqual((rec.get("lease_owner"), rec.get("attempts")),
                             (d1.instance, "0"), self.brief(rec))
            lease = int(rec["lease_until_ms"])
            # taken by the record step: from the record's start
            self.assertGreaterEqual(lease, before + 2000 + LEASE_EXTRA_MS)
            self.assertLessEqual(lease, after + 2000 + LEASE_EXTRA_MS)
            self.assertEqual(self.due_score("orders", did), lease)
            leases.append(lease)
        lease_until = max(leases)

        d1.stop(signal.SIGKILL)
        rcv.set_script(default="ok")
        mark = rcv.count()
        d2 = self.start_daemon()
        for did in dids:
            self.wait_delivered(did, (lease_until - now_ms()) / 1000.0 + 6.0)
        later = [r for r in rcv.snapshot()[mark:] if r.status == 200 and r.outcome == "answered"]
        self.assertEqual(sorted(r.headers.get("webhook-id") for r in later), sorted(eids),
                         "each event delivered once after the kill")
        for r in later:
            self.assertGreaterEqual(r.time * 1000, min(leases) - 100,
                                    "re-delivered before the lease expired")
        for did in dids:
            rec = self.hash(did)
            self.assertEqual(rec.get("attempts"), "1", self.brief(rec))
            self.assertNotIn("lease_owner", rec)
        self.assertEqual(len(self.log_records("delivered", d2)), n)
        # the due-later delivery is left alone all along
        self.assertEqual(self.hash(self.delivery_id(eid, "orders")).get("attempts"), "0")

    def test_13c_breaker_open_records_deliveries_due(self):
        rcv = self.receiver(default="fail")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A, "timeout_ms": 500,
                                       "schedule": "0 1 1 1 1 1 1 1 1 1",
                                       "breaker_after": 2, "probe_interval_max": 2})])
        first = self.callback(trade_no="T-CARB-0")
        self.wait_log_record("webhook breaker open", 8.0, webhook="orders")
        n0 = rcv.count()
        t0 = now_ms()
        more = [self.callback(trade_no="T-CARB-%d" % i) for i in (1, 2, 3, 4)]
        dids = [self.delivery_id(e, "orders") for e in more]
        # made due, not leased (one at most is a probe's, at its interval)
        recs = [self.hash(did) for did in dids]
        leased = [did for did, rec in zip(dids, recs) if "lease_owner" in rec]
        self.assertLessEqual(len(leased), 1, "claimed at record while the breaker is open: "
                             "%r" % [self.brief(rec) for rec in recs])
        for did, rec in zip(dids, recs):
            self.assertEqual(rec.get("attempts"), "0", self.brief(rec))
            if did not in leased:
                self.assertLessEqual(self.due_score("orders", did), now_ms(),
                                     "not due now: %r" % self.brief(rec))
                self.assertGreaterEqual(self.due_score("orders", did), t0)
        time.sleep(1.5)
        probes = rcv.snapshot()[n0:]
        self.assertLessEqual(len(probes), 3, "more than probes while open: %r" % probes)
        for did in dids:
            self.assertEqual(self.hash(did).get("attempts"), "0", "attempt spent while open")
        mark = rcv.count()
        rcv.set_default("ok")
        self.wait_log_record("webhook breaker closed", 2 + 3.0, webhook="orders")
        for did in dids:
            self.wait_delivered(did, 3.0)
        got = sorted(r.headers.get("webhook-id") for r in rcv.snapshot()[mark:]
                     if r.status == 200)
        self.assertEqual(got, sorted([first] + more), "each delivered once once it closed")
        for did in dids:
            self.assertEqual(self.hash(did).get("attempts"), "1")

    def test_13d_max_in_flight_holds_with_records_in_flight(self):
        """Several record steps in flight at once each reserve a place:
        never more than max_in_flight requests at the receiver."""
        n = 10
        rcv = self.receiver(default="slow:0.6")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                       "timeout_ms": 3000, "max_in_flight": 2,
                                       "schedule": "0 1 1"})])
        # Redis holds every command for a while: the record steps of the
        # callbacks queue there, and their answers come back together
        self.r.cmd("CLIENT", "PAUSE", "600", "ALL")
        eids = self.concurrent_callbacks(["T-CARM-%02d" % i for i in range(n)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = [r.get("state") for r in self.deliveries("orders").values()]
            if len(states) == n and all(x == "delivered" for x in states):
                break
            time.sleep(0.1)
        self.assertEqual(rcv.max_active, 2, "max_in_flight (2) requests at once at most, "
                         "and at work")
        self.assertEqual(sorted(r.headers.get("webhook-id") for r in rcv.snapshot()),
                         sorted(eids), "each event exactly once\n" + self.log_tail())
        for rec in self.deliveries("orders").values():
            self.assertEqual((rec.get("state"), rec.get("attempts")), ("delivered", "1"),
                             self.brief(rec))

    def test_13g_a_place_is_free_once_the_receiver_answered(self):
        """max_in_flight bounds the requests a receiver sees at once: an
        attempt's place is free when the receiver answered, while its
        outcome still waits for Redis (here: Redis pauses writes)."""
        rcv = self.receiver(default="slow:0.5")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                       "timeout_ms": 3000, "max_in_flight": 1,
                                       "schedule": "0 1 1"})])
        adm = self.admin_port

        def gauges():
            r = h.http(adm, "GET", "/metrics",
                       headers={"Authorization": "Bearer " + h.ADMIN_TOKEN})
            out = {}
            for line in r.body.decode().splitlines():
                for name in ('payrelay_webhook_requests_in_flight{webhook="orders"}',
                             "payrelay_deliveries_in_flight"):
                    if line.startswith(name + " "):
                        out[name.split("{")[0]] = float(line.split()[-1])
            return out

        eid = self.callback(trade_no="T-FREE-1")
        self.assertIsNotNone(rcv.wait_count(1, 5.0), self.log_tail())
        self.assertEqual(gauges()["payrelay_webhook_requests_in_flight"], 1)
        # the receiver answers in 0.5 s; the outcome cannot be stored
        # before Redis takes writes again
        self.r.cmd("CLIENT", "PAUSE", "2500", "WRITE")
        time.sleep(0.9)
        g = gauges()
        self.assertEqual(g["payrelay_webhook_requests_in_flight"], 0,
                         "the place is still taken after the answer: %r" % g)
        self.assertGreaterEqual(g["payrelay_deliveries_in_flight"], 1,
                                "the outcome was stored during the pause: %r" % g)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            recs = list(self.deliveries("orders").values())
            if recs and all(r.get("state") == "delivered" for r in recs):
                break
            time.sleep(0.1)
        self.assertEqual([(r.get("event_id"), r.get("state"), r.get("attempts"))
                          for r in self.deliveries("orders").values()],
                         [(eid, "delivered", "1")])
        self.assertEqual(len(rcv.snapshot()), 1)

    def test_13e_rewritten_event_sent_as_stored(self):
        """An event the record step rewrote (amount mismatch; then a repeat
        payment too) is sent by its first attempt byte for byte as stored
        in the stream, which is what every later attempt sends."""
        rcv = self.receiver(default="ok")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                       "timeout_ms": 2000, "schedule": "0 1 1"})])
        out_trade_no = EPAY[0]["params"]["out_trade_no"]
        self.r.cmd("HSET", PREFIX + "order:shop-epay:" + out_trade_no, "amount_fen", "99999")
        self.log_script_calls()
        t0 = time.monotonic()
        mismatch = self.callback(trade_no="T-CARE-1")
        repeat = self.callback(trade_no="T-CARE-2")
        reqs = rcv.wait_count(2, 5.0)
        self.assertIsNotNone(reqs, self.log_tail())
        self.assertFewClaims(t0, "not started from the record step")
        by = {r.headers.get("webhook-id"): r for r in reqs}
        self.assertEqual(set(by), {mismatch, repeat})
        for eid, flags in ((mismatch, {"amount_mismatch": True}),
                           (repeat, {"amount_mismatch": True, "repeat_payment": True})):
            stored = self.stream_event_bytes(eid)
            self.assertEqual(by[eid].body, stored, "first attempt's body is not the stored one")
            ev = json.loads(stored)
            self.assertEqual(ev["type"], "order.amount_mismatch")
            for k, v in flags.items():
                self.assertEqual(ev.get(k), v, stored)
            self.assertSigned(by[eid], [SECRET_A])
            self.assertEqual(self.wait_delivered(self.delivery_id(eid, "orders"), 2.0)
                             .get("attempts"), "1")


    def test_13f_sigterm_while_a_record_step_is_out(self):
        """SIGTERM while a record step that asked for a claim is still out:
        its answer gives the delivery back (due now, no lease, no attempt)
        instead of starting a request, and the daemon exits cleanly."""
        rcv = self.receiver(default="ok")
        d = self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A,
                                           "timeout_ms": 2000, "schedule": "0 1 1"})])
        # Redis holds the record step until the daemon is stopping
        self.r.cmd("CLIENT", "PAUSE", "800", "ALL")
        eids = []
        t = threading.Thread(target=lambda: eids.extend(
            self.concurrent_callbacks(["T-CARS-0"])), daemon=True)
        t.start()
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGTERM)
        rc, in_time = d.wait(timeout=3 + 2)
        t.join(5)
        self.assertTrue(in_time, "no exit within shutdown_timeout + 2 s\n" + self.log_tail())
        self.assertEqual(rc, 0, self.log_tail())
        self.assertEqual(eids, [h.event_id("shop-epay", "T-CARS-0", "paid")],
                         "the callback was not answered as recorded\n" + self.log_tail())
        did = self.delivery_id(eids[0], "orders", timeout=0.5)
        rec = self.hash(did)
        self.assertEqual((rec.get("state"), rec.get("attempts")), ("pending", "0"),
                         self.brief(rec))
        self.assertNotIn("lease_owner", rec, "not given back: %r" % self.brief(rec))
        self.assertLessEqual(self.due_score("orders", did), now_ms(), "not due now")
        self.assertEqual(rcv.count(), 0, "a request started while stopping")


# ==========================================================================


class BreakerTest(DeliverCase):

    # --- 10. circuit breaker ------------------------------------------------

    def test_10_breaker_opens_probes_and_closes(self):
        rcv = self.receiver(default="fail")
        self.start_daemon([("orders", {"url": rcv.url(), "secret": SECRET_A, "timeout_ms": 500,
                                       "schedule": "0 1 1 1 1 1 1 1 1 1",
                                       "breaker_after": 2, "probe_interval_max": 2})])
        first = self.callback(trade_no="T-BRK-0")
        self.wait_log_record("webhook breaker open", 8.0, webhook="orders")
        self.assertGreaterEqual(rcv.count(), 3, "opened after fewer than 3 failed attempts")
        more = [self.callback(trade_no="T-BRK-%d" % i) for i in (1, 2, 3)]
        time.sleep(0.3)
        dids = [self.delivery_id(e, "orders") for e in [first] + more]
        before = {did: self.hash(did).get("attempts") for did in dids}
        for did in dids[1:]:
            self.assertEqual(before[did], "0", "attempt spent while the breaker is open")
        n0 = rcv.count()
        time.sleep(4.0)
        after = {did: self.hash(did).get("attempts") for did in dids}
        self.assertEqual(after, before, "attempts spent while the breaker is open")
        for did in dids:
            self.assertEqual(self.hash(did).get("state"), "pending")
        probes = rcv.snapshot()[n0:]
        self.assertGreaterEqual(len(probes), 1, "no probe in 4 s (probe_interval_max = 2)")
        self.assertLessEqual(len(probes), 4, "more than one request per probe interval: %r"
                             % probes)
        times = [p.mono for p in rcv.snapshot()[n0 - 1:]]  # the last one before, too
        for a, b in zip(times, times[1:]):
            self.assertGreaterEqual(b - a, 0.85, "requests %.2f s apart while open" % (b - a))

        mark = rcv.count()
        rcv.set_default("ok")
        self.wait_log_record("webhook breaker closed", 2 + 3.0, webhook="orders")
        for did in dids:
            self.wait_delivered(did, 3.0)
        got = {r.headers.get("webhook-id") for r in rcv.snapshot()[mark:] if r.status == 200}
        self.assertEqual(got, set([first] + more))
        final = {did: self.hash(did).get("attempts") for did in dids}
        for did in dids[1:]:
            self.assertEqual(final[did], "1", "attempts of %s: %r" % (did, final))
        self.assertEqual(int(final[dids[0]]), int(before[dids[0]]) + 1,
                         "the successful probe is the delivery's one more attempt")


# ==========================================================================


class LogHygieneTest(DeliverCase):

    # --- 11. no secret in the log -----------------------------------------------

    def test_11_no_webhook_secret_in_the_log(self):
        rcv = self.receiver(script={"/a": ["fail"], "/b": ["hang"]}, default="ok", hang_s=3.0)
        d = self.start_daemon([
            ("a", {"url": rcv.url("/a"), "secret": "%s %s" % (SECRET_A, SECRET_B),
                   "timeout_ms": 500, "schedule": "0 1 1"}),
            ("b", {"url": rcv.url("/b"), "secret": RAW_SECRET,
                   "timeout_ms": 500, "schedule": "0 1 1"}),
        ])
        eid = self.callback()
        for wh in ("a", "b"):
            self.wait_delivered(self.delivery_id(eid, wh), 5.0)
        # a reload logs too
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        rc, in_time = d.stop(signal.SIGTERM, 5)
        self.assertTrue(in_time)
        self.assertEqual(rc, 0, self.log_tail())
        text = d.log_text()
        self.assertTrue(text.strip())
        for s in self.secrets:
            self.assertNotIn(s, text, "a configured secret appears in the log")
        for line in text.splitlines():
            self.assertRegex(line, r"^(ts=\S+ )?level=(debug|info|warn|warning|error) msg=")


if __name__ == "__main__":
    sys.exit(h.run_tests())
