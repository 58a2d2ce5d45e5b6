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
    ["send-test", "shop-epay"],
    ["events", "find", "--out-trade-no", "ORD-1"],
    ["events", "tail"],
    ["deliveries", "show", "dlv_" + "0" * 32],
    ["refund", "shop-epay", "--out-trade-no", "ORD-1", "1.00", "--refund-id", "RF-1"],
    ["account", "shop-epay"],
    ["settlements", "shop-epay"],
    ["pay", "shop-epay", "ORD-1", "1.00", "--method", "alipay"],
]
# The gateway client's commands (SPEC 10), each naming a channel: the
# channel's place in their arguments is the same as in COMMANDS.
CLIENT_COMMANDS = [argv for argv in COMMANDS if argv[0] in ("pay", "refund", "account",
                                                             "settlements")]


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
                     token=h.ADMIN_TOKEN, gate_confirm="off"):
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
confirm = {confirm}
""".format(appkey=GATE[0]["appkey"], secret=GATE[0]["appsecret"], api_base=gateway.api_base,
           confirm=gate_confirm)
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
            ["send-test"],
            ["send-test", "a", "b"],
            ["send-test", "bad channel"],
            ["send-test", "shop-epay", "--amount", ""],
            ["send-test", "shop-epay", "--status"],
            ["events", "find"],
            ["events", "find", "--out-trade-no", ""],
            ["events", "find", "--out-trade-no", "X", "--channel", "no/such"],
            ["events", "find", "--out-trade-no", "X", "stray"],
            ["events", "tail", "--type", "order.bogus"],
            ["events", "tail", "--limit", "0"],
            ["events", "tail", "--channel", "bad channel"],
            ["events", "tail", "stray"],
            ["deliveries", "show"],
            ["deliveries", "show", "a", "b"],
            ["pay"],
            ["pay", "shop-epay", "ORD-1"],
            ["pay", "shop-epay", "ORD-1", "1.001", "--method", "alipay"],
            ["pay", "shop-epay", "ORD-1", "0", "--method", "alipay"],
            ["pay", "shop-epay", "ORD-1", "-", "--method", "alipay"],
            ["pay", "bad channel", "ORD-1", "1.00", "--method", "alipay"],
            ["pay", "shop-epay", "a/b", "1.00", "--method", "alipay"],
            ["pay", "shop-epay", "ORD-1", "1.00", "--expires-in", "31d"],
            ["pay", "shop-epay", "ORD-1", "1.00", "--bogus"],
            ["refund"],
            ["refund", "bad channel", "--out-trade-no", "a", "1.00", "--refund-id", "x"],
            ["account"],
            ["account", "bad channel"],
            ["settlements"],
            ["settlements", "bad channel"],
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

    def test_06b_client_commands_unknown_channel(self):
        """pay, refund, account and settlements on a channel payrelayd does
        not know: the API's 404, exit 6, nothing asked or stored."""
        self.start_daemon()
        for argv in CLIENT_COMMANDS:
            argv = [argv[0], "no-such-channel"] + argv[2:]
            res = self.ctl(*argv)
            self.assertApiError(res, 6, 404, r"unknown channel")
        self.assertEqual(self.r.keys(PREFIX + "order:*"), [])
        self.assertEqual(self.r.keys(PREFIX + "refund:*"), [])

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


class OnCallTest(CtlCase):
    """send-test, events find, events tail, deliveries show (docs/operations.md)."""

    def hook(self, rcv, name="hook", schedule="0"):
        return (name, {"url": rcv.url("/" + name), "secret": WEBHOOK_SECRET,
                       "timeout_ms": "1000", "schedule": schedule})

    def epay_callback(self, trade_no, otn, status="TRADE_SUCCESS", money="1.00"):
        p = {k: v for k, v in EPAY[0]["params"].items() if k != "sign"}
        p.update(trade_no=trade_no, out_trade_no=otn, trade_status=status, money=money)
        p["sign"] = h.epay_md5_sign(p, EPAY_KEY)
        return h.http(self.port, "GET", "/notify/shop-epay?" + h.form_encode(p))

    def events(self):
        return [json.loads(e[1]["event"]) for e in self.r.xrange(STREAM)]

    def test_13_send_test_epay(self):
        rcv = self.receiver(default="ok")
        self.start_daemon(webhooks=[self.hook(rcv)])
        res = self.ctl("send-test", "shop-epay", rc=0)
        lines = res.out.splitlines()
        self.assertEqual(lines[0], "test callback of shop-epay (epay): POST "
                         "http://127.0.0.1:%d/notify/shop-epay" % self.port, res)
        self.assertEqual(lines[1], 'answer: HTTP 200 "success"', res)
        kv = res.kv()
        self.assertEqual(kv.get("type"), "order.paid", res)
        self.assertEqual(kv.get("test"), "true", res)
        self.assertEqual(kv.get("amount"), "0.01", res)
        self.assertRegex(kv.get("trade_no", ""), r"^paytest_[0-9a-f]{32}$", res)
        self.assertRegex(res.out, r"(?m)^  dlv_[0-9a-f]{32}\s+hook\s+delivered\s+1\s+200\s", res)
        # recorded once, marked test, and delivered with "test": true
        evs = self.events()
        self.assertEqual(len(evs), 1, evs)
        ev = evs[0]
        self.assertIs(ev.get("test"), True, ev)
        self.assertEqual((ev["channel"], ev["source"], ev["amount_fen"]),
                         ("shop-epay", "callback", 1), ev)
        self.assertEqual(ev["id"], h.event_id("shop-epay", ev["trade_no"], "paid"))
        self.wait_received(rcv, ev["id"], 1)
        body = json.loads([r for r in rcv.snapshot() if r.status == 200][0].body)
        self.assertIs(body.get("test"), True, body)

        # --amount, --status, --json
        js = self.ctl("send-test", "shop-epay", "--amount", "2.50", "--status", "TRADE_CLOSED",
                      "--json", rc=0).json()
        self.assertEqual(js["callback"], {"status": 200, "body": "success"}, js)
        self.assertEqual(js["event"]["type"], "order.status", js)
        self.assertEqual(js["event"]["status"], "TRADE_CLOSED", js)
        self.assertEqual(js["event"]["amount"], "2.50", js)
        self.assertIs(js["event"]["test"], True, js)
        self.assertNotIn("body", js["test"], js)
        self.assertEqual([d["webhook"] for d in js["deliveries"]], ["hook"], js)
        self.assertEqual(len(self.events()), 2)

        # errors: unknown channel, bad amount, the daemon down
        self.assertApiError(self.ctl("send-test", "no-such"), 6, 404)
        self.assertApiError(self.ctl("send-test", "shop-epay", "--amount", "abc"), 1, 400)
        self.assertApiError(self.ctl("send-test", "shop-epay", "--amount", "0"), 1, 400)
        self.assertEqual(len(self.events()), 2)

    def test_14_send_test_is_the_daemons_word_only(self):
        # A gateway (or anyone with the key) sending a test-shaped trade id
        # is refused: only ids the daemon handed out are tests.
        self.start_daemon()
        r = self.epay_callback("paytest_" + "a" * 32, "ORD-FAKE-TEST")
        self.assertEqual((r.status, r.body), (400, b"fail"), r)
        self.assertEqual(self.events(), [])
        self.daemons[0].wait_log(r"did not hand out")
        # a real callback is never marked test
        r = self.epay_callback("2026113000001", "ORD-REAL")
        self.assertEqual((r.status, r.body), (200, b"success"), r)
        self.assertNotIn("test", self.events()[0])
        # the handed-out callback is a test on this channel only, and the
        # flag is not in what the caller could change
        made = h.http(self.admin_port, "POST", "/v1/channels/shop-epay/test", body="{}",
                      headers={"Authorization": "Bearer " + h.ADMIN_TOKEN})
        self.assertEqual(made.status, 201, made)
        js = json.loads(made.body)
        self.assertEqual(js["path"], "/notify/shop-epay")
        self.assertNotIn("test", [kv.split("=")[0] for kv in js["body"].split("&")])
        r = h.http(self.port, "POST", js["path"], body=js["body"],
                   headers={"Content-Type": js["content_type"]})
        self.assertEqual((r.status, r.body), (200, b"success"), r)
        # sent again (a retry): the same event, a duplicate
        r = h.http(self.port, "POST", js["path"], body=js["body"],
                   headers={"Content-Type": js["content_type"]})
        self.assertEqual((r.status, r.body), (200, b"success"), r)
        self.assertEqual([e.get("test") for e in self.events()], [None, True])
        # without the token: nothing handed out
        made = h.http(self.admin_port, "POST", "/v1/channels/shop-epay/test", body="{}")
        self.assertEqual(made.status, 401, made)

    def test_15_send_test_gatepay_skips_confirmation(self):
        gw = self.gateway()
        rcv = self.receiver(default="ok")
        self.start_daemon(gateway=gw, gate_confirm="query", webhooks=[self.hook(rcv)])
        res = self.ctl("send-test", "shop-gatepay", "--amount", "1.88", rc=0)
        self.assertIn('answer: HTTP 200 "success"', res.out, res)
        ev = self.events()[0]
        self.assertEqual((ev["family"], ev["amount"], ev["paid_amount"], ev.get("test")),
                         ("gatepay", "1.88", "1.88", True), ev)
        self.assertNotIn("confirmed_by", ev)
        self.assertEqual(gw.count(), 0, "a test callback was confirmed by query")
        # gatepay has no status to send
        self.assertApiError(self.ctl("send-test", "shop-gatepay", "--status", "X"), 1, 409,
                            r"gatepay notifies payments only")

    def test_16_events_find(self):
        rcv = self.receiver(default="fail")
        self.start_daemon(webhooks=[self.hook(rcv)])
        self.assertEqual(self.epay_callback("2026113000011", "ORD-F").status, 200)
        self.assertEqual(self.epay_callback("2026113000012", "ORD-F").status, 200)  # repeat
        self.assertEqual(self.epay_callback("2026113000013", "ORD-OTHER").status, 200)
        e1 = h.event_id("shop-epay", "2026113000011", "paid")
        e2 = h.event_id("shop-epay", "2026113000012", "paid")
        self.wait_dead([e1, e2])
        res = self.ctl("events", "find", "--out-trade-no", "ORD-F", rc=0)
        blocks = res.out.split("\n\n")
        self.assertEqual(len(blocks), 2, res)
        for blk, eid, tn in ((blocks[0], e1, "2026113000011"), (blocks[1], e2, "2026113000012")):
            self.assertIn("id: %s\n" % eid, blk, res)
            self.assertIn("trade_no: %s\n" % tn, blk, res)
            self.assertRegex(blk, r"(?m)^  DELIVERY\s+WEBHOOK\s+STATE\s+ATTEMPTS\s+LAST STATUS",
                             res)
            self.assertRegex(blk, r"(?m)^  dlv_[0-9a-f]{32}\s+hook\s+dead\s+1\s+500\s", res)
        self.assertIn("repeat_payment: true", blocks[1], res)
        js = self.ctl("events", "find", "--out-trade-no", "ORD-F", "--channel", "shop-epay",
                      "--json", rc=0).json()
        self.assertEqual(js["out_trade_no"], "ORD-F")
        self.assertEqual([e["id"] for e in js["events"]], [e1, e2], js)
        self.assertEqual([d["state"] for d in js["events"][0]["deliveries"]], ["dead"], js)
        # the index lives dedup_ttl
        ttl = int(self.r.cmd("TTL", PREFIX + "oix:shop-epay:ORD-F"))
        self.assertTrue(29 * 86400 < ttl <= 30 * 86400, ttl)  # dedup_ttl's default
        # a payment of a registered order with another amount: found and counted
        self.ctl("orders", "expect", "shop-epay", "ORD-MM", "5.00", rc=0)
        self.assertEqual(self.epay_callback("2026113000014", "ORD-MM").status, 200)
        js = self.ctl("events", "find", "--out-trade-no", "ORD-MM", "--json", rc=0).json()
        self.assertEqual([e["type"] for e in js["events"]], ["order.amount_mismatch"], js)
        text = h.http(self.admin_port, "GET", "/metrics",
                      headers={"Authorization": "Bearer " + h.ADMIN_TOKEN}).body.decode()
        self.assertIn('payrelay_amount_mismatches_total{channel="shop-epay"} 1\n', text)
        # nothing known
        res = self.ctl("events", "find", "--out-trade-no", "ORD-NONE", rc=0)
        self.assertTrue(res.out.startswith("no event of order ORD-NONE"), res)
        self.assertEqual(self.ctl("events", "find", "--out-trade-no", "ORD-NONE", "--json",
                                  rc=0).json(), {"out_trade_no": "ORD-NONE", "events": []})
        self.assertApiError(self.ctl("events", "find", "--out-trade-no", "ORD-F",
                                     "--channel", "no-such"), 6, 404)

    def test_17_events_tail(self):
        self.start_daemon()
        self.assertEqual(self.epay_callback("2026113000020", "ORD-OLD").status, 200)
        argv = [CTL, "-c", self.config, "events", "tail", "--limit", "2"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        header = p.stdout.readline().decode()
        self.assertRegex(header, r"^RECEIVED\s+TYPE\s+CHANNEL\s+OUT_TRADE_NO\s+TRADE_NO\s+PAID"
                         r"\s+SOURCE\s+ID$")
        time.sleep(0.3)
        self.assertEqual(self.epay_callback("2026113000021", "ORD-T1").status, 200)
        self.assertEqual(self.epay_callback("2026113000022", "ORD-T2", status="TRADE_CLOSED")
                         .status, 200)
        out, err = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 0, err)
        rows = out.decode().splitlines()
        self.assertEqual(len(rows), 2, rows)
        self.assertRegex(rows[0], r"^%s\s+order\.paid\s+shop-epay\s+ORD-T1\s+2026113000021\s+"
                         r"1\.00\s+callback\s+evt_[0-9a-f]{32}$" % r"\S+", rows)
        self.assertIn("order.status", rows[1])
        self.assertNotIn("ORD-OLD", out.decode())

        # --type filters, --json gives one event per line
        argv = [CTL, "-c", self.config, "events", "tail", "--type", "order.status", "--json",
                "--limit", "1"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        time.sleep(0.8)
        self.assertEqual(self.epay_callback("2026113000023", "ORD-T3").status, 200)
        self.assertEqual(self.epay_callback("2026113000024", "ORD-T4", status="WAIT")
                         .status, 200)
        out, err = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 0, err)
        evs = [json.loads(line) for line in out.decode().splitlines()]
        self.assertEqual([(e["out_trade_no"], e["status"]) for e in evs], [("ORD-T4", "WAIT")])

        # Ctrl-C ends it; the daemon does not mind a client leaving mid-wait
        p = subprocess.Popen([CTL, "-c", self.config, "events", "tail"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        p.stdout.readline()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=10)
        self.assertEqual(p.returncode, -signal.SIGINT)
        self.assertEqual(self.ctl("status", rc=0).rc, 0)

        # the long poll itself: bounded waits, bad parameters
        auth = {"Authorization": "Bearer " + h.ADMIN_TOKEN}
        last = json.loads(h.http(self.admin_port, "GET", "/v1/events", headers=auth).body)
        self.assertEqual(last["events"], [])
        r = h.http(self.admin_port, "GET", "/v1/events?after=%s&wait=1" % last["last_id"],
                   headers=auth)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(json.loads(r.body)["events"], [])
        self.assertTrue(0.9 < r.elapsed < 3, r.elapsed)
        r = h.http(self.admin_port, "GET", "/v1/events?after=0&channel=shop-epay", headers=auth)
        self.assertEqual(len(json.loads(r.body)["events"]), 5, r)
        for q, status in (("after=x", 400), ("after=0&wait=31", 400), ("after=0&type=nope", 400),
                          ("after=0&channel=nope", 404), ("after=0&limit=0", 400)):
            r = h.http(self.admin_port, "GET", "/v1/events?" + q, headers=auth)
            self.assertEqual(r.status, status, (q, r))
        # a client that leaves mid-wait
        s = socket.create_connection((h.HOST, self.admin_port))
        s.sendall(("GET /v1/events?after=%s&wait=5 HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % (last["last_id"], h.ADMIN_TOKEN))
                  .encode())
        time.sleep(0.5)
        s.close()
        time.sleep(0.5)
        self.assertEqual(self.ctl("status", rc=0).rc, 0)
        # one still waiting when the daemon stops: stop_clean (a cleanup)
        # wants a clean exit within shutdown_timeout, nothing leaked
        s = socket.create_connection((h.HOST, self.admin_port))
        self.addCleanup(s.close)
        s.sendall(("GET /v1/events?after=%s&wait=30 HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % (last["last_id"], h.ADMIN_TOKEN))
                  .encode())
        time.sleep(0.3)
        t0 = time.monotonic()
        self.daemons[0].stop_clean()
        self.assertLess(time.monotonic() - t0, 5)

    def test_18_deliveries_show(self):
        rcv = self.receiver(default="fail")
        self.start_daemon(webhooks=[self.hook(rcv, schedule="0 1")])
        self.assertEqual(self.epay_callback("2026113000031", "ORD-D").status, 200)
        eid = h.event_id("shop-epay", "2026113000031", "paid")
        did = self.wait_dead([eid], timeout=15)[eid]
        res = self.ctl("deliveries", "show", did, rc=0)
        kv = res.kv()
        self.assertEqual((kv.get("id"), kv.get("webhook"), kv.get("event_id"), kv.get("state"),
                          kv.get("attempts"), kv.get("last_status")),
                         (did, "hook", eid, "dead", "2", "500"), res)
        self.assertNotIn("event: ", res.out)
        self.assertIn("history (last 2 attempts):", res.out, res)
        hist = res.out.split("history (last 2 attempts):\n")[1].splitlines()
        self.assertRegex(hist[0], r"^AT\s+OUTCOME\s+HTTP\s+ERROR$", res)
        self.assertRegex(hist[1], r"^%s\s+retry\s+500\b" % ISO_RE, res)
        self.assertRegex(hist[2], r"^%s\s+dead\s+500\b" % ISO_RE, res)
        js = self.ctl("deliveries", "show", did, "--json", rc=0).json()
        self.assertEqual([(a["outcome"], a["status"]) for a in js["history"]],
                         [("retry", 500), ("dead", 500)], js)
        self.assertNotIn("event", js)
        # the history is bounded
        rec = self.r.hgetall(PREFIX + "delivery:" + did)
        self.assertEqual(len(json.loads(rec["history"])), 2)
        self.assertApiError(self.ctl("deliveries", "show", "dlv_" + "0" * 32), 6, 404)
        self.assertApiError(self.ctl("deliveries", "show", "nope"), 1, 400)


if __name__ == "__main__":
    sys.exit(h.run_tests())

