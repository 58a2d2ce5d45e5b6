#!/usr/bin/env python3
"""The gateway client end to end (SPEC 10, issue 13's Tests): payments
created through payrelayd, the payer's return, the gateway's notify, the
webhook, refunds, the account and settlements, working together.

For each family one payrelayd, a webhook receiver and the fake gateway of
fakegw.py (which checks every signature it gets with its own code):

- POST /v1/payments with a return_to (epay: api and redirect mode) -> the
  order is registered with its amount;
- the payer's return BEFORE the notify, built by the fake gateway for the
  order it created and sent to the return_url payrelayd gave it -> 302 to
  exactly the creation's return_to (not the channel's) with status=paid and
  a sig this test checks with its own HMAC; the event is recorded with
  source "return"; then the gateway's notify is acked, a duplicate (same
  event id), not flagged, and the webhook gets the event once;
- another order: notify first, return after -> paid, nothing new;
- forged returns for a created order (another amount, bad sign) ->
  status=invalid, to the creation's return_to, nothing recorded;
- epay: a refund of the created and paid order -> order.refunded in the
  stream and at the webhook; a second refund beyond what is left refused;
- Chinese, '&' and '=' in subject and param from the create to the event;
- payrelayctl pay -> return and notify -> payrelayctl refund -> payrelayctl
  events find shows both events; payrelayctl account and settlements;
- no secret (channel key, admin token, return_secret, webhook secret) in any
  answer, Location header, payrelayctl output or the daemon's log.

    PAYRELAYD=build/src/payrelayd PAYRELAYCTL=build/src/payrelayctl \\
        PAYRELAY_VECTORS=../shared/vectors python3 tests/integration/test_gateway_client.py
"""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import fakegw  # noqa: E402

EPAY = h.load_vectors("epay.json")["vectors"]
GATE = h.load_vectors("gatepay.json")["vectors"]
PIDX = h.load_vectors("payindex.json")["vectors"]
CREDS = {
    "epay": ("1001", EPAY[0]["key"]),
    "gatepay": (GATE[0]["appkey"], GATE[0]["appsecret"]),
    "payindex": ("10002", PIDX[0]["key"]),
}
RETURN_SECRET = "rs_e2e-3b7f0c9d1a5e4f2b8c6d-return-key"
# The channel's own return_to: a payment created with one must never go there.
CHANNEL_RETURN_TO = "https://m.example.com/paid"
STREAM = "payrelay:events"
# Free text as merchants write it: Chinese, and the separators of the
# gateways' signed strings.
SUBJECT = "VIP会员 & 年费=1个月"
PARAM = "uid=42&ref=a=b&备注=中文"
METHOD = {"epay": "alipay", "gatepay": "alipay", "payindex": "903"}
ACK = {"epay": b"success", "gatepay": b"success", "payindex": b"OK"}


def locate_ctl():
    b = os.environ.get("PAYRELAYCTL")
    if b:
        return b
    guess = os.path.normpath(os.path.join(h.HERE, "..", "..", "build", "src", "payrelayctl"))
    return guess if os.path.exists(guess) else None


CTL = locate_ctl()
_seq = [0]


def otn(tag):
    """A fresh merchant order id."""
    _seq[0] += 1
    return "E2E%s%d%d" % (tag, int(time.time() * 1000) % 10**8, _seq[0])


def fen_of(amount):
    whole, _, frac = amount.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def sig_of(out_trade_no, status, ts, secret=RETURN_SECRET):
    """What the merchant's page computes (docs/payments.md)."""
    msg = ("%s.%s.%s" % (out_trade_no, status, ts)).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def docs_check_return():
    """check_return() of docs/payments.md, the merchant page's check of
    the redirect, exactly as printed there."""
    path = os.path.join(h.HERE, "..", "..", "docs", "payments.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    code = [b for b in blocks if "def check_return(" in b]
    assert len(code) == 1, "docs/payments.md: no single check_return block"
    ns = {}
    exec(compile(code[0], path, "exec"), ns)
    return ns["check_return"]


CHECK_RETURN = docs_check_return()
# The family's order-id parameter of a return.
ORDER_FIELD = {"epay": "out_trade_no", "gatepay": "out_order_id", "payindex": "orderid"}


def return_to_of(o):
    """A creation's return_to: a query and a fragment, which the redirect
    must keep in place."""
    return "https://shop.example.com/orders/%s?from=pay#done" % o


class ClientCase(h.DaemonClassCase):
    """One family's channel, fake gateway and webhook receiver, one
    payrelayd with public_url, return_hosts and return_secret."""

    family = None

    @classmethod
    def setUpClass(cls):
        mid, key = CREDS[cls.family]
        cls.gw = fakegw.FakeGateway(cls.family, mid, key)
        cls.addClassCleanup(cls.gw.stop)
        cls.rcv = h.Receiver()
        cls.addClassCleanup(cls.rcv.stop)
        cls.channel = "gc-" + cls.family
        # registered first, so it runs last: once the daemon has stopped
        cls.addClassCleanup(cls.assert_no_return_secret_logged)
        super().setUpClass()
        cls.r = cls.redis.client()
        cls.addClassCleanup(cls.r.close)

    @classmethod
    def config_for(cls, setup):
        head = h.config_head(setup.port, setup.admin_port, setup.redis_port,
                             writer="tests/integration/test_gateway_client.py")
        head = head.replace("[admin]", "public_url = http://127.0.0.1:%d\n"
                            "return_hosts = shop.example.com, m.example.com\n"
                            "return_secret = %s\n\n[admin]" % (setup.port, RETURN_SECRET), 1)
        mid, key = CREDS[cls.family]
        # gatepay confirms by query, its default (SPEC 2.5): the fake
        # gateway answers for the orders it created.
        return head + """
[channel:{ch}]
family = {fam}
merchant_id = {mid}
key = {key}
api_base = {api}
poll_after = 3600
return_to = {ret}

[webhook:svc]
url = {url}
secret = {whsec}
""".format(ch=cls.channel, fam=cls.family, mid=mid, key=key, api=cls.gw.api_base,
           ret=CHANNEL_RETURN_TO, url=cls.rcv.url(), whsec=h.WEBHOOK_SECRET)

    @classmethod
    def secrets(cls):
        return cls.setup.secrets() + [CREDS[cls.family][1], RETURN_SECRET]

    @classmethod
    def assert_no_return_secret_logged(cls):
        if getattr(cls, "daemon", None) is None:
            return  # it never started: setUpClass failed, and says why
        log = cls.daemon.log_text()
        for s in cls.secrets():
            if s in log:
                raise AssertionError("a secret appears in %s" % cls.daemon.log)

    # --- requests, each answer checked for secrets ----------------------------

    def assert_no_secret(self, reply, what):
        text = reply.body.decode("utf-8", "replace") + "\n" + "\n".join(
            "%s: %s" % kv for kv in reply.headers.items())
        for s in self.secrets():
            self.assertNotIn(s, text, "%s: a secret in the answer" % what)

    def admin(self, method, path, body=None):
        hd = {"Authorization": "Bearer " + h.ADMIN_TOKEN}
        if body is not None:
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
            hd["Content-Type"] = "application/json"
        r = h.http(self.setup.admin_port, method, path, body=body, headers=hd)
        self.assert_no_secret(r, "%s %s" % (method, path))
        try:
            r.json = json.loads(r.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            r.json = None
        return r

    def create(self, o, amount, return_to=None, mode=None, status=201):
        body = {"channel": self.channel, "out_trade_no": o, "amount": amount,
                "method": METHOD[self.family], "subject": SUBJECT, "param": PARAM}
        if return_to is not None:
            body["return_to"] = return_to
        if mode is not None:
            body["mode"] = mode
        r = self.admin("POST", "/v1/payments", body)
        self.assertEqual(r.status, status, "%r\n%s" % (r, self.daemon.log_tail()))
        q = self.gw.creates(o)
        if mode == "redirect":
            # no call: the payer's browser opens the signed page, and the
            # platform checks its signature
            self.assertEqual(q, [])
            u = urllib.parse.urlsplit(r.json["pay_url"])
            self.assertEqual(u.path, "/submit.php", r.json)
            page = h.http(u.port, "GET", u.path + "?" + u.query)
            self.assertEqual(page.status, 200)
            q = self.gw.creates(o)
        self.assertEqual(len(q), 1, q)
        self.assertTrue(q[0].auth_ok, (q[0].params, self.gw.api_base))
        return r.json

    def order(self, o):
        r = self.admin("GET", "/v1/orders/%s/%s" % (self.channel, o))
        self.assertEqual(r.status, 200, r)
        return r.json

    def stream_events(self, o):
        """The stream's events of order `o`, oldest first."""
        return [json.loads(f["event"]) for _sid, f in self.r.xrange(STREAM)
                if f.get("out_trade_no") == o]

    def deliveries(self, event_id):
        return [x for x in self.rcv.snapshot() if x.headers.get("webhook-id") == event_id]

    def wait_delivered(self, event_id, timeout=10):
        got = self.rcv.wait_for(lambda rs: any(x.headers.get("webhook-id") == event_id
                                               for x in rs), timeout)
        self.assertIsNotNone(got, "no delivery of %s\n%s" % (event_id, self.daemon.log_tail()))
        d = self.deliveries(event_id)[0]
        self.assertEqual(h.webhook_verify(h.WEBHOOK_SECRET, event_id, d.headers["webhook-timestamp"],
                                          d.body, d.headers["webhook-signature"]), 0, d)
        return json.loads(d.body)

    def assert_once_delivered(self, event_id):
        """One delivery of `event_id`, and none more a while later (a second
        would come at once: the first attempt is immediate)."""
        self.wait_delivered(event_id)
        time.sleep(1.0)
        self.assertEqual(len(self.deliveries(event_id)), 1, self.rcv.snapshot())

    def send_return(self, o, params=None):
        r = self.gw.send_return(o, params)
        self.assert_no_secret(r, "return of " + o)
        return r

    def assert_redirect(self, reply, o, status, return_to):
        """A 302 to exactly `return_to` with out_trade_no, status, ts and sig
        added to its query (before the fragment), the sig checked here."""
        self.assertEqual(reply.status, 302, "%r\n%s" % (reply, self.daemon.log_tail()))
        loc = reply.headers.get("Location", "")
        base, _, frag = return_to.partition("#")
        got, _, got_frag = loc.partition("#")
        self.assertEqual(got_frag, frag, loc)
        self.assertTrue(got.startswith(base + ("&" if "?" in base else "?")), loc)
        q = dict(urllib.parse.parse_qsl(got[len(base) + 1:], keep_blank_values=True,
                                        strict_parsing=True))
        self.assertEqual(sorted(q), ["out_trade_no", "sig", "status", "ts"], loc)
        self.assertRegex(q["ts"], r"^\d+$")
        self.assertLess(abs(int(q["ts"]) - time.time()), 30, loc)
        self.assertTrue(hmac.compare_digest(q["sig"], sig_of(o, status, q["ts"])),
                        "sig does not verify: %s" % loc)
        want = "%s%s%s#%s" % (base, "&" if "?" in base else "?", h.form_encode(
            [("out_trade_no", o), ("status", status), ("ts", q["ts"]), ("sig", q["sig"])]), frag)
        self.assertEqual(loc, want if frag else want[:-1])
        self.assertEqual(reply.headers.get("Cache-Control"), "no-store")
        # the merchant page's check as docs/payments.md prints it: this
        # redirect passes, and none with a value changed does
        self.assertEqual(CHECK_RETURN(q, RETURN_SECRET.encode()), (o, status), loc)
        for k, v in (("out_trade_no", o + "x"), ("status", "paid" if status != "paid" else
                                                    "pending"), ("ts", str(int(q["ts"]) - 1))):
            self.assertIsNone(CHECK_RETURN(dict(q, **{k: v}), RETURN_SECRET.encode()), k)
        self.assertIsNone(CHECK_RETURN(q, b"another secret"))
        return q

    def event_id(self, o):
        return h.event_id(self.channel, self.gw.orders[o].trade_id, "paid")

    def assert_paid_event(self, ev, o, amount, source):
        self.assertEqual((ev["id"], ev["type"], ev["channel"], ev["family"], ev["out_trade_no"],
                          ev["trade_no"], ev["status"], ev["amount_fen"], ev["source"]),
                         (self.event_id(o), "order.paid", self.channel, self.family, o,
                          self.gw.orders[o].trade_id, "paid", fen_of(amount), source), ev)
        self.assertNotIn("amount_mismatch", ev)
        self.assertNotIn("repeat_payment", ev)
        if self.family == "gatepay":
            self.assertEqual(ev.get("confirmed_by"), "query", ev)
        if self.family == "epay":
            self.assertEqual(ev["subject"], SUBJECT, ev)
        # the passthrough as created, byte for byte (gatepay's return
        # carries none: docs/payments.md)
        if source != "return" or self.family != "gatepay":
            self.assertEqual(ev.get("passthrough"), PARAM, ev)
        if self.family == "payindex":  # attach is outside payindex's signature
            self.assertIs(ev.get("passthrough_signed"), False, ev)

    def assert_acked(self, reply):
        self.assertEqual((reply.status, reply.body), (200, ACK[self.family]),
                         "%r\n%s" % (reply, self.daemon.log_tail()))

    # --- the flows ------------------------------------------------------------

    def return_then_notify(self, mode=None):
        o = otn("R")
        amount = "12.30"
        rt = return_to_of(o)
        ans = self.create(o, amount, return_to=rt, mode=mode)
        self.assertEqual((ans["channel"], ans["out_trade_no"], ans["amount"]),
                         (self.channel, o, amount))
        gwo = self.gw.orders[o]
        # payrelay gave the gateway its own URLs; the payer's return_to stays with payrelay
        self.assertEqual(gwo.notify_url, "http://127.0.0.1:%d/notify/%s"
                         % (self.setup.port, self.channel))
        self.assertEqual(gwo.return_url, "http://127.0.0.1:%d/return/%s"
                         % (self.setup.port, self.channel))
        d = self.order(o)
        self.assertEqual((d["state"], d["amount_fen"], d["amount"], d.get("return_to")),
                         ("pending", 1230, amount, rt), d)
        # the payer paid; the gateway sends the browser back before its notify
        self.gw.set_state(o, "paid")
        self.assert_redirect(self.send_return(o), o, "paid", rt)
        evs = self.stream_events(o)
        self.assertEqual(len(evs), 1, evs)
        self.assert_paid_event(evs[0], o, amount, "return")
        self.assertEqual(self.order(o)["state"], "paid")
        # the notify: acked, a duplicate of the same event
        self.assert_acked(self.gw.notify(o))
        self.assertEqual([e["id"] for e in self.stream_events(o)], [self.event_id(o)])
        got = self.wait_delivered(self.event_id(o))
        self.assertEqual(got["source"], "return")
        self.assert_once_delivered(self.event_id(o))
        # a reload of the return page: paid again, nothing new
        self.assert_redirect(self.send_return(o), o, "paid", rt)
        self.assertEqual(len(self.stream_events(o)), 1)
        return o

    def test_01_return_before_notify(self):
        self.return_then_notify()

    def test_02_notify_before_return(self):
        o = otn("N")
        amount = "0.5"
        rt = return_to_of(o)
        self.create(o, amount, return_to=rt)
        self.assertEqual(self.order(o)["amount_fen"], 50)
        self.assert_acked(self.gw.notify(o))
        evs = self.stream_events(o)
        self.assertEqual(len(evs), 1, evs)
        self.assert_paid_event(evs[0], o, amount, "callback")
        self.wait_delivered(self.event_id(o))
        # the return after it: paid, nothing recorded anew
        self.assert_redirect(self.send_return(o), o, "paid", rt)
        self.assertEqual([e["source"] for e in self.stream_events(o)], ["callback"])
        self.assert_once_delivered(self.event_id(o))

    def test_03_forged_returns(self):
        o = otn("F")
        rt = return_to_of(o)
        self.create(o, "8.00", return_to=rt)
        self.gw.set_state(o, "paid")
        genuine = fakegw.return_params(self.gw, o)
        amount_field = {"epay": "money", "gatepay": "price", "payindex": "amount"}[self.family]
        sign = genuine["sign"]
        forged = [dict(genuine, **{amount_field: "0.01"}),
                  dict(genuine, sign=sign[:-1] + ("0" if sign[-1] != "0" else "1"))]
        for p in forged:
            self.assert_redirect(self.send_return(o, p), o, "invalid", rt)
        # docs/payments.md's curl: a bare order id is no return, and still
        # gets the order's return_to, signed
        r = h.http(self.setup.port, "GET", "/return/%s?%s=%s" % (self.channel,
                                                               ORDER_FIELD[self.family], o))
        self.assert_no_secret(r, "bare return")
        self.assert_redirect(r, o, "invalid", rt)
        self.assertEqual(r.headers.get("Referrer-Policy"), "no-referrer")
        self.assertEqual(self.stream_events(o), [])
        self.assertEqual(self.order(o)["state"], "pending")
        # confirmation is never asked for what did not verify
        self.assertEqual(self.gw.count(o), 0)

    def test_04_recreate_after_the_return(self):
        """The service retries its create after the payer came back paid:
        the stored first answer, no second gateway call; another amount 409."""
        o = otn("I")
        rt = return_to_of(o)
        first = self.create(o, "3.00", return_to=rt)
        self.gw.set_state(o, "paid")
        self.assert_redirect(self.send_return(o), o, "paid", rt)
        body = {"channel": self.channel, "out_trade_no": o, "amount": "3", "return_to": rt,
                "method": METHOD[self.family], "subject": SUBJECT, "param": PARAM}
        r = self.admin("POST", "/v1/payments", body)
        self.assertEqual((r.status, r.json), (200, first), r)
        r = self.admin("POST", "/v1/payments", dict(body, amount="3.01"))
        self.assertEqual(r.status, 409, r)
        self.assertEqual(len(self.gw.creates(o)), 1)
        self.assertEqual(self.order(o)["state"], "paid")
        self.assertEqual(len(self.stream_events(o)), 1)

    def test_05_refund(self):
        o = otn("F")
        self.create(o, "10.00")
        self.gw.set_state(o, "paid")
        self.assertEqual(self.send_return(o).status, 302)
        body = {"channel": self.channel, "out_trade_no": o, "amount": "4.00",
                "refund_id": "RF-" + o}
        r = self.admin("POST", "/v1/refunds", body)
        if self.family != "epay":
            self.assertEqual(r.status, 501, r)
            return
        self.assertEqual(r.status, 201, "%r\n%s" % (r, self.daemon.log_tail()))
        rid = r.json["event_id"]
        self.assertEqual((r.json["refunded_fen"], r.json["refundable_fen"]), (400, 600), r.json)
        self.assertEqual(self.gw.refunds, [(self.gw.orders[o].trade_id, 400)])
        evs = self.stream_events(o)
        self.assertEqual([(e["type"], e["id"]) for e in evs],
                         [("order.paid", self.event_id(o)), ("order.refunded", rid)], evs)
        self.assertEqual((evs[1]["refund_amount_fen"], evs[1]["amount_fen"]), (400, 1000))
        got = self.wait_delivered(rid)
        self.assertEqual((got["type"], got["refund_id"]), ("order.refunded", "RF-" + o))
        # more than is left: refused before the gateway is asked
        r = self.admin("POST", "/v1/refunds", dict(body, amount="6.01", refund_id="RF2-" + o))
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json["refundable_fen"], 600, r.json)
        self.assertEqual(len(self.gw.queries(kind="refund")), 1)
        self.assertEqual(len(self.stream_events(o)), 2)

    def test_99_no_secret_in_the_log(self):
        log = self.daemon.log_text()
        self.assertIn("payment created", log)
        for s in self.secrets():
            self.assertNotIn(s, log)


class EpayTest(ClientCase):
    workdir_prefix = "payrelay-gc-epay-"
    family = "epay"

    def test_01b_redirect_mode_return_before_notify(self):
        self.return_then_notify(mode="redirect")

    def ctl(self, *args):
        p = subprocess.run([CTL, "-c", self.setup.config] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        for s in self.secrets():
            self.assertNotIn(s, out + err, args)
        self.assertEqual(p.returncode, 0, "%r: %s%s\n%s" % (args, out, err,
                                                              self.daemon.log_tail()))
        return out

    @unittest.skipUnless(CTL, "payrelayctl not found: set PAYRELAYCTL")
    def test_06_payrelayctl_end_to_end(self):
        o = otn("C")
        rt = return_to_of(o)
        out = self.ctl("pay", self.channel, o, "6.6", "--method", "alipay", "--subject", SUBJECT,
                       "--param", PARAM, "--return-to", rt)
        self.assertEqual(out.splitlines()[0], "created", out)
        self.assertIn("pay_url: %s/pay/%s/\n" % (self.gw.api_base, self.gw.orders[o].trade_id),
                      out)
        self.assertIn("state: pending", out)
        self.assertIn("amount: 6.60", out)
        # the payer comes back, then the notify
        self.gw.set_state(o, "paid")
        self.assert_redirect(self.send_return(o), o, "paid", rt)
        self.assert_acked(self.gw.notify(o))
        out = self.ctl("refund", self.channel, "--out-trade-no", o, "6.60", "--refund-id",
                       "CRF-" + o)
        self.assertEqual(out.splitlines()[0], "refunded", out)
        refund_id = [x for x in out.splitlines() if x.startswith("event_id: ")][0][10:]
        self.wait_delivered(refund_id)
        # the receiver has the request; the outcome reaches Redis a moment
        # after its answer
        deadline = time.monotonic() + 5
        while True:
            out = self.ctl("events", "find", "--out-trade-no", o)
            if out.count(" delivered ") >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        blocks = out.split("\n\n")
        self.assertEqual(len(blocks), 2, out)
        self.assertIn("id: %s\n" % self.event_id(o), blocks[0])
        self.assertIn("type: order.paid\n", blocks[0])
        self.assertIn("source: return\n", blocks[0])
        self.assertIn("id: %s\n" % refund_id, blocks[1])
        self.assertIn("type: order.refunded\n", blocks[1])
        for blk in blocks:
            self.assertRegex(blk, r"(?m)^  dlv_[0-9a-f]{32}\s+svc\s+delivered\s+1\s+200", out)
        js = json.loads(self.ctl("--json", "events", "find", "--out-trade-no", o))
        self.assertEqual([e["type"] for e in js["events"]], ["order.paid", "order.refunded"])
        self.assertEqual(js["events"][0]["passthrough"], PARAM)
        self.assertEqual(js["events"][0]["subject"], SUBJECT)
        # the merchant's account and settlements, as tables
        out = self.ctl("account", self.channel)
        self.assertIn("balance: 1234.56\n", out)
        self.assertIn("status: active\n", out)
        self.assertNotIn("key", out.replace("api_base", ""))
        out = self.ctl("settlements", self.channel)
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^ID +MONEY +REAL MONEY +STATUS +ADDED +ENDED +ACCOUNT")
        self.assertEqual([x.split()[0] for x in lines[1:]], ["1001", "1002"], out)


class GatepayTest(ClientCase):
    workdir_prefix = "payrelay-gc-gatepay-"
    family = "gatepay"


    def test_07_stablepay_return_before_notify(self):
        """A fixed product (stablepay, no amount sent): its return names the
        product_id, which gatepay's return signature covers."""
        o = otn("S")
        rt = return_to_of(o)
        r = self.admin("POST", "/v1/payments", {
            "channel": self.channel, "out_trade_no": o, "product_id": "8", "method": "wechat",
            "param": PARAM, "return_to": rt})
        self.assertEqual(r.status, 201, r)
        self.assertIsNone(r.json["amount"])
        self.assertEqual(self.gw.creates(o)[0].path, "/api/stablepay/create")
        self.gw.set_state(o, "paid")
        p = fakegw.gatepay_return(self.gw.merchant_id, self.gw.key, self.gw.orders[o],
                                  product_id="8")
        self.assert_redirect(self.send_return(o, p), o, "paid", rt)
        evs = self.stream_events(o)
        self.assertEqual([(e["source"], e["amount_fen"], e["confirmed_by"]) for e in evs],
                         [("return", 990, "query")], evs)
        self.assert_acked(self.gw.notify(o))
        self.assertEqual([e["id"] for e in self.stream_events(o)], [self.event_id(o)])
        self.assert_once_delivered(self.event_id(o))


class PayindexTest(ClientCase):
    workdir_prefix = "payrelay-gc-payindex-"
    family = "payindex"


del ClientCase  # its tests run in each family's class only

if __name__ == "__main__":
    sys.exit(h.run_tests())
