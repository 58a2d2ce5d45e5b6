#!/usr/bin/env python3
"""Integration tests of three recording guarantees (docs/guarantees.md sections 2 and 3)
that test_ingest.py leaves open:

- NOSCRIPT while connected: Redis's script cache is flushed under a
  connected daemon; the recording step falls back to EVAL, the callback is
  still acked and recorded exactly once, and the script is cached again;
- dedup expiry: once the dedup key has expired, the same callback is
  recorded again as a new stream entry with the same event id;
- one callback at two instances at once: two payrelayd sharing one Redis
  each get every callback at the same moment; every answer is `success` and
  each callback is one stream entry;
- repeat payments (SPEC 2.5): a second genuine payment (another gateway
  trade id) of one merchant order, in each family, is recorded and flagged
  `repeat_payment` in the stream and the webhook bodies, logged and counted;
  the first payment, duplicates and order.status events never are.

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
        python3 tests/integration/test_guarantees.py [-k PATTERN]

Exits 0 when every test passes, 1 otherwise (also when no redis-server is
installed: that is a broken setup, not a pass).
"""

import json
import os
import re
import sys
import threading
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

STREAM = "payrelay:events"
DEDUP = "payrelay:dedup:"
DUE = "payrelay:wh:orders:due"
# Not the default (30 days): the TTL checks see the configured value.
DEDUP_TTL = 86400

EPAY = h.load_vectors("epay.json")["vectors"]
GATE = h.load_vectors("gatepay.json")["vectors"]
PIDX = h.load_vectors("payindex.json")["vectors"]
PAID = "payrelay:paid:"


def params_of(vec, drop=("sign",)):
    return {k: v for k, v in vec["params"].items() if k not in drop}


def config_with_dedup_ttl(text, ttl):
    """The harness's config with `dedup_ttl = ttl` in its [daemon] section."""
    head = "[daemon]\n"
    assert text.count(head) == 1, "no single [daemon] section in the harness config"
    return text.replace(head, head + "dedup_ttl = %d\n" % ttl)


class DaemonCase(h.DaemonClassCase):
    """One redis-server and one payrelayd (dedup_ttl = DEDUP_TTL) per class."""

    workdir_prefix = "payrelay-gt-"

    @classmethod
    def config_for(cls, setup):
        return config_with_dedup_ttl(setup.config_text(), DEDUP_TTL)

    @classmethod
    def start_daemon(cls, config=None, port=None, name="payrelayd", wait_ready=True):
        d = super().start_daemon(config, port, name, wait_ready)
        line = d.wait_log(r'msg="?redis ready', timeout=5)
        d.record_sha = h.logfmt(line).get("record_script", "")
        if len(d.record_sha) != 40:
            raise RuntimeError("no record_script=<sha> in the redis ready line: %r" % line)
        return d

    def setUp(self):
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        self.r.cmd("FLUSHALL")

    # --- requests ---------------------------------------------------------

    def epay(self, vec=0, **override):
        """An epay vector's params, changed and correctly re-signed (MD5)."""
        p = params_of(EPAY[vec])
        p.update(override)
        p["sign"] = h.epay_md5_sign(p, self.setup.epay_key)
        return p

    def send(self, params, port=None, channel="shop-epay"):
        return h.http(port or self.setup.port, "GET",
                      "/notify/%s?%s" % (channel, h.form_encode(params)), timeout=15)

    def ctx(self, reply=None, daemon=None):
        d = daemon or self.daemon
        return "%r\n--- %s (tail) ---\n%s" % (reply, d.log, d.log_tail(15))

    def assertAck(self, reply):
        self.assertEqual((reply.status, reply.body), (200, b"success"), self.ctx(reply))

    # --- what Redis holds -------------------------------------------------

    def entries(self):
        """[(stream entry id, event id)] of the whole stream, oldest first."""
        return [(sid, f["id"]) for sid, f in self.r.xrange(STREAM)]

    def entries_of(self, eid):
        return [sid for sid, e in self.entries() if e == eid]

    def deliveries_of(self, eid):
        """{delivery key: hash} of every delivery of event `eid`."""
        out = {}
        for k in self.r.keys("payrelay:delivery:*"):
            rec = self.r.hgetall(k)
            if rec.get("event_id") == eid:
                out[k] = rec
        return out

    def assertDedup(self, eid, entry_id):
        """The dedup key of `eid` holds `entry_id` and lives dedup_ttl."""
        key = DEDUP + eid
        self.assertEqual(self.r.cmd("GET", key), entry_id.encode(), key)
        ttl = self.r.cmd("TTL", key)
        self.assertTrue(DEDUP_TTL - 120 <= ttl <= DEDUP_TTL,
                        "TTL of %s is %r, dedup_ttl is %d" % (key, ttl, DEDUP_TTL))

    def assertRecordedOnce(self, eid, reply=None):
        """Exactly one stream entry of `eid`, its dedup key, one delivery.
        Returns the stream entry id."""
        sids = self.entries_of(eid)
        self.assertEqual(len(sids), 1, "stream entries of %s: %r\n%s"
                         % (eid, sids, self.ctx(reply)))
        self.assertDedup(eid, sids[0])
        self.assertEqual(len(self.deliveries_of(eid)), 1, "deliveries of %s" % eid)
        return sids[0]

    def log_events(self, daemon, msg, start=0):
        """The event ids of `daemon`'s log lines `msg` (after offset `start`)."""
        return [rec.get("event") for rec in
                h.log_records(daemon.log_text()[start:], msg)]

    def commandstats(self):
        """{command: {calls, failed_calls, ...}} of INFO commandstats."""
        out = {}
        for line in self.r.cmd("INFO", "commandstats").decode().splitlines():
            if not line.startswith("cmdstat_"):
                continue
            name, _, rest = line[len("cmdstat_"):].partition(":")
            out[name] = {k: float(v) for k, v in
                         (kv.split("=", 1) for kv in rest.split(","))}
        return out


# ==========================================================================


class NoscriptTest(DaemonCase):
    """docs/guarantees.md section 2: the NOSCRIPT -> EVAL fallback while the
    daemon stays connected (src/store/store.c, store_req_reply)."""

    def test_script_flush_while_connected_falls_back_to_eval(self):
        d = self.daemon
        sha = d.record_sha
        self.assertEqual(self.r.cmd("SCRIPT", "EXISTS", sha), [1],
                         "the logged record_script sha is not in Redis's script cache")

        p1 = self.epay(trade_no="NS-0001", out_trade_no="NS-O1")
        eid1 = h.event_id("shop-epay", "NS-0001", "paid")
        reply = self.send(p1)
        self.assertAck(reply)
        sid1 = self.assertRecordedOnce(eid1, reply)

        mark = len(d.log_text())
        self.assertEqual(self.r.cmd("SCRIPT", "FLUSH"), "OK")
        self.assertEqual(self.r.cmd("CONFIG", "RESETSTAT"), "OK")
        self.assertEqual(self.r.cmd("SCRIPT", "EXISTS", sha), [0], "SCRIPT FLUSH kept it")

        # the next new callback: EVALSHA -> NOSCRIPT -> EVAL, acked, recorded once
        p2 = self.epay(trade_no="NS-0002", out_trade_no="NS-O2")
        eid2 = h.event_id("shop-epay", "NS-0002", "paid")
        reply = self.send(p2)
        self.assertAck(reply)
        self.assertRecordedOnce(eid2, reply)
        self.assertEqual(len(self.entries()), 2, self.entries())
        stats = self.commandstats()
        self.assertGreaterEqual(stats.get("evalsha", {}).get("failed_calls", 0), 1,
                                "no EVALSHA failed (NOSCRIPT) after the flush: %r" % stats)
        reloaded = (stats.get("eval", {}).get("calls", 0) +
                    stats.get("script|load", {}).get("calls", 0))
        self.assertGreaterEqual(reloaded, 1, "no EVAL or SCRIPT LOAD after the flush: %r"
                                % stats)
        # the record script is cached again (EVAL caches what it runs)
        self.assertEqual(self.r.cmd("SCRIPT", "EXISTS", sha), [1],
                         "the record script was not reloaded after NOSCRIPT")

        # the one after that: recorded once too
        p3 = self.epay(trade_no="NS-0003", out_trade_no="NS-O3")
        eid3 = h.event_id("shop-epay", "NS-0003", "paid")
        reply = self.send(p3)
        self.assertAck(reply)
        self.assertRecordedOnce(eid3, reply)
        self.assertEqual(len(self.entries()), 3, self.entries())

        # the first callback again: still a duplicate, nothing new written
        reply = self.send(p1)
        self.assertAck(reply)
        self.assertEqual(self.entries_of(eid1), [sid1])
        self.assertEqual(len(self.entries()), 3, self.entries())
        self.assertDedup(eid1, sid1)
        self.assertEqual(len(self.deliveries_of(eid1)), 1)

        # ... as the daemon saw it, and it never lost its connection
        d.wait_log(r'msg="?callback duplicate.* event=' + eid1, timeout=5, start=mark)
        self.assertEqual(self.log_events(d, "callback recorded", mark), [eid2, eid3],
                         d.log_tail())
        self.assertEqual(self.log_events(d, "callback duplicate", mark), [eid1], d.log_tail())
        text = d.log_text()
        self.assertEqual(len(h.log_records(text, "redis ready")), 1,
                         "the daemon reconnected instead of falling back:\n" + d.log_tail())
        for msg in ("redis disconnected", "redis script failed",
                    "callback not recorded, answered 503"):
            self.assertEqual(h.log_records(text[mark:], msg), [], d.log_tail())
        self.assertTrue(d.alive())


# ==========================================================================


class DedupExpiryTest(DaemonCase):
    """docs/guarantees.md sections 1 (last paragraph) and 3: once the dedup
    key is gone, the same callback is a new stream entry with the same event
    id (and fresh deliveries: docs/redis.md), then dedups again."""

    def test_same_callback_after_dedup_expiry_is_a_new_entry_same_event_id(self):
        d = self.daemon
        p = self.epay(trade_no="EXP-0001", out_trade_no="EXP-O1")
        eid = h.event_id("shop-epay", "EXP-0001", "paid")
        key = DEDUP + eid

        reply = self.send(p)
        self.assertAck(reply)
        sid1 = self.assertRecordedOnce(eid, reply)  # TTL = dedup_ttl
        # within dedup_ttl it is a duplicate
        self.assertAck(self.send(p))
        self.assertEqual(self.entries(), [(sid1, eid)])

        # expiry, simulated
        self.assertEqual(self.r.cmd("PEXPIRE", key, 1), 1)
        deadline = time.monotonic() + 5
        while self.r.cmd("EXISTS", key) != 0:
            self.assertLess(time.monotonic(), deadline, "%s did not expire" % key)
            time.sleep(0.01)

        reply = self.send(p)
        self.assertAck(reply)
        entries = self.entries()
        self.assertEqual(len(entries), 2, "not recorded again after the dedup key expired: %r\n%s"
                         % (entries, self.ctx(reply)))
        self.assertEqual(entries[0], (sid1, eid))
        sid2, eid2 = entries[1]
        self.assertEqual(eid2, eid, "the re-recorded entry has another event id")
        self.assertNotEqual(sid2, sid1)
        ev = [f for _, f in self.r.xrange(STREAM)]
        self.assertEqual([e["id"] for e in ev], [eid, eid])
        self.assertIn('"id":"%s"' % eid, ev[1]["event"])
        self.assertDedup(eid, sid2)  # the new entry, a fresh dedup_ttl
        dl = self.deliveries_of(eid)
        self.assertEqual(len(dl), 2, "a re-recorded event gets fresh deliveries: %r" % dl)
        self.assertEqual(sorted(r["stream_id"] for r in dl.values()), sorted([sid1, sid2]))

        # a third send: a duplicate again
        reply = self.send(p)
        self.assertAck(reply)
        self.assertEqual(self.entries(), [(sid1, eid), (sid2, eid)])
        self.assertDedup(eid, sid2)
        self.assertEqual(len(self.deliveries_of(eid)), 2)

        # as the daemon saw it: new, duplicate, new, duplicate
        deadline = time.monotonic() + 5
        while True:
            seq = [rec.get("msg") for rec in h.log_records(d.log_text())
                   if rec.get("event") == eid]
            if len(seq) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(seq, ["callback recorded", "callback duplicate",
                               "callback recorded", "callback duplicate"], d.log_tail())


# ==========================================================================


class TwoInstancesTest(DaemonCase):
    """docs/guarantees.md section 3: the same callbacks at two instances that
    share one Redis, at the same moment: one stream entry each (the recording
    script's atomicity), and every answer `success`."""

    N = 200     # distinct callbacks, each sent to both daemons
    PAIRS = 8   # pairs of threads; a pair sends one callback to both at once

    def test_same_callbacks_at_two_instances_at_once(self):
        d1 = self.daemon
        port2, admin2 = h.free_port(), h.free_port()
        text2 = self.config_text
        for old, new in (("listen = 127.0.0.1:%d\n" % self.setup.port,
                          "listen = 127.0.0.1:%d\n" % port2),
                         ("listen = 127.0.0.1:%d\n" % self.setup.admin_port,
                          "listen = 127.0.0.1:%d\n" % admin2)):
            self.assertEqual(text2.count(old), 1, old)
            text2 = text2.replace(old, new)
        diff = [(a, b) for a, b in zip(self.config_text.splitlines(), text2.splitlines())
                if a != b]
        self.assertEqual(len(diff), 2, diff)
        self.assertTrue(all(a.startswith("listen = ") for a, _ in diff), diff)
        conf2 = os.path.join(self.dir, "second.conf")
        with open(conf2, "w", encoding="utf-8") as f:
            f.write(text2)
        d2 = self.start_daemon(conf2, port2, "payrelayd-2")
        daemons = (d1, d2)
        ports = (self.setup.port, port2)

        calls = []
        for i in range(self.N):
            t = "RACE-%04d" % i
            p = self.epay(trade_no=t, out_trade_no="RO-%04d" % i)
            calls.append(("/notify/shop-epay?" + h.form_encode(p),
                          h.event_id("shop-epay", t, "paid")))
        eids = [e for _, e in calls]

        results = {}   # (callback index, daemon index) -> (status, body) or error
        lock = threading.Lock()

        def worker(pair, side, barrier):
            for i in range(pair, self.N, self.PAIRS):
                # alternate which thread of the pair talks to which daemon, so
                # that no daemon is always the late one
                k = (side + i) % 2
                try:
                    barrier.wait()
                    reply = h.http(ports[k], "GET", calls[i][0], timeout=20)
                    out = (reply.status, reply.body)
                except Exception as e:  # noqa: BLE001 - reported below
                    barrier.abort()
                    out = "error: %r" % e
                with lock:
                    results[(i, k)] = out
                if isinstance(out, str):
                    return

        threads = []
        for pair in range(self.PAIRS):
            barrier = threading.Barrier(2, timeout=30)
            for side in (0, 1):
                threads.append(threading.Thread(target=worker, args=(pair, side, barrier),
                                                daemon=True))
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        self.assertFalse(any(t.is_alive() for t in threads), "senders hung")
        elapsed = time.monotonic() - t0

        bad = {key: v for key, v in results.items() if v != (200, b"success")}
        self.assertEqual(bad, {}, "answers other than success:\n%s\n%s"
                         % (d1.log_tail(10), d2.log_tail(10)))
        self.assertEqual(len(results), 2 * self.N)

        entries = self.entries()
        ids = [e for _, e in entries]
        dups = sorted({e for e in ids if ids.count(e) > 1})
        self.assertEqual(dups, [], "event ids in the stream more than once")
        self.assertEqual(len(entries), self.N)
        self.assertEqual(sorted(ids), sorted(eids))
        sid_of = {e: sid for sid, e in entries}
        self.assertEqual(len(self.r.keys(DEDUP + "*")), self.N)
        for e in eids:
            self.assertEqual(self.r.cmd("GET", DEDUP + e), sid_of[e].encode(), e)
        dl = [self.r.cmd("HGET", k, "event_id").decode()
              for k in self.r.keys("payrelay:delivery:*")]
        self.assertEqual(sorted(dl), sorted(eids), "not one delivery per event")
        self.assertEqual(self.r.cmd("ZCARD", DUE), self.N)

        # both stop cleanly, then their whole logs are read
        for d in daemons:
            d.stop_clean()
        rec = [self.log_events(d, "callback recorded") for d in daemons]
        dup = [self.log_events(d, "callback duplicate") for d in daemons]
        self.assertEqual(sorted(rec[0] + rec[1]), sorted(eids),
                         "each callback recorded exactly once over both daemons")
        self.assertEqual(sorted(dup[0] + dup[1]), sorted(eids),
                         "each callback a duplicate exactly once over both daemons")
        for j, d in enumerate(daemons):
            self.assertTrue(rec[j] and dup[j],
                            "%s: %d recorded, %d duplicate: the two did not race"
                            % (d.log, len(rec[j]), len(dup[j])))
        sys.stderr.write("\n  %d x 2 callbacks in %.2f s; recorded by each: %d/%d ... "
                         % (self.N, elapsed, len(rec[0]), len(rec[1])))


# ==========================================================================


class RepeatPaymentTest(DaemonCase):
    """SPEC 2.5 "Repeat payments" (docs/guarantees.md section 3): decided in
    the recording script itself, through `P paid:<channel>:<out_trade_no>`.
    A webhook `all` (every type, delivered at once) to a receiver shows what
    receivers get; the harness's `orders` (order.paid, an hour out) keeps
    its bodies in the delivery hashes."""

    workdir_prefix = "payrelay-rp-"

    @classmethod
    def setUpClass(cls):
        cls.receiver = h.Receiver()
        cls.addClassCleanup(cls.receiver.stop)
        super().setUpClass()

    @classmethod
    def config_for(cls, setup):
        return super().config_for(setup) + """
[webhook:all]
url = {url}
secret = {secret}
""".format(url=cls.receiver.url("/all"), secret=h.WEBHOOK_SECRET)

    # --- one genuine payment per family -------------------------------------
    # (channel, ack body, trade id field, order id field, signer)

    def family(self, fam):
        if fam == "epay":
            return ("shop-epay", b"success", "trade_no", "out_trade_no", self.epay)
        if fam == "gatepay":
            return ("shop-gatepay", b"success", "order_id", "out_order_id", self.gatepay)
        return ("shop-payindex", b"OK", "transaction_id", "orderid", self.payindex)

    def gatepay(self, vec=0, **override):
        p = params_of(GATE[vec])
        p.update(override)
        p["sign"] = h.gatepay_sign(p, self.setup.gate_appkey, self.setup.gate_secret)
        return p

    def payindex(self, vec=0, **override):
        p = params_of(PIDX[vec])
        p.update(override)
        p["sign"] = h.payindex_sign(p, self.setup.payindex_key)
        return p

    def pay(self, fam, trade_id, otn, **override):
        """Sends a genuine signed callback (a payment unless an epay
        `trade_status` says otherwise); asserts the ack; returns its event id."""
        ch, ack, tf, of, sign = self.family(fam)
        override.update({tf: trade_id, of: otn})
        reply = h.http(self.setup.port, "POST", "/notify/" + ch,
                       body=h.form_encode(sign(**override)),
                       headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=15)
        self.assertEqual((reply.status, reply.body), (200, ack), self.ctx(reply))
        status = override.get("trade_status", "TRADE_SUCCESS")
        return h.event_id(ch, trade_id, "paid" if status == "TRADE_SUCCESS" else status)

    # --- what it left ----------------------------------------------------------

    def event(self, eid):
        """The one stream entry of `eid`: (stream fields, the parsed event)."""
        got = [(f, json.loads(f["event"])) for _, f in self.r.xrange(STREAM) if f["id"] == eid]
        self.assertEqual(len(got), 1, "stream entries of %s: %r" % (eid, got))
        return got[0]

    def delivered(self, eid, timeout=10.0):
        """The body the receiver got for `eid` (the first one)."""
        def bodies(rs):
            return [json.loads(r.body) for r in rs if r.path == "/all"]

        reqs = self.receiver.wait_for(lambda rs: any(b.get("id") == eid for b in bodies(rs)),
                                      timeout)
        self.assertIsNotNone(reqs, "no delivery of %s to the receiver\n%s" % (eid, self.ctx()))
        return [b for b in bodies(reqs) if b.get("id") == eid][0]

    def hooked(self, eid):
        """{webhook: event JSON} of the delivery hashes of `eid`: the body
        a claim sends, the hash's own (a replay's, or copied at a stream
        trim) or else its stream entry's (the JSON is stored once). A hash
        already delivered sends nothing more, so its event is None: compare
        with assertHooked."""
        def body(rec):
            if "event" in rec:
                return json.loads(rec["event"])
            if rec.get("state") != "pending":
                return None
            sid = rec["stream_id"]
            for _, f in self.r.cmd("XRANGE", STREAM, sid, sid) or []:
                flat = {f[i].decode(): f[i + 1].decode() for i in range(0, len(f), 2)}
                return json.loads(flat["event"])
            self.fail("pending delivery of %s without a body: %r" % (eid, rec))
        return {rec["webhook"]: body(rec) for rec in self.deliveries_of(eid).values()}

    def assertHooked(self, eid, want):
        """`eid` has a delivery for each webhook of `want`, each body still
        held equal to its value."""
        got = self.hooked(eid)
        self.assertEqual(set(got), set(want), got)
        for hook, body in got.items():
            if body is not None:
                self.assertEqual(body, want[hook], hook)

    def metric(self, channel):
        reply = h.http(self.setup.admin_port, "GET", "/metrics",
                       headers={"Authorization": "Bearer " + h.ADMIN_TOKEN})
        self.assertEqual(reply.status, 200, reply)
        text = reply.body.decode()
        self.assertIn("# TYPE payrelay_repeat_payments_total counter", text)
        m = re.search(r'^payrelay_repeat_payments_total\{channel="%s"\} (\d+)$'
                      % re.escape(channel), text, re.M)
        return int(m.group(1)) if m else 0

    def repeat_lines(self, start=0):
        return h.log_records(self.daemon.log_text()[start:], "repeat payment recorded")

    def assertPaidKey(self, ch, otn, trade_id):
        key = PAID + ch + ":" + otn
        self.assertEqual(self.r.cmd("GET", key), trade_id.encode(), key)
        ttl = self.r.cmd("TTL", key)
        self.assertTrue(DEDUP_TTL - 120 <= ttl <= DEDUP_TTL,
                        "TTL of %s is %r, dedup_ttl is %d" % (key, ttl, DEDUP_TTL))

    # --- the tests ----------------------------------------------------------------

    def test_a_second_payment_is_flagged_in_each_family(self):
        for fam in ("epay", "gatepay", "payindex"):
            with self.subTest(family=fam):
                self.second_payment(fam)

    def second_payment(self, fam):
        ch = self.family(fam)[0]
        otn, t1, t2, t3 = "RP-%s-O1" % fam, "RP-%s-T1" % fam, "RP-%s-T2" % fam, "RP-%s-T3" % fam
        mark = len(self.daemon.log_text())
        count0 = self.metric(ch)

        e1 = self.pay(fam, t1, otn)
        f1, ev1 = self.event(e1)
        self.assertEqual(ev1["type"], "order.paid", ev1)
        self.assertNotIn("repeat_payment", ev1)
        self.assertNotIn("repeat_payment", f1["event"])
        self.assertPaidKey(ch, otn, t1)
        self.assertNotIn("repeat_payment", self.delivered(e1))
        self.assertNotIn("repeat_payment", self.hooked(e1)["orders"] or {})

        # another payment of the same order: recorded, and flagged
        e2 = self.pay(fam, t2, otn)
        self.assertNotEqual(e1, e2)
        f2, ev2 = self.event(e2)
        self.assertIs(ev2.get("repeat_payment"), True, ev2)
        self.assertEqual((ev2["type"], ev2["trade_no"], ev2["out_trade_no"]),
                         ("order.paid", t2, otn), ev2)
        self.assertEqual(f2["type"], "order.paid")
        self.assertTrue(f2["event"].startswith(
            '{"id":"%s","type":"order.paid","repeat_payment":true,' % e2), f2["event"])
        self.assertNotIn("amount_mismatch", ev2)
        self.assertEqual(self.delivered(e2), ev2)
        self.assertHooked(e2, {"orders": ev2, "all": ev2})
        self.assertPaidKey(ch, otn, t1)  # still the first payment's
        self.assertEqual(self.metric(ch), count0 + 1)
        lines = self.repeat_lines(mark)
        self.assertEqual(len(lines), 1, self.daemon.log_tail())
        want = {"level": "warn", "channel": ch, "event": e2, "trade_no": t2,
                "out_trade_no": otn, "first_trade_no": t1, "source": "callback",
                "type": "order.paid"}
        self.assertEqual({k: lines[0].get(k) for k in want}, want, lines[0])

        # re-sends of either are duplicates: nothing new, nothing flagged
        for t in (t1, t2, t1):
            self.pay(fam, t, otn)
        self.assertEqual([f["id"] for _, f in self.r.xrange(STREAM)
                          if f["out_trade_no"] == otn], [e1, e2])
        self.assertEqual(self.event(e1)[1], ev1)
        self.assertPaidKey(ch, otn, t1)
        self.assertEqual(self.metric(ch), count0 + 1)
        self.assertEqual(len(self.repeat_lines(mark)), 1, self.daemon.log_tail())

        # the first payment recorded again once its dedup key is gone: the
        # same trade id, so still no repeat
        self.assertEqual(self.r.cmd("DEL", DEDUP + e1), 1)
        self.pay(fam, t1, otn)
        again = [json.loads(f["event"]) for _, f in self.r.xrange(STREAM) if f["id"] == e1]
        self.assertEqual(len(again), 2, again)
        self.assertNotIn("repeat_payment", again[1])

        # a third payment compares with the first, and keeps the key alive
        self.r.cmd("EXPIRE", PAID + ch + ":" + otn, 100)
        e3 = self.pay(fam, t3, otn)
        self.assertIs(self.event(e3)[1].get("repeat_payment"), True)
        self.assertPaidKey(ch, otn, t1)
        self.assertEqual(self.metric(ch), count0 + 2)
        lines = self.repeat_lines(mark)
        self.assertEqual([(r.get("trade_no"), r.get("first_trade_no")) for r in lines],
                         [(t2, t1), (t3, t1)], self.daemon.log_tail())

        # another order is its own first payment
        e4 = self.pay(fam, "RP-%s-T4" % fam, "RP-%s-O2" % fam)
        self.assertNotIn("repeat_payment", self.event(e4)[1])
        self.assertPaidKey(ch, "RP-%s-O2" % fam, "RP-%s-T4" % fam)

    def test_b_order_status_never_counts(self):
        ch, otn = "shop-epay", "RP-ST-O1"
        mark = len(self.daemon.log_text())
        count0 = self.metric(ch)
        # a verified non-payment first: no key, and it does not make the payment a repeat
        s0 = self.pay("epay", "RP-ST-T0", otn, trade_status="TRADE_CLOSED")
        self.assertEqual(self.event(s0)[1]["type"], "order.status")
        self.assertIsNone(self.r.cmd("GET", PAID + ch + ":" + otn))
        e1 = self.pay("epay", "RP-ST-T1", otn)
        self.assertNotIn("repeat_payment", self.event(e1)[1])
        self.assertPaidKey(ch, otn, "RP-ST-T1")
        # after the payment, order.status events of other trade ids (or of the
        # paid one) are never flagged and leave the key alone
        for t in ("RP-ST-T2", "RP-ST-T1"):
            eid = self.pay("epay", t, otn, trade_status="WAIT_BUYER_PAY")
            _, ev = self.event(eid)
            self.assertEqual(ev["type"], "order.status", ev)
            self.assertNotIn("repeat_payment", ev)
            self.assertNotIn("repeat_payment", self.delivered(eid))
        self.assertPaidKey(ch, otn, "RP-ST-T1")
        self.assertEqual(self.metric(ch), count0)
        self.assertEqual(self.repeat_lines(mark), [], self.daemon.log_tail())

    def test_c_repeat_and_amount_mismatch_together(self):
        ch, otn = "shop-epay", "RP-MM-O1"
        mark = len(self.daemon.log_text())
        count0 = self.metric(ch)
        reply = h.http(self.setup.admin_port, "POST", "/v1/orders",
                       body=json.dumps({"channel": ch, "out_trade_no": otn, "amount": "2.00"}),
                       headers={"Authorization": "Bearer " + h.ADMIN_TOKEN,
                                "Content-Type": "application/json"})
        self.assertEqual(reply.status, 201, reply)
        order_key = "payrelay:order:%s:%s" % (ch, otn)

        e1 = self.pay("epay", "RP-MM-T1", otn)  # money 1.00
        _, ev1 = self.event(e1)
        self.assertEqual((ev1["type"], ev1.get("amount_mismatch")),
                         ("order.amount_mismatch", True), ev1)
        self.assertNotIn("repeat_payment", ev1)
        order = self.r.hgetall(order_key)
        self.assertEqual((order.get("state"), order.get("event_id")), ("paid", e1), order)

        e2 = self.pay("epay", "RP-MM-T2", otn)
        f2, ev2 = self.event(e2)
        self.assertEqual((ev2["type"], ev2.get("amount_mismatch"), ev2.get("repeat_payment")),
                         ("order.amount_mismatch", True, True), ev2)
        self.assertEqual(f2["type"], "order.amount_mismatch")
        self.assertTrue(f2["event"].startswith(
            '{"id":"%s","type":"order.amount_mismatch","amount_mismatch":true,'
            '"repeat_payment":true,' % e2), f2["event"])
        self.assertEqual(self.delivered(e2), ev2)
        # `orders` wants order.paid only: the mismatch goes to `all` alone
        self.assertHooked(e2, {"all": ev2})
        # the order stays settled by its first payment
        order = self.r.hgetall(order_key)
        self.assertEqual((order.get("state"), order.get("event_id")), ("paid", e1), order)
        self.assertEqual(self.metric(ch), count0 + 1)
        lines = self.repeat_lines(mark)
        self.assertEqual([(r.get("type"), r.get("first_trade_no")) for r in lines],
                         [("order.amount_mismatch", "RP-MM-T1")], self.daemon.log_tail())

        # an order registered with the right amount: the repeat is order.paid
        # and flagged, and the order keeps its first event too
        otn = "RP-MM-O2"
        reply = h.http(self.setup.admin_port, "POST", "/v1/orders",
                       body=json.dumps({"channel": ch, "out_trade_no": otn, "amount": "1.00"}),
                       headers={"Authorization": "Bearer " + h.ADMIN_TOKEN,
                                "Content-Type": "application/json"})
        self.assertEqual(reply.status, 201, reply)
        e3 = self.pay("epay", "RP-MM-T3", otn)
        e4 = self.pay("epay", "RP-MM-T4", otn)
        self.assertNotIn("repeat_payment", self.event(e3)[1])
        _, ev4 = self.event(e4)
        self.assertEqual((ev4["type"], ev4.get("repeat_payment")), ("order.paid", True), ev4)
        self.assertNotIn("amount_mismatch", ev4)
        order = self.r.hgetall("payrelay:order:%s:%s" % (ch, otn))
        self.assertEqual((order.get("state"), order.get("event_id")), ("paid", e3), order)

    def test_d_two_payments_at_two_instances_at_once(self):
        # Each order's two payments reach two instances on one Redis at the
        # same moment: whichever is recorded second, exactly one is flagged.
        port2, admin2 = h.free_port(), h.free_port()
        text2 = self.config_text
        for old, new in ((self.setup.port, port2), (self.setup.admin_port, admin2)):
            old, new = "listen = 127.0.0.1:%d\n" % old, "listen = 127.0.0.1:%d\n" % new
            self.assertEqual(text2.count(old), 1, old)
            text2 = text2.replace(old, new)
        conf2 = os.path.join(self.dir, "repeat-second.conf")
        with open(conf2, "w", encoding="utf-8") as f:
            f.write(text2)
        os.chmod(conf2, 0o600)
        d2 = self.start_daemon(conf2, port2, "payrelayd-rp2")
        ports = (self.setup.port, port2)
        n = 40
        results = {}

        def send(i, k, barrier):
            p = self.epay(trade_no="RPX-%02d-T%d" % (i, k), out_trade_no="RPX-%02d" % i)
            try:
                barrier.wait()
                reply = self.send(p, port=ports[k])
                results[(i, k)] = (reply.status, reply.body)
            except Exception as e:  # noqa: BLE001 - reported below
                results[(i, k)] = "error: %r" % e

        for i in range(n):
            barrier = threading.Barrier(2, timeout=30)
            ts = [threading.Thread(target=send, args=(i, k, barrier), daemon=True)
                  for k in (0, 1)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
        bad = {key: v for key, v in results.items() if v != (200, b"success")}
        self.assertEqual(bad, {}, "%s\n%s" % (self.ctx(), d2.log_tail(10)))
        by_order = {}
        for _, f in self.r.xrange(STREAM):
            if f["out_trade_no"].startswith("RPX-"):
                by_order.setdefault(f["out_trade_no"], []).append(json.loads(f["event"]))
        self.assertEqual(len(by_order), n)
        for otn, evs in sorted(by_order.items()):
            self.assertEqual(len(evs), 2, evs)
            # the stream's order is the recording order
            self.assertEqual([e.get("repeat_payment") for e in evs], [None, True], evs)
            self.assertPaidKey("shop-epay", otn, evs[0]["trade_no"])
        d2.stop_clean()
        lines = [x for d in (self.daemon, d2)
                 for x in h.log_records(d.log_text(), "repeat payment recorded")
                 if x.get("out_trade_no", "").startswith("RPX-")]
        self.assertEqual(sorted(x["out_trade_no"] for x in lines), sorted(by_order))


if __name__ == "__main__":
    sys.exit(h.run_tests())
