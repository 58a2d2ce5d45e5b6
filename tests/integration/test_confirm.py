#!/usr/bin/env python3
"""Integration tests of confirmation by query (SPEC section 2.5): a paid
callback of a channel with `confirm = query` (gatepay's default) is recorded
only after the gateway's own order query (fakegw.py) says that this order
is paid with the same trade id and amount.

- confirmed: recorded with "confirmed_by": "query", for every family;
- refused (400 fail, nothing recorded, nothing registered): the order is
  unknown, unpaid, paid with another trade id or another amount, and the
  gatepay re-cut of SPEC 2.5;
- unavailable (503 fail, nothing recorded, the order registered for polling
  without an amount): the gateway is down, slow, answers garbage or 500;
  the gateway's retry is then recorded once;
- the bound: confirm_max_in_flight and confirm_rate answer the excess 503 at
  once, and the gateway never sees more queries at a time;
- SIGTERM during a confirmation: 503, the order registered, a clean exit.

Every test runs its own redis-server, payrelayd and fake gateways (the
ReconcileCase of test_reconcile.py).

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
        python3 tests/integration/test_confirm.py [-k PATTERN]
"""

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
from test_reconcile import CHANNEL, CREDS, FORM, PREFIX, ReconcileCase  # noqa: E402

FAMILIES = ("epay", "gatepay", "payindex")
# Polling stays out of the way: the callbacks' retries are what is tested.
QUIET = {"poll_after": "60"}


def confirm_opts(family, **more):
    """Channel keys asking for confirmation: gatepay by its default."""
    o = dict(QUIET)
    o["confirm"] = None if family == "gatepay" else "query"
    o.update(more)
    return o


class ConfirmCase(ReconcileCase):

    def start(self, families=FAMILIES, **more):
        gws = {}
        chans = []
        for fam in families:
            gws[fam] = self.gateway(fam)
            chans.append((CHANNEL[fam], fam, gws[fam], confirm_opts(fam, **more)))
        self.write_config(chans)
        self.daemon = self.start_daemon()
        return gws

    def assertRefused(self, reply, status, what):
        self.assertEqual((reply.status, reply.body), (status, b"fail"), self.ctx(reply, what))

    def no_order(self, family, otn):
        self.assertEqual(self.order_hash(CHANNEL[family], otn), {},
                         "order %s registered" % otn)

    def metric(self, name, **labels):
        """The value of one sample of /metrics (0 when absent)."""
        text = self.admin("GET", "/metrics").body.decode()
        want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        for line in text.splitlines():
            m = re.match(r'^%s\{([^}]*)\} (\S+)$' % re.escape(name), line)
            if m and ",".join(sorted(m.group(1).split(","))) == want:
                return float(m.group(2))
        return 0.0

    def assertRegistered(self, family, otn):
        """The order is registered for polling, without an amount."""
        o = self.order(CHANNEL[family], otn)
        self.assertEqual(o.get("state"), "pending", o)
        self.assertIsNone(o.get("amount_fen"), o)
        self.assertGreater(o.get("next_poll_ms") or 0, now_ms() + 30000, o)
        return o


def now_ms():
    return int(time.time() * 1000)


class ConfirmedTest(ConfirmCase):

    def test_01_confirmed_each_family(self):
        gws = self.start()
        cases = {"epay": ("C-E1", "T-E1", "12.5"), "gatepay": ("C-G1", "522", "1.88"),
                 "payindex": ("C-P1", "T-P1", "100.0000")}
        for fam, (otn, tid, amount) in cases.items():
            with self.subTest(family=fam):
                gws[fam].add_order(otn, amount=amount, trade_id=tid, state="paid")
                self.assertAck(self.callback(fam, otn, tid, amount), fam)
                self.assertEqual(gws[fam].count(otn), 1, self.gw_ctx(gws[fam], otn))
        evs = self.events()
        self.assertEqual(len(evs), 3, evs)
        for (_sid, fields, ev), fam in zip(evs, cases):
            otn, tid, _amount = cases[fam]
            self.assertEqual(fields["id"], h.event_id(CHANNEL[fam], tid, "paid"))
            self.assertEqual((ev["type"], ev["source"], ev["trade_no"], ev["out_trade_no"]),
                             ("order.paid", "callback", tid, otn), ev)
            self.assertEqual(ev.get("confirmed_by"), "query", ev)
            # the confirmation leaves no order behind
            self.no_order(fam, otn)
        self.assertEqual(self.metric("payrelay_confirmations_total", channel="shop-gatepay",
                                     outcome="confirmed"), 1)
        # A duplicate is confirmed again and acked once more: nothing new.
        self.assertAck(self.callback("gatepay", "C-G1", "522", "1.88"), "gatepay")
        self.assertEqual(len(self.events()), 3)

    def test_04_real_epay_notify_format(self):
        # A real platform's notify: a GET, money as PHP's float print, and
        # '&', '=' and spaces in name and param. Confirmed and recorded with
        # name and param byte for byte; a re-cut of the same signature that
        # swallows type into trade_status is refused before any query.
        gws = self.start(families=("epay",))
        gw = gws["epay"]
        gw.add_order("C-E4", amount="12.5", trade_id="T-E4", state="paid")
        p = {"pid": CREDS["epay"][0], "trade_no": "T-E4", "out_trade_no": "C-E4",
             "type": "alipay", "name": "VIP & co = 1 年", "money": "12.5",
             "trade_status": "TRADE_SUCCESS", "param": "uid=42&note=a b+c"}
        sign = h.epay_md5_sign(p, CREDS["epay"][1])
        recut = dict(p, trade_status="TRADE_SUCCESS&type=alipay", sign=sign)
        del recut["type"]
        r = h.http(self.port, "GET", "/notify/%s?%s" % (CHANNEL["epay"], h.form_encode(recut)))
        self.assertRefused(r, 400, "re-cut")
        self.assertEqual(gw.count("C-E4"), 0, self.gw_ctx(gw, "C-E4"))
        r = h.http(self.port, "GET", "/notify/%s?%s" % (CHANNEL["epay"],
                                                          h.form_encode(dict(p, sign=sign))))
        self.assertAck(r, "epay")
        self.assertEqual(gw.count("C-E4"), 1, self.gw_ctx(gw, "C-E4"))
        evs = self.events()
        self.assertEqual(len(evs), 1, evs)
        ev = evs[0][2]
        self.assertEqual(ev.get("confirmed_by"), "query", ev)
        self.assertEqual((ev["amount_fen"], ev["subject"], ev["passthrough"]),
                         (1250, "VIP & co = 1 年", "uid=42&note=a b+c"), ev)
        self.assertEqual(ev["raw"]["param"], "uid=42&note=a b+c")

    def test_02_status_events_need_no_confirmation(self):
        gws = self.start(("epay",))
        reply = self.epay_callback("shop-epay", "C-S1", "T-S1", "1.00", status="TRADE_CLOSED")
        self.assertAck(reply, "epay")
        evs = self.events()
        self.assertEqual(len(evs), 1)
        self.assertEqual(evs[0][2]["type"], "order.status")
        self.assertNotIn("confirmed_by", evs[0][2])
        self.assertEqual(gws["epay"].count(), 0)

    def test_03_confirm_off_asks_nobody(self):
        gw = self.gateway("payindex")
        self.write_config([("shop-payindex", "payindex", gw, dict(QUIET))])
        self.start_daemon()
        self.assertAck(self.callback("payindex", "C-OFF", "T-OFF", "1.00"), "payindex")
        ev = self.events()[0][2]
        self.assertNotIn("confirmed_by", ev)
        self.assertEqual(gw.count(), 0)


class RefusedTest(ConfirmCase):

    def test_01_unknown_unpaid_other_id_other_amount(self):
        gws = self.start()
        for fam in FAMILIES:
            gw = gws[fam]
            gw.add_order("R-UNPAID", amount="1.00", trade_id="T-1", state="unpaid")
            gw.add_order("R-ID", amount="1.00", trade_id="T-REAL", state="paid")
            gw.add_order("R-AMT", amount="2.00", trade_id="T-3", state="paid")
            cases = [("R-UNKNOWN", "T-0", "1.00", "unknown"),
                     ("R-UNPAID", "T-1", "1.00", "unpaid"),
                     ("R-ID", "T-FORGED", "1.00", "trade_no"),
                     ("R-AMT", "T-3", "1.00", "amount")]
            for otn, tid, amount, reason in cases:
                with self.subTest(family=fam, case=reason):
                    before = self.metric("payrelay_confirm_refusals_total",
                                         channel=CHANNEL[fam], reason=reason)
                    self.assertRefused(self.callback(fam, otn, tid, amount), 400, reason)
                    self.assertEqual(gw.count(otn), 1, self.gw_ctx(gw, otn))
                    self.assertEqual(self.metric("payrelay_confirm_refusals_total",
                                                 channel=CHANNEL[fam], reason=reason),
                                     before + 1)
                    self.no_order(fam, otn)
        self.assertEqual(self.events(), [])
        recs = h.log_records(self.daemon.log_text(), "callback refused")
        self.assertTrue(any("not confirmed by query" in r.get("reason", "") for r in recs), recs)
        self.assertEqual(self.metric("payrelay_callbacks_total", channel="shop-epay",
                                     result="refused"), 4)

    def test_02_gatepay_recut(self):
        # SPEC 2.5: gatepay signs a plain concatenation, so digits move
        # between neighbouring fields under the same signature.
        gws = self.start(("gatepay",))
        gw = gws["gatepay"]
        gw.add_order("1000", amount="1.88", trade_id="522", state="paid")
        rest = {"type": "alipay", "paytime": "1700000000", "extend": ""}
        genuine = dict(order_id="522", out_order_id="1000", price="1.88", realprice="1.88",
                       **rest)
        recut = dict(order_id="5", out_order_id="221000", price="1.8", realprice="81.88",
                     **rest)
        sign = h.gatepay_sign(genuine, *CREDS["gatepay"])
        self.assertEqual(h.gatepay_sign(recut, *CREDS["gatepay"]), sign)
        genuine["sign"] = recut["sign"] = sign

        def post(p):
            return h.http(self.port, "POST", "/notify/shop-gatepay", body=h.form_encode(p),
                          headers={"Content-Type": FORM})

        self.assertRefused(post(recut), 400, "the re-cut callback")
        self.assertEqual(gw.count("221000"), 1, self.gw_ctx(gw))
        self.assertEqual(self.events(), [])
        self.no_order("gatepay", "221000")
        self.assertAck(post(genuine), "gatepay")
        evs = self.events()
        self.assertEqual(len(evs), 1)
        ev = evs[0][2]
        self.assertEqual((ev["trade_no"], ev["out_trade_no"], ev["amount_fen"],
                          ev["paid_amount_fen"], ev.get("confirmed_by")),
                         ("522", "1000", 188, 188, "query"), ev)


class UnavailableTest(ConfirmCase):

    def test_01_gateway_down_then_retry_after_reload(self):
        down = "http://127.0.0.1:%d" % h.free_port()
        self.write_config([("shop-gatepay", "gatepay", None,
                            confirm_opts("gatepay", api_base=down, confirm_timeout_ms="1000"))])
        self.daemon = self.start_daemon()
        reply = self.callback("gatepay", "U-DOWN", "901", "3.00")
        self.assertRefused(reply, 503, "gateway down")
        self.assertLess(reply.elapsed, 1.5, reply)
        self.assertEqual(self.events(), [])
        self.assertRegistered("gatepay", "U-DOWN")
        self.assertEqual(self.metric("payrelay_confirmations_total", channel="shop-gatepay",
                                     outcome="unavailable"), 1)
        # The gateway's retry finds it again: still nothing, still registered once.
        self.assertRefused(self.callback("gatepay", "U-DOWN", "901", "3.00"), 503, "retry")
        self.assertEqual(self.events(), [])
        # The gateway is back (a reload points at it) and says paid: the next
        # retry is recorded, once.
        gw = self.gateway("gatepay")
        gw.add_order("U-DOWN", amount="3.00", trade_id="901", state="paid")
        self.write_config([("shop-gatepay", "gatepay", gw, confirm_opts("gatepay"))])
        off = len(self.daemon.log_text())
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.daemon.wait_log(r'msg="?reloaded', timeout=5, start=off)
        self.assertAck(self.callback("gatepay", "U-DOWN", "901", "3.00"), "gatepay")
        self.assertAck(self.callback("gatepay", "U-DOWN", "901", "3.00"), "gatepay")
        evs = self.events()
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0][2].get("confirmed_by"), "query")
        o = self.order("shop-gatepay", "U-DOWN")
        self.assertEqual((o["state"], o.get("event_id")),
                         ("paid", h.event_id("shop-gatepay", "901", "paid")), o)

    def test_02_slow_garbage_500_then_retry(self):
        gws = self.start(confirm_timeout_ms="700")
        for fam in FAMILIES:
            gw = gws[fam]
            for action in ("slow:2.5", "garbage", "http500"):
                otn = "U-%s-%s" % (fam, action.split(":")[0])
                with self.subTest(family=fam, action=action):
                    gw.add_order(otn, amount="5.00", trade_id="T" + otn, state="paid")
                    gw.script(otn, [action])
                    reply = self.callback(fam, otn, "T" + otn, "5.00")
                    self.assertRefused(reply, 503, action)
                    self.assertLess(reply.elapsed, 0.7 + 0.8, reply)
                    if action.startswith("slow"):
                        self.assertGreater(reply.elapsed, 0.6, reply)
                    self.assertEqual([e for e in self.events() if e[2]["out_trade_no"] == otn],
                                     [])
                    self.assertRegistered(fam, otn)
                    # the retry, now that the gateway answers: recorded once
                    self.assertAck(self.callback(fam, otn, "T" + otn, "5.00"), fam)
                    evs = [e for e in self.events() if e[2]["out_trade_no"] == otn]
                    self.assertEqual(len(evs), 1, evs)
                    self.assertEqual(evs[0][2].get("confirmed_by"), "query")
                    self.assertEqual(self.order(CHANNEL[fam], otn)["state"], "paid")
        # Registered without an amount, then paid: never an amount mismatch.
        self.assertTrue(all(e[2]["type"] == "order.paid" for e in self.events()))
        # A registration with an amount afterwards is accepted and stored.
        r = self.admin("POST", "/v1/orders", {"channel": "shop-epay",
                                              "out_trade_no": "U-epay-garbage",
                                              "amount": "5.00"})
        self.assertEqual(r.status, 200, self.ctx(r, "register after"))
        self.assertEqual(r.json.get("amount_fen"), 500, r.json)

    def test_03_sigterm_during_confirmation(self):
        gws = self.start(("epay",), confirm_timeout_ms="10000")
        gw = gws["epay"]
        gw.add_order("U-TERM", amount="1.00", trade_id="T-TERM", state="paid")
        gw.set_default("slow:8")
        out = {}

        def send():
            out["reply"] = self.callback("epay", "U-TERM", "T-TERM", "1.00")

        t = threading.Thread(target=send)
        t.start()
        self.assertIsNotNone(gw.wait_count(1, 5, "U-TERM"), self.gw_ctx(gw))
        t0 = time.monotonic()
        rc, in_time = self.daemon.stop(signal.SIGTERM, 5)
        t.join(5)
        self.assertEqual((rc, in_time), (0, True), self.log_tail())
        self.assertLess(time.monotonic() - t0, 3)
        self.assertRefused(out["reply"], 503, "stopping")
        self.assertEqual(self.events(), [])
        o = self.order_hash("shop-epay", "U-TERM")
        self.assertEqual((o.get("state"), o.get("amount_fen")), ("pending", ""), o)


class ReloadTest(ConfirmCase):
    """SIGHUP while a confirmation runs: the channel the callback was
    verified against is freed; the answer is judged against the new one."""

    def in_flight_then_reload(self, gw, otn, tid, channels):
        out = {}

        def send():
            out["reply"] = self.callback("epay", otn, tid, "1.00")

        t = threading.Thread(target=send)
        t.start()
        self.assertIsNotNone(gw.wait_count(1, 5, otn), self.gw_ctx(gw))
        self.write_config(channels)
        off = len(self.daemon.log_text())
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.daemon.wait_log(r'msg="?reloaded', timeout=5, start=off)
        t.join(10)
        return out["reply"]

    def test_01_channel_kept(self):
        gws = self.start(("epay", "payindex"))
        gw = gws["epay"]
        gw.add_order("RL-1", amount="1.00", trade_id="T-RL-1", state="paid")
        gw.set_default("slow:1.5")
        # the same channel, and another before it: nothing stays where it was
        reply = self.in_flight_then_reload(gw, "RL-1", "T-RL-1", [
            ("shop-other", "payindex", None, dict(QUIET)),
            ("shop-epay", "epay", gw, confirm_opts("epay", confirm_timeout_ms="4000"))])
        self.assertAck(reply, "epay")
        evs = self.events()
        self.assertEqual(len(evs), 1, evs)
        ev = evs[0][2]
        self.assertEqual((ev["channel"], ev["trade_no"], ev.get("confirmed_by")),
                         ("shop-epay", "T-RL-1", "query"), ev)

    def test_02_channel_removed(self):
        gws = self.start(("epay",))
        gw = gws["epay"]
        gw.add_order("RL-2", amount="1.00", trade_id="T-RL-2", state="paid")
        gw.set_default("slow:1.5")
        reply = self.in_flight_then_reload(gw, "RL-2", "T-RL-2", [
            ("shop-other", "payindex", None, dict(QUIET))])
        self.assertRefused(reply, 503, "channel removed meanwhile")
        self.assertEqual(self.events(), [])
        self.no_order("epay", "RL-2")


class BoundTest(ConfirmCase):

    def test_01_in_flight(self):
        gws = self.start(("payindex",), confirm_max_in_flight="3", confirm_rate="100",
                         confirm_timeout_ms="5000")
        gw = gws["payindex"]
        gw.set_default("slow:1.5")
        n = 8
        for i in range(n):
            gw.add_order("B-%d" % i, amount="1.00", trade_id="TB-%d" % i, state="paid")
        replies = [None] * n

        def send(i):
            replies[i] = self.callback("payindex", "B-%d" % i, "TB-%d" % i, "1.00")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        ok = [r for r in replies if r.status == 200]
        busy = [r for r in replies if r.status == 503]
        self.assertEqual((len(ok), len(busy)), (3, 5), replies)
        for r in busy:
            self.assertEqual(r.body, b"fail")
            self.assertLess(r.elapsed, 1.0, r)  # at once, not after the slow query
        self.assertLessEqual(gw.max_active, 3)
        self.assertEqual(gw.count(), 3)
        self.assertEqual(len(self.events()), 3)
        # The excess was registered for polling.
        otns = {e[2]["out_trade_no"] for e in self.events()}
        for i in range(n):
            if "B-%d" % i not in otns:
                self.assertRegistered("payindex", "B-%d" % i)

    def test_02_rate(self):
        gws = self.start(("epay",), confirm_rate="2")
        gw = gws["epay"]
        statuses = []
        t0 = time.monotonic()
        for i in range(5):
            gw.add_order("BR-%d" % i, amount="1.00", trade_id="TR-%d" % i, state="paid")
            statuses.append(self.callback("epay", "BR-%d" % i, "TR-%d" % i, "1.00").status)
        self.assertLess(time.monotonic() - t0, 1.0, "too slow to test the rate")
        self.assertEqual(statuses, [200, 200, 503, 503, 503])
        self.assertEqual(gw.count(), 2)
        # A second later the window has room again.
        time.sleep(1.1)
        self.assertAck(self.callback("epay", "BR-4", "TR-4", "1.00"), "epay")
        self.assertEqual(len(self.events()), 3)


if __name__ == "__main__":
    sys.exit(h.run_tests())
