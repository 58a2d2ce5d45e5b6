#!/usr/bin/env python3
"""Integration tests of the payer's return (SPEC section 10.2):
GET|POST /return/{channel} on the public listener.

- each family's genuine return (built by fakegw.py as the gateway's own
  document says) before its notify: recorded with source "return", and the
  notify is then a duplicate with the same event id; and after the notify:
  nothing new; gatepay's only once the gateway's order query confirms it;
- the 302: to the order's return_to (given to POST /v1/payments) or else
  the channel's (orders the gateway knows and payrelay never created), with
  out_trade_no, status, ts and sig = HMAC-SHA256 of "out_trade_no.status.ts"
  under return_secret, which the test computes itself; '?', '&' and a
  fragment placed right;
- forged returns (bad sign, re-cut fields, another amount, another
  merchant) redirect with status=invalid and record nothing; a gatepay
  return the query does not confirm (unpaid, unknown order, gateway down)
  is pending and records nothing;
- open redirect: a return_to whose host is not in return_hosts at redirect
  time is never a Location: one return_hosts no longer lists after a
  reload, and (written into Redis directly, since POST /v1/payments refuses
  them) userinfo, backslash, CRLF and look-alike hosts; with nowhere
  allowed, a 400 page;
- GET and POST, Chinese and '&', '=' in the free text, an order id that
  needs URL-encoding in the redirect;
- no return_secret: 503, nothing recorded.

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
        python3 tests/integration/test_returns.py [-k PATTERN]
"""

import hashlib
import hmac
import os
import re
import signal
import sys
import time
import unittest
import urllib.parse

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import fakegw  # noqa: E402
from test_reconcile import CHANNEL, CREDS, FORM, PREFIX, ReconcileCase  # noqa: E402

FAMILIES = ("epay", "gatepay", "payindex")
RETURN_SECRET = "rs_9c1f0e4b7a2d4e8f-return-hmac-key"
RETURN_HOSTS = "shop.example.com, pay.example.org"
# The channels' return_to: without a query, with one and a fragment, and
# with a query that ends in '&'.
CHANNEL_RETURN_TO = {
    "epay": "https://shop.example.com/return",
    "gatepay": "https://shop.example.com/r?lang=zh#top",
    "payindex": "http://pay.example.org:8080/back?a=1&",
}
# Polling stays out of the way: the returns are what is tested.
QUIET = {"poll_after": "60"}


def sig_of(otn, status, ts, secret=RETURN_SECRET):
    msg = ("%s.%s.%s" % (otn, status, ts)).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


class ReturnCase(ReconcileCase):

    def setUp(self):
        ReconcileCase.setUp(self)
        self.secrets.append(RETURN_SECRET)

    def start(self, families=FAMILIES, secret=RETURN_SECRET, more_channels=(), **more):
        """One fake gateway and channel per family (gatepay confirms by
        query, its default), return_hosts and return_secret set."""
        gws = {}
        chans = []
        for fam in families:
            gws[fam] = self.gateway(fam)
            o = dict(QUIET)
            o["return_to"] = CHANNEL_RETURN_TO[fam]
            if fam == "gatepay":
                o["confirm"] = None  # left out: query, gatepay's default
            o.update(more)
            chans.append((CHANNEL[fam], fam, gws[fam], o))
        chans.extend(more_channels)
        self.write_config(chans)
        with open(self.config, encoding="utf-8") as f:
            text = f.read()
        head = "return_hosts = %s\npublic_url = http://127.0.0.1:%d\n" % (RETURN_HOSTS, self.port)
        if secret is not None:
            head += "return_secret = %s\n" % secret
        text = text.replace("[daemon]\n", "[daemon]\n" + head, 1)
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text)
        self.daemon = self.start_daemon()
        return gws

    # --- requests -----------------------------------------------------------

    def send_return(self, channel, params, method="GET"):
        if method == "GET":
            return h.http(self.port, "GET", "/return/%s?%s" % (channel, h.form_encode(params)))
        return h.http(self.port, "POST", "/return/" + channel, body=h.form_encode(params),
                      headers={"Content-Type": FORM})

    def redirect(self, reply, status, otn, base, what=""):
        """Checks a 302 to `base` (the return_to, fragment and all) carrying
        status and out_trade_no, a fresh ts and a sig that verifies.
        Returns the query as a dict."""
        self.assertEqual(reply.status, 302, self.ctx(reply, what))
        loc = reply.headers.get("Location", "")
        self.assertEqual(reply.headers.get("Cache-Control"), "no-store", what)
        want_base, _, want_frag = base.partition("#")
        got, _, frag = loc.partition("#")
        self.assertEqual(frag, want_frag, "%s: fragment of %s" % (what, loc))
        self.assertTrue(got.startswith(want_base), "%s: %s is not on %s" % (what, loc, base))
        tail = got[len(want_base):]
        if "?" not in want_base:
            self.assertTrue(tail.startswith("?"), "%s: %s" % (what, loc))
            tail = tail[1:]
        elif not want_base.endswith(("?", "&")):
            self.assertTrue(tail.startswith("&"), "%s: %s" % (what, loc))
            tail = tail[1:]
        q = dict(urllib.parse.parse_qsl(tail, keep_blank_values=True, strict_parsing=True))
        self.assertEqual(sorted(q), ["out_trade_no", "sig", "status", "ts"], loc)
        self.assertEqual(q["status"], status, "%s: %s\n%s" % (what, loc, self.log_tail(10)))
        self.assertEqual(q["out_trade_no"], otn, "%s: %s" % (what, loc))
        self.assertRegex(q["ts"], r"^\d+$")
        self.assertLess(abs(int(q["ts"]) - time.time()), 30, loc)
        self.assertRegex(q["sig"], r"^[0-9a-f]{64}$")
        self.assertTrue(hmac.compare_digest(q["sig"], sig_of(otn, status, q["ts"])),
                        "%s: sig does not verify: %s" % (what, loc))
        # ... and only under the right secret, and for these values
        self.assertNotEqual(q["sig"], sig_of(otn, status, q["ts"], secret="x" + RETURN_SECRET))
        self.assertNotEqual(q["sig"], sig_of(otn, "paid" if status != "paid" else "pending",
                                             q["ts"]))
        return q

    def no_redirect(self, reply, code, what=""):
        self.assertEqual(reply.status, code, self.ctx(reply, what))
        self.assertNotIn("Location", reply.headers, what)

    def event_ids(self):
        return [f["id"] for _sid, f, _ev in self.events()]

    def metric(self, name, **labels):
        text = self.admin("GET", "/metrics").body.decode()
        want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        for line in text.splitlines():
            m = re.match(r'^%s\{([^}]*)\} (\S+)$' % re.escape(name), line)
            if m and ",".join(sorted(m.group(1).split(","))) == want:
                return float(m.group(2))
        return 0.0

    def set_order_return_to(self, family, otn, url):
        """A return_to POST /v1/payments would refuse (SPEC 10.1), written
        into the order hash directly: what the redirect must still never
        follow."""
        self.r.cmd("HSET", PREFIX + "order:%s:%s" % (CHANNEL[family], otn), "return_to", url)

    def create(self, channel, otn, amount, return_to, method="alipay"):
        """POST /v1/payments of `otn` with `return_to` (the fake gateway
        checks the create call's signature)."""
        reply = self.admin("POST", "/v1/payments", {
            "channel": channel, "out_trade_no": otn, "amount": amount, "method": method,
            "return_to": return_to})
        self.assertEqual(reply.status, 201, self.ctx(reply, "POST /v1/payments"))
        self.assertEqual(self.order_hash(channel, otn).get("return_to"), return_to)
        return reply.json


# Each family's order: (out_trade_no, gateway trade id, amount); gatepay's
# order_id is a number. Returns are sent as the platforms send them: epay
# and gatepay by GET, payindex by the browser's POST.
ORDERS = {"epay": ("RET-E1", "2026113010001", "12.50"),
          "gatepay": ("RET-G1", "522", "1.88"),
          "payindex": ("RET-P1", "2026113020002", "100.0000")}
METHOD = {"epay": "GET", "gatepay": "GET", "payindex": "POST"}


class ReturnFlowTest(ReturnCase):

    def add_paid(self, gws, fam, otn=None, tid=None, amount=None, **kw):
        o_otn, o_tid, o_amount = ORDERS[fam]
        return gws[fam].add_order(otn or o_otn, amount=amount or o_amount,
                                  trade_id=tid or o_tid, state="paid", **kw)

    def test_01_return_before_notify_each_family(self):
        gws = self.start()
        for fam in FAMILIES:
            with self.subTest(family=fam):
                otn, tid, amount = ORDERS[fam]
                self.add_paid(gws, fam, param="uid=7")
                p = fakegw.return_params(gws[fam], otn)
                self.redirect(self.send_return(CHANNEL[fam], p, METHOD[fam]), "paid", otn,
                              CHANNEL_RETURN_TO[fam], fam)
                evs = [e for e in self.events() if e[2]["channel"] == CHANNEL[fam]]
                self.assertEqual(len(evs), 1, evs)
                _sid, fields, ev = evs[0]
                eid = h.event_id(CHANNEL[fam], tid, "paid")
                self.assertEqual(fields["id"], eid)
                self.assertEqual((ev["id"], ev["type"], ev["source"], ev["trade_no"],
                                  ev["out_trade_no"], ev["status"], ev["amount_fen"]),
                                 (eid, "order.paid", "return", tid, otn, "paid",
                                  fen_of(amount)), ev)
                self.assertNotIn("sign", ev["raw"])
                if fam == "gatepay":
                    # confirmed by the gateway's own order query first
                    self.assertEqual(ev.get("confirmed_by"), "query", ev)
                    self.assertEqual(gws[fam].count(otn), 1, self.gw_ctx(gws[fam], otn))
                else:
                    self.assertNotIn("confirmed_by", ev)
                # the gateway's notify comes later: a duplicate, acked
                self.assertAck(self.callback(fam, otn, tid, amount), fam)
                evs = [e for e in self.events() if e[2]["channel"] == CHANNEL[fam]]
                self.assertEqual([e[1]["id"] for e in evs], [eid], "the notify was recorded again")
                # and the payer reloading the return page: paid, nothing new
                self.redirect(self.send_return(CHANNEL[fam], p, METHOD[fam]), "paid", otn,
                              CHANNEL_RETURN_TO[fam], fam + " again")
                self.assertEqual(len(self.events()), FAMILIES.index(fam) + 1)
        self.assertEqual(self.metric("payrelay_returns_total", channel="shop-epay",
                                     result="paid"), 2)
        recs = h.log_records(self.daemons[0].log_text(), "return recorded")
        self.assertEqual(len(recs), 3, recs)

    def test_02_return_after_notify(self):
        gws = self.start()
        for fam in FAMILIES:
            with self.subTest(family=fam):
                otn, tid, amount = ORDERS[fam]
                self.add_paid(gws, fam)
                self.assertAck(self.callback(fam, otn, tid, amount), fam)
                before = self.event_ids()
                q = self.redirect(
                    self.send_return(CHANNEL[fam], fakegw.return_params(gws[fam], otn),
                                     METHOD[fam]),
                    "paid", otn, CHANNEL_RETURN_TO[fam], fam)
                self.assertEqual(self.event_ids(), before, "the return recorded anew")
                ev = [e for e in self.events() if e[2]["channel"] == CHANNEL[fam]][0][2]
                self.assertEqual(ev["source"], "callback")
                self.assertEqual(q["out_trade_no"], otn)

    def test_03_get_and_post_chinese_and_separators(self):
        gws = self.start(families=("epay", "payindex"))
        # epay: free text with Chinese, '&' and '=' (signed, kept), an order
        # id that needs escaping in the redirect; by GET and by POST
        for i, method in enumerate(("GET", "POST")):
            otn = "Q+%d/2?x#y:%s" % (i, method)
            o = gws["epay"].add_order(otn, amount="0.5", trade_id="T-CN-%d" % i, state="paid",
                                      name="会员 & 充值=1个月", param="uid=42&x=y")
            p = fakegw.return_params(gws["epay"], otn)
            self.redirect(self.send_return("shop-epay", p, method), "paid", otn,
                          CHANNEL_RETURN_TO["epay"], method)
            ev = [e for e in self.events() if e[2]["out_trade_no"] == otn][0][2]
            self.assertEqual((ev["subject"], ev["passthrough"], ev["amount_fen"]),
                             (o.name, "uid=42&x=y", 50), ev)
        # payindex: by POST (the platform's way) and by GET; attach unsigned
        for i, method in enumerate(("POST", "GET")):
            otn = "PI-%d" % i
            gws["payindex"].add_order(otn, amount="3.0000", trade_id="TP-%d" % i,
                                      state="paid", param="备注&k=v")
            p = fakegw.return_params(gws["payindex"], otn)
            self.redirect(self.send_return("shop-payindex", p, method), "paid", otn,
                          CHANNEL_RETURN_TO["payindex"], method)
            ev = [e for e in self.events() if e[2]["out_trade_no"] == otn][0][2]
            self.assertEqual((ev["passthrough"], ev.get("passthrough_signed")),
                             ("备注&k=v", False), ev)
            self.assertEqual(ev["source"], "return")
        # a trailing slash is tolerated, as for /notify
        gws["epay"].add_order("SL-1", amount="1", trade_id="T-SL-1", state="paid")
        r = h.http(self.port, "GET", "/return/shop-epay/?" +
                   h.form_encode(fakegw.return_params(gws["epay"], "SL-1")))
        self.redirect(r, "paid", "SL-1", CHANNEL_RETURN_TO["epay"], "trailing slash")


def fen_of(amount):
    whole, _, frac = amount.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


class ForgedReturnTest(ReturnCase):

    def assertNothing(self, what):
        self.assertEqual(self.events(), [], what)

    def invalid(self, fam, params, claim, what, method=None):
        r = self.send_return(CHANNEL[fam], params, method or METHOD[fam])
        self.redirect(r, "invalid", claim, CHANNEL_RETURN_TO[fam], what)
        self.assertNothing(what)

    def test_01_forged_each_family(self):
        gws = self.start()
        # --- epay
        o = gws["epay"].add_order("F-E1", amount="1.00", trade_id="TF-E1", state="unpaid")
        g = fakegw.epay_return("1001", CREDS["epay"][1], o)  # genuine, status and all
        bad = dict(g, sign=g["sign"][:-1] + ("0" if g["sign"][-1] != "0" else "1"))
        self.invalid("epay", bad, "F-E1", "epay bad sign")
        self.invalid("epay", dict(g, money="100.00"), "F-E1", "epay another amount")
        self.invalid("epay", dict(g, out_trade_no="F-E2"), "F-E2", "epay another order")
        # re-cut: trade_status swallows type, same signed string
        recut = {k: v for k, v in g.items() if k != "type"}
        recut["trade_status"] = g["trade_status"] + "&type=" + g["type"]
        self.assertEqual(h.epay_md5_sign(recut, CREDS["epay"][1]), g["sign"])
        self.invalid("epay", recut, "F-E1", "epay re-cut")
        # a genuine return whose free text could be re-cut into a payment field
        o2 = gws["epay"].add_order("F-E3", amount="1.00", trade_id="TF-E3", state="paid",
                                   name="x&trade_status=TRADE_SUCCESS")
        self.invalid("epay", fakegw.epay_return("1001", CREDS["epay"][1], o2, "WAIT"),
                     "F-E3", "epay ambiguous free text")
        # another merchant of the same platform, with its own key
        self.invalid("epay", fakegw.epay_return("1002", "another-merchants-key", o), "F-E1",
                     "epay another merchant")
        # sign_type from the request is never believed
        self.invalid("epay", dict(g, sign_type="RSA"), "F-E1", "epay sign_type")
        # --- payindex
        o = gws["payindex"].add_order("F-P1", amount="10.00", trade_id="TF-P1", state="paid")
        g = fakegw.payindex_return("10002", CREDS["payindex"][1], o)
        self.invalid("payindex", dict(g, sign="0" * 32), "F-P1", "payindex bad sign")
        self.invalid("payindex", dict(g, true_amount="0.01"), "F-P1", "payindex another amount")
        recut = {k: v for k, v in g.items() if k != "datetime"}
        recut["amount"] = g["amount"] + "&datetime=" + g["datetime"]
        self.assertEqual(h.payindex_sign(recut, CREDS["payindex"][1]), g["sign"])
        self.invalid("payindex", recut, "F-P1", "payindex re-cut")
        self.invalid("payindex", fakegw.payindex_return("10003", CREDS["payindex"][1], o),
                     "F-P1", "payindex another merchant")
        # --- gatepay (signature failures: no query is asked)
        o = gws["gatepay"].add_order("F-G1", amount="1.88", trade_id="522", state="paid")
        g = fakegw.gatepay_return(CREDS["gatepay"][0], CREDS["gatepay"][1], o)
        self.invalid("gatepay", dict(g, sign=g["sign"].upper()[::-1]), "F-G1",
                     "gatepay bad sign")
        self.invalid("gatepay", dict(g, price="0.01"), "F-G1", "gatepay another amount")
        # price re-cut into type: the same concatenation, refused by the relay
        recut = dict(g, price="1.8", type="8" + g["type"])
        self.assertEqual(fakegw.gatepay_return_sign(recut, *CREDS["gatepay"]), g["sign"])
        self.invalid("gatepay", recut, "F-G1", "gatepay price re-cut")
        self.invalid("gatepay", dict(g, appkey="0" * 32), "F-G1", "gatepay another merchant")
        # a notify's signature over the same values is not a return's
        n = {"order_id": "522", "out_order_id": "F-G1", "price": "1.88", "realprice": "1.88",
             "type": g["type"]}
        self.invalid("gatepay", dict(g, sign=h.gatepay_sign(n, *CREDS["gatepay"])), "F-G1",
                     "gatepay signed as a notify")
        self.assertEqual(gws["gatepay"].count(), 0, "a refused return was queried")
        # an order id that is no canonical id is not echoed
        self.invalid("epay", dict(g, out_trade_no="a b&c"), "", "not canonical: no claim")
        # no parameters at all
        self.invalid("epay", {}, "", "empty")
        self.assertGreaterEqual(self.metric("payrelay_returns_total", channel="shop-epay",
                                            result="invalid"), 9)
        # the warnings name the reason, never a key or the return secret
        self.assertTrue(h.log_records(self.daemons[0].log_text(), "return invalid"))

    def test_02_gatepay_not_confirmed_is_pending(self):
        gws = self.start(families=("gatepay",))
        gw = gws["gatepay"]
        # re-cut ids: the signature holds, the gateway knows no such order
        o = gw.add_order("1000", amount="1.88", trade_id="522", state="paid")
        g = fakegw.gatepay_return(CREDS["gatepay"][0], CREDS["gatepay"][1], o)
        recut = dict(g, order_id="5221", out_order_id="000")
        self.assertEqual(fakegw.gatepay_return_sign(recut, *CREDS["gatepay"]), g["sign"])
        self.redirect(self.send_return("shop-gatepay", recut), "pending", "000",
                      CHANNEL_RETURN_TO["gatepay"], "re-cut ids")
        self.assertEqual(gw.count("000"), 1, self.gw_ctx(gw, "000"))
        # the order exists and is unpaid
        o = gw.add_order("U-1", amount="2.00", trade_id="600", state="unpaid")
        self.redirect(self.send_return("shop-gatepay", fakegw.return_params(gw, "U-1")),
                      "pending", "U-1", CHANNEL_RETURN_TO["gatepay"], "unpaid")
        # paid, with another amount than the return says
        gw.add_order("A-1", amount="9.99", trade_id="601", state="paid")
        g = fakegw.return_params(gw, "A-1")
        g["price"] = "0.01"
        g["sign"] = fakegw.gatepay_return_sign(g, *CREDS["gatepay"])
        self.redirect(self.send_return("shop-gatepay", g), "pending", "A-1",
                      CHANNEL_RETURN_TO["gatepay"], "another amount")
        # the gateway is down
        gw.add_order("D-1", amount="3.00", trade_id="602", state="paid")
        gw.script("D-1", ["http500"])
        self.redirect(self.send_return("shop-gatepay", fakegw.return_params(gw, "D-1")),
                      "pending", "D-1", CHANNEL_RETURN_TO["gatepay"], "gateway down")
        self.assertEqual(self.events(), [], "an unconfirmed return was recorded")
        # once the gateway answers, the same return is paid
        self.redirect(self.send_return("shop-gatepay", fakegw.return_params(gw, "D-1")),
                      "paid", "D-1", CHANNEL_RETURN_TO["gatepay"], "gateway back")
        self.assertEqual(self.event_ids(), [h.event_id("shop-gatepay", "602", "paid")])

    def test_03_gatepay_confirm_off_never_recorded(self):
        """confirm = off trusts gatepay's notify at the operator's word; a
        return, which every payer holds, is still never recorded unconfirmed."""
        gws = self.start(families=("gatepay",), confirm="off")
        gw = gws["gatepay"]
        gw.add_order("OFF-1", amount="1.00", trade_id="700", state="paid")
        self.redirect(self.send_return("shop-gatepay", fakegw.return_params(gw, "OFF-1")),
                      "pending", "OFF-1", CHANNEL_RETURN_TO["gatepay"], "confirm off")
        self.assertEqual(self.events(), [])
        self.assertEqual(gw.count(), 0)

    def test_04_epay_status_not_paid_is_pending(self):
        gws = self.start(families=("epay",))
        o = gws["epay"].add_order("W-1", amount="1.00", trade_id="TW-1", state="unpaid")
        p = fakegw.epay_return("1001", CREDS["epay"][1], o, status="WAIT_BUYER_PAY")
        self.redirect(self.send_return("shop-epay", p), "pending", "W-1",
                      CHANNEL_RETURN_TO["epay"], "not paid")
        self.assertEqual(self.events(), [])

    def test_05_epay_rsa_stale_is_pending(self):
        """A V2 (RSA) return whose signed timestamp is too old is genuine (its
        signature verified first): pending, not invalid, and not recorded."""
        rsa = h.load_vectors("epay_rsa.json")
        pub = os.path.join(self.dir, "platform.pub.pem")
        priv = os.path.join(self.dir, "platform.key.pem")
        with open(pub, "w") as f:
            f.write(rsa["platform_public_key_pem"])
        with open(priv, "w") as f:
            f.write(rsa["platform_private_key_pem_for_tests_only"])
        os.chmod(priv, 0o600)
        rsa_chan = dict(QUIET, sign_type="RSA", platform_public_key_file=pub,
                        return_to=CHANNEL_RETURN_TO["epay"])
        self.start(families=("epay",), more_channels=[("shop-rsa", "epay", None, rsa_chan)])

        def signed(ts, otn):
            p = {"pid": "1001", "trade_no": "TR-" + otn, "out_trade_no": otn, "type": "alipay",
                 "name": "VIP会员", "money": "1.00", "trade_status": "TRADE_SUCCESS",
                 "timestamp": str(ts)}
            p["sign"] = h.rsa_sign(h.epay_rsa_string(p), priv)
            p["sign_type"] = "RSA"
            return p

        r = self.send_return("shop-rsa", signed(int(time.time()) - 3600, "RS-1"))
        self.redirect(r, "pending", "RS-1", CHANNEL_RETURN_TO["epay"], "stale")
        self.assertEqual(self.events(), [])
        r = self.send_return("shop-rsa", signed(int(time.time()), "RS-2"))
        self.redirect(r, "paid", "RS-2", CHANNEL_RETURN_TO["epay"], "fresh")
        self.assertEqual(self.event_ids(), [h.event_id("shop-rsa", "TR-RS-2", "paid")])


class ReturnToTest(ReturnCase):

    def test_01_order_return_to_and_open_redirects(self):
        noret = self.gateway("epay")
        gws = self.start(families=("epay",), more_channels=[
            ("shop-noret", "epay", noret, dict(QUIET))])
        gw = gws["epay"]
        # the order's return_to (given at creation) wins over the channel's
        gw.add_order("O-1", amount="1.00", trade_id="TO-1", state="paid")
        self.create("shop-epay", "O-1", "1.00", "https://pay.example.org/thanks?o=O-1#done")
        self.assertEqual(gw.orders["O-1"].return_url, "http://127.0.0.1:%d/return/shop-epay"
                         % self.port)
        self.redirect(self.send_return("shop-epay", fakegw.return_params(gw, "O-1")), "paid",
                      "O-1", "https://pay.example.org/thanks?o=O-1#done", "order's return_to")
        # hosts not in return_hosts at redirect time: the channel's instead
        tricks = ["https://evil.example.net/x", "https://shop.example.com@evil.example.net/",
                  "https://shop.example.com.evil.example.net/", "//evil.example.net/",
                  "https://evil.example.net\\@shop.example.com/", "javascript:alert(1)",
                  "https://evil.example.net%2f@shop.example.com/",
                  "https://shop.example.com\r\nLocation: https://evil.example.net/"]
        for i, url in enumerate(tricks):
            otn = "O-T%d" % i
            gw.add_order(otn, amount="1.00", trade_id="TO-T%d" % i, state="paid")
            self.set_order_return_to("epay", otn, url)
            r = self.send_return("shop-epay", fakegw.return_params(gw, otn))
            self.redirect(r, "paid", otn, CHANNEL_RETURN_TO["epay"], url)
            self.assertNotIn("evil", r.headers.get("Location", ""), url)
        self.assertEqual(len(h.log_records(
            self.daemons[0].log_text(),
            "order's return_to refused: its host is not in return_hosts")), len(tricks))

        # a channel without return_to and an order with a refused one: no redirect at all
        o = noret.add_order("N-1", amount="1.00", trade_id="TN-1", state="paid")
        self.r.cmd("HSET", PREFIX + "order:shop-noret:N-1", "return_to",
                   "https://evil.example.net/")
        r = self.send_return("shop-noret", fakegw.return_params(noret, "N-1"))
        self.no_redirect(r, 400, "nowhere allowed")
        self.assertNotIn(b"evil", r.body)
        # the payment is recorded all the same: it is the gateway's word
        self.assertIn(h.event_id("shop-noret", "TN-1", "paid"), self.event_ids())
        # and with an allowed order return_to, that channel redirects there
        noret.add_order("N-2", amount="1.00", trade_id="TN-2", state="paid")
        self.create("shop-noret", "N-2", "1.00", "https://shop.example.com/o/N-2")
        r = self.send_return("shop-noret", fakegw.return_params(noret, "N-2"))
        self.redirect(r, "paid", "N-2", "https://shop.example.com/o/N-2", "noret + order")
        self.assertEqual(self.metric("payrelay_returns_total", channel="shop-noret",
                                     result="no_redirect"), 1)

    def test_01b_return_hosts_narrowed_by_a_reload(self):
        """An order created with a return_to whose host a reload then takes
        out of return_hosts: checked again at the redirect, so the payer
        goes to the channel's return_to instead."""
        gws = self.start(families=("epay",))
        gw = gws["epay"]
        gw.add_order("H-1", amount="2.00", trade_id="TH-1", state="paid")
        gw.add_order("H-2", amount="2.00", trade_id="TH-2", state="paid")
        for otn in ("H-1", "H-2"):
            self.create("shop-epay", otn, "2.00", "https://pay.example.org/done/" + otn)
        self.redirect(self.send_return("shop-epay", fakegw.return_params(gw, "H-1")), "paid",
                      "H-1", "https://pay.example.org/done/H-1", "before the reload")
        with open(self.config, encoding="utf-8") as f:
            text = f.read()
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text.replace("return_hosts = %s\n" % RETURN_HOSTS,
                                 "return_hosts = shop.example.com\n", 1))
        d = self.daemons[0]
        mark = len(d.log_text())
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r'msg="?reloaded', 10, start=mark)
        self.redirect(self.send_return("shop-epay", fakegw.return_params(gw, "H-2")), "paid",
                      "H-2", CHANNEL_RETURN_TO["epay"], "after the reload")
        self.assertEqual(len(h.log_records(
            d.log_text(), "order's return_to refused: its host is not in return_hosts")), 1)

    def test_02_redis_down_is_pending(self):
        gws = self.start(families=("epay",))
        gw = gws["epay"]
        gw.add_order("R-1", amount="1.00", trade_id="TR-1", state="paid")
        self.redis.stop()
        r = self.send_return("shop-epay", fakegw.return_params(gw, "R-1"))
        # never paid unless recorded; the channel's return_to without Redis
        self.redirect(r, "pending", "R-1", CHANNEL_RETURN_TO["epay"], "redis down")
        self.redis.start()

    def test_03_unknown_channel_and_method(self):
        self.start(families=("epay",))
        self.no_redirect(h.http(self.port, "GET", "/return/nope?a=1"), 404, "unknown channel")
        self.no_redirect(h.http(self.port, "GET", "/return/"), 404, "no channel")
        self.no_redirect(h.http(self.port, "PUT", "/return/shop-epay", body=""), 405, "PUT")
        # a body that is no form is no return
        r = h.http(self.port, "POST", "/return/shop-epay", body='{"a":1}',
                   headers={"Content-Type": "application/json"})
        self.redirect(r, "invalid", "", CHANNEL_RETURN_TO["epay"], "json body")


class NoSecretTest(ReturnCase):

    def test_01_no_return_secret_is_503(self):
        gws = self.start(families=("epay",), secret=None)
        gw = gws["epay"]
        gw.add_order("S-1", amount="1.00", trade_id="TS-1", state="paid")
        r = self.send_return("shop-epay", fakegw.return_params(gw, "S-1"))
        self.no_redirect(r, 503, "no secret")
        self.assertEqual(self.events(), [], "recorded without a way to answer")
        self.assertTrue(h.log_records(self.daemons[0].log_text(),
                                      "return refused: no [daemon] return_secret (or _file) "
                                      "is set"))
        # the notify path is unaffected
        self.assertAck(self.callback("epay", "S-1", "TS-1", "1.00"), "epay")


if __name__ == "__main__":
    unittest.main(verbosity=2)
