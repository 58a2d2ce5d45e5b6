#!/usr/bin/env python3
"""Integration tests of bounded storage (SPEC section 3.2, docs/redis.md):
`delivery_retention`, `payrelayctl deliveries purge --dead --before T`, a TTL
or a cap on every key payrelayd writes, the key counts in /metrics, and the
bytes per event that docs/redis.md promises.

Every test runs its own redis-server and payrelayd (with delivery_retention =
60 s) and a local webhook receiver, records callbacks through the public
listener and then looks at every key in Redis.

    PAYRELAYD=build/src/payrelayd PAYRELAYCTL=build/src/payrelayctl \\
        PAYRELAY_VECTORS=../shared/vectors python3 tests/integration/test_retention.py

Exits 0 when every test passes, 1 otherwise.
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import test_deliver as td  # noqa: E402  (its DeliverCase: daemon, receiver, callbacks)

PREFIX = td.PREFIX
STREAM = td.STREAM
RETENTION = 60            # [daemon] delivery_retention of these tests
DEDUP_TTL = 2592000       # dedup_ttl's default
DOCS = os.path.join(h.HERE, "..", "..", "docs", "redis.md")


def ctl_binary():
    b = os.environ.get("PAYRELAYCTL")
    if b:
        return b
    guess = os.path.normpath(os.path.join(h.HERE, "..", "..", "build", "src", "payrelayctl"))
    return guess if os.path.exists(guess) else None


CTL = ctl_binary()


def documented(label):
    """A number of docs/redis.md's sizing table: the row `| label | N |`."""
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^\| %s \| ([0-9][0-9,]*) \|" % re.escape(label), text, re.M)
    if m is None:
        raise AssertionError("docs/redis.md has no sizing row %r" % label)
    return int(m.group(1).replace(",", ""))


class RetentionCase(td.DeliverCase):

    def start(self, webhooks, retention=RETENTION):
        """Starts payrelayd with `webhooks` and delivery_retention."""
        self.write_config(webhooks)
        with open(self.config, encoding="utf-8") as f:
            text = f.read()
        text = text.replace("[daemon]\n", "[daemon]\ndelivery_retention = %d\n" % retention, 1)
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text)
        return self.start_daemon()

    def admin(self, method, path, body=None):
        hd = {"Authorization": "Bearer " + h.ADMIN_TOKEN}
        if body is not None:
            body = json.dumps(body)
            hd["Content-Type"] = "application/json"
        reply = h.http(self.admin_port, method, path, body=body, headers=hd)
        try:
            reply.json = json.loads(reply.body.decode("utf-8"))
        except ValueError:
            reply.json = None
        return reply

    def ctl(self, *args):
        p = subprocess.run([CTL, "-c", self.config] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def order_callback(self, trade_no, out_trade_no):
        """One signed epay paid callback of merchant order out_trade_no."""
        p = {k: v for k, v in td.EPAY[0]["params"].items() if k != "sign"}
        p["trade_no"] = trade_no
        p["out_trade_no"] = out_trade_no
        p["trade_status"] = "TRADE_SUCCESS"
        p["sign"] = h.epay_md5_sign(p, td.EPAY[0]["key"])
        reply = h.http(self.port, "GET", "/notify/shop-epay?" + h.form_encode(p))
        self.assertEqual((reply.status, reply.body), (200, b"success"), self.ctx(reply))
        return h.event_id("shop-epay", trade_no, "paid")

    def callbacks(self, n, tag):
        """n paid callbacks of n orders (trade ids T-tag-i, orders tag-i);
        returns their event ids."""
        return [self.order_callback("T-%s-%04d" % (tag, i), "%s-%04d" % (tag, i))
                for i in range(n)]

    def wait_states(self, webhook, n, state, timeout):
        """Waits until `webhook` has n deliveries in `state`; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            got = {k: v for k, v in self.deliveries(webhook).items() if v.get("state") == state}
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                self.fail("%s: %d of %d deliveries %s within %.0f s\n%s"
                          % (webhook, len(got), n, state, timeout, self.log_tail()))
            time.sleep(0.1)

    def evd(self, eid):
        """The delivery ids of the event's delivery list (a string; a set as
        earlier builds wrote it)."""
        k = PREFIX + "evd:" + eid
        if self.r.cmd("TYPE", k) == "set":
            return sorted(m.decode() for m in self.r.cmd("SMEMBERS", k))
        v = self.r.cmd("GET", k)
        return sorted(v.decode().split()) if v else []

    def ttl(self, key):
        return int(self.r.cmd("TTL", key))

    def assertTTL(self, key, lo, hi):
        t = self.ttl(key)
        self.assertTrue(lo <= t <= hi, "TTL of %s is %d, not in [%d, %d]" % (key, t, lo, hi))


class RetentionTest(RetentionCase):

    def test_01_every_key_has_a_ttl_or_a_cap(self):
        """After N events (one webhook delivers, one goes dead), every key
        has the TTL docs/redis.md promises, or is one of the capped kinds."""
        n = 12
        ok = self.receiver()
        bad = self.receiver(default="fail")
        self.start([("orders", {"url": ok.url("/o"), "secret": td.SECRET_A,
                                "timeout_ms": 1000, "schedule": "0 1"}),
                    ("audit", {"url": bad.url("/a"), "secret": td.SECRET_B,
                               "timeout_ms": 1000, "schedule": "0"})])
        eids = self.callbacks(n, "TTL")
        delivered = self.wait_states("orders", n, "delivered", 15)
        dead = self.wait_states("audit", n, "dead", 15)

        # delivered: no body, kept delivery_retention
        for did, rec in delivered.items():
            self.assertNotIn("event", rec, "delivered %s still holds the body" % did)
            self.assertEqual(rec.get("attempts"), "1")
            self.assertTTL(PREFIX + "delivery:" + did, RETENTION - 15, RETENTION)
        # dead: no TTL, in the dead set; its body is its stream entry's,
        # which the held set keeps from going without copying it over
        held = set(m.decode() for m in self.r.cmd("ZRANGE", PREFIX + "held", 0, -1))
        for did, rec in dead.items():
            self.assertNotIn("event", rec, "the event JSON is stored once, in the stream")
            self.assertIn("%s %s" % (rec["stream_id"], did), held)
            self.assertEqual(self.ttl(PREFIX + "delivery:" + did), -1)
            self.assertIsNotNone(self.dead_score("audit", did))
        # per event: dedup, paid, the order index and the delivery list: dedup_ttl
        for eid in eids:
            self.assertTTL(PREFIX + "dedup:" + eid, DEDUP_TTL - 60, DEDUP_TTL)
            self.assertTTL(PREFIX + "evd:" + eid, DEDUP_TTL - 60, DEDUP_TTL)
            self.assertEqual(len(self.evd(eid)), 2)
        for i in range(n):
            self.assertTTL(PREFIX + "paid:shop-epay:TTL-%04d" % i, DEDUP_TTL - 60, DEDUP_TTL)
            self.assertTTL(PREFIX + "oix:shop-epay:TTL-%04d" % i, DEDUP_TTL - 60, DEDUP_TTL)
        # the due sets hold pending deliveries only: none are left
        self.assertEqual(int(self.r.cmd("ZCARD", PREFIX + "wh:orders:due")), 0)
        self.assertEqual(int(self.r.cmd("ZCARD", PREFIX + "wh:audit:due")), 0)

        # every key: a TTL, or one of the capped kinds
        kinds = {}
        for key in self.r.keys("*"):
            t = self.ttl(key)
            kind = self.kind(key)
            kinds.setdefault(kind, []).append(t)
            if kind in ("dedup", "paid", "oix", "evd"):
                self.assertTrue(DEDUP_TTL - 60 <= t <= DEDUP_TTL, (key, t))
            elif kind == "delivery":
                state = self.r.cmd("HGET", key, "state").decode()
                if state in ("delivered", "replayed"):
                    self.assertTrue(0 < t <= RETENTION, (key, state, t))
                else:  # pending and dead ones wait for delivery, replay or purge
                    self.assertIn(state, ("pending", "dead"), key)
                    self.assertEqual(t, -1, key)
            elif kind == "stream":
                self.assertEqual(t, -1, key)  # capped by [stream] maxlen
            elif kind in ("due", "dead"):
                self.assertEqual(t, -1, key)  # bounded: pending / dead deliveries
            elif kind == "held":
                self.assertEqual(t, -1, key)  # capped: its members leave with the stream's
            else:
                self.fail("key %s (TTL %d) is of no documented kind" % (key, t))
        self.assertEqual(sorted(kinds), ["dead", "dedup", "delivery", "evd", "held", "oix",
                                         "paid", "stream"], kinds.keys())
        self.assertEqual(int(self.r.cmd("XLEN", STREAM)), n)

        # /metrics: the O(1) key counts
        r = self.admin("GET", "/metrics")
        self.assertEqual(r.status, 200)
        text = r.body.decode()
        dbsize = int(self.r.cmd("DBSIZE"))
        self.assertEqual(self.metric(text, 'payrelay_redis_keys{kind="all"}'), dbsize)
        self.assertEqual(self.metric(text, 'payrelay_redis_keys{kind="delivery_dead"}'), n)
        self.assertEqual(self.metric(text, 'payrelay_redis_keys{kind="delivery_pending"}'), 0)
        self.assertEqual(self.metric(text, "payrelay_redis_stream_entries"), n)
        self.assertGreater(self.metric(text, "payrelay_redis_used_memory_bytes"), 100000)

        # an expired delivered hash is left out of its event's deliveries
        gone = next(d for d, v in delivered.items() if v["event_id"] == eids[0])
        self.r.cmd("DEL", PREFIX + "delivery:" + gone)
        r = self.admin("GET", "/v1/events/%s/deliveries" % eids[0])
        self.assertEqual(r.status, 200, r)
        self.assertEqual([(d["webhook"], d["state"]) for d in r.json["deliveries"]],
                         [("audit", "dead")], r.json)

    @staticmethod
    def kind(key):
        if key == STREAM:
            return "stream"
        rest = key[len(PREFIX):] if key.startswith(PREFIX) else ""
        if rest.startswith("wh:"):
            return rest.rsplit(":", 1)[1]
        return rest.split(":", 1)[0] or "other"

    @staticmethod
    def metric(text, name):
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise AssertionError("no %s in /metrics" % name)

    def test_02_replays_drop_their_body_and_expire(self):
        """A replayed dead delivery and its replay, once delivered, hold no
        body and expire; a delivered one is replayed from the stream."""
        rcv = self.receiver(script=["fail"], default="ok")
        self.start([("orders", {"url": rcv.url("/o"), "secret": td.SECRET_A,
                                "timeout_ms": 1000, "schedule": "0"})])
        eid_dead = self.order_callback("T-RPL-DEAD", "RPL-DEAD")
        old = list(self.wait_states("orders", 1, "dead", 10))[0]
        eid_ok = self.order_callback("T-RPL-OK", "RPL-OK")
        delivered = self.wait_states("orders", 1, "delivered", 10)
        done = list(delivered)[0]
        self.assertNotIn("event", delivered[done])
        self.assertEqual(delivered[done]["event_id"], eid_ok)

        # the dead one: replayed, delivered
        r = self.admin("POST", "/v1/deliveries/%s/replay" % old)
        self.assertEqual(r.status, 201, r)
        new = r.json["delivery"]
        hn = self.wait_delivered(new, 10)
        self.assertNotIn("event", hn)
        self.assertTTL(PREFIX + "delivery:" + new, RETENTION - 15, RETENTION)
        ho = self.hash(old)
        self.assertEqual((ho.get("state"), ho.get("replayed_as")), ("replayed", new))
        self.assertNotIn("event", ho, "a replayed dead delivery keeps no body")
        self.assertTTL(PREFIX + "delivery:" + old, RETENTION - 15, RETENTION)
        self.assertIsNone(self.dead_score("orders", old))
        bodies = [q.body for q in rcv.snapshot()]
        self.assertEqual(bodies[-1], self.stream_event_bytes(eid_dead))

        # the delivered one: its body comes back from the stream
        r = self.admin("POST", "/v1/deliveries/%s/replay" % done)
        self.assertEqual(r.status, 201, r)
        again = r.json["delivery"]
        self.assertNotIn("event", self.wait_delivered(again, 10))
        self.assertEqual(rcv.snapshot()[-1].body, self.stream_event_bytes(eid_ok))
        self.assertEqual(self.hash(done).get("replayed_as"), again)
        self.assertTTL(PREFIX + "delivery:" + done, RETENTION - 15, RETENTION)
        # `deliveries show` copes with a hash without a body
        r = self.admin("GET", "/v1/deliveries/" + done)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["state"], "delivered")
        self.assertNotIn("event", r.json)

        # once the stream lost the event too, a replay says so
        sid = self.r.cmd("GET", PREFIX + "dedup:" + eid_ok)
        self.assertEqual(int(self.r.cmd("XDEL", STREAM, sid)), 1)
        r = self.admin("POST", "/v1/deliveries/%s/replay" % again)
        self.assertEqual(r.status, 409, r)
        self.assertIn("no longer kept", r.json["error"])

    def test_03_replayed_hash_without_ttl_gets_one(self):
        """A hash an older version replayed (no TTL) gets one when replayed again."""
        rcv = self.receiver(script=["fail"], default="ok")
        self.start([("orders", {"url": rcv.url("/o"), "secret": td.SECRET_A,
                                "timeout_ms": 1000, "schedule": "0"})])
        self.order_callback("T-OLD-REPLAY", "OLD-REPLAY")
        old = list(self.wait_states("orders", 1, "dead", 10))[0]
        # as an older payrelay left it: replayed, body kept, no TTL
        self.r.cmd("ZREM", PREFIX + "wh:orders:dead", old)
        self.r.cmd("HSET", PREFIX + "delivery:" + old, "state", "replayed")
        self.assertEqual(self.ttl(PREFIX + "delivery:" + old), -1)
        r = self.admin("POST", "/v1/deliveries/%s/replay" % old)
        self.assertEqual(r.status, 201, r)
        self.wait_delivered(r.json["delivery"], 10)
        self.assertTTL(PREFIX + "delivery:" + old, RETENTION - 15, RETENTION)

    def test_04_purge_dead_before(self):
        """purge removes exactly the dead deliveries that died before T, and
        every index entry naming them."""
        ok = self.receiver()
        bad = self.receiver(default="fail")
        self.start([("orders", {"url": ok.url("/o"), "secret": td.SECRET_A,
                                "timeout_ms": 1000, "schedule": "0"}),
                    ("audit", {"url": bad.url("/a"), "secret": td.SECRET_B,
                               "timeout_ms": 1000, "schedule": "0"})])
        first = self.callbacks(5, "PG-A")
        early = self.wait_states("audit", 5, "dead", 10)
        time.sleep(0.05)
        t = td.now_ms()
        time.sleep(0.05)
        later_eids = self.callbacks(4, "PG-B")
        dead = self.wait_states("audit", 9, "dead", 10)
        late = {k: v for k, v in dead.items() if k not in early}
        self.wait_states("orders", 9, "delivered", 10)
        self.assertTrue(all(int(v["dead_ms"]) < t for v in early.values()))
        self.assertTrue(all(int(v["dead_ms"]) > t for v in late.values()))
        # dead members the index still names, beyond one batch (500), of a
        # webhook no longer configured, each with its event's delivery set
        gone = self.r.cmd("EVAL", """
            for i = 1, 1203 do
              local id = string.format('dlv_%032d', i)
              redis.call('HSET', KEYS[1] .. 'delivery:' .. id, 'id', id, 'event_id', 'evt_x' .. i,
                'webhook', 'old', 'state', 'dead', 'dead_ms', 1000 + i, 'event', '{}')
              redis.call('ZADD', KEYS[1] .. 'wh:old:dead', 1000 + i, id)
              redis.call('SADD', KEYS[1] .. 'evd:evt_x' .. i, id, 'dlv_other')
            end
            return 1203""", 1, PREFIX)
        self.assertEqual(gone, 1203)

        # bad requests
        for body in ({}, {"state": "dead"}, {"state": "delivered", "before_ms": t},
                     {"state": "dead", "before_ms": "yesterday"},
                     {"state": "dead", "before_ms": t, "webhook": "no such/name"}):
            r = self.admin("POST", "/v1/deliveries/purge", body)
            self.assertEqual(r.status, 400, (body, r))
        self.assertEqual(self.admin("GET", "/v1/deliveries/purge").status, 405)
        rc, _out, err = self.ctl("deliveries", "purge", "--before", str(t))
        self.assertEqual(rc, 2, err)
        rc, _out, err = self.ctl("deliveries", "purge", "--dead")
        self.assertEqual(rc, 2, err)
        rc, _out, err = self.ctl("deliveries", "purge", "--dead", "--before", "1700000000")
        self.assertEqual(rc, 2, err)
        self.assertEqual(len(self.deliveries("audit")), 9, "nothing was purged by a bad request")

        # every configured webhook: the early dead ones of audit only
        rc, out, err = self.ctl("deliveries", "purge", "--dead", "--before", str(t))
        self.assertEqual(rc, 0, err)
        self.assertIn("purged 5 dead deliveries", out)
        left = self.deliveries("audit")
        self.assertEqual(sorted(left), sorted(late))
        members = [m.decode() for m in self.r.cmd("ZRANGE", PREFIX + "wh:audit:dead", 0, -1)]
        self.assertEqual(sorted(members), sorted(late))
        for eid in first:
            self.assertEqual(len(self.evd(eid)), 1,
                             "the event's delivery list still names a purged delivery")
            self.assertTTL(PREFIX + "evd:" + eid, DEDUP_TTL - 60, DEDUP_TTL)
        for eid in later_eids:
            self.assertEqual(len(self.evd(eid)), 2)
        self.assertEqual(len(self.deliveries("orders")), 9, "delivered ones are not purged")
        self.assertEqual(int(self.r.cmd("ZCARD", PREFIX + "wh:old:dead")), 1203,
                         "a webhook no longer configured is purged only when named")

        # one webhook by name, across batches, up to T exactly (not including)
        r = self.admin("POST", "/v1/deliveries/purge",
                       {"state": "dead", "before_ms": 1000 + 1201, "webhook": "old"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"purged": 1200, "webhooks": {"old": 1200}})
        self.assertEqual(self.r.cmd("ZRANGE", PREFIX + "wh:old:dead", 0, -1),
                         [b"dlv_%032d" % 1201, b"dlv_%032d" % 1202, b"dlv_%032d" % 1203])
        self.assertEqual(self.r.cmd("SMEMBERS", PREFIX + "evd:evt_x1"), [b"dlv_other"])
        self.assertEqual(int(self.r.cmd("EXISTS", PREFIX + "delivery:dlv_%032d" % 1200)), 0)
        self.assertEqual(int(self.r.cmd("EXISTS", PREFIX + "delivery:dlv_%032d" % 1201)), 1)
        # nothing left before T: 0
        rc, out, err = self.ctl("--json", "deliveries", "purge", "--dead", "--before", str(t),
                                "--webhook", "audit")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"purged": 0, "webhooks": {"audit": 0}})
        self.wait_log_record("dead deliveries purged", 2.0, deliveries=1200)


class StreamTrimTest(RetentionCase):
    """The event JSON is stored once, in the stream; trimming the stream
    ([stream] maxlen) copies it into every pending or dead delivery of the
    entries that go, so that nothing is lost (docs/redis.md)."""

    MAXLEN = 1000  # the smallest allowed

    def test_06_trim_copies_bodies_of_pending_and_dead(self):
        n = 5
        rcv = self.receiver()
        bad = self.receiver(default="fail")
        # "later" is attempted an hour out: pending and bodyless until then
        self.write_config([("later", {"url": rcv.url("/l"), "secret": td.SECRET_A,
                                      "timeout_ms": 1000, "schedule": "3600"}),
                           ("audit", {"url": bad.url("/a"), "secret": td.SECRET_B,
                                      "timeout_ms": 1000, "schedule": "0"})])
        with open(self.config, encoding="utf-8") as f:
            text = f.read()
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text.replace("[stream]\n", "[stream]\nmaxlen = %d\n" % self.MAXLEN, 1))
        self.start_daemon()
        eids = self.callbacks(n, "TRIM")
        dead = self.wait_states("audit", n, "dead", 15)
        pending = self.wait_states("later", n, "pending", 5)
        bodies = {eid: self.stream_event_bytes(eid).decode() for eid in eids}
        for rec in list(dead.values()) + list(pending.values()):
            self.assertNotIn("event", rec)
        # Fill the stream to one batch short of a trim, then one callback
        # more: the record step trims the oldest entries, ours among them.
        fill = self.MAXLEN + 100 - n - 1
        self.r.cmd("EVAL", "for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', "
                   "'id', 'evt_filler', 'event', '{}') end", 1, STREAM, fill)
        self.order_callback("T-TRIM-LAST", "TRIM-LAST")
        self.assertEqual(int(self.r.cmd("XLEN", STREAM)), self.MAXLEN)
        for eid in eids:
            sid = self.r.cmd("GET", PREFIX + "dedup:" + eid).decode()
            self.assertEqual(self.r.cmd("XRANGE", STREAM, sid, sid), [], "%s not trimmed" % eid)
        held = [m.decode() for m in self.r.cmd("ZRANGE", PREFIX + "held", 0, -1)]
        for did, rec in list(dead.items()) + list(pending.items()):
            now = self.r.hgetall(PREFIX + "delivery:" + did)
            self.assertEqual(now.get("event"), bodies[rec["event_id"]],
                             "%s %s lost its body with the stream entry" % (rec["state"], did))
            self.assertFalse([m for m in held if m.endswith(" " + did)], did)
        # the pending ones, due now, go out with the copied body
        for did in pending:
            self.r.cmd("ZADD", PREFIX + "wh:later:due", 0, did)
        self.wait_states("later", n, "delivered", 15)
        got = sorted(r.body.decode() for r in rcv.requests)
        self.assertEqual(got, sorted(bodies.values()))
        # a dead one is replayed from its copy
        did = next(iter(dead))
        r = self.admin("POST", "/v1/deliveries/%s/replay" % did)
        self.assertEqual(r.status, 201, r)
        new = self.r.hgetall(PREFIX + "delivery:" + r.json["delivery"])
        self.assertEqual(new.get("event"), bodies[dead[did]["event_id"]])


    def test_07_a_long_stream_is_trimmed_1000_entries_per_record(self):
        """A maxlen lowered under a long stream: each record step trims at
        most 1,000 entries (no script holds Redis for long), until the
        stream is within a batch (100) of maxlen."""
        self.write_config([])
        with open(self.config, encoding="utf-8") as f:
            text = f.read()
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text.replace("[stream]\n", "[stream]\nmaxlen = %d\n" % self.MAXLEN, 1))
        self.start_daemon()
        self.r.cmd("EVAL", "for i = 1, 3000 do redis.call('XADD', KEYS[1], '*', "
                   "'id', 'evt_filler', 'event', '{}') end", 1, STREAM)
        lens = []
        for i in range(3):
            self.order_callback("T-LONG-%d" % i, "LONG-%d" % i)
            lens.append(int(self.r.cmd("XLEN", STREAM)))
        self.assertEqual(lens, [2001, 1002, 1003])

    def test_08_a_long_stream_trimmed_within_one_record_call(self):
        """The same three records read in one loop turn, so recorded by one
        call of the record script: the script reads the stream's length once
        and counts it on through the call's XADDs and trims, so each step
        trims exactly as when alone."""
        self.write_config([])
        with open(self.config, encoding="utf-8") as f:
            text = f.read()
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text.replace("[stream]\n", "[stream]\nmaxlen = %d\n" % self.MAXLEN, 1))
        d = self.start_daemon()
        self.r.cmd("EVAL", "for i = 1, 3000 do redis.call('XADD', KEYS[1], '*', "
                   "'id', 'evt_filler', 'event', '{}') end", 1, STREAM)
        paths = []
        for i in range(3):
            p = {k: v for k, v in td.EPAY[0]["params"].items() if k != "sign"}
            p.update(trade_no="T-ONE-%d" % i, out_trade_no="ONE-%d" % i,
                     trade_status="TRADE_SUCCESS")
            p["sign"] = h.epay_md5_sign(p, td.EPAY[0]["key"])
            paths.append("/notify/shop-epay?" + h.form_encode(p))
        calls = self.r.cmd("INFO", "commandstats")
        res = h.burst_while_stopped(d.proc, self.port, paths)
        self.assertEqual(res, [(200, b"success")] * 3)
        after = self.r.cmd("INFO", "commandstats")

        def n(text, cmd):
            m = re.search(rb"cmdstat_%s:calls=(\d+)" % cmd, text)
            return int(m.group(1)) if m else 0

        self.assertEqual(n(after, b"evalsha") - n(calls, b"evalsha"), 1,
                         "the three steps did not go in one call")
        self.assertEqual(n(after, b"xlen") - n(calls, b"xlen"), 1, "XLEN per call")
        self.assertEqual(int(self.r.cmd("XLEN", STREAM)), 1003)


class SizingTest(RetentionCase):
    """docs/redis.md's bytes per event, measured again (Redis 7.0)."""

    N = 1000

    def test_05_bytes_per_event(self):
        rcv = self.receiver()
        self.start([("orders", {"url": rcv.url("/o"), "secret": td.SECRET_A,
                                "timeout_ms": 2000, "schedule": "0 1 1"})])
        self.order_callback("T-WARM-UP", "WARM-UP")  # scripts, client buffers, first stream node
        self.wait_states("orders", 1, "delivered", 10)
        self.r.cmd("MEMORY", "PURGE")
        base = self.used_memory()
        eids = self.callbacks(self.N, "SZ")
        got = self.wait_states("orders", self.N + 1, "delivered", 60)
        self.r.cmd("MEMORY", "PURGE")
        per_event = (self.used_memory() - base) / self.N

        def usage(key):
            return int(self.r.cmd("MEMORY", "USAGE", key, "SAMPLES", "0"))

        dids = [d for d, v in got.items() if v["event_id"] in eids[:50]]
        kinds = {
            "stream entry": usage(STREAM) / (self.N + 1),
            "dedup key": sum(usage(PREFIX + "dedup:" + e) for e in eids[:50]) / 50,
            "paid key": sum(usage(PREFIX + "paid:shop-epay:SZ-%04d" % i)
                            for i in range(50)) / 50,
            "order index": sum(usage(PREFIX + "oix:shop-epay:SZ-%04d" % i)
                               for i in range(50)) / 50,
            "delivery list": sum(usage(PREFIX + "evd:" + e) for e in eids[:50]) / 50,
            "delivered delivery": sum(usage(PREFIX + "delivery:" + d) for d in dids) / len(dids),
            "held member": usage(PREFIX + "held") / (self.N + 1),
        }
        report = ", ".join("%s %.0f" % kv for kv in kinds.items())
        report += "; event JSON %d bytes" % len(self.stream_event_bytes(eids[0]))
        sys.stderr.write("\nmeasured: per event %.0f B (INFO used_memory delta / %d); %s\n"
                         % (per_event, self.N, report))
        want = documented("one event, one webhook, delivered")
        self.assertTrue(0.8 * want <= per_event <= 1.2 * want,
                        "%.0f bytes per event, docs/redis.md says %d; %s"
                        % (per_event, want, report))
        for label, value in kinds.items():
            doc = documented(label)
            self.assertTrue(0.8 * doc <= value <= 1.2 * doc,
                            "%s: %.0f bytes, docs/redis.md says %d" % (label, value, doc))

    def used_memory(self):
        info = self.r.cmd("INFO", "memory")
        if isinstance(info, bytes):
            info = info.decode()
        return int(re.search(r"^used_memory:(\d+)", info, re.M).group(1))


if __name__ == "__main__":
    if not CTL or not os.access(CTL, os.X_OK):
        sys.exit("payrelayctl not found: set PAYRELAYCTL")
    unittest.main(verbosity=2)
