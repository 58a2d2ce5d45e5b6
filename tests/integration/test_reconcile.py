#!/usr/bin/env python3
"""Integration tests of reconciliation in payrelayd (SPEC sections 2.x
"Polling", 3, 4, 6, 7, 8): order registration on the admin API, polling of
the three gateway families against a fake gateway (fakegw.py), the epay
sweep, the per-channel poll rate, expiry, gateway failures, and several
instances sharing the work.

Every test runs its own redis-server, payrelayd(s) and fake gateways on free
loopback ports, with short settings (poll_after = 1, poll_gaps = 1 1 1,
poll_timeout_ms = 500, shutdown_timeout = 3), and then watches the gateway's
record of queries, the admin API, the daemon's log and Redis.

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
        python3 tests/integration/test_reconcile.py [-k PATTERN]

Exits 0 when every test passes, 1 otherwise (also when no redis-server is
installed: that is a broken setup, not a pass).
"""

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
import fakegw  # noqa: E402

BINARY = h.locate_binary()
PREFIX = "payrelay:"
STREAM = "payrelay:events"
FORM = "application/x-www-form-urlencoded"

EPAY = h.load_vectors("epay.json")["vectors"]
GATE = h.load_vectors("gatepay.json")["vectors"]
PIDX = h.load_vectors("payindex.json")["vectors"]

# merchant credentials per family: (merchant_id, key)
CREDS = {
    "epay": ("1001", EPAY[0]["key"]),
    "gatepay": (GATE[0]["appkey"], GATE[0]["appsecret"]),
    "payindex": ("10002", PIDX[0]["key"]),
}
CHANNEL = {"epay": "shop-epay", "gatepay": "shop-gatepay", "payindex": "shop-payindex"}
SECRETS = [EPAY[0]["key"], GATE[0]["appsecret"], PIDX[0]["key"], h.ADMIN_TOKEN]
WEBHOOK_SECRET = "whsec_cmVjb25jaWxlLXRlc3Qtd2ViaG9vay1rZXktMDE="
SHORT = {"poll_after": "1", "poll_gaps": "1 1 1", "poll_timeout_ms": "500"}


def now_ms():
    return int(time.time() * 1000)


def fen(amount):
    """Integer fen of a decimal string (the tests' own, exact)."""
    whole, _, frac = amount.partition(".")
    frac = (frac + "00")
    assert frac[2:].strip("0") == "", amount
    return int(whole) * 100 + int(frac[:2])


class ReconcileCase(unittest.TestCase):
    """One fresh redis-server per test; daemons and gateways on demand."""

    def setUp(self):
        if not BINARY or not os.access(BINARY, os.X_OK):
            raise RuntimeError("payrelayd not found: set PAYRELAYD (got %r)" % BINARY)
        self.dir = h.new_workdir("payrelay-rc-")
        self.daemons = []
        self.gateways = {}
        self.secrets = list(SECRETS) + [WEBHOOK_SECRET, WEBHOOK_SECRET[len("whsec_"):]]
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

    def gateway(self, family, **kw):
        mid, key = CREDS[family]
        gw = fakegw.FakeGateway(family, mid, key, **kw)
        self.addCleanup(gw.stop)
        return gw

    def write_config(self, channels, webhooks=(), shutdown_timeout=3, path=None,
                     port=None, admin_port=None):
        """`channels`: [(name, family, gateway or None, {key: value})]; the
        short poll settings unless overridden (a value None leaves the key
        out). `webhooks`: [(name, {k: v})]."""
        text = h.config_head(port or self.port, admin_port or self.admin_port, self.redis.port,
                             shutdown_timeout=shutdown_timeout, stream=STREAM,
                             writer="tests/integration/test_reconcile.py")
        for name, family, gw, extra in channels:
            mid, key = CREDS[family]
            keys = [("family", family), ("merchant_id", mid), ("key", key)]
            if gw is not None:
                keys.append(("api_base", gw.api_base))
            opts = dict(SHORT)
            if family == "gatepay":
                # callbacks here are about polling; test_confirm.py
                # tests confirmation by query (SPEC 2.5)
                opts["confirm"] = "off"
            opts.update(extra or {})
            keys.extend((k, v) for k, v in opts.items() if v is not None)  # None: left out
            text += "\n[channel:%s]\n" % name
            text += "".join("%s = %s\n" % kv for kv in keys)
        for name, keys in webhooks:
            text += "\n[webhook:%s]\n" % name
            text += "".join("%s = %s\n" % kv for kv in keys.items())
        with open(path or self.config, "w", encoding="utf-8") as f:
            f.write(text)
        return path or self.config

    def start_daemon(self, config=None, port=None, admin_port=None):
        """Starts a payrelayd on `config` (default: self.config) and waits
        for it to be ready and its admin API to answer."""
        d = h.Daemon(BINARY, self.dir, config or self.config, port or self.port,
                     name="payrelayd-%d" % len(self.daemons))
        d.admin_port = admin_port or self.admin_port
        self.daemons.append(d)
        self.addCleanup(d.stop, signal.SIGKILL, 5)
        # Runs first (cleanups are LIFO): a clean exit with no sanitizer report.
        self.addCleanup(d.stop_clean)
        d.start(wait_ready=True)
        deadline = time.monotonic() + 5
        while not h.port_open(d.admin_port, 0.2):
            if time.monotonic() > deadline:
                self.fail("admin API not listening on %d\n%s" % (d.admin_port, self.log_tail()))
            time.sleep(0.05)
        return d

    def simple(self, families=("epay",), extra=None, webhooks=()):
        """Gateways for `families`, one channel each, one daemon. Returns
        {family: gateway}."""
        gws = {}
        chans = []
        for fam in families:
            gws[fam] = self.gateway(fam)
            chans.append((CHANNEL[fam], fam, gws[fam], dict(extra or {})))
        self.write_config(chans, webhooks)
        self.start_daemon()
        return gws

    def check_logs_for_secrets(self):
        for d in self.daemons:
            text = d.log_text()
            for s in self.secrets:
                self.assertNotIn(s, text, "a configured secret appears in %s" % d.log)

    # --- the admin API ------------------------------------------------------

    def admin(self, method, path, body=None, token=h.ADMIN_TOKEN, daemon=None, headers=None):
        """One admin request; returns the Reply with `.json` (None if the
        body is no JSON)."""
        port = daemon.admin_port if daemon is not None else self.admin_port
        hd = dict(headers or {})
        if token is not None:
            hd["Authorization"] = "Bearer " + token
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if body is not None:
            hd.setdefault("Content-Type", "application/json")
        reply = h.http(port, method, path, body=body, headers=hd)
        try:
            reply.json = json.loads(reply.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            reply.json = None
        return reply

    def register(self, channel, otn, amount, expires_in=None, status=201, daemon=None):
        body = {"channel": channel, "out_trade_no": otn, "amount": amount}
        if expires_in is not None:
            body["expires_in"] = expires_in
        reply = self.admin("POST", "/v1/orders", body, daemon=daemon)
        self.assertEqual(reply.status, status, self.ctx(reply, "POST /v1/orders %r" % body))
        return reply.json

    def order(self, channel, otn, daemon=None):
        reply = self.admin("GET", "/v1/orders/%s/%s" % (channel, otn), daemon=daemon)
        self.assertEqual(reply.status, 200, self.ctx(reply, "GET order %s/%s" % (channel, otn)))
        return reply.json

    def poll_now(self, channel, otn, daemon=None):
        return self.admin("POST", "/v1/orders/%s/%s/poll" % (channel, otn), daemon=daemon)

    def wait_order(self, channel, otn, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            o = self.order(channel, otn)
            if pred(o):
                return o
            if time.monotonic() > deadline:
                self.fail("order %s/%s: no %s within %.1f s; order: %r\n%s"
                          % (channel, otn, what, timeout, o, self.log_tail()))
            time.sleep(0.1)

    def order_hash(self, channel, otn):
        return self.r.hgetall(PREFIX + "order:%s:%s" % (channel, otn))

    def due_score(self, channel, otn):
        s = self.r.cmd("ZSCORE", PREFIX + "ch:%s:orders:due" % channel, otn)
        return None if s is None else float(s)

    # --- callbacks (signed as the platforms sign them) ----------------------

    def epay_callback(self, channel, otn, trade_no, money, status="TRADE_SUCCESS", port=None):
        p = {"pid": CREDS["epay"][0], "trade_no": trade_no, "out_trade_no": otn,
             "type": "alipay", "name": "VIP会员", "money": money, "trade_status": status}
        p["sign"] = h.epay_md5_sign(p, CREDS["epay"][1])
        p["sign_type"] = "MD5"
        return h.http(port or self.port, "GET", "/notify/%s?%s" % (channel, h.form_encode(p)))

    def gatepay_callback(self, channel, otn, order_id, price, realprice=None, port=None):
        p = {"order_id": order_id, "out_order_id": otn, "price": price,
             "realprice": realprice or price, "type": "alipay", "paytime": str(int(time.time())),
             "extend": "uid=7"}
        p["sign"] = h.gatepay_sign(p, *CREDS["gatepay"])
        return h.http(port or self.port, "POST", "/notify/" + channel, body=h.form_encode(p),
                      headers={"Content-Type": FORM})

    def payindex_callback(self, channel, otn, transaction_id, amount, true_amount=None,
                          port=None):
        p = {"memberid": CREDS["payindex"][0], "orderid": otn, "amount": amount,
             "true_amount": true_amount or amount, "transaction_id": transaction_id,
             "datetime": time.strftime("%Y%m%d%H%M%S"), "returncode": "00", "attach": "uid=9"}
        p["sign"] = h.payindex_sign(p, CREDS["payindex"][1])
        return h.http(port or self.port, "POST", "/notify/" + channel, body=h.form_encode(p),
                      headers={"Content-Type": FORM})

    def callback(self, family, otn, trade_id, amount, true_amount=None, port=None):
        ch = CHANNEL[family]
        if family == "epay":
            return self.epay_callback(ch, otn, trade_id, amount, port=port)
        if family == "gatepay":
            return self.gatepay_callback(ch, otn, trade_id, amount, true_amount, port=port)
        return self.payindex_callback(ch, otn, trade_id, amount, true_amount, port=port)

    def assertAck(self, reply, family):
        body = b"OK" if family == "payindex" else b"success"
        self.assertEqual((reply.status, reply.body), (200, body), self.ctx(reply, "callback"))

    # --- the stream ---------------------------------------------------------

    def events(self):
        """[(entry id, stream fields, parsed event)] of the stream."""
        return [(eid, f, json.loads(f["event"])) for eid, f in self.r.xrange(STREAM)]

    def wait_events(self, n, timeout, what="events"):
        deadline = time.monotonic() + timeout
        while True:
            evs = self.events()
            if len(evs) >= n:
                return evs
            if time.monotonic() > deadline:
                self.fail("%d stream entries, want %d (%s) within %.1f s: %r\n%s"
                          % (len(evs), n, what, timeout, [e[2].get("id") for e in evs],
                             self.log_tail()))
            time.sleep(0.05)

    def assertPollEvent(self, entry, eid, channel, family, trade_id, otn, amount_fen,
                        paid_fen=None, etype="order.paid"):
        _sid, fields, ev = entry
        where = "event %r" % ev
        self.assertEqual(fields.get("id"), eid, where)
        self.assertEqual(fields.get("type"), etype, where)
        self.assertEqual(fields.get("channel"), channel, where)
        self.assertEqual(fields.get("out_trade_no"), otn, where)
        want = {"id": eid, "type": etype, "channel": channel, "family": family,
                "merchant_id": CREDS[family][0], "trade_no": trade_id, "out_trade_no": otn,
                "status": "paid", "amount_fen": amount_fen,
                "paid_amount_fen": amount_fen if paid_fen is None else paid_fen,
                "currency": "CNY", "source": "poll"}
        for k, v in want.items():
            self.assertEqual(ev.get(k), v, "field %r of %s" % (k, where))
        for k in ("amount_fen", "paid_amount_fen"):
            self.assertIs(type(ev.get(k)), int, "%s must be a JSON integer: %s" % (k, where))
        self.assertEqual(fen(ev.get("amount", "x")), amount_fen, where)
        if etype == "order.amount_mismatch":
            self.assertIs(ev.get("amount_mismatch"), True, where)
        else:
            self.assertIn(ev.get("amount_mismatch", False), (False,), where)
        ra = ev.get("received_at", "")
        self.assertRegex(ra, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        return ev

    # --- the log ------------------------------------------------------------

    def log_tail(self, n=25):
        out = []
        for d in self.daemons:
            out.append("--- %s (tail) ---\n%s" % (os.path.basename(d.log), d.log_tail(n)))
        return "\n".join(out)

    def ctx(self, reply, what=""):
        return "%s: %r\n%s" % (what, reply, self.log_tail(15))

    def polled_lines(self, daemon=None, **want):
        ds = [daemon] if daemon else self.daemons
        return [rec for d in ds for rec in h.log_records(d.log_text(), "order polled")
                if all(rec.get(k) == str(v) for k, v in want.items())]

    def gw_ctx(self, gw, otn=None):
        return "gateway %s queries%s: %r\n%s" % (
            gw.family, "" if otn is None else " for " + otn,
            gw.queries(otn, kind=None)[-20:], self.log_tail())


# ==========================================================================


class FakeGatewaySelfTest(unittest.TestCase):
    """The fake gateway answers each family's query as the spec shows it,
    checks credentials, and does what its script says."""

    def gw(self, family, **kw):
        mid, key = CREDS[family]
        g = fakegw.FakeGateway(family, mid, key, **kw)
        self.addCleanup(g.stop)
        return g

    def test_epay(self):
        g = self.gw("epay")
        g.add_order("E1", amount="1.00", trade_id="T1", state="paid", param="uid=1")
        g.add_order("E2", amount="2", trade_id="T2")
        st, body = fakegw.query(g, "E1")
        d = json.loads(body)
        self.assertEqual(st, 200)
        self.assertEqual((d["code"], d["status"], d["trade_no"], d["money"], d["out_trade_no"],
                          d["pid"], d["name"], d["type"], d["param"]),
                         (1, 1, "T1", "1.00", "E1", "1001", "VIP会员", "alipay", "uid=1"))
        self.assertEqual(json.loads(fakegw.query(g, "E2")[1])["status"], 0)
        self.assertEqual(json.loads(fakegw.query(g, "nope")[1]), {"code": -1, "msg": "订单号不存在"})
        self.assertEqual(json.loads(fakegw.query(g, "E1", key="wrong")[1])["code"], -2)
        self.assertEqual(json.loads(fakegw.query(g, "E1", merchant_id="1002")[1])["code"], -2)
        g.set_state("E2", "refunded")
        self.assertEqual(json.loads(fakegw.query(g, "E2")[1])["status"], 2)
        qs = g.queries()
        self.assertEqual([q.out_trade_no for q in qs], ["E1", "E2", "nope", "E1", "E1", "E2"])
        self.assertEqual([q.auth_ok for q in qs], [True, True, True, False, False, True])
        self.assertEqual(qs[0].params["act"], "order")
        self.assertEqual(qs[0].params["key"], CREDS["epay"][1])
        # sweep pages: page wins over offset, offset alone works too
        for i in range(55):
            g.add_order("L%02d" % i, amount="1.00", state="paid" if i == 52 else "unpaid")
        st, body = fakegw.sweep_page(g, 1)
        d = json.loads(body)
        self.assertEqual((st, d["code"], len(d["data"])), (200, 1, 50))
        self.assertEqual(d["data"][0]["out_trade_no"], "L54")  # newest first
        d2 = json.loads(fakegw.sweep_page(g, 2)[1])
        self.assertEqual(len(d2["data"]), 7)
        self.assertEqual([o["out_trade_no"] for o in d2["data"]][-2:], ["E2", "E1"])
        path = "/api.php?" + h.form_encode([("act", "orders"), ("pid", "1001"),
                                           ("key", CREDS["epay"][1]), ("limit", "50"),
                                           ("offset", "50")])
        self.assertEqual(json.loads(h.http(g.port, "GET", path).body)["data"], d2["data"])
        g.listing = ["L03", "E1"]
        d3 = json.loads(fakegw.sweep_page(g, 1)[1])
        self.assertEqual([(o["out_trade_no"], o["status"]) for o in d3["data"]],
                         [("L03", 0), ("E1", 1)])
        self.assertEqual(g.count(kind="orders"), 4)

    def test_gatepay(self):
        g = self.gw("gatepay")
        g.add_order("G1", amount="1.88", trade_id="522", state="paid", name="商品")
        st, body = fakegw.query(g, "G1")
        self.assertEqual(json.loads(body), {"code": 100, "data": {
            "order_id": "522", "order_name": "商品", "order_price": "1.88",
            "order_type": "alipay", "order_status": "paid"}})
        g.set_state("G1", "unpaid")
        self.assertEqual(json.loads(fakegw.query(g, "G1")[1])["data"]["order_status"], "unpaid")
        self.assertEqual(json.loads(fakegw.query(g, "G1", tamper=True)[1]),
                         {"code": 101, "msg": "sign error"})
        self.assertNotEqual(json.loads(fakegw.query(g, "G2")[1])["code"], 100)
        sign = fakegw.gatepay_query_sign(GATE[0]["appkey"], "G1", GATE[0]["appsecret"])
        self.assertEqual(sign, h.md5hex(h.md5hex(GATE[0]["appkey"] + "G1") + GATE[0]["appsecret"]))

    def test_payindex(self):
        g = self.gw("payindex")
        key = CREDS["payindex"][1]
        g.add_order("P1", amount="100.00", true_amount="99.50", trade_id="TX1", state="paid",
                    endtime="2021-09-28 11:50:12")
        d = json.loads(fakegw.query(g, "P1")[1])
        self.assertEqual((d["memberid"], d["orderid"], d["amount"], d["true_amount"],
                          d["transaction_id"], d["returncode"], d["trade_state"], d["time_end"]),
                         ("10002", "P1", "100.00", "99.50", "TX1", "00", "SUCCESS",
                          "2021-09-28 11:50:12"))
        self.assertEqual(d["sign"], h.payindex_sign(d, key))
        self.assertRegex(d["sign"], r"^[0-9A-F]{32}$")
        g.script("P1", ["badsign", "unpaid"])
        d = json.loads(fakegw.query(g, "P1")[1])
        self.assertEqual(d["trade_state"], "SUCCESS")
        self.assertNotEqual(d["sign"], h.payindex_sign(d, key))
        d = json.loads(fakegw.query(g, "P1")[1])
        self.assertEqual((d["trade_state"], d["sign"]), ("NOTPAY", h.payindex_sign(d, key)))
        self.assertEqual(json.loads(fakegw.query(g, "P1", tamper=True)[1])["status"], "error")
        self.assertEqual(json.loads(fakegw.query(g, "P9")[1])["status"], "error")
        # the request's signature: UPPERCASE md5 of pay_memberid=..&pay_orderid=..&key=KEY
        self.assertEqual(fakegw.payindex_query_sign("10002", "P1", key),
                         h.md5hex("pay_memberid=10002&pay_orderid=P1&key=" + key).upper())
        # GET is not how this platform is queried
        path = "/Pay_Trade_query.html?" + h.form_encode([
            ("pay_memberid", "10002"), ("pay_orderid", "P1"),
            ("pay_md5sign", fakegw.payindex_query_sign("10002", "P1", key))])
        self.assertEqual(json.loads(h.http(g.port, "GET", path).body)["status"], "error")

    def test_actions(self):
        g = self.gw("epay", hang_s=0.8)
        g.add_order("A", amount="1.00", trade_id="TA", state="paid")
        g.script("A", ["unpaid", "garbage", "http500", "error", "weird", "notfound",
                       "slow:0.3", "hang"])
        self.assertEqual(json.loads(fakegw.query(g, "A")[1])["status"], 0)
        st, body = fakegw.query(g, "A")
        self.assertEqual(st, 200)
        self.assertRaises(ValueError, json.loads, body.decode())
        self.assertEqual(fakegw.query(g, "A")[0], 500)
        self.assertEqual(json.loads(fakegw.query(g, "A")[1])["code"], -5)
        self.assertEqual(json.loads(fakegw.query(g, "A")[1]), ["unexpected", 1])
        self.assertEqual(json.loads(fakegw.query(g, "A")[1])["code"], -1)
        t0 = time.monotonic()
        self.assertEqual(json.loads(fakegw.query(g, "A")[1])["status"], 1)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        # a client that gives up on a hanging query is seen going away
        with self.assertRaises(OSError):
            fakegw.query(g, "A", timeout=0.3)
        qs = g.wait_for(lambda rs: rs[-1].outcome == "client-gone", 2.0)
        self.assertIsNotNone(qs, g.queries())
        self.assertEqual([q.action for q in g.queries()],
                         ["unpaid", "garbage", "http500", "error", "weird", "notfound",
                          "slow:0.3", "hang"])
        # script used up: the truth again; a gateway-wide default wins over it
        self.assertEqual(json.loads(fakegw.query(g, "A")[1])["status"], 1)
        g.set_default("http500")
        self.assertEqual(fakegw.query(g, "A")[0], 500)
        g.set_default(None)
        self.assertEqual(fakegw.query(g, "A")[0], 200)

    def test_concurrent_and_window(self):
        g = self.gw("gatepay", hang_s=0.5)
        g.set_default("hang")
        for i in range(4):
            g.add_order("C%d" % i)
        ts = [threading.Thread(target=fakegw.query, args=(g, "C%d" % i)) for i in range(4)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join(5)
        self.assertLess(time.monotonic() - t0, 1.5, "the gateway must answer in parallel")
        self.assertEqual(g.max_active, 4)
        self.assertEqual(g.max_in_window(1.0)[0], 4)
        self.assertEqual(g.max_in_window(1.0, "C1")[0], 1)


# ==========================================================================


class AdminApiTest(ReconcileCase):

    def test_01_admin_basics(self):
        gws = self.simple(("epay",), extra={"poll_after": "60"})
        ch = CHANNEL["epay"]

        r = self.admin("GET", "/healthz", token=None)
        self.assertEqual((r.status, r.json), (200, {"status": "ok"}), self.ctx(r, "healthz"))
        r = self.admin("GET", "/readyz")
        self.assertEqual(r.status, 200, self.ctx(r, "readyz"))

        # every other endpoint needs the token
        calls = [("GET", "/readyz", None),
                 ("POST", "/v1/orders", {"channel": ch, "out_trade_no": "X", "amount": "1.00"}),
                 ("GET", "/v1/orders/%s/X" % ch, None),
                 ("POST", "/v1/orders/%s/X/poll" % ch, None)]
        for method, path, body in calls:
            for label, hd in (("no token", {}),
                              ("wrong token", {"Authorization": "Bearer wrong-" + h.ADMIN_TOKEN}),
                              ("token prefix", {"Authorization": "Bearer " + h.ADMIN_TOKEN[:-1]}),
                              ("other scheme", {"Authorization": "Basic " + h.ADMIN_TOKEN})):
                r = self.admin(method, path, body, token=None, headers=hd)
                self.assertEqual(r.status, 401, self.ctx(r, "%s %s with %s" % (method, path, label)))
                self.assertIsInstance(r.json, dict, self.ctx(r, "401 body is JSON"))
                self.assertIsInstance(r.json.get("error"), str, self.ctx(r, "401 error"))
        self.assertEqual(self.r.keys(PREFIX + "order:*"), [], "nothing registered without a token")

        # register: new, the same again, another amount
        t0 = now_ms()
        o = self.register(ch, "ORD-1", "1.00")
        self.assertEqual((o.get("channel"), o.get("out_trade_no"), o.get("amount"),
                          o.get("amount_fen"), o.get("state")),
                         (ch, "ORD-1", "1.00", 100, "pending"), o)
        self.assertIs(type(o.get("amount_fen")), int, o)
        self.assertIs(type(o.get("expires_at_ms")), int, o)
        self.assertLess(abs(o["expires_at_ms"] - (t0 + 86400 * 1000)), 60000, o)
        stored = int(self.order_hash(ch, "ORD-1").get("expires_ms", "0"))
        self.assertEqual(o["expires_at_ms"], stored,
                         "the 201 answer's expires_at_ms is not what Redis holds (expires_ms)")
        time.sleep(0.01)  # a later request: its own clock must not leak into the answer
        again = self.register(ch, "ORD-1", "1.00", status=200)
        self.assertEqual((again.get("out_trade_no"), again.get("amount_fen"),
                          again.get("state"), again.get("expires_at_ms")),
                         ("ORD-1", 100, "pending", stored), again)
        with self.subTest("the same amount written otherwise is the same amount (fen)"):
            self.register(ch, "ORD-1", "1.0", status=200)
        r = self.admin("POST", "/v1/orders", {"channel": ch, "out_trade_no": "ORD-1",
                                              "amount": "2.00"})
        self.assertEqual(r.status, 409, self.ctx(r, "other amount"))
        self.assertIsInstance((r.json or {}).get("error"), str, self.ctx(r, "409 body"))
        self.assertEqual(self.order(ch, "ORD-1").get("amount_fen"), 100)

        o2 = self.register(ch, "ORD-2", "0.5", expires_in=100)
        self.assertEqual((o2.get("amount_fen"), o2.get("state")), (50, "pending"), o2)
        self.assertLess(abs(o2["expires_at_ms"] - (now_ms() + 100 * 1000)), 5000, o2)

        # bad input
        good = {"channel": ch, "out_trade_no": "BAD", "amount": "1.00"}
        bad = [("not JSON", "{\"channel\": "),
               ("a JSON array", [good]),
               ("no channel", {k: v for k, v in good.items() if k != "channel"}),
               ("no out_trade_no", {k: v for k, v in good.items() if k != "out_trade_no"}),
               ("no amount", {k: v for k, v in good.items() if k != "amount"}),
               ("empty out_trade_no", dict(good, out_trade_no="")),
               ("amount 1.001", dict(good, amount="1.001")),
               ("amount -1", dict(good, amount="-1")),
               ("amount 1e2", dict(good, amount="1e2")),
               ("amount .5", dict(good, amount=".5")),
               ("amount empty", dict(good, amount="")),
               ("amount as a JSON number", dict(good, amount=1.00)),
               ("expires_in 0", dict(good, expires_in=0)),
               ("expires_in a string", dict(good, expires_in="soon"))]
        for label, body in bad:
            r = self.admin("POST", "/v1/orders", body)
            self.assertEqual(r.status, 400, self.ctx(r, "POST /v1/orders with " + label))
            self.assertIsInstance((r.json or {}).get("error"), str, self.ctx(r, label))
        self.assertEqual(self.order_hash(ch, "BAD"), {})

        r = self.admin("POST", "/v1/orders", {"channel": "no-such-channel",
                                              "out_trade_no": "X", "amount": "1.00"})
        self.assertEqual(r.status, 404, self.ctx(r, "unknown channel"))
        self.assertIsInstance((r.json or {}).get("error"), str, self.ctx(r, "404 body"))

        # GET
        got = self.order(ch, "ORD-1")
        self.assertEqual((got.get("channel"), got.get("out_trade_no"), got.get("amount_fen"),
                          got.get("state"), got.get("polls")),
                         (ch, "ORD-1", 100, "pending", 0), got)
        self.assertEqual(fen(got.get("amount", "x")), 100, got)
        for otn in ("NOPE", "ORD-1x"):
            r = self.admin("GET", "/v1/orders/%s/%s" % (ch, otn))
            self.assertEqual(r.status, 404, self.ctx(r, "GET unknown order"))
        r = self.admin("GET", "/v1/orders/no-such-channel/ORD-1")
        self.assertEqual(r.status, 404, self.ctx(r, "GET order of an unknown channel"))

        # in Redis
        hs = self.order_hash(ch, "ORD-1")
        self.assertEqual((hs.get("amount_fen"), hs.get("state")), ("100", "pending"), hs)
        self.assertLess(abs(int(hs["expires_ms"]) - o["expires_at_ms"]), 1000, hs)
        nxt = int(hs["next_poll_ms"])
        self.assertLess(abs(nxt - (t0 + 60000)), 5000, "next poll = registration + poll_after")
        self.assertEqual(self.due_score(ch, "ORD-1"), float(nxt))
        self.assertIsNotNone(self.due_score(ch, "ORD-2"))
        self.assertEqual(gws["epay"].count(kind=None), 0, "nothing is polled before poll_after")

    def test_01b_readyz_follows_redis(self):
        self.simple(("epay",), extra={"poll_after": "60"})
        r = self.admin("GET", "/readyz")
        self.assertEqual(r.status, 200, self.ctx(r, "readyz"))
        self.redis.stop(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:
            r = self.admin("GET", "/readyz")
            if r.status == 503:
                break
            self.assertEqual(r.status, 200, self.ctx(r, "readyz, Redis going"))
            if time.monotonic() > deadline:
                self.fail("readyz still %d 5 s after Redis went away\n%s"
                          % (r.status, self.log_tail()))
            time.sleep(0.1)
        r = self.admin("GET", "/healthz", token=None)
        self.assertEqual(r.status, 200, self.ctx(r, "healthz without Redis"))
        r = self.admin("POST", "/v1/orders", {"channel": CHANNEL["epay"], "out_trade_no": "X",
                                              "amount": "1.00"})
        self.assertEqual(r.status, 503, self.ctx(r, "register without Redis"))
        self.redis.start()
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        deadline = time.monotonic() + 10
        while self.admin("GET", "/readyz").status != 200:
            if time.monotonic() > deadline:
                self.fail("readyz not 200 10 s after Redis came back\n" + self.log_tail())
            time.sleep(0.1)
        self.register(CHANNEL["epay"], "X", "1.00")

    def test_10_poll_now(self):
        gws = self.simple(("gatepay",), extra={"poll_after": "60"})
        gw, ch = gws["gatepay"], CHANNEL["gatepay"]
        gw.add_order("G-NOW", amount="3.00", trade_id="900")
        self.register(ch, "G-NOW", "3.00")
        r = self.poll_now(ch, "G-NOW")
        self.assertEqual(r.status, 200, self.ctx(r, "POST poll"))
        self.assertEqual(r.json.get("result"), "unpaid", self.ctx(r, "POST poll"))
        self.assertIsInstance(r.json.get("detail"), str, r.json)
        self.assertEqual((r.json["order"].get("state"), r.json["order"].get("polls")),
                         ("pending", 1), r.json)
        self.assertEqual(gw.count("G-NOW"), 1, self.gw_ctx(gw))
        o = self.order(ch, "G-NOW")
        self.assertEqual((o.get("polls"), o.get("last_result")), (1, "unpaid"), o)
        self.assertLess(abs(o.get("last_poll_ms", 0) - now_ms()), 5000, o)
        self.assertEqual(self.r.cmd("XLEN", STREAM), 0)

        gw.set_state("G-NOW", "paid")
        r = self.poll_now(ch, "G-NOW")
        self.assertEqual((r.status, (r.json or {}).get("result")), (200, "paid"),
                         self.ctx(r, "POST poll, gateway paid"))
        eid = h.event_id(ch, "900", "paid")
        self.assertEqual((r.json["order"].get("state"), r.json["order"].get("event_id")),
                         ("paid", eid), r.json)
        evs = self.events()
        self.assertEqual(len(evs), 1, evs)
        self.assertPollEvent(evs[0], eid, ch, "gatepay", "900", "G-NOW", 300)

        r = self.poll_now(ch, "G-NOW")
        self.assertEqual(r.status, 409, self.ctx(r, "POST poll on a paid order"))
        self.assertEqual(gw.count("G-NOW"), 2, "a paid order is not queried again")
        r = self.poll_now(ch, "NOPE")
        self.assertEqual(r.status, 404, self.ctx(r, "POST poll on an unknown order"))
        self.assertEqual(len(self.polled_lines(channel=ch, out_trade_no="G-NOW")), 2,
                         self.log_tail())


# ==========================================================================


class PollTest(ReconcileCase):

    ORDERS = {
        # family: (out_trade_no, trade id, amount, true amount)
        "epay": ("E-1001", "2024050122001400001", "1.00", None),
        "gatepay": ("5cc75a6a0b418", "522", "1.88", None),
        "payindex": ("P-20210928", "2021092811475598541", "100.00", "99.50"),
    }

    def test_02_unpaid_then_paid_each_family_then_callback_is_duplicate(self):
        gws = self.simple(("epay", "gatepay", "payindex"))
        t_reg = {}
        for fam, (otn, tid, amount, true_amount) in self.ORDERS.items():
            gws[fam].add_order(otn, amount=amount, trade_id=tid, state="paid",
                               true_amount=true_amount, param="uid=42")
            gws[fam].script(otn, ["unpaid"])
            t_reg[fam] = time.monotonic()
            self.register(CHANNEL[fam], otn, amount)

        evs = self.wait_events(3, 8.0, "one paid poll per family")
        by_channel = {e[1]["channel"]: e for e in evs}
        for fam, (otn, tid, amount, true_amount) in self.ORDERS.items():
            ch, gw = CHANNEL[fam], gws[fam]
            with self.subTest(family=fam):
                qs = gw.queries(otn)
                self.assertGreaterEqual(len(qs), 2, self.gw_ctx(gw, otn))
                self.assertTrue(all(q.auth_ok for q in gw.queries(kind=None)),
                                "wrong credentials in a query: " + self.gw_ctx(gw))
                self.assertEqual((qs[0].action, qs[-1].action), ("unpaid", "state"),
                                 self.gw_ctx(gw, otn))
                self.assertGreater(qs[0].mono - t_reg[fam], 0.7,
                                   "first poll before poll_after: " + self.gw_ctx(gw, otn))
                self.assertLess(qs[0].mono - t_reg[fam], 3.0, self.gw_ctx(gw, otn))
                eid = h.event_id(ch, tid, "paid")
                self.assertIn(ch, by_channel, evs)
                pfen = fen(true_amount) if true_amount else fen(amount)
                ev = self.assertPollEvent(by_channel[ch], eid, ch, fam, tid, otn, fen(amount),
                                          pfen)
                if fam == "epay":
                    self.assertEqual((ev.get("method"), ev.get("subject"),
                                      ev.get("passthrough")), ("alipay", "VIP会员", "uid=42"), ev)
                if fam == "gatepay":
                    self.assertEqual(ev.get("method"), "alipay", ev)
                o = self.wait_order(ch, otn, lambda o: o.get("state") == "paid", 3.0, "paid")
                self.assertEqual(o.get("event_id"), eid, o)
                self.assertEqual(o.get("last_result"), "paid", o)
                self.assertGreaterEqual(o.get("polls", 0), 2, o)
                hs = self.order_hash(ch, otn)
                self.assertEqual((hs.get("state"), hs.get("event_id")), ("paid", eid), hs)
                self.assertTrue(self.polled_lines(channel=ch, out_trade_no=otn, result="unpaid"),
                                self.log_tail())
                self.assertTrue(self.polled_lines(channel=ch, out_trade_no=otn, result="paid"),
                                self.log_tail())

        # polling stops
        counts = {fam: gws[fam].count(o[0]) for fam, o in self.ORDERS.items()}
        time.sleep(2.5)
        for fam, (otn, *_rest) in self.ORDERS.items():
            self.assertEqual(gws[fam].count(otn), counts[fam],
                             "a paid order is polled again: " + self.gw_ctx(gws[fam], otn))
            self.assertIsNone(self.due_score(CHANNEL[fam], otn), "paid order still due")

        # the callback for the same payment is a duplicate: acked, nothing new
        for fam, (otn, tid, amount, true_amount) in self.ORDERS.items():
            self.assertAck(self.callback(fam, otn, tid, amount, true_amount), fam)
        self.assertEqual(len(self.events()), 3, [e[2]["id"] for e in self.events()])
        for fam, (otn, *_rest) in self.ORDERS.items():
            self.assertEqual(self.order(CHANNEL[fam], otn).get("state"), "paid")

    def test_03a_callback_first_then_no_poll(self):
        gws = self.simple(("payindex",))
        gw, ch = gws["payindex"], CHANNEL["payindex"]
        gw.add_order("P-CB", amount="50.00", trade_id="TXCB", state="paid")
        self.register(ch, "P-CB", "50.00")
        self.assertAck(self.callback("payindex", "P-CB", "TXCB", "50.00"), "payindex")
        eid = h.event_id(ch, "TXCB", "paid")
        o = self.order(ch, "P-CB")
        self.assertEqual((o.get("state"), o.get("event_id")), ("paid", eid), o)
        r = self.poll_now(ch, "P-CB")
        self.assertEqual(r.status, 409, self.ctx(r, "POST poll on an order paid by callback"))
        time.sleep(2.0)  # poll_after (1 s) and a gap pass
        self.assertEqual(gw.count("P-CB"), 0, "an order paid by callback is polled: "
                         + self.gw_ctx(gw))
        evs = self.events()
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0][2].get("source"), "callback")

    def test_03b_callback_before_registration_then_poll(self):
        gws = self.simple(("epay",), extra={"poll_after": "30"})
        gw, ch = gws["epay"], CHANNEL["epay"]
        gw.add_order("E-LATE", amount="1.00", trade_id="T-LATE", state="paid")
        self.assertAck(self.callback("epay", "E-LATE", "T-LATE", "1.00"), "epay")
        eid = h.event_id(ch, "T-LATE", "paid")
        r = self.admin("POST", "/v1/orders", {"channel": ch, "out_trade_no": "E-LATE",
                                              "amount": "1.00"})
        self.assertIn(r.status, (200, 201), self.ctx(r, "register after the callback"))
        if (r.json or {}).get("state") != "paid":
            r = self.poll_now(ch, "E-LATE")
            self.assertEqual((r.status, (r.json or {}).get("result")), (200, "paid"),
                             self.ctx(r, "POST poll of a payment already recorded by callback"))
        o = self.order(ch, "E-LATE")
        self.assertEqual((o.get("state"), o.get("event_id")), ("paid", eid), o)
        evs = self.events()
        self.assertEqual(len(evs), 1, [e[2] for e in evs])
        self.assertEqual(evs[0][2].get("source"), "callback")
        self.assertIsNone(self.due_score(ch, "E-LATE"), "paid order still due")

    def test_04_amount_mismatch(self):
        gws = self.simple(("epay",))
        gw, ch = gws["epay"], CHANNEL["epay"]
        gw.add_order("E-MIS", amount="1.00", trade_id="T-MIS", state="paid")
        mark = len(self.daemons[0].log_text())
        self.register(ch, "E-MIS", "2.00")
        evs = self.wait_events(1, 5.0, "the poll's paid answer")
        self.assertEqual(len(evs), 1, evs)
        eid = h.event_id(ch, "T-MIS", "paid")
        self.assertPollEvent(evs[0], eid, ch, "epay", "T-MIS", "E-MIS", 100,
                             etype="order.amount_mismatch")
        o = self.wait_order(ch, "E-MIS", lambda o: o.get("state") == "paid", 3.0, "paid")
        self.assertEqual((o.get("event_id"), o.get("amount_fen")), (eid, 200), o)
        self.assertTrue([ln for ln in self.daemons[0].log_text()[mark:].splitlines()
                         if re.match(r"^(ts=\S+ )?level=warn", ln) and "E-MIS" in ln],
                        "no warning about the mismatch:\n" + self.log_tail())

    def test_05_expiry(self):
        gws = self.simple(("epay",))
        gw, ch = gws["epay"], CHANNEL["epay"]
        gw.add_order("E-EXP", amount="1.00")
        gw.add_order("E-LIVE", amount="1.00")
        t0 = time.monotonic()
        o = self.register(ch, "E-EXP", "1.00", expires_in=3)
        self.register(ch, "E-LIVE", "1.00", expires_in=60)
        exp_at = o["expires_at_ms"] / 1000.0
        o = self.wait_order(ch, "E-EXP", lambda o: o.get("state") != "pending", 6.0,
                            "end of pending")
        elapsed = time.monotonic() - t0
        self.assertEqual(o.get("state"), "expired", o)
        self.assertGreater(elapsed, 2.5, "expired before expires_in: %r" % o)
        self.assertLess(elapsed, 5.0, o)
        self.assertGreaterEqual(gw.count("E-EXP"), 1, self.gw_ctx(gw, "E-EXP"))
        n_exp, n_live = gw.count("E-EXP"), gw.count("E-LIVE")
        time.sleep(3.0)
        self.assertEqual(gw.count("E-EXP"), n_exp, "an expired order is polled: "
                         + self.gw_ctx(gw, "E-EXP"))
        for q in gw.queries("E-EXP"):
            self.assertLess(q.time, exp_at + 0.6, "polled after expiry: %r" % q)
        self.assertGreater(gw.count("E-LIVE"), n_live, "the live order is still polled")
        self.assertEqual(self.order(ch, "E-EXP").get("state"), "expired")
        self.assertEqual(self.order_hash(ch, "E-EXP").get("state"), "expired")
        self.assertIsNone(self.due_score(ch, "E-EXP"), "expired order still due")
        r = self.poll_now(ch, "E-EXP")
        self.assertEqual(r.status, 409, self.ctx(r, "POST poll on an expired order"))
        self.assertEqual(self.r.cmd("XLEN", STREAM), 0)

    def rate_check(self, gw, n_orders, rate, daemons_note=""):
        otns = ["R-%02d" % i for i in range(n_orders)]
        got = gw.wait_for(lambda rs: {q.out_trade_no for q in rs if q.kind == "order"}
                          >= set(otns), 12.0)
        self.assertIsNotNone(got, "not every order was polled within 12 s%s: polled %r\n%s"
                             % (daemons_note, sorted({q.out_trade_no for q in gw.queries()}),
                                self.log_tail()))
        time.sleep(1.0)
        # "at most rate (+1 for window alignment) in any 1 s": measured over
        # 0.9 s, as the gateway stamps arrivals, which jitter by a few ms
        # (bursts exactly 1 s apart must not count as one window)
        best, at = gw.max_in_window(0.9)
        qs = gw.queries()
        self.assertLessEqual(best, rate + 1, "poll_rate = %d, but %d queries within 0.9 s%s "
                             "(%r); all: %r" % (rate, best, daemons_note, at,
                                                [round(q.mono - qs[0].mono, 2) for q in qs]))
        span = qs[-1].mono - qs[0].mono
        self.assertLessEqual(len(qs), rate * span + rate + 1,
                             "%d queries in %.1f s at poll_rate %d" % (len(qs), span, rate))

    def test_06a_poll_rate(self):
        gws = self.simple(("epay",), extra={"poll_rate": "2"})
        gw, ch = gws["epay"], CHANNEL["epay"]
        for i in range(12):
            gw.add_order("R-%02d" % i)
            self.register(ch, "R-%02d" % i, "1.00")
        self.rate_check(gw, 12, 2)

    def test_06b_poll_rate_is_shared_by_two_instances(self):
        gw = self.gateway("epay")
        ch = CHANNEL["epay"]
        chans = [(ch, "epay", gw, {"poll_rate": "2"})]
        a = self.start_daemon(self.write_config(chans))
        port_b, admin_b = h.free_port(), h.free_port()
        cfg_b = self.write_config(chans, path=os.path.join(self.dir, "b.conf"), port=port_b,
                                  admin_port=admin_b)
        b = self.start_daemon(cfg_b, port=port_b, admin_port=admin_b)
        for i in range(12):
            gw.add_order("R-%02d" % i)
            self.register(ch, "R-%02d" % i, "1.00", daemon=(a, b)[i % 2])
        self.rate_check(gw, 12, 2, " (two instances)")

    def test_07_gateway_errors(self):
        gws = self.simple(("epay", "gatepay", "payindex"), extra={"poll_timeout_ms": "500"})
        cases = [("epay", "E-GARB", "garbage"), ("epay", "E-500", "http500"),
                 ("epay", "E-ERR", "error"), ("epay", "E-WEIRD", "weird"),
                 ("epay", "E-404", "notfound"), ("epay", "E-HANG", "hang"),
                 ("gatepay", "G-ERR", "error"), ("gatepay", "G-GARB", "garbage"),
                 ("payindex", "P-SIGN", "badsign"), ("payindex", "P-500", "http500")]
        for fam, otn, action in cases:
            # the truth is "paid": nothing but a trustworthy answer may record it
            gws[fam].add_order(otn, amount="1.00", trade_id="T" + otn, state="paid")
            gws[fam].script(otn, [action] * 1000)
            self.register(CHANNEL[fam], otn, "1.00")
        for fam, otn, action in cases:
            gw = gws[fam]
            got = gw.wait_count(2, 6.0, otn)
            self.assertIsNotNone(got, "%s (%s) not polled again: %s"
                                 % (otn, action, self.gw_ctx(gw, otn)))
        # the daemon still answers callbacks
        t0 = time.monotonic()
        self.assertAck(self.callback("epay", "E-OTHER", "T-OTHER", "5.00"), "epay")
        self.assertLess(time.monotonic() - t0, 0.5)
        for fam, otn, action in cases:
            with self.subTest(order=otn, action=action):
                # a second query may still be under way (hang): wait for its end
                o = self.wait_order(CHANNEL[fam], otn, lambda o: o.get("polls", 0) >= 2, 3.0,
                                    "second poll done")
                self.assertEqual(o.get("state"), "pending", o)
                self.assertIn(o.get("last_result"), ("error", "unknown"), o)
                self.assertTrue([rec for rec in self.polled_lines(channel=CHANNEL[fam],
                                                                  out_trade_no=otn)
                                 if rec.get("result") in ("error", "unknown")], self.log_tail())
        # the hanging queries were given up after poll_timeout_ms
        for q in gws["epay"].queries("E-HANG"):
            if q.end_mono is not None:
                self.assertEqual(q.outcome, "client-gone", q)
                self.assertLess(q.end_mono - q.mono, 1.5, "poll_timeout_ms = 500: %r" % q)
        evs = self.events()
        self.assertEqual([e[2]["out_trade_no"] for e in evs], ["E-OTHER"],
                         "only the callback is recorded: %r" % [e[2] for e in evs])
        self.assertTrue(self.daemons[0].alive())

    def test_08_hanging_gateway_delays_no_callback_nor_delivery(self):
        rcv = h.Receiver()
        self.addCleanup(rcv.stop)
        gws = self.simple(("epay",), extra={"poll_timeout_ms": "2000", "poll_rate": "50"},
                          webhooks=[("svc", {"url": rcv.url("/hook"), "secret": WEBHOOK_SECRET,
                                             "timeout_ms": "1000", "schedule": "0 1 1"})])
        gw, ch = gws["epay"], CHANNEL["epay"]
        gw.set_default("hang")
        for i in range(10):
            gw.add_order("H-%02d" % i)
            self.register(ch, "H-%02d" % i, "1.00")
        hung = gw.wait_for(lambda rs: len([q for q in rs if q.outcome == "pending"]) >= 5, 4.0)
        self.assertIsNotNone(hung, "polls did not start: " + self.gw_ctx(gw))
        acked = {}
        for i in range(10):
            t = time.monotonic()
            r = self.callback("epay", "CB-%02d" % i, "T-CB-%02d" % i, "1.00")
            self.assertAck(r, "epay")
            self.assertLess(r.elapsed, 0.5, "callback %d took %.3f s while polls hang"
                            % (i, r.elapsed))
            acked[h.event_id(ch, "T-CB-%02d" % i, "paid")] = t
            time.sleep(0.15)
        reqs = rcv.wait_for(lambda rs: {r.headers.get("webhook-id") for r in rs}
                            >= set(acked), 3.0)
        self.assertIsNotNone(reqs, "deliveries missing while polls hang: got %r\n%s"
                             % (rcv.snapshot(), self.log_tail()))
        for eid, t in acked.items():
            first = min(r.mono for r in reqs if r.headers.get("webhook-id") == eid)
            self.assertLess(first - t, 1.5, "delivery of %s came %.2f s after its callback"
                            % (eid, first - t))
        # the hanging polls are given up after poll_timeout_ms and are errors
        done = gw.wait_for(lambda rs: len([q for q in rs if q.outcome == "client-gone"]) >= 5,
                           4.0)
        self.assertIsNotNone(done, "hanging polls were not given up: " + self.gw_ctx(gw))
        for q in gw.queries():
            if q.outcome == "client-gone":
                self.assertLess(q.end_mono - q.mono, 3.0, "poll_timeout_ms = 2000: %r" % q)
        deadline = time.monotonic() + 2.0
        while not self.polled_lines(channel=ch, result="error"):
            if time.monotonic() > deadline:
                self.fail("no 'order polled ... result=error' after a timeout\n" + self.log_tail())
            time.sleep(0.05)
        o = self.order(ch, "H-00")
        self.assertEqual(o.get("state"), "pending", o)

    def test_09_sweep(self):
        gw = self.gateway("epay")
        ch = CHANNEL["epay"]
        self.write_config([(ch, "epay", gw, {"sweep": "on", "sweep_interval": "10"})])
        # 60 orders, newest first; two paid, one on each page of 50
        names = []
        for i in range(60):
            otn = "S-%02d" % i
            state = "paid" if i in (3, 55) else "unpaid"
            gw.add_order(otn, amount="%d.00" % (i + 1), trade_id="TS-%02d" % i, state=state)
            names.append(otn)
        gw.listing = names
        t0 = time.monotonic()
        self.start_daemon()
        eid1 = h.event_id(ch, "TS-03", "paid")
        eid2 = h.event_id(ch, "TS-55", "paid")
        evs = self.wait_events(1, 13.0, "the swept paid order")
        self.assertLess(time.monotonic() - t0, 13.0)
        sweeps = gw.queries(kind="orders")
        self.assertTrue(sweeps, self.gw_ctx(gw))
        for q in sweeps:
            self.assertTrue(q.auth_ok, q.params.get("act"))
            self.assertEqual(q.params.get("limit"), "50", q.params)
            page = int(q.params.get("page", "0"))
            self.assertGreaterEqual(page, 1, q.params)
            self.assertEqual(q.params.get("offset"), str((page - 1) * 50), q.params)
        by_id = {e[1]["id"]: e for e in self.events()}
        self.assertIn(eid1, by_id, [e[2] for e in evs])
        self.assertPollEvent(by_id[eid1], eid1, ch, "epay", "TS-03", "S-03", 400)
        with self.subTest("the second page is swept too"):
            evs = self.wait_events(2, 2.0, "the paid order on page 2")
            by_id = {e[1]["id"]: e for e in evs}
            self.assertIn(eid2, by_id, [e[2] for e in evs])
            self.assertPollEvent(by_id[eid2], eid2, ch, "epay", "TS-55", "S-55", 5600)
        time.sleep(0.5)
        self.assertLessEqual({e[1]["id"] for e in self.events()}, {eid1, eid2},
                             "an unpaid order of the list was recorded: %r"
                             % [e[2] for e in self.events()])

    def test_11_two_instances_share_the_work(self):
        gw = self.gateway("epay")
        ch = CHANNEL["epay"]
        chans = [(ch, "epay", gw, {"poll_rate": "50"})]
        a = self.start_daemon(self.write_config(chans))
        port_b, admin_b = h.free_port(), h.free_port()
        cfg_b = self.write_config(chans, path=os.path.join(self.dir, "b.conf"), port=port_b,
                                  admin_port=admin_b)
        b = self.start_daemon(cfg_b, port=port_b, admin_port=admin_b)
        otns = ["D-%02d" % i for i in range(10)]
        t0 = time.monotonic()
        for i, otn in enumerate(otns):
            gw.add_order(otn)
            self.register(ch, otn, "1.00", daemon=(a, b)[i % 2])
        window = 6.0
        time.sleep(window)
        for otn in otns:
            qs = gw.queries(otn)
            ts = [q.mono - t0 for q in qs]
            self.assertGreaterEqual(len(qs), 2, "%s: %r" % (otn, ts))
            # first at ~1 s, then one per 1 s gap: at most window s worth, plus slack
            self.assertLessEqual(len(qs), int(window) + 1,
                                 "%s polled %d times in %.0f s (doubled?): %r"
                                 % (otn, len(qs), window, [round(t, 2) for t in ts]))
            gaps = [b_ - a_ for a_, b_ in zip(ts, ts[1:])]
            self.assertGreater(min(gaps), 0.5, "%s polled twice within %.2f s: %r"
                               % (otn, min(gaps), [round(t, 2) for t in ts]))
        by_daemon = [len(self.polled_lines(daemon=d, channel=ch)) for d in (a, b)]
        self.assertGreater(sum(by_daemon), 0, "no 'order polled' log lines")

    def repeat_lines(self):
        return [rec for d in self.daemons
                for rec in h.log_records(d.log_text(), "repeat payment recorded")]

    def test_12a_poll_finds_a_second_payment(self):
        # The payer paid twice: the callback of the first payment came before
        # the order was registered; the gateway's query answers the second.
        gws = self.simple(("epay",), extra={"poll_after": "60"})
        gw, ch = gws["epay"], CHANNEL["epay"]
        gw.add_order("E-TWICE", amount="1.00", trade_id="T-SECOND", state="paid")
        self.assertAck(self.callback("epay", "E-TWICE", "T-FIRST", "1.00"), "epay")
        e1 = h.event_id(ch, "T-FIRST", "paid")
        self.register(ch, "E-TWICE", "1.00")
        r = self.poll_now(ch, "E-TWICE")
        self.assertEqual((r.status, (r.json or {}).get("result")), (200, "paid"),
                         self.ctx(r, "POST poll"))
        e2 = h.event_id(ch, "T-SECOND", "paid")
        evs = self.events()
        self.assertEqual([e[1]["id"] for e in evs], [e1, e2], [e[2] for e in evs])
        self.assertNotIn("repeat_payment", evs[0][2])
        ev = self.assertPollEvent(evs[1], e2, ch, "epay", "T-SECOND", "E-TWICE", 100)
        self.assertIs(ev.get("repeat_payment"), True, ev)
        # the order was still pending: the second payment settles it
        o = self.order(ch, "E-TWICE")
        self.assertEqual((o.get("state"), o.get("event_id")), ("paid", e2), o)
        lines = self.repeat_lines()
        self.assertEqual([(x.get("level"), x.get("source"), x.get("event"), x.get("trade_no"),
                           x.get("first_trade_no"), x.get("out_trade_no")) for x in lines],
                         [("warn", "poll", e2, "T-SECOND", "T-FIRST", "E-TWICE")],
                         self.log_tail())
        text = self.admin("GET", "/metrics").body.decode()
        self.assertIn('payrelay_repeat_payments_total{channel="%s"} 1\n' % ch, text)

    def test_12b_sweep_finds_a_second_payment(self):
        gw = self.gateway("epay")
        ch = CHANNEL["epay"]
        gw.add_order("S-TWICE", amount="2.00", trade_id="TS-SECOND", state="paid")
        gw.listing = []  # nothing to sweep until the first payment is recorded
        self.write_config([(ch, "epay", gw, {"sweep": "on", "sweep_interval": "10"})])
        self.start_daemon()
        self.assertAck(self.callback("epay", "S-TWICE", "TS-FIRST", "2.00"), "epay")
        gw.listing = ["S-TWICE"]
        evs = self.wait_events(2, 13.0, "the swept second payment")
        eid = h.event_id(ch, "TS-SECOND", "paid")
        self.assertEqual([e[1]["id"] for e in evs],
                         [h.event_id(ch, "TS-FIRST", "paid"), eid], [e[2] for e in evs])
        self.assertNotIn("repeat_payment", evs[0][2])
        ev = self.assertPollEvent(evs[1], eid, ch, "epay", "TS-SECOND", "S-TWICE", 200)
        self.assertIs(ev.get("repeat_payment"), True, ev)
        deadline = time.monotonic() + 3
        while not self.repeat_lines() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([(x.get("source"), x.get("first_trade_no")) for x in self.repeat_lines()],
                         [("poll", "TS-FIRST")], self.log_tail())


class AnswerHardeningTest(ReconcileCase):
    """What a gateway answers cannot leak a configured secret, nor make the
    daemon download more than the answer cap."""

    def redis_text(self):
        """Every key and value in Redis, as one text."""
        out = []
        for k in self.r.keys("*"):
            t = self.r.cmd("TYPE", k)
            out.append(k)
            if t == "string":
                out.append(repr(self.r.cmd("GET", k)))
            elif t == "hash":
                out.append(repr(self.r.cmd("HGETALL", k)))
            elif t == "zset":
                out.append(repr(self.r.cmd("ZRANGE", k, 0, -1)))
            elif t == "set":
                out.append(repr(self.r.cmd("SMEMBERS", k)))
            elif t == "list":
                out.append(repr(self.r.cmd("LRANGE", k, 0, -1)))
            elif t == "stream":
                out.append(repr(self.r.cmd("XRANGE", k, "-", "+")))
        return "\n".join(out)

    def assertNoSecretIn(self, text, where):
        for secret in self.secrets:
            self.assertNotIn(secret, text, "a configured secret in %s" % where)
            # and no JSON- or bytes-escaped form of it either
            self.assertNotIn(json.dumps(secret)[1:-1], text, "a secret in %s" % where)

    def test_12_secrets_echoed_by_a_gateway_are_masked_everywhere(self):
        epay = self.gateway("epay")
        pidx = self.gateway("payindex")
        self.write_config(
            [(CHANNEL["epay"], "epay", epay, {"poll_after": "60"}),
             (CHANNEL["payindex"], "payindex", pidx, {"poll_after": "60"})],
            webhooks=[("orders", {"url": "http://127.0.0.1:9/x", "secret": WEBHOOK_SECRET,
                                  "schedule": "3600"})])
        self.start_daemon()
        ch = CHANNEL["epay"]
        epay.add_order("E-ECHO", amount="2.00", trade_id="T-ECHO")
        self.register(ch, "E-ECHO", "2.00")
        # an error msg quoting every kind of secret, the one of another
        # channel and the webhook's too
        echo = "bad sign: key=%s hook=%s raw=%s token=%s other=%s" % (
            CREDS["epay"][1], WEBHOOK_SECRET, WEBHOOK_SECRET[len("whsec_"):], h.ADMIN_TOKEN,
            CREDS["payindex"][1])
        epay.script("E-ECHO", ["msg:" + echo])
        r = self.poll_now(ch, "E-ECHO")
        self.assertEqual(r.status, 200, self.ctx(r, "POST poll"))
        self.assertEqual(r.json.get("result"), "unknown", r.json)
        self.assertIn("bad sign: key=*** hook=*** raw=*** token=*** other=***",
                      r.json.get("detail", ""), r.json)
        self.assertNoSecretIn(r.body.decode(), "the poll answer of the admin API")
        o = self.admin("GET", "/v1/orders/%s/E-ECHO" % ch)
        self.assertEqual(o.status, 200)
        self.assertIn("***", o.json.get("last_detail", ""), o.json)
        self.assertNoSecretIn(o.body.decode(), "the admin API's order view")
        self.assertNoSecretIn(self.redis_text(), "Redis")
        self.assertEqual(len(self.polled_lines(channel=ch, out_trade_no="E-ECHO")), 1,
                         self.log_tail())

        # a paid answer with a secret in an unsigned field: the recorded
        # event (stream, delivery) holds it masked
        epay.script("E-ECHO", ["paidmsg:" + WEBHOOK_SECRET + " " + h.ADMIN_TOKEN])
        r = self.poll_now(ch, "E-ECHO")
        self.assertEqual((r.status, (r.json or {}).get("result")), (200, "paid"),
                         self.ctx(r, "POST poll, paid"))
        evs = self.events()
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0][2].get("raw", {}).get("buyer"), "*** ***", evs[0][2])
        self.assertEqual(evs[0][2].get("trade_no"), "T-ECHO")
        self.assertNoSecretIn(self.redis_text(), "Redis, after a paid answer")
        for d in self.daemons:
            self.assertNoSecretIn(d.log_text(), d.log)

    def test_13_an_answer_over_the_cap_is_not_downloaded(self):
        gw = self.gateway("epay")
        rcv = h.Receiver(default="big:%d" % (4 << 20))
        self.addCleanup(rcv.stop)
        # a poll timeout long enough to download it all, were it read
        self.write_config([(CHANNEL["epay"], "epay", gw,
                            {"poll_after": "60", "poll_timeout_ms": "30000"})],
                          webhooks=[("orders", {"url": rcv.url("/o"), "secret": WEBHOOK_SECRET,
                                                "events": "order.paid"})])
        self.start_daemon()
        ch = CHANNEL["epay"]
        size = 64 << 20
        for otn, action in (("E-STREAM", "stream:%d" % size), ("E-HUGE", "huge:%d" % size)):
            gw.add_order(otn, amount="1.00")
            self.register(ch, otn, "1.00")
            gw.script(otn, [action])
            t0 = time.monotonic()
            r = self.poll_now(ch, otn)
            took = time.monotonic() - t0
            self.assertEqual(r.status, 200, self.ctx(r, "POST poll " + action))
            self.assertEqual((r.json.get("result"), r.json.get("detail")),
                             ("error", "answer too large"), r.json)
            self.assertLess(took, 5.0, "%s: the poll took %.1f s" % (action, took))
            qs = gw.wait_for(lambda rs: any(q.out_trade_no == otn and q.outcome != "pending"
                                            for q in rs), 10)
            self.assertIsNotNone(qs, self.gw_ctx(gw, otn))
            q = [q for q in qs if q.out_trade_no == otn][-1]
            self.assertLess(q.sent, 16 << 20,
                            "%s: %d bytes went out before the daemon stopped reading"
                            % (action, q.sent))
            self.assertEqual(q.outcome, "write-failed", q)
            o = self.order(ch, otn)
            self.assertEqual((o.get("state"), o.get("last_result")), ("pending", "error"), o)
        self.assertEqual(self.r.cmd("XLEN", STREAM), 0)

        # a webhook receiver's large 2xx answer still counts as delivered
        gw.add_order("E-PAID", amount="1.00", trade_id="T-PAID", state="paid")
        self.register(ch, "E-PAID", "1.00")
        r = self.poll_now(ch, "E-PAID")
        self.assertEqual((r.status, (r.json or {}).get("result")), (200, "paid"), r.json)
        deadline = time.monotonic() + 10
        while True:
            ds = [self.r.hgetall(k) for k in self.r.keys(PREFIX + "delivery:*")
                  if self.r.cmd("TYPE", k) == "hash"]
            if ds and all(d.get("state") == "delivered" for d in ds):
                break
            self.assertLess(time.monotonic(), deadline, "%r\n%s" % (ds, self.log_tail()))
            time.sleep(0.1)


# ==========================================================================


if __name__ == "__main__":
    sys.exit(h.run_tests())
