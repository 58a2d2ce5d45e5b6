#!/usr/bin/env python3
"""Integration tests of payrelayctl, the on-call tool (SPEC section 7),
against the real payrelayd and a real redis-server: every command's happy
path (the table or "key: value" output, and --json), the exit statuses
scripts rely on (1 API error, 2 usage, 3 unreachable, 4 bad config,
5 token refused, 6 not found), --help on every command, and that the admin
token never shows up in what payrelayctl prints.

Dead deliveries come from a webhook with `schedule = 0` (one attempt) whose
receiver (harness.Receiver) answers 500; the receiver is then switched to
200 and the replays must arrive.

    PAYRELAYD=build/src/payrelayd PAYRELAYCTL=build/src/payrelayctl \\
    PAYRELAY_VECTORS=../shared/vectors python3 tests/integration/test_ctl.py [-k PATTERN]

Exits 0 when every test passes, 1 otherwise (also when no redis-server is
installed: that is a broken setup, not a pass).
"""

import json
import os
import re
import signal
import socket
import subprocess
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
EPAY = h.load_vectors("epay.json")["vectors"]
GATE = h.load_vectors("gatepay.json")["vectors"]
EPAY_KEY = EPAY[0]["key"]
WEBHOOK_SECRET = "whsec_Y3RsLXRlc3Qtd2ViaG9vay1rZXktMDEyMzQ1Njc="
ISO_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"

# Each subcommand as it is typed, with arguments that pass the usage checks.
COMMANDS = [
    ["status"],
    ["events", "show", "evt_" + "0" * 32],
    ["deliveries", "list"],
    ["replay", "dlv_" + "0" * 32],
    ["replay", "--webhook", "hook", "--dead"],
    ["replay", "--webhook", "hook", "--since", "2026-11-22T10:00:00Z",
     "--until", "2026-11-22T11:00:00Z"],
    ["orders", "expect", "shop-epay", "ORD-1", "1.00"],
    ["orders", "show", "shop-epay", "ORD-1"],
    ["poll", "shop-epay", "ORD-1"],
]


def locate_ctl():
    b = os.environ.get("PAYRELAYCTL")
    if b:
        return b
    guess = os.path.normpath(os.path.join(h.HERE, "..", "..", "build", "src", "payrelayctl"))
    return guess if os.path.exists(guess) else None


CTL = locate_ctl()


def now_ms():
    return int(time.time() * 1000)


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def iso_ms(ms):
    """With milliseconds: 2026-11-22T10:00:00.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


class Result:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv = argv
        self.rc = rc
        self.out = out
        self.err = err
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.out)

    def kv(self):
        """{key: value} of the "key: value" lines of stdout."""
        out = {}
        for line in self.out.splitlines():
            k, sep, v = line.partition(": ")
            if sep:
                out[k] = v
        return out

    def __repr__(self):
        return "<payrelayctl %s: rc=%s (%.2f s)\n--- stdout ---\n%s--- stderr ---\n%s>" % (
            " ".join(self.argv), self.rc, self.elapsed, self.out, self.err)


class CtlCase(unittest.TestCase):
    """One fresh redis-server per test; a daemon when the test wants one."""

    def setUp(self):
        for what, b in (("payrelayd", BINARY), ("payrelayctl", CTL)):
            if not b or not os.access(b, os.X_OK):
                raise RuntimeError("%s not found: set %s (got %r)"
                                   % (what, what.upper(), b))
        self.dir = h.new_workdir("payrelay-ctl-")
        self.daemons = []
        self.secrets = [h.ADMIN_TOKEN, EPAY_KEY, GATE[0]["appsecret"], WEBHOOK_SECRET,
                        WEBHOOK_SECRET[len("whsec_"):]]
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

    def receiver(self, default="ok"):
        rcv = h.Receiver(default=default)
        self.addCleanup(rcv.stop)
        return rcv

    def gateway(self, family="gatepay"):
        gw = fakegw.FakeGateway(family, GATE[0]["appkey"], GATE[0]["appsecret"])
        self.addCleanup(gw.stop)
        return gw

    def write_config(self, path=None, webhooks=(), gateway=None, admin_listen=None,
                     token=h.ADMIN_TOKEN):
        """`webhooks`: [(name, {key: value})]. Returns the path."""
        text = h.config_head(self.port, admin_listen or self.admin_port, self.redis.port,
                             shutdown_timeout=3, stream=STREAM, token=token,
                             writer="tests/integration/test_ctl.py") + """
[channel:shop-epay]
family = epay
merchant_id = 1001
key = {epay_key}
""".format(epay_key=EPAY_KEY)
        if gateway is not None:
            text += """
[channel:shop-gatepay]
family = gatepay
merchant_id = {appkey}
key = {secret}
api_base = {api_base}
poll_after = 3600
poll_timeout_ms = 2000
confirm = off
""".format(appkey=GATE[0]["appkey"], secret=GATE[0]["appsecret"], api_base=gateway.api_base)
        for name, keys in webhooks:
            text += "\n[webhook:%s]\n" % name
            text += "".join("%s = %s\n" % kv for kv in keys.items())
        path = path or self.config
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def start_daemon(self, **kw):
        """Writes the config (with `kw`), starts payrelayd, waits for ready."""
        self.write_config(**kw)
        d = h.Daemon(BINARY, self.dir, self.config, self.port,
                     name="payrelayd-%d" % len(self.daemons))
        self.daemons.append(d)
        self.addCleanup(d.stop, signal.SIGKILL, 5)
        self.addCleanup(d.stop_clean)
        d.start(wait_ready=True)
        return d

    def dead_hook(self, rcv, name="hook"):
        return (name, {"url": rcv.url("/" + name), "secret": WEBHOOK_SECRET,
                       "timeout_ms": "1000", "schedule": "0"})

    def check_logs_for_secrets(self):
        for d in self.daemons:
            text = d.log_text()
            for s in self.secrets:
                self.assertNotIn(s, text, "a configured secret appears in %s" % d.log)

    # --- running payrelayctl ------------------------------------------------

    def ctl(self, *args, config=None, rc=None, timeout=30):
        """Runs payrelayctl -c CONFIG ARGS; checks the exit status when `rc`
        is given, and always that no secret was printed."""
        argv = [CTL, "-c", config or self.config] + list(args)
        t0 = time.monotonic()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        res = Result(argv[1:], p.returncode, p.stdout.decode("utf-8", "replace"),
                     p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)
        for s in self.secrets:
            self.assertNotIn(s, res.out + res.err, "payrelayctl printed a secret: %r" % res)
        self.assertNotIn("Sanitizer", res.err, res)
        self.assertNotIn("runtime error:", res.err, res)
        if rc is not None:
            self.assertEqual(res.rc, rc, "%r\n%s" % (res, self.log_tail()))
        return res

    def assertApiError(self, res, rc, status, pattern=None):
        self.assertEqual(res.rc, rc, "%r\n%s" % (res, self.log_tail()))
        line = res.err.splitlines()[0] if res.err else ""
        self.assertRegex(line, r"^payrelayctl: .+ \(HTTP %d\)$" % status, res)
        if pattern:
            self.assertRegex(line, pattern, res)
        self.assertEqual(res.out, "", res)

    def assertUsage(self, res):
        self.assertEqual(res.rc, 2, res)
        self.assertRegex(res.err, r"(?m)^payrelayctl: ", res)
        self.assertRegex(res.err, r"(?m)^usage: payrelayctl", res)
        self.assertEqual(res.out, "", res)

    # --- callbacks, Redis -----------------------------------------------------

    def callback(self, trade_no, otn="20160806151343349"):
        """Records one signed epay callback; returns its event id."""
        p = {k: v for k, v in EPAY[0]["params"].items() if k != "sign"}
        p["trade_no"] = trade_no
        p["out_trade_no"] = otn
        p["trade_status"] = "TRADE_SUCCESS"
        p["sign"] = h.epay_md5_sign(p, EPAY_KEY)
        reply = h.http(self.port, "GET", "/notify/shop-epay?" + h.form_encode(p))
        self.assertEqual((reply.status, reply.body), (200, b"success"),
                         "%r\n%s" % (reply, self.log_tail()))
        return h.event_id("shop-epay", trade_no, "paid")

    def deliveries(self, webhook=None):
        out = {}
        for k in self.r.keys(PREFIX + "delivery:*"):
            if self.r.cmd("TYPE", k) == "hash":
                rec = self.r.hgetall(k)
                if webhook is None or rec.get("webhook") == webhook:
                    out[k[len(PREFIX + "delivery:"):]] = rec
        return out

    def wait_dead(self, eids, webhook="hook", timeout=10.0):
        """{event id: delivery id} once each event's delivery is dead."""
        deadline = time.monotonic() + timeout
        while True:
            dead = {rec.get("event_id"): did for did, rec in self.deliveries(webhook).items()
                    if rec.get("state") == "dead"}
            if all(e in dead for e in eids):
                return {e: dead[e] for e in eids}
            if time.monotonic() > deadline:
                self.fail("deliveries of %r not dead within %.0f s: %r\n%s"
                          % (eids, timeout, self.deliveries(webhook), self.log_tail()))
            time.sleep(0.05)

    def wait_received(self, rcv, eid, n, timeout=10.0, status=200):
        """Waits until `rcv` answered `status` to the event `n` times."""
        reqs = rcv.wait_for(lambda rs: len([r for r in rs if r.headers.get("webhook-id") == eid
                                            and r.status == status]) >= n, timeout)
        self.assertIsNotNone(reqs, "event %s not received %d times with %d: %r\n%s"
                             % (eid, n, status, rcv.snapshot(), self.log_tail()))

    def log_tail(self, n=25):
        return "\n".join("--- %s (tail) ---\n%s" % (os.path.basename(d.log), d.log_tail(n))
                         for d in self.daemons)


# ==========================================================================


class HelpAndUsageTest(CtlCase):
    """No daemon is needed, nor even a config file: help and usage errors
    come before the config is read."""

    def test_01_help(self):
        missing = os.path.join(self.dir, "no-such.conf")
        res = self.ctl("--help", config=missing, rc=0)
        self.assertRegex(res.out, r"(?m)^usage: payrelayctl ")
        for word in ("status", "events show", "deliveries list", "replay", "orders expect",
                     "orders show", "poll", "--json", "--timeout", "-c, --config"):
            self.assertIn(word, res.out, "--help does not mention %r" % word)
        # the exit statuses are documented
        for code, what in ((0, "success"), (1, "API"), (2, "usage"), (3, "unreachable"),
                           (4, "config"), (5, "token"), (6, "not found")):
            self.assertRegex(res.out, r"(?mi)^\s*%d\s.*%s" % (code, what), res)
        self.assertEqual(self.ctl(config=missing, rc=2).out, "")
        self.assertEqual(self.ctl("help", config=missing, rc=0).out, res.out)
        self.assertRegex(self.ctl("--version", config=missing, rc=0).out,
                         r"^payrelayctl \S+\n$")

        # every command, its group, and `help COMMAND`
        for argv in COMMANDS:
            words = argv[:2] if argv[0] in ("events", "deliveries", "orders") else argv[:1]
            for form in (words + ["--help"], words + ["-h"], argv + ["--help"],
                         ["help"] + words):
                res = self.ctl(*form, config=missing, rc=0)
                self.assertRegex(res.out, r"(?m)^usage: payrelayctl %s" % re.escape(" ".join(words)),
                                 res)
                self.assertIn("Exit status", res.out, res)
                self.assertEqual(res.err, "", res)
        for group in ("events", "deliveries", "orders"):
            res = self.ctl(group, "--help", config=missing, rc=0)
            self.assertIn("payrelayctl %s " % group, res.out, res)

    def test_02_usage_errors(self):
        # a missing config file would be exit 4: usage is checked first
        missing = os.path.join(self.dir, "no-such.conf")
        bad = [
            [],
            ["frobnicate"],
            ["--bogus", "status"],
            ["status", "--bogus"],
            ["status", "extra"],
            ["--timeout", "soon", "status"],
            ["status", "--timeout", "0"],
            ["status", "--timeout"],
            ["events"],
            ["events", "list"],
            ["events", "show"],
            ["events", "show", "a", "b"],
            ["deliveries"],
            ["deliveries", "list", "--dead", "--pending"],
            ["deliveries", "list", "--limit", "0"],
            ["deliveries", "list", "--limit", "ten"],
            ["deliveries", "list", "--webhook", "no/such"],
            ["deliveries", "list", "stray"],
            ["replay"],
            ["replay", "a", "b"],
            ["replay", "dlv_x", "--dead"],
            ["replay", "dlv_x", "--webhook", "hook"],
            ["replay", "--dead"],
            ["replay", "--webhook", "hook"],
            ["replay", "--webhook", "hook", "--dead", "--since", "0"],
            ["replay", "--webhook", "hook", "--since", "yesterday"],
            ["replay", "--webhook", "hook", "--since", "2026-11-22T10:00:00"],  # no zone
            ["replay", "--webhook", "hook", "--since", "2026-02-30T10:00:00Z"],
            ["replay", "--webhook", "hook", "--since", "1763805600"],  # seconds, not ms
            ["replay", "--webhook", "hook", "--since", "2026-11-22T11:00:00Z",
             "--until", "2026-11-22T10:00:00Z"],
            ["orders"],
            ["orders", "expect", "shop-epay", "ORD-1"],
            ["orders", "expect", "shop-epay", "ORD-1", "1.001"],
            ["orders", "expect", "shop-epay", "ORD-1", "-1"],
            ["orders", "expect", "shop-epay", "ORD-1", "1.00", "--expires-in", "0"],
            ["orders", "expect", "shop-epay", "ORD-1", "1.00", "--expires-in", "31d"],
            ["orders", "expect", "bad channel", "ORD-1", "1.00"],
            ["orders", "expect", "shop-epay", "a/b", "1.00"],
            ["orders", "show", "shop-epay"],
            ["orders", "show", "shop-epay", ""],
            ["poll", "shop-epay"],
            ["poll", "shop-epay", "ORD-1", "more"],
        ]
        for argv in bad:
            with self.subTest(argv=argv):
                self.assertUsage(self.ctl(*argv, config=missing))


class ConfigTest(CtlCase):

    def test_03_bad_config(self):
        missing = os.path.join(self.dir, "no-such.conf")
        res = self.ctl("status", config=missing, rc=4)
        self.assertRegex(res.err, r"^%s: cannot read" % re.escape(missing), res)
        self.assertEqual(res.out, "")

        path = self.write_config(path=os.path.join(self.dir, "bad.conf"))
        with open(path, "a", encoding="utf-8") as f:
            f.write("[webhook:x]\nurl = ftp://nope\nsecret = s\nbogus_key = 1\n")
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        url_line = lines.index("url = ftp://nope") + 1
        bogus_line = lines.index("bogus_key = 1") + 1
        for argv in COMMANDS:
            res = self.ctl(*argv, config=path, rc=4)
            self.assertEqual(res.out, "", res)
            self.assertRegex(res.err, r"(?m)^%s:%d: " % (re.escape(path), url_line), res)
            self.assertRegex(res.err, r"(?m)^%s:%d: " % (re.escape(path), bogus_line), res)
            for line in res.err.splitlines():
                self.assertRegex(line, r"^%s(:\d+)?: \S" % re.escape(path), res)

        # the same problems as payrelayd --check-config finds
        check = h.run_binary([BINARY, "-c", path, "--check-config"])
        self.assertEqual(check[0], 2, check)
        self.assertEqual(res.err, check[2])


class UnreachableTest(CtlCase):

    def test_04_daemon_down(self):
        self.write_config()  # nothing listens on admin_port
        for argv in COMMANDS:
            res = self.ctl(*argv, rc=3)
            self.assertRegex(res.err, r"^payrelayctl: cannot reach payrelayd at "
                             r"127\.0\.0\.1:%d: \S" % self.admin_port, res)
            self.assertEqual(res.out, "", res)

    def test_05_daemon_hangs_timeout(self):
        # accepts and never answers: --timeout bounds the wait
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((h.HOST, self.admin_port))
        srv.listen(16)
        conns = []
        stop = threading.Event()

        def accept():
            srv.settimeout(0.1)
            while not stop.is_set():
                try:
                    conns.append(srv.accept()[0])
                except OSError:
                    pass

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        self.addCleanup(srv.close)
        self.addCleanup(lambda: [c.close() for c in conns])
        self.addCleanup(t.join, 2)
        self.addCleanup(stop.set)
        self.write_config()
        res = self.ctl("--timeout", "0.5", "status", rc=3)
        self.assertRegex(res.err, r"^payrelayctl: cannot reach payrelayd at 127\.0\.0\.1:%d: "
                         r".*(?i:time)" % self.admin_port, res)
        self.assertLess(res.elapsed, 5, res)
        res = self.ctl("deliveries", "list", "--timeout", "0.5", rc=3)
        self.assertLess(res.elapsed, 5, res)


class DaemonTest(CtlCase):

    def test_06_wrong_token(self):
        self.start_daemon()
        wrong = self.write_config(path=os.path.join(self.dir, "wrong.conf"),
                                  token="not-the-" + h.ADMIN_TOKEN)
        self.secrets.append("not-the-" + h.ADMIN_TOKEN)
        for argv in COMMANDS:
            res = self.ctl(*argv, config=wrong, rc=5)
            self.assertEqual(res.err.splitlines()[0],
                             "payrelayctl: the admin token was refused (check [admin] token "
                             "in %s)" % wrong, res)
            self.assertEqual(res.out, "", res)
        # no token at all in the file
        none = self.write_config(path=os.path.join(self.dir, "none.conf"), token=None)
        res = self.ctl("status", config=none, rc=5)
        self.assertIn("the admin token was refused", res.err, res)
        # nothing was done with the wrong token
        self.assertEqual(self.r.keys(PREFIX + "order:*"), [])

    def test_07_status(self):
        self.start_daemon()
        res = self.ctl("status", rc=0)
        self.assertEqual(res.out.splitlines()[0],
                         "payrelayd at 127.0.0.1:%d: ready" % self.admin_port, res)
        self.assertEqual(res.err, "", res)
        js = self.ctl("status", "--json", rc=0).json()
        self.assertIs(js.get("ready"), True, js)
        self.assertEqual(js.get("address"), "127.0.0.1:%d" % self.admin_port, js)
        self.assertEqual(js.get("healthz"), {"status": "ok"}, js)
        self.assertIsInstance(js.get("readyz"), dict, js)
        # global options go before or after the command
        self.assertEqual(self.ctl("--json", "status", rc=0).json().get("ready"), True)

        # Redis gone: up but not ready, exit 1
        self.redis.stop(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            res = self.ctl("status")
            if res.rc == 1:
                break
            self.assertEqual(res.rc, 0, res)
            if time.monotonic() > deadline:
                self.fail("status still ready 10 s after Redis went away: %r" % res)
            time.sleep(0.1)
        self.assertRegex(res.out.splitlines()[0],
                         r"^payrelayd at 127\.0\.0\.1:%d: not ready \(.+\)$" % self.admin_port,
                         res)
        js = self.ctl("status", "--json", rc=1).json()
        self.assertIs(js.get("ready"), False, js)
        self.redis.start()
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        deadline = time.monotonic() + 10
        while self.ctl("status").rc != 0:
            if time.monotonic() > deadline:
                self.fail("status not ready 10 s after Redis came back\n" + self.log_tail())
            time.sleep(0.1)

    def test_08_status_over_a_unix_socket(self):
        sock = os.path.join(self.dir, "admin.sock")
        self.start_daemon(admin_listen="unix:" + sock)
        res = self.ctl("status", rc=0)
        self.assertEqual(res.out.splitlines()[0], "payrelayd at unix:%s: ready" % sock, res)
        res = self.ctl("orders", "expect", "shop-epay", "U-1", "2.50", rc=0)
        self.assertEqual(res.kv().get("amount"), "2.50", res)
        os.unlink(sock)
        res = self.ctl("status", rc=3)
        self.assertIn("cannot reach payrelayd at unix:%s: " % sock, res.err, res)

    def test_09_orders_expect_and_show(self):
        self.start_daemon()
        t0 = now_ms()
        res = self.ctl("orders", "expect", "shop-epay", "ORD-1", "12.5", "--expires-in", "2h",
                       rc=0)
        self.assertEqual(res.out.splitlines()[0], "registered", res)
        kv = res.kv()
        self.assertEqual((kv.get("channel"), kv.get("out_trade_no"), kv.get("amount"),
                          kv.get("state")), ("shop-epay", "ORD-1", "12.50", "pending"), res)
        self.assertRegex(kv.get("expires_at", ""), "^%s$" % ISO_RE, res)
        stored = self.r.hgetall(PREFIX + "order:shop-epay:ORD-1")
        self.assertEqual(stored.get("amount_fen"), "1250", stored)
        self.assertLess(abs(int(stored["expires_ms"]) - (t0 + 7200 * 1000)), 60000, stored)
        self.assertEqual(kv["expires_at"], iso(int(stored["expires_ms"])), res)

        res = self.ctl("orders", "expect", "shop-epay", "ORD-1", "12.50", rc=0)
        self.assertEqual(res.out.splitlines()[0], "already registered", res)
        res = self.ctl("orders", "expect", "shop-epay", "ORD-1", "13.00")
        self.assertApiError(res, 1, 409)

        js = self.ctl("orders", "expect", "shop-epay", "ORD-2", "1", "--json", rc=0).json()
        self.assertEqual((js.get("out_trade_no"), js.get("amount_fen"), js.get("created")),
                         ("ORD-2", 100, True), js)

        res = self.ctl("orders", "show", "shop-epay", "ORD-1", rc=0)
        kv = res.kv()
        self.assertEqual((kv.get("channel"), kv.get("out_trade_no"), kv.get("amount"),
                          kv.get("state"), kv.get("polls")),
                         ("shop-epay", "ORD-1", "12.50", "pending", "0"), res)
        self.assertRegex(kv.get("created", ""), "^%s$" % ISO_RE, res)
        js = self.ctl("orders", "show", "shop-epay", "ORD-1", "--json", rc=0).json()
        self.assertEqual((js.get("amount_fen"), js.get("state")), (1250, "pending"), js)

        # an id that needs %-escaping in the URL
        odd = "订单 #7?a=b&c%d+e"
        res = self.ctl("orders", "expect", "shop-epay", odd, "0.01", rc=0)
        self.assertEqual(res.kv().get("out_trade_no"), odd, res)
        self.assertEqual(self.ctl("orders", "show", "shop-epay", odd, "--json", rc=0)
                         .json().get("out_trade_no"), odd)

        self.assertApiError(self.ctl("orders", "show", "shop-epay", "NOPE"), 6, 404)
        self.assertApiError(self.ctl("orders", "show", "no-such-channel", "ORD-1"), 6, 404)
        self.assertApiError(self.ctl("orders", "expect", "no-such-channel", "X", "1.00"), 6, 404)

    def test_10_poll(self):
        gw = self.gateway()
        self.start_daemon(gateway=gw)
        gw.add_order("G-1", amount="3.00", trade_id="901")
        self.ctl("orders", "expect", "shop-gatepay", "G-1", "3.00", rc=0)
        res = self.ctl("poll", "shop-gatepay", "G-1", rc=0)
        kv = res.kv()
        self.assertEqual((kv.get("result"), kv.get("state"), kv.get("polls")),
                         ("unpaid", "pending", "1"), res)
        self.assertIn("detail", kv, res)
        self.assertEqual(gw.count("G-1"), 1)

        gw.set_state("G-1", "paid")
        js = self.ctl("poll", "shop-gatepay", "G-1", "--json", rc=0).json()
        self.assertEqual((js.get("result"), js["order"].get("state")), ("paid", "paid"), js)
        eid = h.event_id("shop-gatepay", "901", "paid")
        self.assertEqual(js["order"].get("event_id"), eid, js)

        res = self.ctl("poll", "shop-gatepay", "G-1")
        self.assertApiError(res, 1, 409)
        self.assertIn("state: paid", res.err, res)
        self.assertApiError(self.ctl("poll", "shop-gatepay", "NOPE"), 6, 404)
        self.assertApiError(self.ctl("poll", "no-such-channel", "G-1"), 6, 404)
        # a channel without api_base cannot be polled
        self.ctl("orders", "expect", "shop-epay", "E-1", "1.00", rc=0)
        self.assertApiError(self.ctl("poll", "shop-epay", "E-1"), 1, 400)

        # the event the poll recorded
        res = self.ctl("events", "show", eid, rc=0)
        kv = res.kv()
        self.assertEqual((kv.get("id"), kv.get("channel"), kv.get("source"), kv.get("status")),
                         (eid, "shop-gatepay", "poll", "paid"), res)

    def test_11_events_show(self):
        self.start_daemon()
        eid = self.callback("2026112200001", otn="ORD-EV")
        res = self.ctl("events", "show", eid, rc=0)
        kv = res.kv()
        want = {"id": eid, "type": "order.paid", "channel": "shop-epay",
                "trade_no": "2026112200001", "out_trade_no": "ORD-EV", "status": "paid",
                "source": "callback"}
        for k, v in want.items():
            self.assertEqual(kv.get(k), v, "%s in %r" % (k, res))
        for k in ("amount", "paid_amount", "received_at", "stream_id"):
            self.assertTrue(kv.get(k), "%s in %r" % (k, res))
        # the main fields come first, in this order
        keys = [line.partition(": ")[0] for line in res.out.splitlines()]
        main = ["id", "type", "channel", "trade_no", "out_trade_no", "status", "amount",
                "paid_amount", "received_at", "source"]
        self.assertEqual(keys[:len(main)], main, res)

        js = self.ctl("events", "show", eid, "--json", rc=0).json()
        entry = self.r.xrange(STREAM)[0]
        self.assertEqual(js.get("stream_id"), entry[0], js)
        self.assertEqual({k: v for k, v in js.items() if k != "stream_id"},
                         json.loads(entry[1]["event"]))

        self.assertApiError(self.ctl("events", "show", "evt_" + "f" * 32), 6, 404)

    def test_12_deliveries_and_replays(self):
        rcv = self.receiver(default="fail")
        other = self.receiver(default="ok")
        self.start_daemon(webhooks=[self.dead_hook(rcv),
                                    ("other", {"url": other.url("/other"),
                                               "secret": WEBHOOK_SECRET, "schedule": "0"})])
        res = self.ctl("deliveries", "list", rc=0)
        self.assertEqual(res.out, "no dead deliveries\n", res)
        self.assertEqual(self.ctl("deliveries", "list", "--json", rc=0).json(),
                         {"deliveries": []})

        t0 = now_ms()
        e1 = self.callback("2026112200011")
        e2 = self.callback("2026112200012")
        dead = self.wait_dead([e1, e2])
        d1, d2 = dead[e1], dead[e2]
        t1 = now_ms()

        # the table
        res = self.ctl("deliveries", "list", "--dead", "--webhook", "hook", rc=0)
        lines = res.out.splitlines()
        self.assertRegex(lines[0], r"^ID\s+WEBHOOK\s+EVENT\s+STATE\s+ATTEMPTS\s+LAST STATUS\s+"
                         r"LAST ERROR\s+DUE/DEAD AT$", res)
        self.assertEqual(len(lines), 3, res)
        rows = {}
        for line in lines[1:]:
            cols = line.split()
            rows[cols[0]] = cols
        self.assertEqual(set(rows), {d1, d2}, res)
        for did, eid in ((d1, e1), (d2, e2)):
            cols = rows[did]
            self.assertEqual(cols[1:6], ["hook", eid, "dead", "1", "500"], res)
            self.assertRegex(cols[-1], "^%s$" % ISO_RE, res)
            dead_ms = int(self.r.hgetall(PREFIX + "delivery:" + did)["dead_ms"])
            self.assertEqual(cols[-1], iso(dead_ms), res)
            self.assertTrue(iso(t0 - 1000) <= cols[-1] <= iso(t1 + 1000), res)
        # the header's columns line up with the rows'
        self.assertEqual(lines[0].index("WEBHOOK"), lines[1].index("hook"), res)
        self.assertEqual(self.ctl("deliveries", "list", rc=0).out, res.out,
                         "--dead is the default")

        js = self.ctl("deliveries", "list", "--dead", "--json", rc=0).json()
        got = {d["id"]: d for d in js["deliveries"]}
        self.assertEqual(set(got), {d1, d2}, js)
        self.assertEqual((got[d1]["event_id"], got[d1]["webhook"], got[d1]["state"]),
                         (e1, "hook", "dead"), js)
        self.assertEqual(len(self.ctl("deliveries", "list", "--limit", "1", "--json",
                                      rc=0).json()["deliveries"]), 1)
        self.assertEqual(self.ctl("deliveries", "list", "--webhook", "other", rc=0).out,
                         "no dead deliveries of other\n")
        res = self.ctl("deliveries", "list", "--pending", "--webhook", "hook", rc=0)
        self.assertEqual(res.out, "no pending deliveries of hook\n", res)
        self.assertApiError(self.ctl("deliveries", "list", "--webhook", "nope"), 6, 404)

        # replay one: it arrives, the old one leaves the dead list
        rcv.set_default("ok")
        res = self.ctl("replay", d1, rc=0)
        m = re.match(r"^replayed (\S+) as (dlv_[0-9a-f]{32})\n$", res.out)
        self.assertIsNotNone(m, res)
        self.assertEqual(m.group(1), d1, res)
        new1 = m.group(2)
        self.assertNotEqual(new1, d1)
        self.wait_received(rcv, e1, 1)
        res = self.ctl("deliveries", "list", "--dead", rc=0)
        self.assertNotIn(d1, res.out, res)
        self.assertIn(d2, res.out, res)
        self.assertApiError(self.ctl("replay", "dlv_" + "0" * 32), 6, 404)

        # replay every dead delivery of the webhook
        rcv.set_default("fail")
        e3 = self.callback("2026112200013")
        self.wait_dead([e3])
        rcv.set_default("ok")
        res = self.ctl("replay", "--webhook", "hook", "--dead", rc=0)
        self.assertEqual(res.out, "replayed 2 dead deliveries of hook\n", res)
        self.wait_received(rcv, e2, 1)
        self.wait_received(rcv, e3, 1)
        self.assertEqual(self.ctl("deliveries", "list", "--dead", rc=0).out,
                         "no dead deliveries\n")
        js = self.ctl("replay", "--webhook", "hook", "--dead", "--json", rc=0).json()
        self.assertEqual(js, {"replayed": 0})
        self.assertApiError(self.ctl("replay", "--webhook", "nope", "--dead"), 6, 404)

        # replay a time range of the stream to a webhook (e1 and e2, not e3):
        # ISO-8601 with milliseconds, then unix milliseconds
        self.wait_received(other, e3, 1)
        before = sum(1 for r in other.snapshot() if r.status == 200)
        res = self.ctl("replay", "--webhook", "other", "--since", iso_ms(t0),
                       "--until", iso_ms(t1), rc=0)
        self.assertRegex(res.out, r"^replayed 2 events to other \(%s \.\. %s\)\n$"
                         % (ISO_RE, ISO_RE), res)
        for eid in (e1, e2):
            self.wait_received(other, eid, 2)
        js = self.ctl("replay", "--webhook", "other", "--since", str(t0),
                      "--until", str(t1), "--json", rc=0).json()
        self.assertEqual(js, {"replayed": 2})
        for eid in (e1, e2):
            self.wait_received(other, eid, 3)
        res = self.ctl("replay", "--webhook", "other", "--since", str(t0 - 60000),
                       "--until", str(t0 - 30000), rc=0)
        self.assertEqual(res.out.split(" (")[0], "replayed 0 events to other", res)
        time.sleep(0.5)
        self.assertEqual(sum(1 for r in other.snapshot() if r.status == 200), before + 4)


if __name__ == "__main__":
    sys.exit(h.run_tests())
