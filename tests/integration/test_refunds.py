#!/usr/bin/env python3
"""Integration tests of refunds, the merchant's account and settlements
(SPEC 10.3): POST /v1/refunds, GET /v1/channels/CH/account and
/settlements, and payrelayctl refund, account and settlements, against the
fake gateway's epay api.php act=refund/query/settle (fakegw.py).

Each test runs its own redis-server, payrelayd and fake gateways on free
loopback ports (the set-up of test_reconcile.py), and checks what the
gateway was asked (how often, with which key), what the stream and a webhook
got, and that no configured secret reaches an answer or the log.

    PAYRELAYD=build/src/payrelayd PAYRELAYCTL=build/src/payrelayctl \\
        PAYRELAY_VECTORS=../shared/vectors python3 tests/integration/test_refunds.py

Exits 0 when every test passes, 1 otherwise.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import fakegw  # noqa: E402
from test_reconcile import CHANNEL, CREDS, WEBHOOK_SECRET, ReconcileCase  # noqa: E402

EPAY_KEY = CREDS["epay"][1]
PREFIX_REFUND = "payrelay:refund:%s:" % CHANNEL["epay"]


def locate_ctl():
    b = os.environ.get("PAYRELAYCTL")
    if b:
        return b
    guess = os.path.normpath(os.path.join(h.HERE, "..", "..", "build", "src", "payrelayctl"))
    return guess if os.path.exists(guess) else None


CTL = locate_ctl()


def refund_event_id(channel, trade_id, refund_id):
    """The order.refunded id scheme (docs/payments.md): md5 of channel NUL
    trade id NUL "refunded" NUL refund_id."""
    return "evt_" + h.md5hex(channel + "\0" + trade_id + "\0refunded\0" + refund_id)


class RefundCase(ReconcileCase):

    def setup_epay(self, webhooks=(), others=(), extra=None):
        """One epay channel with a fake gateway (plus, for each family of
        `others`, a channel of it with its own), one daemon. Returns the epay
        gateway."""
        self.gw = self.gateway("epay")
        chans = [(CHANNEL["epay"], "epay", self.gw, dict(extra or {}))]
        self.others = {}
        for fam in others:
            self.others[fam] = self.gateway(fam)
            chans.append((CHANNEL[fam], fam, self.others[fam], {}))
        self.write_config(chans, webhooks)
        self.start_daemon()
        return self.gw

    def paid(self, otn, trade_no, money):
        """An order the gateway knows as paid, and its recorded callback."""
        self.gw.add_order(otn, amount=money, trade_id=trade_no, state="paid")
        reply = self.epay_callback(CHANNEL["epay"], otn, trade_no, money)
        self.assertAck(reply, "epay")

    def refund(self, amount, refund_id, otn=None, trade_no=None, channel=None, status=None):
        body = {"channel": channel or CHANNEL["epay"], "amount": amount, "refund_id": refund_id}
        if otn is not None:
            body["out_trade_no"] = otn
        if trade_no is not None:
            body["trade_no"] = trade_no
        reply = self.admin("POST", "/v1/refunds", body)
        if status is not None:
            self.assertEqual(reply.status, status, self.ctx(reply, "POST /v1/refunds %r" % body))
        self.assertNotIn(EPAY_KEY.encode(), reply.body, reply)
        return reply

    def refunds_asked(self):
        return self.gw.queries(kind="refund")

    def metric(self, name, **labels):
        """The value of one series of /metrics, or None when it is not there."""
        text = self.admin("GET", "/metrics").body.decode()
        want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        for line in text.splitlines():
            m = re.match(r'^%s\{([^}]*)\} (\S+)$' % re.escape(name), line)
            if m and ",".join(sorted(m.group(1).split(","))) == want:
                return float(m.group(2))
        return None

    def ctl(self, *args, config=None, rc=None, timeout=30):
        argv = [CTL, "-c", config or self.config] + list(args)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        for s in self.secrets:
            self.assertNotIn(s, out + err, "payrelayctl printed a secret: %r %r" % (out, err))
        if rc is not None:
            self.assertEqual(p.returncode, rc, "%r: rc %d\nout: %s\nerr: %s\n%s"
                             % (args, p.returncode, out, err, self.log_tail()))
        return p.returncode, out, err


class RefundTest(RefundCase):

    def test_01_refund_recorded_and_delivered(self):
        rcv = h.Receiver()
        self.addCleanup(rcv.stop)
        gw = self.setup_epay(webhooks=[("hook", {"url": rcv.url(), "secret": WEBHOOK_SECRET})])
        self.paid("R-1", "T-R-1", "10.00")
        rcv.wait_count(1, 10)  # the payment's delivery
        reply = self.refund("3.50", "RF-1", otn="R-1", status=201)
        want_id = refund_event_id(CHANNEL["epay"], "T-R-1", "RF-1")
        a = reply.json
        self.assertEqual(a["state"], "done", a)
        self.assertEqual(a["event_id"], want_id, a)
        self.assertEqual((a["amount"], a["amount_fen"], a["paid_amount_fen"], a["refunded_fen"],
                          a["refundable_fen"]), ("3.50", 350, 1000, 350, 650), a)
        self.assertEqual((a["out_trade_no"], a["trade_no"]), ("R-1", "T-R-1"), a)
        self.assertEqual(a["gateway_msg"], "退款成功", a)
        self.assertIs(a["event_recorded"], True, a)
        # the gateway was asked once, by POST, with the channel's credentials
        asked = self.refunds_asked()
        self.assertEqual(len(asked), 1, self.gw_ctx(gw))
        q = asked[0]
        self.assertEqual((q.method, q.auth_ok, q.params.get("money"), q.params.get("trade_no")),
                         ("POST", True, "3.50", "T-R-1"), q)
        self.assertEqual(gw.refunds, [("T-R-1", 350)])
        # the stream has the event
        ev = [e for e in self.wait_events(2, 5) if e[2]["type"] == "order.refunded"]
        self.assertEqual(len(ev), 1, ev)
        _sid, fields, e = ev[0]
        self.assertEqual((fields["id"], fields["type"], fields["channel"],
                          fields["out_trade_no"]),
                         (want_id, "order.refunded", CHANNEL["epay"], "R-1"))
        for k, v in {"id": want_id, "channel": CHANNEL["epay"], "family": "epay",
                     "merchant_id": CREDS["epay"][0], "trade_no": "T-R-1",
                     "out_trade_no": "R-1", "status": "refunded", "amount_fen": 1000,
                     "paid_amount_fen": 1000, "refund_id": "RF-1", "refund_amount": "3.50",
                     "refund_amount_fen": 350, "source": "admin", "currency": "CNY"}.items():
            self.assertEqual(e.get(k), v, "%s of %r" % (k, e))
        self.assertEqual(e["raw"].get("code"), "1", e)
        self.assertNotIn(EPAY_KEY, json.dumps(e, ensure_ascii=False))
        # and a webhook got it, signed as every event
        got = rcv.wait_count(2, 10)
        self.assertIsNotNone(got, "no delivery of the refund\n" + self.log_tail())
        d = [r for r in got if r.headers.get("webhook-id") == want_id]
        self.assertEqual(len(d), 1, got)
        self.assertEqual(h.webhook_verify(WEBHOOK_SECRET, want_id,
                                          d[0].headers["webhook-timestamp"], d[0].body,
                                          d[0].headers["webhook-signature"]), 0, d[0])
        self.assertEqual(json.loads(d[0].body)["type"], "order.refunded")
        # the event is found with the order's others
        found = self.admin("GET", "/v1/events?out_trade_no=R-1").json
        self.assertIn(want_id, [x["id"] for x in found["events"]], found)

    def test_02_repeat_refund_id(self):
        gw = self.setup_epay()
        self.paid("R-2", "T-R-2", "5.00")
        first = self.refund("2.00", "RF-2", otn="R-2", status=201)
        again = self.refund("2.00", "RF-2", otn="R-2", status=200)
        self.assertEqual(again.json, first.json)
        self.assertEqual(len(self.refunds_asked()), 1, self.gw_ctx(gw))
        # by the gateway's trade id: the same refund
        again = self.refund("2.00", "RF-2", trade_no="T-R-2", status=200)
        self.assertEqual(again.json, first.json)
        # the same refund_id for another amount or order: refused, not asked
        other = self.refund("1.00", "RF-2", otn="R-2", status=409)
        self.assertIn("refund_id", other.json["error"], other.json)
        self.paid("R-2b", "T-R-2b", "5.00")
        self.refund("2.00", "RF-2", otn="R-2b", status=409)
        self.assertEqual(len(self.refunds_asked()), 1, self.gw_ctx(gw))
        self.assertEqual(gw.refunds, [("T-R-2", 200)])

    def test_03_never_more_than_paid(self):
        gw = self.setup_epay()
        self.paid("R-3", "T-R-3", "10.00")
        over = self.refund("10.01", "RF-3a", otn="R-3", status=409)
        self.assertEqual((over.json["paid_amount_fen"], over.json["refundable_fen"]),
                         (1000, 1000), over.json)
        self.assertEqual(self.refunds_asked(), [], "asked before refusing")
        self.refund("4.00", "RF-3b", otn="R-3", status=201)
        r = self.refund("6.00", "RF-3c", trade_no="T-R-3", status=201)
        self.assertEqual((r.json["refunded_fen"], r.json["refundable_fen"]), (1000, 0), r.json)
        more = self.refund("0.01", "RF-3d", otn="R-3", status=409)
        self.assertEqual(more.json["refundable_fen"], 0, more.json)
        self.assertEqual(len(self.refunds_asked()), 2, self.gw_ctx(gw))
        self.assertEqual(gw.refunds, [("T-R-3", 400), ("T-R-3", 600)])
        self.assertEqual(gw.orders["R-3"].state, "refunded")
        evs = [e[2] for e in self.events() if e[2]["type"] == "order.refunded"]
        self.assertEqual(sorted(e["refund_id"] for e in evs), ["RF-3b", "RF-3c"])

    def test_04_unknown_and_bad(self):
        gw = self.setup_epay()
        r = self.refund("1.00", "RF-4", otn="NO-SUCH", status=404)
        self.assertIn("no such order", r.json["error"])
        r = self.refund("1.00", "RF-4", trade_no="NO-SUCH", status=404)
        self.refund("1.00", "RF-4", otn="X", channel="no-such-channel", status=404)
        # registered, not paid
        self.register(CHANNEL["epay"], "R-4", "1.00")
        r = self.refund("1.00", "RF-4", otn="R-4", status=409)
        self.assertEqual(r.json["state"], "pending", r.json)
        self.paid("R-4b", "T-R-4b", "1.00")
        for body in ({"channel": CHANNEL["epay"], "out_trade_no": "R-4b", "amount": "1.00"},
                     {"channel": CHANNEL["epay"], "amount": "1.00", "refund_id": "a"},
                     {"channel": CHANNEL["epay"], "out_trade_no": "R-4b", "trade_no": "T-R-4b",
                      "amount": "1.00", "refund_id": "a"},
                     {"channel": CHANNEL["epay"], "out_trade_no": "R-4b", "amount": "0",
                      "refund_id": "a"},
                     {"channel": CHANNEL["epay"], "out_trade_no": "R-4b", "amount": "1.001",
                      "refund_id": "a"},
                     {"channel": CHANNEL["epay"], "out_trade_no": "R-4b", "amount": 1,
                      "refund_id": "a"},
                     {"channel": CHANNEL["epay"], "out_trade_no": "R-4b", "amount": "1.00",
                      "refund_id": "a&money=9"},
                     {"channel": CHANNEL["epay"], "out_trade_no": "R-4b", "amount": "1.00",
                      "refund_id": "x" * 65}):
            reply = self.admin("POST", "/v1/refunds", body)
            self.assertEqual(reply.status, 400, self.ctx(reply, repr(body)))
        self.assertEqual(self.admin("GET", "/v1/refunds").status, 405)
        self.assertEqual(self.admin("POST", "/v1/refunds", {"x": 1}, token="wrong").status, 401)
        self.assertEqual(self.refunds_asked(), [], self.gw_ctx(gw))

    def test_05_families_without_refund_api(self):
        self.setup_epay(others=("gatepay", "payindex"))
        for fam in ("gatepay", "payindex"):
            r = self.refund("1.00", "RF-5", otn="R-5", channel=CHANNEL[fam], status=501)
            self.assertIn("no refund API", r.json["error"], r.json)
            for what in ("account", "settlements"):
                r = self.admin("GET", "/v1/channels/%s/%s" % (CHANNEL[fam], what))
                self.assertEqual(r.status, 501, r)
            self.assertEqual(self.others[fam].queries(kind=None), [])

    def test_06_gateway_refuses(self):
        gw = self.setup_epay()
        self.paid("R-6", "T-R-6", "8.00")
        gw.client_actions = ["error"]
        r = self.refund("8.00", "RF-6", otn="R-6", status=502)
        self.assertEqual((r.json["gateway_code"], r.json["gateway_msg"], r.json["state"]),
                         ("-1", gw.client_msg, "refused"), r.json)
        # nothing was refunded: the same refund_id may be tried again
        r = self.refund("8.00", "RF-6", otn="R-6", status=201)
        self.assertEqual(len(self.refunds_asked()), 2)
        # a platform that quotes the key in its message: masked
        self.paid("R-6b", "T-R-6b", "1.00")
        gw.client_actions = ["echo"]
        r = self.refund("1.00", "RF-6b", otn="R-6b", status=502)
        self.assertEqual(r.json["gateway_code"], "-3", r.json)
        self.assertIn("***", r.json["gateway_msg"], r.json)
        # a platform that wants the whole amount (epay-000: 大多数通道)
        gw.refund_whole_only = True
        r = self.refund("0.50", "RF-6c", otn="R-6b", status=502)
        self.assertIn("订单金额一致", r.json["gateway_msg"], r.json)
        self.refund("1.00", "RF-6d", otn="R-6b", status=201)
        self.assertFalse(any(e[2]["type"] == "order.refunded" and e[2]["refund_id"] == "RF-6c"
                             for e in self.events()))

    def test_07_outcome_unknown(self):
        gw = self.setup_epay()
        self.paid("R-7", "T-R-7", "3.00")
        gw.client_actions = ["http500"]
        r = self.refund("2.00", "RF-7", otn="R-7", status=502)
        self.assertEqual(r.json["state"], "unknown", r.json)
        # the gateway may have refunded: never asked again for this id, and
        # its amount stays counted
        again = self.refund("2.00", "RF-7", otn="R-7", status=502)
        self.assertEqual(again.json, r.json)
        self.refund("1.01", "RF-7b", otn="R-7", status=409)
        gw.client_actions = ["garbage"]
        self.refund("1.00", "RF-7c", otn="R-7", status=502)
        self.assertEqual(len(self.refunds_asked()), 2, self.gw_ctx(gw))

    def test_13_refund_metrics(self):
        gw = self.setup_epay(others=("gatepay",))
        name = "payrelay_refunds_total"
        # touched at start for every channel: alerts read it from zero
        for ch in (CHANNEL["epay"], CHANNEL["gatepay"]):
            self.assertEqual(self.metric(name, channel=ch, result="unknown"), 0.0, ch)
        self.paid("R-13", "T-R-13", "5.00")
        self.refund("2.00", "RF-13a", otn="R-13", status=201)
        self.refund("2.00", "RF-13a", otn="R-13", status=200)
        self.refund("9.00", "RF-13b", otn="R-13", status=409)
        gw.client_actions = ["error"]
        self.refund("1.00", "RF-13c", otn="R-13", status=502)
        gw.client_actions = ["http500"]
        self.refund("1.00", "RF-13d", otn="R-13", status=502)
        self.refund("1.00", "RF-13e", otn="NO-SUCH", status=404)
        self.refund("1.00", "RF-13f", otn="R-13", channel=CHANNEL["gatepay"], status=501)
        # a channel nobody configured is no series
        self.refund("1.00", "RF-13g", otn="R-13", channel="no-such-channel", status=404)
        want = {"done": 1, "repeat": 1, "over_refund": 1, "refused": 1, "unknown": 1,
                "rejected": 1}
        for result, n in want.items():
            self.assertEqual(self.metric(name, channel=CHANNEL["epay"], result=result), n,
                             result)
        self.assertEqual(self.metric(name, channel=CHANNEL["gatepay"], result="not_supported"),
                         1)
        self.assertIsNone(self.metric(name, channel="no-such-channel", result="rejected"))

    def test_09_in_flight_refund_and_stop(self):
        # a refund the gateway is slow to answer: the same refund_id meanwhile
        # is 409 (never a second call), and SIGTERM waits for the answer
        gw = self.setup_epay(extra={"poll_timeout_ms": "5000"})
        self.paid("R-9", "T-R-9", "2.00")
        gw.client_actions = ["slow:1.5"]
        out = {}
        t = threading.Thread(target=lambda: out.update(
            r=self.refund("2.00", "RF-9", otn="R-9")), daemon=True)
        t.start()
        self.assertIsNotNone(gw.wait_count(1, 5, kind="refund"), self.gw_ctx(gw))
        r = self.refund("2.00", "RF-9", otn="R-9", status=409)
        self.assertEqual(r.json["state"], "pending", r.json)
        d = self.daemons[0]
        d.proc.send_signal(signal.SIGTERM)
        t.join(10)
        self.assertEqual(out["r"].status, 201, self.ctx(out["r"], "the refund in flight"))
        rc, in_time = d.wait(10)
        self.assertEqual((rc, in_time), (0, True), self.log_tail())
        self.assertEqual(len(self.refunds_asked()), 1, self.gw_ctx(gw))
        self.assertEqual(self.r.hgetall(PREFIX_REFUND + "RF-9").get("state"), "done")

    def test_08_account_and_settlements(self):
        gw = self.setup_epay()
        r = self.admin("GET", "/v1/channels/%s/account" % CHANNEL["epay"])
        self.assertEqual(r.status, 200, self.ctx(r))
        a = r.json
        self.assertNotIn(EPAY_KEY.encode(), r.body)
        self.assertNotIn("key", a)
        for k, v in {"channel": CHANNEL["epay"], "merchant_id": CREDS["epay"][0],
                     "status": "active", "active": 1, "balance": "1234.56",
                     "balance_fen": 123456, "orders": 30, "orders_today": 15,
                     "orders_yesterday": 15, "settle_method": "alipay",
                     "settle_account": "admin@pay.com", "settle_name": "张三"}.items():
            self.assertEqual(a.get(k), v, "%s of %r" % (k, a))
        q = gw.queries(kind="query")
        self.assertEqual([(x.method, x.auth_ok) for x in q], [("GET", True)])
        gw.settlements[0]["key"] = EPAY_KEY  # a platform that echoes it there too
        r = self.admin("GET", "/v1/channels/%s/settlements" % CHANNEL["epay"])
        self.assertEqual(r.status, 200, self.ctx(r))
        self.assertNotIn(EPAY_KEY.encode(), r.body)
        s = r.json["settlements"]
        self.assertEqual([(x["id"], x["money"], x["money_fen"]) for x in s],
                         [("1001", "100.00", 10000), ("1002", "20.5", 2050)], s)
        self.assertFalse(any("key" in x for x in s), s)
        # gateway errors
        gw.client_actions = ["error", "garbage"]
        r = self.admin("GET", "/v1/channels/%s/account" % CHANNEL["epay"])
        self.assertEqual((r.status, r.json["gateway_code"]), (502, "-1"), r)
        r = self.admin("GET", "/v1/channels/%s/settlements" % CHANNEL["epay"])
        self.assertEqual(r.status, 502, r)
        self.assertEqual(self.admin("GET", "/v1/channels/nope/account").status, 404)
        self.assertEqual(self.admin("POST", "/v1/channels/%s/account" % CHANNEL["epay"]).status,
                         405)


class RefundCtlTest(RefundCase):

    def setUp(self):
        ReconcileCase.setUp(self)
        if not CTL or not os.access(CTL, os.X_OK):
            raise RuntimeError("payrelayctl not found: set PAYRELAYCTL (got %r)" % CTL)

    def test_10_ctl_commands(self):
        gw = self.setup_epay(others=("gatepay",))
        self.paid("C-1", "T-C-1", "6.00")
        rc, out, err = self.ctl("refund", CHANNEL["epay"], "--out-trade-no", "C-1", "1.00",
                                "--refund-id", "CRF-1", rc=0)
        self.assertEqual(out.splitlines()[0], "refunded", out)
        self.assertIn("refund_id: CRF-1", out)
        self.assertIn("event_id: " + refund_event_id(CHANNEL["epay"], "T-C-1", "CRF-1"), out)
        rc, out, err = self.ctl("refund", CHANNEL["epay"], "--trade-no", "T-C-1", "1.00",
                                "--refund-id", "CRF-1", rc=0)
        self.assertEqual(out.splitlines()[0], "already refunded", out)
        rc, out, err = self.ctl("--json", "refund", CHANNEL["epay"], "--out-trade-no", "C-1",
                                "2.00", "--refund-id", "CRF-2", rc=0)
        self.assertEqual(json.loads(out)["refunded_fen"], 300, out)
        self.assertEqual(len(self.refunds_asked()), 2, self.gw_ctx(gw))
        # more than is left: exit 1, the API's message
        rc, out, err = self.ctl("refund", CHANNEL["epay"], "--out-trade-no", "C-1", "3.01",
                                "--refund-id", "CRF-3", rc=1)
        self.assertRegex(err, r"^payrelayctl: the amount is more than is left to refund .*"
                              r"\(HTTP 409\)", err)
        # the gateway's refusal, with its code and message
        gw.client_actions = ["error"]
        rc, out, err = self.ctl("refund", CHANNEL["epay"], "--out-trade-no", "C-1", "1.00",
                                "--refund-id", "CRF-4", rc=1)
        self.assertIn("(HTTP 502)", err)
        self.assertIn("gateway_code: -1", err)
        # no refund API; unknown order; unknown channel
        rc, out, err = self.ctl("refund", CHANNEL["gatepay"], "--out-trade-no", "C-1", "1.00",
                                "--refund-id", "CRF-5", rc=1)
        self.assertIn("(HTTP 501)", err)
        self.ctl("refund", CHANNEL["epay"], "--out-trade-no", "NOPE", "1.00",
                 "--refund-id", "CRF-6", rc=6)
        for argv in (["refund", "nope", "--out-trade-no", "C-1", "1.00", "--refund-id", "x"],
                     ["account", "nope"], ["settlements", "nope"]):
            rc, out, err = self.ctl(*argv, rc=6)
            self.assertIn("unknown channel", err)
        # account and settlements
        rc, out, err = self.ctl("account", CHANNEL["epay"], rc=0)
        self.assertIn("balance: 1234.56", out)
        self.assertIn("status: active", out)
        rc, out, err = self.ctl("--json", "account", CHANNEL["epay"], rc=0)
        self.assertEqual(json.loads(out)["balance_fen"], 123456)
        rc, out, err = self.ctl("settlements", CHANNEL["epay"], rc=0)
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^ID +MONEY +REAL MONEY +STATUS +ADDED +ENDED +ACCOUNT")
        self.assertEqual(len(lines), 3, out)
        self.assertTrue(lines[1].startswith("1001 "), out)
        rc, out, err = self.ctl("--json", "settlements", CHANNEL["epay"], rc=0)
        self.assertEqual(len(json.loads(out)["settlements"]), 2)
        rc, out, err = self.ctl("account", CHANNEL["gatepay"], rc=1)
        self.assertIn("(HTTP 501)", err)

    def test_11_ctl_usage(self):
        self.gw = self.gateway("epay")
        self.write_config([(CHANNEL["epay"], "epay", self.gw, {})])
        for argv in (["refund", CHANNEL["epay"], "1.00", "--refund-id", "x"],
                     ["refund", CHANNEL["epay"], "--out-trade-no", "a", "--trade-no", "b",
                      "1.00", "--refund-id", "x"],
                     ["refund", CHANNEL["epay"], "--out-trade-no", "a", "1.00"],
                     ["refund", CHANNEL["epay"], "--out-trade-no", "a", "abc",
                      "--refund-id", "x"],
                     ["refund", CHANNEL["epay"], "--out-trade-no", "a", "0",
                      "--refund-id", "x"],
                     ["account"], ["settlements", "a", "b"]):
            rc, out, err = self.ctl(*argv, rc=2)
            self.assertRegex(err, r"(?m)^usage: payrelayctl", err)

    def test_12_ctl_wrong_token_and_daemon_down(self):
        argvs = (["refund", CHANNEL["epay"], "--out-trade-no", "C-1", "1.00",
                  "--refund-id", "x"],
                 ["account", CHANNEL["epay"]], ["settlements", CHANNEL["epay"]])
        self.gw = self.gateway("epay")
        self.write_config([(CHANNEL["epay"], "epay", self.gw, {})])
        for argv in argvs:  # nothing listens yet
            rc, out, err = self.ctl("--timeout", "2", *argv, rc=3)
            self.assertRegex(err, r"^payrelayctl: cannot reach payrelayd at ", err)
        self.start_daemon()
        wrong = self.write_config([(CHANNEL["epay"], "epay", self.gw, {})],
                                  path=os.path.join(self.dir, "wrong.conf"))
        with open(wrong, encoding="utf-8") as f:
            text = f.read().replace(h.ADMIN_TOKEN, "not-the-" + h.ADMIN_TOKEN)
        with open(wrong, "w", encoding="utf-8") as f:
            f.write(text)
        self.secrets.append("not-the-" + h.ADMIN_TOKEN)
        for argv in argvs:
            rc, out, err = self.ctl(*argv, config=wrong, rc=5)
            self.assertIn("the admin token was refused", err)
        self.assertEqual(self.gw.queries(kind=None), [])


if __name__ == "__main__":
    sys.exit(h.run_tests())
