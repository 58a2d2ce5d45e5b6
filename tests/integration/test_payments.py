#!/usr/bin/env python3
"""Integration tests of creating payments through payrelayd (SPEC 10.1):
POST /v1/payments and payrelayctl pay against the fake gateways of
fakegw.py, which implement each family's create API as the gateways'
documents describe it and check every signature with their own code.

For each family: create (api, and epay's redirect) -> the order is
registered with its amount -> the gateway's signed notify is recorded,
matched and not flagged; idempotent re-creates, another amount (409),
gateway errors (502, no secret anywhere), return_to, Chinese text and
'&', '=' in subject and passthrough, the channel's device default, gatepay's
stablepay and grouppay.

    PAYRELAYD=build/src/payrelayd PAYRELAYCTL=build/src/payrelayctl \\
        PAYRELAY_VECTORS=../shared/vectors python3 tests/integration/test_payments.py
"""

import json
import os
import signal
import subprocess
import sys
import threading
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
RETURN_HOST = "shop.example.com"


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
    return "P%s%d%d" % (tag, int(time.time() * 1000) % 10**8, _seq[0])


class PaymentsCase(h.DaemonClassCase):
    workdir_prefix = "payrelay-pay-"

    @classmethod
    def setUpClass(cls):
        cls.gw = {}
        for name, family in (("epay", "epay"), ("jump", "epay"), ("gatepay", "gatepay"),
                             ("payindex", "payindex")):
            mid, key = CREDS[family]
            g = fakegw.FakeGateway(family, mid, key)
            cls.addClassCleanup(g.stop)
            cls.gw[name] = g
        cls.gw["jump"].require_device = "jump"
        super().setUpClass()
        cls.r = cls.redis.client()
        cls.addClassCleanup(cls.r.close)

    @classmethod
    def config_for(cls, setup):
        head = h.config_head(setup.port, setup.admin_port, setup.redis_port,
                             writer="tests/integration/test_payments.py")
        head = head.replace("[admin]", "public_url = http://127.0.0.1:%d/\nreturn_hosts = %s, "
                            "m.example.com\n\n[admin]" % (setup.port, RETURN_HOST), 1)
        text = head
        chans = [("pay-epay", "epay", "epay", {}),
                 ("pay-jump", "epay", "jump", {"device": "jump"}),
                 ("pay-gatepay", "gatepay", "gatepay", {}),  # confirm = query: the default
                 ("pay-payindex", "payindex", "payindex", {})]
        for name, family, g, extra in chans:
            mid, key = CREDS[family]
            text += "\n[channel:%s]\nfamily = %s\nmerchant_id = %s\nkey = %s\napi_base = %s\n" % (
                name, family, mid, key, cls.gw[g].api_base)
            text += "poll_after = 3600\n"
            text += "".join("%s = %s\n" % kv for kv in extra.items())
        return text

    # --- helpers ------------------------------------------------------------

    def admin(self, method, path, body=None, token=h.ADMIN_TOKEN, port=None):
        hd = {}
        if token is not None:
            hd["Authorization"] = "Bearer " + token
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if body is not None:
            hd["Content-Type"] = "application/json"
        r = h.http(port or self.setup.admin_port, method, path, body=body, headers=hd)
        try:
            r.json = json.loads(r.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            r.json = None
        return r

    def pay(self, body, status=201):
        r = self.admin("POST", "/v1/payments", body)
        self.assertEqual(r.status, status, "%r %r\n%s" % (body, r.body, self.daemon.log_tail()))
        return r.json

    def order(self, channel, o, status=200):
        r = self.admin("GET", "/v1/orders/%s/%s" % (channel, urllib.parse.quote(o, safe="")))
        self.assertEqual(r.status, status, r.body)
        return r.json

    def wait_paid(self, channel, o, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            d = self.order(channel, o)
            if d.get("state") == "paid":
                return d
            self.assertLess(time.monotonic(), deadline, "%r\n%s" % (d, self.daemon.log_tail()))
            time.sleep(0.05)

    def events(self, channel, o):
        r = self.admin("GET", "/v1/events?out_trade_no=%s&channel=%s" % (
            urllib.parse.quote(o, safe=""), channel))
        self.assertEqual(r.status, 200, r.body)
        return r.json["events"]

    def notify_and_check(self, gwname, channel, o, amount_fen):
        """The gateway's notify is recorded, matched and not flagged."""
        r = self.gw[gwname].notify(o)
        self.assertEqual(r.status, 200, "%r\n%s" % (r.body, self.daemon.log_tail()))
        self.assertIn(r.body.strip().lower(), (b"success", b"ok"))
        d = self.wait_paid(channel, o)
        self.assertEqual(d["amount_fen"], amount_fen)
        evs = self.events(channel, o)
        self.assertEqual([e["type"] for e in evs], ["order.paid"], evs)
        self.assertNotIn("amount_mismatch", evs[0])
        self.assertNotIn("repeat_payment", evs[0])
        self.assertEqual(evs[0]["amount_fen"], amount_fen)
        return evs[0]

    def assert_no_secret(self, text):
        for s in self.setup.secrets() + [CREDS["gatepay"][1]]:
            self.assertNotIn(s, text)

    # --- epay ---------------------------------------------------------------

    def test_epay_api_create_then_notify(self):
        o = otn("E")
        subject = "VIP会员 & 年费=1"
        param = "uid=7&ref=a=b"
        ans = self.pay({"channel": "pay-epay", "out_trade_no": o, "amount": "12.3",
                        "method": "alipay", "subject": subject, "param": param,
                        "client_ip": "10.1.2.3"})
        g = self.gw["epay"]
        q = g.creates(o)
        self.assertEqual(len(q), 1)
        self.assertTrue(q[0].auth_ok, q[0].params)  # the fake gateway checked the signature
        p = q[0].params
        self.assertEqual((p["name"], p["param"], p["money"], p["type"], p["clientip"]),
                         (subject, param, "12.30", "alipay", "10.1.2.3"))
        self.assertEqual(p["notify_url"], "http://127.0.0.1:%d/notify/pay-epay" % self.setup.port)
        self.assertEqual(p["return_url"], "http://127.0.0.1:%d/return/pay-epay" % self.setup.port)
        self.assertNotIn("device", p)  # no default on this channel: the platform's (pc)
        trade = g.orders[o].trade_id
        self.assertEqual(ans, {"channel": "pay-epay", "out_trade_no": o, "amount": "12.30",
                               "pay_url": g.api_base + "/pay/" + trade + "/",
                               "gateway_trade_no": trade})
        d = self.order("pay-epay", o)
        self.assertEqual((d["state"], d["amount_fen"], d["amount"], d["pay_kind"], d["pay_mode"]),
                         ("pending", 1230, "12.30", "pay_url", "api"))
        # a number, as every *_ms field of an order; the creation is the registration
        self.assertIsInstance(d["pay_created_ms"], int)
        self.assertEqual(d["pay_created_ms"], d["created_ms"])
        self.assertNotIn("return_to", d)
        ev = self.notify_and_check("epay", "pay-epay", o, 1230)
        self.assertEqual((ev["subject"], ev["passthrough"]), (subject, param))

    def test_epay_redirect_mode(self):
        o = otn("R")
        g = self.gw["epay"]
        ans = self.pay({"channel": "pay-epay", "out_trade_no": o, "amount": "0.5",
                        "method": "wxpay", "subject": "充值 a&b=c", "param": "x=1&y=2",
                        "mode": "redirect"})
        self.assertEqual(g.creates(o), [])  # no call
        url = ans["pay_url"]
        self.assertTrue(url.startswith(g.api_base + "/submit.php?"), url)
        self.assertIsNone(ans["gateway_trade_no"])
        self.assertEqual(ans["amount"], "0.50")
        self.assertEqual(self.order("pay-epay", o)["pay_mode"], "redirect")
        # the payer's browser follows it: the platform checks the signature
        u = urllib.parse.urlsplit(url)
        r = h.http(u.port, "GET", u.path + "?" + u.query)
        self.assertEqual(r.status, 200)
        q = g.creates(o)
        self.assertEqual(len(q), 1)
        self.assertTrue(q[0].auth_ok, (q[0].params, r.body))
        self.assertEqual(q[0].params["name"], "充值 a&b=c")
        self.assertNotIn("clientip", q[0].params)
        self.notify_and_check("epay", "pay-epay", o, 50)

    def test_epay_qrcode_and_urlscheme(self):
        g = self.gw["epay"]
        for action, member in (("create_qrcode", "qrcode"), ("create_urlscheme", "urlscheme")):
            o = otn("Q")
            g.create_script([action])
            ans = self.pay({"channel": "pay-epay", "out_trade_no": o, "amount": "1",
                            "method": "wxpay"})
            self.assertIn(member, ans)
            self.assertNotIn("pay_url", ans)
            self.assertEqual(self.order("pay-epay", o)["pay_kind"], member)
            again = self.pay({"channel": "pay-epay", "out_trade_no": o, "amount": "1.00",
                              "method": "wxpay"}, status=200)
            self.assertEqual(again, ans)

    def test_idempotent_and_conflict(self):
        o = otn("I")
        g = self.gw["epay"]
        body = {"channel": "pay-epay", "out_trade_no": o, "amount": "3.00", "method": "alipay"}
        first = self.pay(body)
        second = self.pay(dict(body, amount="3"), status=200)
        self.assertEqual(first, second)
        self.assertEqual(len(g.creates(o)), 1)  # one gateway call
        r = self.admin("POST", "/v1/payments", dict(body, amount="3.01"))
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(r.json["registered_amount"], "3.00")
        self.assertEqual(len(g.creates(o)), 1)
        # an order registered by POST /v1/orders with another amount
        o2 = otn("J")
        r = self.admin("POST", "/v1/orders", {"channel": "pay-epay", "out_trade_no": o2,
                                              "amount": "5.00"})
        self.assertEqual(r.status, 201)
        r = self.admin("POST", "/v1/payments", dict(body, out_trade_no=o2))
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(g.creates(o2), [])
        # ... and with the same amount: the payment joins it
        ans = self.pay(dict(body, out_trade_no=o2, amount="5"))
        self.assertEqual(ans["amount"], "5.00")
        self.assertEqual(self.order("pay-epay", o2)["pay_kind"], "pay_url")

    def test_concurrent_creates(self):
        """Two creates of one order at once: one gateway call; the second
        is told to retry (409) while the first runs, then gets its answer."""
        o = otn("K")
        g = self.gw["epay"]
        g.create_script(["slow:1.5"])
        body = {"channel": "pay-epay", "out_trade_no": o, "amount": "8.00", "method": "alipay"}
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("a", self.admin(
            "POST", "/v1/payments", body)))
        t.start()
        self.assertIsNotNone(g.wait_count(1, 5, o, kind="create"))
        r = self.admin("POST", "/v1/payments", body)
        self.assertEqual(r.status, 409, r.body)
        self.assertIn("retry", r.json["error"])
        t.join(10)
        self.assertEqual(out["a"].status, 201, out["a"].body)
        again = self.pay(body, status=200)
        self.assertEqual(again, out["a"].json)
        self.assertEqual(len(g.creates(o)), 1)

    def test_fake_gateways_check_signatures(self):
        """The fake gateways refuse what is not signed right: their checks
        are what the other tests lean on."""
        g = self.gw["epay"]
        p = {"pid": "1001", "type": "alipay", "out_trade_no": otn("S"), "notify_url": "http://x/n",
             "return_url": "http://x/r", "name": "n", "money": "1.00", "clientip": "1.2.3.4"}
        p["sign"] = h.epay_md5_sign(p, CREDS["epay"][1] + "x")
        p["sign_type"] = "MD5"
        r = h.http(g.port, "POST", "/mapi.php", body=h.form_encode(p),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(json.loads(r.body)["code"], -1)
        r = h.http(g.port, "GET", "/submit.php?" + h.form_encode(p))
        self.assertIn("签名校验失败", r.body.decode())
        g = self.gw["gatepay"]
        q = {"appkey": CREDS["gatepay"][0], "price": "1.00", "type": "alipay",
             "out_order_id": otn("S"), "custom": "", "sign": "0" * 32}
        r = h.http(g.port, "POST", "/api/anypay/create", body=h.form_encode(q),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(json.loads(r.body)["code"], 104)
        g = self.gw["payindex"]
        q = {"pay_memberid": "10002", "pay_orderid": otn("S"),
             "pay_applydate": "2026-01-01 00:00:00", "pay_bankcode": "903",
             "pay_notifyurl": "http://x/n", "pay_callbackurl": "http://x/r", "pay_amount": "1.00",
             "pay_productname": "n", "type": "json"}
        q["pay_md5sign"] = h.payindex_sign(q, CREDS["payindex"][1])  # signs too much: wrong
        r = h.http(g.port, "POST", "/Pay_Index.html", body=h.form_encode(q),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(json.loads(r.body)["status"], "error")

    def test_gateway_errors(self):
        g = self.gw["epay"]
        for action in ("create_fail", "create_echo", "garbage", "http500"):
            o = otn("F")
            g.create_script([action])
            r = self.admin("POST", "/v1/payments", {"channel": "pay-epay", "out_trade_no": o,
                                                    "amount": "1.00", "method": "alipay"})
            self.assertEqual(r.status, 502, r.body)
            self.assert_no_secret(r.body.decode("utf-8"))
            if action.startswith("create_"):
                self.assertEqual(r.json["gateway_code"], "-1")
            else:
                self.assertEqual(r.json["gateway_code"], "")
            if action == "create_fail":
                self.assertEqual(r.json["gateway_message"], "支付通道已关闭")
            if action == "create_echo":
                self.assertIn("***", r.json["gateway_message"])
            if action == "http500":
                self.assertEqual(r.json["http_status"], 500)
            self.order("pay-epay", o, status=404)  # nothing registered
            # the lock is given back: a retry creates it
            self.pay({"channel": "pay-epay", "out_trade_no": o, "amount": "1.00",
                      "method": "alipay"})
        self.assert_no_secret(self.daemon.log_text())
        for name in ("gatepay", "payindex"):
            o = otn("G")
            self.gw[name].create_script(["create_echo"])
            r = self.admin("POST", "/v1/payments", {
                "channel": "pay-" + name, "out_trade_no": o, "amount": "1.00",
                "method": "wechat" if name == "gatepay" else "903"})
            self.assertEqual(r.status, 502, r.body)
            self.assertEqual(r.json["gateway_code"], "199" if name == "gatepay" else "error")
            self.assertIn("***", r.json["gateway_message"])
            self.assert_no_secret(r.body.decode("utf-8"))
        self.assert_no_secret(self.daemon.log_text())

    def test_return_to(self):
        o = otn("T")
        r = self.admin("POST", "/v1/payments", {
            "channel": "pay-epay", "out_trade_no": o, "amount": "1.00", "method": "alipay",
            "return_to": "https://evil.example.net/done"})
        self.assertEqual(r.status, 400, r.body)
        for bad in ("https://shop.example.com@evil.example.net/", "javascript:alert(1)",
                    "https://shop.example.com.evil.net/"):
            r = self.admin("POST", "/v1/payments", {
                "channel": "pay-epay", "out_trade_no": o, "amount": "1.00", "method": "alipay",
                "return_to": bad})
            self.assertEqual(r.status, 400, bad)
        self.assertEqual(self.gw["epay"].creates(o), [])
        url = "https://%s/orders/%s?from=pay" % (RETURN_HOST, o)
        self.pay({"channel": "pay-epay", "out_trade_no": o, "amount": "1.00", "method": "alipay",
                  "return_to": url})
        self.assertEqual(self.r.hgetall("payrelay:order:pay-epay:" + o)["return_to"], url)

    def test_device_default_from_channel(self):
        g = self.gw["jump"]
        o = otn("D")
        self.pay({"channel": "pay-jump", "out_trade_no": o, "amount": "2.00",
                  "method": "alipay"})
        self.assertEqual(g.creates(o)[0].params["device"], "jump")
        # the caller's device wins, and this platform refuses it
        o = otn("D")
        r = self.admin("POST", "/v1/payments", {"channel": "pay-jump", "out_trade_no": o,
                                                "amount": "2.00", "method": "alipay",
                                                "device": "pc"})
        self.assertEqual(r.status, 502, r.body)
        self.assertIn("device", r.json["gateway_message"])

    def test_bad_requests(self):
        o = otn("B")
        cases = [
            ({"channel": "nope", "out_trade_no": o, "amount": "1", "method": "alipay"}, 404),
            ({"channel": "pay-epay", "out_trade_no": o, "amount": "1.001", "method": "a"}, 400),
            ({"channel": "pay-epay", "out_trade_no": o, "amount": "0", "method": "a"}, 400),
            ({"channel": "pay-epay", "out_trade_no": o, "amount": 1, "method": "a"}, 400),
            ({"channel": "pay-epay", "out_trade_no": o, "amount": "1"}, 400),  # no method
            ({"channel": "pay-epay", "out_trade_no": "a&b", "amount": "1", "method": "a"}, 400),
            ({"channel": "pay-epay", "out_trade_no": o, "amount": "1", "method": "a",
              "mode": "popup"}, 400),
            ({"channel": "pay-epay", "out_trade_no": o, "amount": "1", "method": "a",
              "ammount": "1"}, 400),
            ({"channel": "pay-epay", "out_trade_no": o, "amount": "1", "method": "a",
              "product_id": "8"}, 400),
            ({"channel": "pay-gatepay", "out_trade_no": o, "amount": "1", "method": "wechat",
              "mode": "redirect"}, 400),
        ]
        for body, status in cases:
            r = self.admin("POST", "/v1/payments", body)
            self.assertEqual(r.status, status, "%r: %r" % (body, r.body))
            self.assertIn("error", r.json)
        r = self.admin("POST", "/v1/payments", {"channel": "pay-epay"}, token="wrong")
        self.assertEqual(r.status, 401)
        r = self.admin("GET", "/v1/payments")
        self.assertEqual(r.status, 405)
        self.assertEqual(self.gw["epay"].creates(o), [])

    # --- gatepay ------------------------------------------------------------

    def test_gatepay_anypay_then_notify_confirmed(self):
        o = otn("GA")
        g = self.gw["gatepay"]
        ans = self.pay({"channel": "pay-gatepay", "out_trade_no": o, "amount": "1.88",
                        "method": "alipay", "subject": "ignored", "param": "用户=7&x"})
        q = g.creates(o)
        self.assertEqual((len(q), q[0].path, q[0].auth_ok), (1, "/api/anypay/create", True))
        self.assertEqual((q[0].params["price"], q[0].params["custom"]), ("1.88", "用户=7&x"))
        self.assertTrue(ans["pay_url"].startswith(g.api_base + "/pay/api?id="), ans)
        self.assertIsNone(ans["gateway_trade_no"])
        self.assertEqual(self.order("pay-gatepay", o)["amount_fen"], 188)
        ev = self.notify_and_check("gatepay", "pay-gatepay", o, 188)
        self.assertEqual(ev.get("confirmed_by"), "query")

    def test_gatepay_stablepay_and_grouppay(self):
        g = self.gw["gatepay"]
        o = otn("GS")
        self.pay({"channel": "pay-gatepay", "out_trade_no": o, "product_id": "8",
                  "amount": "9.90", "method": "wechat"})
        q = g.creates(o)[0]
        self.assertEqual((q.path, q.auth_ok, q.params["product_id"]),
                         ("/api/stablepay/create", True, "8"))
        self.assertNotIn("price", q.params)
        self.notify_and_check("gatepay", "pay-gatepay", o, 990)
        o = otn("GG")
        self.pay({"channel": "pay-gatepay", "out_trade_no": o, "fields": "8:2,7:1",
                  "amount": "21.30", "method": "alipay"})
        q = g.creates(o)[0]
        self.assertEqual((q.path, q.auth_ok, q.params["fields"]),
                         ("/api/grouppay/create", True, "8:2,7:1"))
        self.notify_and_check("gatepay", "pay-gatepay", o, 2130)
        # without an amount: registered without one (no amount check)
        o = otn("GN")
        ans = self.pay({"channel": "pay-gatepay", "out_trade_no": o, "product_id": "7",
                        "method": "alipay"})
        self.assertIsNone(ans["amount"])
        self.assertIsNone(self.order("pay-gatepay", o)["amount_fen"])
        r = self.admin("POST", "/v1/payments", {"channel": "pay-gatepay", "out_trade_no": otn("X"),
                                                "product_id": "404", "method": "alipay"})
        self.assertEqual((r.status, r.json["gateway_code"]), (502, "205"))

    # --- payindex -----------------------------------------------------------

    def test_payindex_create_then_notify(self):
        g = self.gw["payindex"]
        for ststus in (False, True):
            o = otn("PI")
            g.payindex_ststus = ststus
            ans = self.pay({"channel": "pay-payindex", "out_trade_no": o, "amount": "100",
                            "method": "903", "subject": "商品 & 服务=好", "param": "a=1&b=2"})
            q = g.creates(o)
            self.assertEqual((len(q), q[0].auth_ok), (1, True))
            self.assertEqual((q[0].params["pay_productname"], q[0].params["pay_attach"],
                              q[0].params["pay_amount"], q[0].params["type"]),
                             ("商品 & 服务=好", "a=1&b=2", "100.00", "json"))
            self.assertTrue(ans["pay_url"].startswith(g.api_base + "/index/"), ans)
            self.notify_and_check("payindex", "pay-payindex", o, 10000)
        g.payindex_ststus = False

    # --- payrelayctl pay -------------------------------------------------------

    def ctl(self, *args, config=None, timeout=30):
        argv = [CTL, "-c", config or self.setup.config] + list(args)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        self.assert_no_secret(out + err)
        self.assertNotIn("Sanitizer", err)
        return p.returncode, out, err

    def other_config(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    @unittest.skipUnless(CTL, "payrelayctl not found: set PAYRELAYCTL")
    def test_ctl_pay(self):
        o = otn("C")
        rc, out, err = self.ctl("pay", "pay-epay", o, "6.6", "--method", "alipay", "--subject",
                                "月卡 & x=y", "--return-to", "https://%s/r" % RETURN_HOST)
        self.assertEqual(rc, 0, err)
        self.assertIn("pay_url: " + self.gw["epay"].api_base + "/pay/", out)
        self.assertIn("state: pending", out)
        self.assertIn("amount: 6.60", out)
        self.assertTrue(self.gw["epay"].creates(o)[0].auth_ok)
        rc, out2, err = self.ctl("--json", "pay", "pay-epay", o, "6.60", "--method", "alipay")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out2)["out_trade_no"], o)
        self.assertEqual(len(self.gw["epay"].creates(o)), 1)
        rc, out, err = self.ctl("pay", "pay-epay", otn("C"), "1", "--method", "alipay",
                                "--redirect")
        self.assertEqual(rc, 0, err)
        self.assertIn("/submit.php?", out)
        # another amount: the API's 409
        rc, out, err = self.ctl("pay", "pay-epay", o, "7", "--method", "alipay")
        self.assertEqual(rc, 1, err)
        self.assertIn("409", err)
        # unknown channel
        rc, out, err = self.ctl("pay", "nope", otn("C"), "1", "--method", "alipay")
        self.assertEqual(rc, 6, err)
        # usage
        rc, out, err = self.ctl("pay", "pay-epay", otn("C"), "1.001")
        self.assertEqual(rc, 2, err)
        # wrong token
        bad = self.other_config("wrong-token.conf", self.config_text.replace(
            "token = " + h.ADMIN_TOKEN, "token = not-the-token-0123456789abcdef"))
        rc, out, err = self.ctl("pay", "pay-epay", otn("C"), "1", "--method", "alipay",
                                config=bad)
        self.assertEqual(rc, 5, err)
        # daemon down: nobody listens on that admin port
        down = self.other_config("down.conf", self.config_text.replace(
            "127.0.0.1:%d" % self.setup.admin_port, "127.0.0.1:%d" % h.free_port()))
        rc, out, err = self.ctl("pay", "pay-epay", otn("C"), "1", "--method", "alipay",
                                config=down)
        self.assertEqual(rc, 3, err)


class StopCase(PaymentsCase):
    """SIGTERM while a gateway is asked: that creation is answered 503 and
    its lock given back, and payrelayd exits 0 at once, nothing leaked."""

    workdir_prefix = "payrelay-pay-stop-"
    # only this test of the class: the others are PaymentsCase's
    for _name in [n for n in dir(PaymentsCase) if n.startswith("test_")]:
        locals()[_name] = None
    del _name

    def test_sigterm_during_create(self):
        o = otn("Z")
        g = self.gw["epay"]
        g.create_script(["slow:5"])
        out = {}
        body = {"channel": "pay-epay", "out_trade_no": o, "amount": "1.00", "method": "alipay"}

        def create():
            try:
                out["r"] = self.admin("POST", "/v1/payments", body)
            except Exception as e:  # reported below
                out["r"] = e
        t = threading.Thread(target=create)
        t.start()
        self.assertIsNotNone(g.wait_count(1, 5, o, kind="create"))
        t0 = time.monotonic()
        rc, in_time = self.daemon.stop(signal.SIGTERM, 10)
        t.join(10)
        self.assertEqual((rc, in_time), (0, True), self.daemon.log_tail())
        self.assertLess(time.monotonic() - t0, 4)  # not waiting for the gateway
        self.assertIsInstance(out["r"], h.Reply, out["r"])
        self.assertEqual(out["r"].status, 503, out["r"].body)
        self.assertIn(b"stopping", out["r"].body)
        log = self.daemon.log_text()
        self.assertNotIn("Sanitizer", log)
        self.assertEqual(self.r.keys("payrelay:paylock:*"), [])
        self.assertEqual(self.r.keys("payrelay:order:pay-epay:" + o), [])


class NoPublicUrlCase(h.DaemonClassCase):
    """Without [daemon] public_url no payment is created."""

    workdir_prefix = "payrelay-pay-nourl-"

    def test_no_public_url(self):
        body = json.dumps({"channel": "shop-epay", "out_trade_no": "N1", "amount": "1.00",
                           "method": "alipay"})
        r = h.http(self.setup.admin_port, "POST", "/v1/payments", body=body,
                   headers={"Authorization": "Bearer " + h.ADMIN_TOKEN,
                            "Content-Type": "application/json"})
        # shop-epay has no api_base in the harness's config: that is said first
        self.assertEqual(r.status, 400, r.body)
        self.assertIn(b"api_base", r.body)


class NoPublicUrlApiCase(h.DaemonClassCase):
    workdir_prefix = "payrelay-pay-nourl2-"

    @classmethod
    def config_for(cls, setup):
        return setup.config_text().replace(
            "[channel:shop-epay]\nfamily = epay\n",
            "[channel:shop-epay]\nfamily = epay\napi_base = http://127.0.0.1:9\n", 1)

    def test_no_public_url(self):
        body = json.dumps({"channel": "shop-epay", "out_trade_no": "N1", "amount": "1.00",
                           "method": "alipay"})
        r = h.http(self.setup.admin_port, "POST", "/v1/payments", body=body,
                   headers={"Authorization": "Bearer " + h.ADMIN_TOKEN,
                            "Content-Type": "application/json"})
        self.assertEqual(r.status, 503, r.body)
        self.assertIn(b"public_url", r.body)


if __name__ == "__main__":
    sys.exit(h.run_tests())
