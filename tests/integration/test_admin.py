#!/usr/bin/env python3
"""Integration tests of payrelayd's admin API (SPEC section 7): /healthz,
/readyz, bearer-token authorization, GET /v1/events/{id}, GET /v1/deliveries,
POST /v1/deliveries/{id}/replay, POST /v1/replay (dead letters and time
ranges of the stream), GET /metrics (Prometheus text, parsed here) and the
admin API on a unix socket.

Every test runs its own redis-server, payrelayd and local webhook receiver
(harness.Receiver) on free loopback ports, records callbacks through the
public listener and then talks to the admin API, checking what it says
against Redis and against what the receiver got.

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
        python3 tests/integration/test_admin.py [-k PATTERN]

Exits 0 when every test passes, 1 otherwise (also when no redis-server is
installed: that is a broken setup, not a pass).
"""

import base64
import http.client as httpclient
import json
import math
import os
import re
import signal
import socket
import stat
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

BINARY = h.locate_binary()
PREFIX = "payrelay:"
STREAM = "payrelay:events"
EPAY = h.load_vectors("epay.json")["vectors"]
DLV_RE = r"^dlv_[0-9a-f]{32}$"

# secrets of these tests (never to be seen in a log)
SECRET = "whsec_" + base64.b64encode(b"payrelay-admin-test-key-0123456").decode()
BAD_TOKENS = (("no token", {}),
              ("wrong token", {"Authorization": "Bearer wrong-" + h.ADMIN_TOKEN}),
              ("token prefix", {"Authorization": "Bearer " + h.ADMIN_TOKEN[:-1]}),
              ("token and more", {"Authorization": "Bearer " + h.ADMIN_TOKEN + "x"}),
              ("empty bearer", {"Authorization": "Bearer "}),
              ("other scheme", {"Authorization": "Basic " + h.ADMIN_TOKEN}))


def now_ms():
    return int(time.time() * 1000)


def stream_ms(entry_id):
    return int(entry_id.split("-")[0])


# --------------------------------------------------------------------------
# HTTP over a unix socket


class UnixHTTPConnection(httpclient.HTTPConnection):
    """http.client over an AF_UNIX stream socket (the Host header says
    localhost)."""

    def __init__(self, path, timeout=h.TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


def http_unix(path, method, url, body=None, headers=None, timeout=h.TIMEOUT):
    if isinstance(body, str):
        body = body.encode("utf-8")
    t0 = time.monotonic()
    conn = UnixHTTPConnection(path, timeout=timeout)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return h.Reply(r.status, data, dict(r.getheaders()), time.monotonic() - t0)
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Prometheus text exposition format (version 0.0.4), parsed strictly

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
_SAMPLE_RE = re.compile(r"^(%s)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?$" % _NAME)
_HELP_RE = re.compile(r"^# HELP (%s) (.*)$" % _NAME)
_TYPE_RE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % _NAME)
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


class MetricsError(AssertionError):
    pass


def _unescape_label(v):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def _parse_labels(text, lineno):
    labels = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _LABEL_RE.match(text, pos)
        if not m or m.end() == pos:
            raise MetricsError("line %d: bad label set {%s}" % (lineno, text))
        name, value = m.group(1), _unescape_label(m.group(2))
        if name in labels:
            raise MetricsError("line %d: label %s twice" % (lineno, name))
        labels[name] = value
        pos = m.end()
    return labels


def _parse_value(text, lineno):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.match(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", text):
        raise MetricsError("line %d: bad value %r" % (lineno, text))
    return float(text)


class Metrics:
    """A parsed scrape: families {name: {"type", "help"}} and samples
    [(name, {labels}, value)]. Raises MetricsError on anything that is
    not the text format: a line that does not parse, a sample whose
    family has no HELP and TYPE before it, a TYPE or HELP given twice, a
    series given twice."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = []
        seen = set()
        if not text.endswith("\n"):
            raise MetricsError("the exposition does not end with a newline")
        for lineno, line in enumerate(text.split("\n")[:-1], 1):
            if line == "":
                continue
            if line.startswith("#"):
                m = _HELP_RE.match(line)
                if m:
                    fam = self.families.setdefault(m.group(1), {})
                    if "help" in fam:
                        raise MetricsError("line %d: second HELP for %s" % (lineno, m.group(1)))
                    if fam.get("samples"):
                        raise MetricsError("line %d: HELP for %s after its samples"
                                           % (lineno, m.group(1)))
                    fam["help"] = m.group(2)
                    continue
                m = _TYPE_RE.match(line)
                if m:
                    fam = self.families.setdefault(m.group(1), {})
                    if "type" in fam:
                        raise MetricsError("line %d: second TYPE for %s" % (lineno, m.group(1)))
                    if fam.get("samples"):
                        raise MetricsError("line %d: TYPE for %s after its samples"
                                           % (lineno, m.group(1)))
                    fam["type"] = m.group(2)
                    continue
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    raise MetricsError("line %d: malformed %r" % (lineno, line))
                continue  # a plain comment
            m = _SAMPLE_RE.match(line)
            if not m:
                raise MetricsError("line %d: not a sample: %r" % (lineno, line))
            name = m.group(1)
            labels = _parse_labels(m.group(2) or "", lineno)
            value = _parse_value(m.group(3), lineno)
            family = self.family_of(name)
            fam = self.families.get(family)
            if fam is None or "type" not in fam or "help" not in fam:
                raise MetricsError("line %d: sample %s before the HELP and TYPE of %s"
                                   % (lineno, name, family))
            if family != name and fam["type"] not in ("histogram", "summary"):
                raise MetricsError("line %d: %s has a suffix but %s is a %s"
                                   % (lineno, name, family, fam["type"]))
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise MetricsError("line %d: series %s%r twice" % (lineno, name, labels))
            seen.add(key)
            fam["samples"] = fam.get("samples", 0) + 1
            self.samples.append((name, labels, value))
        for name, fam in self.families.items():
            if "type" not in fam or "help" not in fam:
                raise MetricsError("family %s lacks %s" % (name, "TYPE" if "help" in fam
                                                             else "HELP"))

    def family_of(self, name):
        for suf in HIST_SUFFIXES:
            base = name[:-len(suf)]
            if name.endswith(suf) and self.families.get(base, {}).get("type") in (
                    "histogram", "summary"):
                return base
        return name

    def series(self, name):
        """[(labels, value)] of the samples named `name`."""
        return [(lb, v) for n, lb, v in self.samples if n == name]

    def by(self, name, *label_names):
        """{tuple of the label values: value} of the samples named `name`."""
        out = {}
        for lb, v in self.series(name):
            out[tuple(lb.get(k) for k in label_names)] = v
        return out

    def get(self, name, **labels):
        """The value of the one sample `name` with exactly `labels`, or None."""
        for lb, v in self.series(name):
            if lb == labels:
                return v
        return None


class MetricsParserSelfTest(unittest.TestCase):
    """The tests' own parser accepts the format and refuses what is not it."""

    def test_parser(self):
        m = Metrics('# HELP a_total An a.\n# TYPE a_total counter\na_total{x="1",y="q\\"\\\\"} 3\n'
                    'a_total 4\n# HELP h H.\n# TYPE h histogram\nh_bucket{le="0.5"} 1\n'
                    'h_bucket{le="+Inf"} 2\nh_sum 0.75\nh_count 2\n# plain comment\n')
        self.assertEqual(m.get("a_total", x="1", y='q"\\'), 3)
        self.assertEqual(m.get("a_total"), 4)
        self.assertEqual(m.by("h_bucket", "le"), {("0.5",): 1, ("+Inf",): 2})
        self.assertEqual(m.family_of("h_count"), "h")
        for bad in ("a_total 1\n",                                   # no HELP/TYPE
                    "# TYPE a counter\na 1\n",                       # no HELP
                    "# HELP a A.\n# TYPE a counter\na{x=1} 1\n",     # unquoted label
                    "# HELP a A.\n# TYPE a counter\na one\n",        # bad value
                    "# HELP a A.\n# TYPE a counter\na 1\na 2\n",     # series twice
                    "# HELP a A.\n# TYPE a counter\na_count 1\n",    # suffix on a counter
                    "# HELP a A.\n# TYPE a counter\n# TYPE a gauge\n",
                    "# HELP a A.\n# TYPE a bogus\n",
                    "# HELP a A.\n# TYPE a counter\na 1"):         # no final newline
            with self.assertRaises(MetricsError, msg=bad):
                Metrics(bad)


# --------------------------------------------------------------------------


class AdminCase(unittest.TestCase):
    """One fresh redis-server per test; daemons and receivers on demand."""

    def setUp(self):
        if not BINARY or not os.access(BINARY, os.X_OK):
            raise RuntimeError("payrelayd not found: set PAYRELAYD (got %r)" % BINARY)
        self.dir = h.new_workdir("payrelay-ad-")
        self.daemons = []
        self.secrets = [h.ADMIN_TOKEN, EPAY[0]["key"], SECRET, SECRET[len("whsec_"):]]
        # registered first, so it runs last: no secret in any daemon's log
        self.addCleanup(self.check_logs_for_secrets)
        self.redis = h.RedisServer(self.dir)
        self.addCleanup(self.redis.stop, signal.SIGKILL)
        self.redis.start()
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        self.port = h.free_port()
        self.admin_port = h.free_port()
        self.admin_sock = None  # a unix socket path instead of admin_port
        self.config = os.path.join(self.dir, "payrelayd.conf")

    # --- set-up pieces ------------------------------------------------------

    def receiver(self, script=(), default="ok"):
        rcv = h.Receiver(script=script, default=default, hang_s=5.0)
        self.addCleanup(rcv.stop)
        return rcv

    def write_config(self, webhooks, admin_listen=None):
        """`webhooks`: [(name, {key: value})] in order (a `secret` is added
        when missing)."""
        text = h.config_head(self.port, admin_listen or self.admin_port, self.redis.port,
                             shutdown_timeout=3, stream=STREAM,
                             writer="tests/integration/test_admin.py") + """
[channel:shop-epay]
family = epay
merchant_id = 1001
key = {epay_key}

[channel:shop-other]
family = epay
merchant_id = 1001
key = {epay_key}
""".format(epay_key=EPAY[0]["key"])
        for name, keys in webhooks:
            keys = dict(keys)
            keys.setdefault("secret", SECRET)
            text += "\n[webhook:%s]\n" % name
            text += "".join("%s = %s\n" % kv for kv in keys.items())
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text)
        return self.config

    def start_daemon(self, webhooks, admin_listen=None):
        """Writes the config, starts payrelayd and waits until it is ready
        and its admin API answers."""
        self.write_config(webhooks, admin_listen)
        d = h.Daemon(BINARY, self.dir, self.config, self.port,
                     name="payrelayd-%d" % len(self.daemons))
        self.daemons.append(d)
        self.addCleanup(d.stop, signal.SIGKILL, 5)
        # Runs first (cleanups are LIFO): a clean exit with no sanitizer report.
        self.addCleanup(d.stop_clean)
        d.start(wait_ready=True)
        deadline = time.monotonic() + 5
        while True:
            try:
                if self.admin("GET", "/healthz", token=None).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.fail("the admin API does not answer\n" + self.log_tail())
            time.sleep(0.05)
        return d

    def check_logs_for_secrets(self):
        for d in self.daemons:
            text = d.log_text()
            for s in self.secrets:
                self.assertNotIn(s, text, "a configured secret appears in %s" % d.log)

    # --- the admin API ------------------------------------------------------

    def admin(self, method, path, body=None, token=h.ADMIN_TOKEN, headers=None):
        """One admin request (TCP or the unix socket); returns the Reply
        with `.json` (None if the body is no JSON)."""
        hd = dict(headers or {})
        if token is not None:
            hd["Authorization"] = "Bearer " + token
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if body is not None:
            hd.setdefault("Content-Type", "application/json")
        if self.admin_sock is not None:
            reply = http_unix(self.admin_sock, method, path, body=body, headers=hd)
        else:
            reply = h.http(self.admin_port, method, path, body=body, headers=hd)
        try:
            reply.json = json.loads(reply.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            reply.json = None
        return reply

    def assertError(self, reply, status, what):
        """`reply` is `status` with a JSON {"error": "..."} body."""
        self.assertEqual(reply.status, status, self.ctx(reply, what))
        self.assertIsInstance(reply.json, dict, self.ctx(reply, what + ": JSON body"))
        self.assertIsInstance(reply.json.get("error"), str, self.ctx(reply, what + ": error"))
        self.assertTrue(reply.json["error"], self.ctx(reply, what + ": error text"))
        self.assertTrue(reply.headers.get("Content-Type", "").startswith("application/json"),
                        self.ctx(reply, what + ": Content-Type"))

    def get_json(self, path, what=None):
        r = self.admin("GET", path)
        self.assertEqual(r.status, 200, self.ctx(r, what or "GET " + path))
        self.assertIsInstance(r.json, dict, self.ctx(r, what or "GET " + path))
        return r.json

    def listing(self, query=""):
        body = self.get_json("/v1/deliveries" + query)
        self.assertEqual(list(body.keys()), ["deliveries"], body)
        self.assertIsInstance(body["deliveries"], list, body)
        return body["deliveries"]

    def scrape(self):
        r = self.admin("GET", "/metrics")
        self.assertEqual(r.status, 200, self.ctx(r, "GET /metrics"))
        self.assertTrue(r.headers.get("Content-Type", "").startswith("text/plain"),
                        self.ctx(r, "Content-Type of /metrics"))
        text = r.body.decode("utf-8")
        try:
            return Metrics(text)
        except MetricsError as e:
            self.fail("/metrics is not valid Prometheus text: %s\n%s" % (e, text))

    # --- callbacks --------------------------------------------------------

    def callback(self, channel="shop-epay", trade_no=None, trade_status="TRADE_SUCCESS",
                 sign=None, expect=(200, b"success")):
        """One signed epay GET callback; returns its event id."""
        p = {k: v for k, v in EPAY[0]["params"].items() if k != "sign"}
        if trade_no is not None:
            p["trade_no"] = trade_no
        p["trade_status"] = trade_status
        p["sign"] = sign or h.epay_md5_sign(p, EPAY[0]["key"])
        reply = h.http(self.port, "GET", "/notify/%s?%s" % (channel, h.form_encode(p)))
        self.assertEqual((reply.status, reply.body), expect, self.ctx(reply, "callback"))
        status = "paid" if trade_status == "TRADE_SUCCESS" else trade_status
        return h.event_id(channel, p["trade_no"], status)

    # --- what Redis holds -------------------------------------------------

    def deliveries(self, webhook=None):
        """{delivery id: hash} of every delivery (of `webhook`)."""
        out = {}
        for k in self.r.keys(PREFIX + "delivery:*"):
            if self.r.cmd("TYPE", k) == "hash":
                rec = self.r.hgetall(k)
                if webhook is None or rec.get("webhook") == webhook:
                    out[k[len(PREFIX + "delivery:"):]] = rec
        return out

    def hash(self, did):
        return self.r.hgetall(PREFIX + "delivery:" + did)

    def zset(self, webhook, which):
        flat = self.r.cmd("ZRANGE", PREFIX + "wh:%s:%s" % (webhook, which), 0, -1) or []
        return [x.decode() for x in flat]

    def wait_deliveries(self, webhook, pred, timeout, what):
        """Waits until pred({id: hash} of `webhook`) holds; returns the dict."""
        deadline = time.monotonic() + timeout
        while True:
            ds = self.deliveries(webhook)
            if pred(ds):
                return ds
            if time.monotonic() > deadline:
                self.fail("webhook %s: no %s within %.1f s: %r\n%s"
                          % (webhook, what, timeout,
                             {k: self.brief(v) for k, v in ds.items()}, self.log_tail()))
            time.sleep(0.05)

    def wait_states(self, webhook, n, state, timeout):
        return self.wait_deliveries(
            webhook, lambda ds: len([d for d in ds.values() if d.get("state") == state]) >= n,
            timeout, "%d deliveries %s" % (n, state))

    def stream(self):
        """[(entry id, {field: str})] of the stream."""
        return self.r.xrange(STREAM)

    def stream_entry(self, eid):
        for entry_id, fields in self.stream():
            if fields.get("id") == eid:
                return entry_id, fields
        self.fail("event %s is not in the stream" % eid)

    def stream_event_bytes(self, eid):
        for _entry, flat in self.r.cmd("XRANGE", STREAM, "-", "+") or []:
            fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
            if fields.get("id", b"").decode() == eid:
                return fields["event"]
        self.fail("event %s is not in the stream" % eid)

    # --- diagnostics ------------------------------------------------------

    @staticmethod
    def brief(rec):
        return {k: v for k, v in (rec or {}).items() if k != "event"}

    def log_tail(self, n=25):
        out = []
        for d in self.daemons:
            out.append("--- %s (tail) ---\n%s" % (os.path.basename(d.log), d.log_tail(n)))
        return "\n".join(out)

    def ctx(self, reply, what=""):
        return "%s: %r\n%s" % (what, reply, self.log_tail(15))

    # --- checks -------------------------------------------------------------

    def assertSignedDelivery(self, req, eid):
        """A webhook request for event `eid`: its id header, the stream's
        event bytes as the body, a valid signature."""
        self.assertEqual((req.method, req.headers.get("webhook-id")), ("POST", eid), req)
        self.assertEqual(req.body, self.stream_event_bytes(eid), req)
        ts = req.headers.get("webhook-timestamp", "")
        self.assertEqual(h.webhook_verify(SECRET, eid, ts, req.body,
                                          req.headers.get("webhook-signature", "")), 0,
                         "bad webhook-signature on %r" % req)

    def assertRowMatchesRedis(self, row):
        """A listed delivery says what its hash in Redis holds: numbers as
        JSON integers, the rest as strings."""
        self.assertRegex(row.get("id", ""), DLV_RE, row)
        hs = self.hash(row["id"])
        self.assertTrue(hs, "listed delivery %s has no hash" % row["id"])
        self.assertEqual(hs.get("id"), row["id"])
        self.assertNotIn("event", row, "a listing row carries no event body")
        for k, v in row.items():
            if k == "id":
                continue
            if k in ("attempts", "last_status") or k.endswith("_ms"):
                self.assertIs(type(v), int, "%s of %r is not a JSON integer" % (k, row))
            self.assertIn(k, hs, "listed field %s is not in the hash %r" % (k, self.brief(hs)))
            self.assertEqual(str(v), hs[k], "field %s: listed %r, Redis %r" % (k, v, hs[k]))
        for k in ("event_id", "webhook", "state", "attempts", "created_ms", "due_ms"):
            self.assertIn(k, row, "listing row lacks %s: %r" % (k, row))


# ==========================================================================


class AuthAndHealthTest(AdminCase):

    def test_01_healthz_and_the_token(self):
        rcv = self.receiver()
        self.start_daemon([("orders", {"url": rcv.url("/o"), "schedule": "3600"})])
        eid = self.callback()
        dids = list(self.deliveries("orders"))
        self.assertEqual(len(dids), 1)

        for hd in ({}, {"Authorization": "Bearer wrong"}):
            r = self.admin("GET", "/healthz", token=None, headers=hd)
            self.assertEqual((r.status, r.json), (200, {"status": "ok"}),
                             self.ctx(r, "healthz needs no token"))
        r = self.admin("GET", "/readyz")
        self.assertEqual(r.status, 200, self.ctx(r, "readyz"))
        self.assertIsInstance(r.json, dict, self.ctx(r, "readyz JSON"))

        calls = [("GET", "/readyz", None),
                 ("GET", "/metrics", None),
                 ("GET", "/v1/events/" + eid, None),
                 ("GET", "/v1/events/evt_x", None),
                 ("GET", "/v1/deliveries", None),
                 ("GET", "/v1/deliveries?state=pending&webhook=orders", None),
                 ("POST", "/v1/deliveries/%s/replay" % dids[0], None),
                 ("POST", "/v1/replay", {"webhook": "orders", "state": "dead"}),
                 ("POST", "/v1/replay", {"webhook": "orders", "since_ms": 0,
                                         "until_ms": now_ms() + 60000}),
                 ("GET", "/no/such/endpoint", None)]
        for method, path, body in calls:
            for label, hd in BAD_TOKENS:
                r = self.admin(method, path, body, token=None, headers=hd)
                self.assertError(r, 401, "%s %s with %s" % (method, path, label))
                self.assertNotIn(h.ADMIN_TOKEN[:12], r.body.decode("utf-8", "replace"))
        # nothing was replayed without the token
        self.assertEqual(list(self.deliveries()), dids)
        self.assertEqual(self.zset("orders", "due"), dids)

        # and with it, an unknown path is a JSON 404
        r = self.admin("GET", "/no/such/endpoint")
        self.assertError(r, 404, "unknown endpoint with the token")
        self.assertEqual(rcv.count(), 0)

    def test_02_readyz_follows_redis(self):
        rcv = self.receiver()
        self.start_daemon([("orders", {"url": rcv.url("/o"), "schedule": "3600"})])
        r = self.admin("GET", "/readyz")
        self.assertEqual(r.status, 200, self.ctx(r, "readyz with Redis"))
        self.assertEqual(self.scrape().get("payrelay_redis_up"), 1)

        self.redis.stop(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:
            r = self.admin("GET", "/readyz")
            if r.status == 503:
                break
            self.assertEqual(r.status, 200, self.ctx(r, "readyz while Redis goes"))
            if time.monotonic() > deadline:
                self.fail("readyz still %d 5 s after Redis was killed\n%s"
                          % (r.status, self.log_tail()))
            time.sleep(0.1)
        self.assertIsInstance(r.json, dict, self.ctx(r, "503 readyz is JSON"))
        r = self.admin("GET", "/healthz", token=None)
        self.assertEqual((r.status, r.json), (200, {"status": "ok"}),
                         self.ctx(r, "healthz without Redis"))
        # without Redis: the operations say 503, /metrics still answers
        for method, path, body in (
                ("GET", "/v1/events/evt_" + "0" * 32, None),
                ("GET", "/v1/deliveries", None),
                ("POST", "/v1/deliveries/dlv_%s/replay" % ("0" * 32), None),
                ("POST", "/v1/replay", {"webhook": "orders", "state": "dead"})):
            self.assertError(self.admin(method, path, body), 503,
                             "%s %s without Redis" % (method, path))
        m = self.scrape()
        self.assertEqual(m.get("payrelay_redis_up"), 0, m.text)
        self.assertIsNotNone(m.get("payrelay_build_info", version=h.project_version()), m.text)

        self.redis.start()
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        deadline = time.monotonic() + 10
        while True:
            r = self.admin("GET", "/readyz")
            if r.status == 200:
                break
            if time.monotonic() > deadline:
                self.fail("readyz %d 10 s after Redis came back\n%s" % (r.status, self.log_tail()))
            time.sleep(0.1)
        self.assertEqual(self.scrape().get("payrelay_redis_up"), 1)
        self.assertEqual(self.listing(), [])

    def test_03_unix_socket(self):
        sock = os.path.join(self.dir, "admin.sock")
        self.assertLess(len(sock), 100, "the socket path must fit sockaddr_un")
        rcv = self.receiver()
        self.admin_sock = sock
        self.start_daemon([("orders", {"url": rcv.url("/o"), "schedule": "3600"})],
                          admin_listen="unix:" + sock)
        self.assertTrue(stat.S_ISSOCK(os.stat(sock).st_mode), "%s is no socket" % sock)

        r = self.admin("GET", "/healthz", token=None)
        self.assertEqual((r.status, r.json), (200, {"status": "ok"}), self.ctx(r, "unix healthz"))
        r = self.admin("GET", "/readyz")
        self.assertEqual(r.status, 200, self.ctx(r, "unix readyz"))
        for label, hd in BAD_TOKENS[:2]:
            self.assertError(self.admin("GET", "/readyz", token=None, headers=hd), 401,
                             "unix readyz with " + label)
        eid = self.callback()
        ev = self.get_json("/v1/events/" + eid, "unix GET event")
        self.assertEqual(ev.get("id"), eid)
        rows = self.listing("?state=pending&webhook=orders")
        self.assertEqual([row.get("event_id") for row in rows], [eid], rows)
        self.assertIsNotNone(self.scrape().get("payrelay_redis_up"))


class EventsTest(AdminCase):

    def test_04_get_event(self):
        rcv = self.receiver()
        self.start_daemon([("orders", {"url": rcv.url("/o"), "schedule": "3600"})])
        eids = [self.callback(trade_no="T-EV-1"),
                self.callback(trade_no="T-EV-2", trade_status="TRADE_CLOSED"),
                self.callback(channel="shop-other", trade_no="T-EV-1")]
        self.assertEqual(len(set(eids)), 3)
        for eid in eids:
            entry_id, fields = self.stream_entry(eid)
            got = self.get_json("/v1/events/" + eid)
            want = json.loads(fields["event"])
            want["stream_id"] = entry_id
            self.assertEqual(got, want, "GET /v1/events/%s is not the stream's event "
                             "plus stream_id" % eid)
            self.assertEqual((got["id"], got["stream_id"]), (eid, entry_id))
        self.assertEqual(self.get_json("/v1/events/" + eids[1])["type"], "order.status")
        # a duplicate changes nothing
        self.callback(trade_no="T-EV-1")
        self.assertEqual(self.get_json("/v1/events/" + eids[0])["stream_id"],
                         self.stream_entry(eids[0])[0])

        # unknown but well formed: 404
        for eid in ("evt_" + "0" * 32, h.event_id("shop-epay", "T-EV-404", "paid"),
                    h.event_id("no-such-channel", "T-EV-1", "paid")):
            self.assertError(self.admin("GET", "/v1/events/" + eid), 404, "unknown event " + eid)
        # malformed: 400
        good = eids[0]
        for bad in ("x", "evt_", "evt_123", good[:-1], good + "0", good.upper(),
                    "EVT_" + good[4:], "evt_" + "g" * 32, "evx_" + good[4:],
                    "evt_" + good[4:-1] + "%20", "dlv_" + good[4:]):
            self.assertError(self.admin("GET", "/v1/events/" + bad), 400, "malformed id " + bad)
        r = self.admin("POST", "/v1/events/" + good, {})
        self.assertError(r, 405, "POST /v1/events/{id}")


class DeliveriesTest(AdminCase):

    def test_05_list_dead_and_pending(self):
        rcv = self.receiver(default={"/dead": "fail", "/later": "ok"})
        self.start_daemon([("dead", {"url": rcv.url("/dead"), "schedule": "0",
                                     "timeout_ms": 2000}),
                           ("later", {"url": rcv.url("/later"), "schedule": "3600"})])
        t0 = now_ms()
        eids = [self.callback(trade_no="T-L-%d" % i) for i in range(3)]
        dead = self.wait_states("dead", 3, "dead", 5.0)
        t1 = now_ms()
        self.assertEqual(rcv.count("/dead"), 3)
        self.assertEqual(rcv.count("/later"), 0)

        # default: dead, every webhook
        rows = self.listing()
        self.assertEqual(sorted(row["id"] for row in rows), sorted(dead), rows)
        self.assertEqual(self.listing("?state=dead"), rows)
        self.assertEqual(self.listing("?state=dead&webhook=dead"), rows)
        self.assertEqual([row["id"] for row in rows], self.zset("dead", "dead"),
                         "dead deliveries are listed in the order of the dead set")
        self.assertEqual(sorted(row["event_id"] for row in rows), sorted(eids))
        for row in rows:
            self.assertRowMatchesRedis(row)
            self.assertEqual((row["webhook"], row["state"], row["attempts"],
                              row["last_status"]), ("dead", "dead", 1, 500), row)
            self.assertIsInstance(row.get("last_error"), str, row)
            self.assertIn("500", row["last_error"], row)
            for k in ("created_ms", "dead_ms", "last_attempt_ms"):
                self.assertIn(k, row, row)
                self.assertTrue(t0 - 1000 <= row[k] <= t1 + 1000, "%s of %r" % (k, row))
            self.assertLessEqual(row["created_ms"], row["dead_ms"], row)

        # pending
        later = self.deliveries("later")
        rows = self.listing("?state=pending&webhook=later")
        self.assertEqual(len(rows), 3, rows)
        self.assertEqual(sorted(row["id"] for row in rows), sorted(later), rows)
        self.assertEqual([row["id"] for row in rows], self.zset("later", "due"))
        for row in rows:
            self.assertRowMatchesRedis(row)
            self.assertEqual((row["webhook"], row["state"], row["attempts"]),
                             ("later", "pending", 0), row)
            self.assertNotIn("last_status", row, "never attempted: %r" % row)
            self.assertAlmostEqual(row["due_ms"], row["created_ms"] + 3600 * 1000, delta=1000)
        self.assertEqual(sorted(r["id"] for r in self.listing("?state=pending")), sorted(later),
                         "pending of every webhook: only 'later' has some")
        self.assertEqual(self.listing("?state=pending&webhook=dead"), [])
        self.assertEqual(self.listing("?webhook=later"), [], "no dead delivery of 'later'")

        # limit
        for lim, n in (("1", 1), ("2", 2), ("3", 3), ("10000", 3)):
            got = self.listing("?state=pending&webhook=later&limit=" + lim)
            self.assertEqual(len(got), n, "limit=%s: %r" % (lim, got))
            self.assertEqual([row["id"] for row in got], self.zset("later", "due")[:n])
        self.assertEqual(len(self.listing("?limit=2&webhook=dead")), 2)

        # errors
        for q in ("?webhook=nope", "?state=pending&webhook=nope", "?webhook=no%20such"):
            self.assertError(self.admin("GET", "/v1/deliveries" + q), 404, "listing " + q)
        for q in ("?state=bogus", "?state=DEAD", "?state=", "?state=delivered",
                  "?limit=0", "?limit=-1", "?limit=abc", "?limit=10001",
                  "?state=pending&webhook=later&limit=0"):
            self.assertError(self.admin("GET", "/v1/deliveries" + q), 400, "listing " + q)
        self.assertError(self.admin("POST", "/v1/deliveries", {}), 405, "POST /v1/deliveries")
        # the listing changed nothing
        self.assertEqual(self.zset("dead", "dead"), [row["id"] for row in self.listing()])
        self.assertEqual(len(self.zset("later", "due")), 3)

    def test_06_replay_one(self):
        rcv = self.receiver(default={"/dead": "fail", "/later": "ok"})
        self.start_daemon([("dead", {"url": rcv.url("/dead"), "schedule": "0",
                                     "timeout_ms": 2000}),
                           ("later", {"url": rcv.url("/later"), "schedule": "3600"})])
        eid = self.callback(trade_no="T-R1")
        eid2 = self.callback(trade_no="T-R2")
        ds = self.wait_states("dead", 2, "dead", 5.0)
        old = [k for k, v in ds.items() if v["event_id"] == eid][0]
        other = [k for k, v in ds.items() if v["event_id"] == eid2][0]
        self.assertEqual(rcv.count("/dead"), 2)
        rcv.set_default({"/dead": "ok"})

        r = self.admin("POST", "/v1/deliveries/%s/replay" % old)
        self.assertEqual(r.status, 201, self.ctx(r, "replay a dead delivery"))
        self.assertEqual(sorted((r.json or {}).keys()), ["delivery", "replay_of"], r.json)
        new = r.json["delivery"]
        self.assertEqual(r.json["replay_of"], old)
        self.assertRegex(new, DLV_RE)
        self.assertNotEqual(new, old)

        # the old one left the dead set
        hs = self.hash(old)
        self.assertEqual((hs.get("state"), hs.get("replayed_as")), ("replayed", new),
                         self.brief(hs))
        self.assertEqual(self.zset("dead", "dead"), [other])
        self.assertEqual([row["id"] for row in self.listing("?webhook=dead")], [other])

        # the new one is delivered, as the same event
        reqs = rcv.wait_count(3, 5.0, path="/dead")
        self.assertIsNotNone(reqs, "the replay was not sent\n" + self.log_tail())
        self.assertSignedDelivery(reqs[2], eid)
        hn = self.wait_deliveries("dead", lambda d: d.get(new, {}).get("state") == "delivered",
                                  5.0, "delivered replay")[new]
        self.assertEqual((hn.get("event_id"), hn.get("webhook"), hn.get("replay_of"),
                          hn.get("attempts")), (eid, "dead", old, "1"), self.brief(hn))
        self.assertEqual(hn.get("stream_id"), self.stream_entry(eid)[0])
        self.assertNotIn(new, self.zset("dead", "due"))
        time.sleep(0.6)  # more than a tick: nothing else is sent
        self.assertEqual(rcv.count("/dead"), 3, rcv.snapshot())
        self.assertEqual(self.hash(other).get("state"), "dead", "the other one stays dead")

        # a pending delivery cannot be replayed
        pending = list(self.deliveries("later"))
        self.assertEqual(len(pending), 2)
        before = self.hash(pending[0])
        self.assertError(self.admin("POST", "/v1/deliveries/%s/replay" % pending[0]), 409,
                         "replay a pending delivery")
        self.assertEqual(self.hash(pending[0]), before)
        # unknown ids
        for did in ("dlv_" + "0" * 32, "nope"):
            self.assertError(self.admin("POST", "/v1/deliveries/%s/replay" % did), 404,
                             "replay unknown delivery " + did)
        # wrong method, wrong paths
        for method in ("GET", "PUT", "DELETE"):
            self.assertError(self.admin(method, "/v1/deliveries/%s/replay" % other), 405,
                             "%s .../replay" % method)
        self.assertEqual(self.hash(other).get("state"), "dead")
        self.assertError(self.admin("POST", "/v1/deliveries/%s/replayx" % other), 404,
                         "POST .../replayx")
        # /v1/deliveries/{id} is the delivery itself (GET): nothing to POST
        self.assertError(self.admin("POST", "/v1/deliveries/%s" % other), 405,
                         "POST /v1/deliveries/{id}")
        self.assertEqual(len(self.deliveries()), 5, "2 dead + 1 replay + 2 pending, no more")
        self.assertEqual(rcv.count("/later"), 0)


class BulkReplayTest(AdminCase):

    def test_07_replay_dead(self):
        rcv = self.receiver(default={"/dead": "fail", "/other": "fail"})
        self.start_daemon([("dead", {"url": rcv.url("/dead"), "schedule": "0",
                                     "timeout_ms": 2000}),
                           ("other", {"url": rcv.url("/other"), "schedule": "0",
                                      "timeout_ms": 2000})])
        eids = [self.callback(trade_no="T-B-%d" % i) for i in range(3)]
        old = self.wait_states("dead", 3, "dead", 5.0)
        self.wait_states("other", 3, "dead", 5.0)
        self.assertEqual(rcv.count("/dead"), 3)
        rcv.set_default({"/dead": "ok", "/other": "fail"})

        # bad bodies
        bad = [("empty", ""), ("not JSON", "{\"webhook\": "), ("a JSON array", ["dead"]),
               ("a JSON string", "\"dead\""), ("no webhook", {"state": "dead"}),
               ("webhook a number", {"webhook": 1, "state": "dead"}),
               ("state pending", {"webhook": "dead", "state": "pending"}),
               ("state not a string", {"webhook": "dead", "state": 1}),
               ("neither state nor range", {"webhook": "dead"}),
               ("only since_ms", {"webhook": "dead", "since_ms": 0}),
               ("only until_ms", {"webhook": "dead", "until_ms": 1}),
               ("since_ms a string", {"webhook": "dead", "since_ms": "0", "until_ms": 1}),
               ("until_ms a float", {"webhook": "dead", "since_ms": 0, "until_ms": 1.5}),
               ("since_ms negative", {"webhook": "dead", "since_ms": -1, "until_ms": 1}),
               ("since_ms after until_ms", {"webhook": "dead", "since_ms": 10, "until_ms": 9}),
               ("duplicate keys", '{"webhook": "dead", "webhook": "dead", "state": "dead"}')]
        for label, body in bad:
            self.assertError(self.admin("POST", "/v1/replay", body), 400, "replay: " + label)
        for body in ({"webhook": "nope", "state": "dead"},
                     {"webhook": "nope", "since_ms": 0, "until_ms": 1}):
            self.assertError(self.admin("POST", "/v1/replay", body), 404, "replay %r" % body)
        self.assertError(self.admin("GET", "/v1/replay"), 405, "GET /v1/replay")
        self.assertEqual(sorted(self.zset("dead", "dead")), sorted(old), "nothing replayed yet")
        self.assertEqual(len(self.deliveries()), 6)

        r = self.admin("POST", "/v1/replay", {"webhook": "dead", "state": "dead"})
        self.assertEqual((r.status, r.json), (200, {"replayed": 3}),
                         self.ctx(r, "replay every dead delivery"))
        self.assertEqual(self.zset("dead", "dead"), [])
        self.assertEqual(self.listing("?webhook=dead"), [])
        self.assertEqual(len(self.zset("other", "dead")), 3, "another webhook's stay dead")
        reqs = rcv.wait_count(6, 5.0, path="/dead")
        self.assertIsNotNone(reqs, "the replays were not sent\n" + self.log_tail())
        self.assertEqual(sorted(q.headers.get("webhook-id") for q in reqs[3:]), sorted(eids))
        for q in reqs[3:]:
            self.assertSignedDelivery(q, q.headers.get("webhook-id"))
        ds = self.wait_deliveries(
            "dead", lambda d: len([v for v in d.values() if v.get("state") == "delivered"]) == 3,
            5.0, "3 delivered replays")
        for did in old:
            self.assertEqual(ds[did]["state"], "replayed", self.brief(ds[did]))
            new = ds[did].get("replayed_as")
            self.assertIn(new, ds)
            self.assertEqual((ds[new]["state"], ds[new]["replay_of"], ds[new]["event_id"]),
                             ("delivered", did, ds[did]["event_id"]), self.brief(ds[new]))
        self.assertEqual(len(ds), 6)

        # nothing left to replay
        r = self.admin("POST", "/v1/replay", {"webhook": "dead", "state": "dead"})
        self.assertEqual((r.status, r.json), (200, {"replayed": 0}), self.ctx(r, "replay again"))
        time.sleep(0.6)
        self.assertEqual(rcv.count("/dead"), 6)
        self.assertEqual(len(self.deliveries("dead")), 6)

    def test_08_replay_time_range(self):
        rcv = self.receiver()
        self.start_daemon([("paid-epay", {"url": rcv.url("/pe"), "schedule": "0",
                                          "events": "order.paid", "channels": "shop-epay"}),
                           ("all", {"url": rcv.url("/all"), "schedule": "3600"})])
        eids = {}
        for label, channel, trade, status in (
                ("A", "shop-epay", "T-RG-A", "TRADE_SUCCESS"),
                ("B", "shop-epay", "T-RG-B", "TRADE_SUCCESS"),
                ("C", "shop-epay", "T-RG-C", "TRADE_CLOSED"),    # not order.paid
                ("D", "shop-other", "T-RG-D", "TRADE_SUCCESS"),  # another channel
                ("F", "shop-epay", "T-RG-F", "TRADE_SUCCESS"),
                ("E", "shop-epay", "T-RG-E", "TRADE_SUCCESS")):
            eids[label] = self.callback(channel=channel, trade_no=trade, trade_status=status)
            time.sleep(0.015)  # one stream millisecond each
        ms = {label: stream_ms(self.stream_entry(eid)[0]) for label, eid in eids.items()}
        order = ["A", "B", "C", "D", "F", "E"]
        for a, b in zip(order, order[1:]):
            self.assertLess(ms[a], ms[b], ms)
        first = rcv.wait_count(4, 5.0, path="/pe")
        self.assertIsNotNone(first, "the first deliveries were not sent\n" + self.log_tail())
        self.assertEqual(sorted(q.headers.get("webhook-id") for q in first),
                         sorted(eids[x] for x in "ABFE"))
        self.wait_states("paid-epay", 4, "delivered", 5.0)
        self.assertEqual(rcv.count("/all"), 0)
        before = set(self.deliveries())

        # B .. F: of those, paid-epay wants B and F
        r = self.admin("POST", "/v1/replay", {"webhook": "paid-epay", "since_ms": ms["B"],
                                              "until_ms": ms["F"]})
        self.assertEqual((r.status, r.json), (200, {"replayed": 2}),
                         self.ctx(r, "replay B..F to paid-epay"))
        reqs = rcv.wait_count(6, 5.0, path="/pe")
        self.assertIsNotNone(reqs, "the range replay was not sent\n" + self.log_tail())
        self.assertEqual(sorted(q.headers.get("webhook-id") for q in reqs[4:]),
                         sorted([eids["B"], eids["F"]]))
        for q in reqs[4:]:
            self.assertSignedDelivery(q, q.headers.get("webhook-id"))
        ds = self.wait_deliveries(
            "paid-epay",
            lambda d: len([v for v in d.values() if v.get("state") == "delivered"]) == 6,
            5.0, "6 delivered")
        fresh = {k: v for k, v in ds.items() if k not in before}
        self.assertEqual(len(fresh), 2, fresh)
        for did, v in fresh.items():
            self.assertRegex(did, DLV_RE)
            entry_id = self.stream_entry(v["event_id"])[0]
            self.assertEqual((v["webhook"], v.get("stream_id")), ("paid-epay", entry_id),
                             self.brief(v))
            self.assertFalse(v.get("replay_of"), "a range replay replays no delivery: %r"
                             % self.brief(v))

        # a webhook without filters gets every event of the range
        r = self.admin("POST", "/v1/replay", {"webhook": "all", "since_ms": ms["B"],
                                              "until_ms": ms["F"]})
        self.assertEqual((r.status, r.json), (200, {"replayed": 4}),
                         self.ctx(r, "replay B..F to all"))
        reqs = rcv.wait_count(4, 5.0, path="/all")
        self.assertIsNotNone(reqs, "the range replay to 'all' was not sent\n" + self.log_tail())
        self.assertEqual(sorted(q.headers.get("webhook-id") for q in reqs),
                         sorted(eids[x] for x in "BCDF"))
        for q in reqs:
            self.assertSignedDelivery(q, q.headers.get("webhook-id"))
        self.wait_states("all", 4, "delivered", 5.0)
        # the originals of 'all' still wait for their hour
        self.assertEqual(len([v for v in self.deliveries("all").values()
                              if v.get("state") == "pending"]), 6)

        # the bounds are inclusive, in ms
        r = self.admin("POST", "/v1/replay", {"webhook": "paid-epay", "since_ms": ms["A"],
                                              "until_ms": ms["A"]})
        self.assertEqual((r.status, r.json), (200, {"replayed": 1}), self.ctx(r, "A..A"))
        reqs = rcv.wait_count(7, 5.0, path="/pe")
        self.assertIsNotNone(reqs, "the A..A replay was not sent\n" + self.log_tail())
        self.assertEqual(reqs[6].headers.get("webhook-id"), eids["A"])
        # ranges with nothing in them
        for since, until in ((0, ms["A"] - 1), (ms["E"] + 1, ms["E"] + 3600 * 1000),
                             (ms["C"], ms["D"])):
            r = self.admin("POST", "/v1/replay", {"webhook": "paid-epay", "since_ms": since,
                                                  "until_ms": until})
            self.assertEqual((r.status, r.json), (200, {"replayed": 0}),
                             self.ctx(r, "empty range %d..%d" % (since, until)))
        time.sleep(0.6)
        self.assertEqual(rcv.count("/pe"), 7, rcv.snapshot("/pe"))
        self.assertEqual(rcv.count("/all"), 4, rcv.snapshot("/all"))


class MetricsTest(AdminCase):

    def test_09_metrics(self):
        rcv = self.receiver(script={"/flaky": ["fail", "fail"]},
                            default={"/good": "ok", "/flaky": "ok", "/dead": "fail",
                                     "/later": "ok"})
        webhooks = [("good", {"url": rcv.url("/good"), "schedule": "0"}),
                    ("flaky", {"url": rcv.url("/flaky"), "schedule": "0 1"}),
                    ("dead", {"url": rcv.url("/dead"), "schedule": "0", "timeout_ms": 2000}),
                    ("later", {"url": rcv.url("/later"), "schedule": "3600"})]
        self.start_daemon(webhooks)
        names = [w for w, _ in webhooks]

        m = self.scrape()  # before anything happened
        self.assertEqual(m.get("payrelay_ack_latency_seconds_count"), 0, m.text)
        # only the series alerts watch for single events exist, at 0 (a
        # series born with its first event would hide it from increase())
        zero = {("shop-epay", "unavailable"): 0, ("shop-other", "unavailable"): 0}
        self.assertEqual(m.by("payrelay_callbacks_total", "channel", "result"), zero, m.text)
        for fam in ("payrelay_repeat_payments_total", "payrelay_amount_mismatches_total"):
            self.assertEqual(m.by(fam, "channel"), {("shop-epay",): 0, ("shop-other",): 0},
                             m.text)

        # 2 recorded, 1 duplicate, 1 refused (bad sign), 1 unknown channel
        self.callback(trade_no="T-M-1")
        self.callback(trade_no="T-M-2")
        self.callback(trade_no="T-M-1")
        self.callback(trade_no="T-M-3", sign="0" * 32, expect=(400, b"fail"))
        self.callback(channel="no-such-channel", expect=(404, b"fail"))

        self.wait_states("good", 2, "delivered", 5.0)
        self.wait_states("dead", 2, "dead", 5.0)
        self.wait_states("flaky", 2, "delivered", 5.0)
        self.assertEqual(rcv.count("/flaky"), 4)

        m = self.scrape()
        # families: HELP and TYPE each (the parser insists), of the right type
        want_types = {"payrelay_callbacks_total": "counter",
                      "payrelay_ack_latency_seconds": "histogram",
                      "payrelay_deliveries_total": "counter",
                      "payrelay_deliveries_dead": "gauge",
                      "payrelay_deliveries_pending": "gauge",
                      "payrelay_redis_up": "gauge",
                      "payrelay_build_info": "gauge"}
        for fam, typ in want_types.items():
            self.assertIn(fam, m.families, m.text)
            self.assertEqual(m.families[fam]["type"], typ, fam)
            self.assertTrue(m.families[fam]["help"].strip(), fam)
        for fam in m.families:
            self.assertTrue(fam.startswith("payrelay_"), fam)
            if m.families[fam]["type"] == "counter":
                self.assertTrue(fam.endswith("_total"), "counter %s" % fam)

        # callbacks
        self.assertEqual(m.by("payrelay_callbacks_total", "channel", "result"),
                         {**zero, ("shop-epay", "recorded"): 2, ("shop-epay", "duplicate"): 1,
                          ("shop-epay", "refused"): 1, ("unknown", "not_found"): 1}, m.text)
        for lb, _ in m.series("payrelay_callbacks_total"):
            self.assertEqual(sorted(lb), ["channel", "result"], lb)

        # the ack latency histogram: recorded + duplicate
        self.assertEqual(m.get("payrelay_ack_latency_seconds_count"), 3, m.text)
        buckets = m.series("payrelay_ack_latency_seconds_bucket")
        self.assertGreaterEqual(len(buckets), 2, m.text)
        les = []
        for lb, v in buckets:
            self.assertEqual(list(lb), ["le"], lb)
            les.append((math.inf if lb["le"] == "+Inf" else float(lb["le"]), v))
        self.assertEqual(les, sorted(les, key=lambda x: x[0]), "buckets in order of le")
        self.assertEqual(len(set(le for le, _ in les)), len(les), "an le twice")
        self.assertEqual(les[-1][0], math.inf, "the last bucket is +Inf")
        self.assertEqual(les[-1][1], 3, "+Inf == count")
        for (_, a), (_, b) in zip(les, les[1:]):
            self.assertLessEqual(a, b, "buckets are cumulative: %r" % les)
        total = m.get("payrelay_ack_latency_seconds_sum")
        self.assertIsNotNone(total, m.text)
        self.assertTrue(0 < total < 15, "sum %r for 3 acks" % total)
        self.assertLessEqual(les[0][0], 0.01, "a first bucket of 10 ms or less")

        # deliveries by webhook and outcome
        self.assertEqual(m.by("payrelay_deliveries_total", "webhook", "outcome"),
                         {("good", "delivered"): 2, ("flaky", "failed"): 2,
                          ("flaky", "delivered"): 2, ("dead", "dead"): 2}, m.text)

        # the gauges say what Redis holds
        def gauges_match_redis(m):
            for w in names:
                self.assertEqual(m.get("payrelay_deliveries_dead", webhook=w),
                                 len(self.zset(w, "dead")), "dead gauge of %s\n%s" % (w, m.text))
                self.assertEqual(m.get("payrelay_deliveries_pending", webhook=w),
                                 len(self.zset(w, "due")), "pending gauge of %s\n%s"
                                 % (w, m.text))
            self.assertEqual(len(m.series("payrelay_deliveries_dead")), len(names))
            self.assertEqual(len(m.series("payrelay_deliveries_pending")), len(names))
        gauges_match_redis(m)
        self.assertEqual(m.get("payrelay_deliveries_dead", webhook="dead"), 2)
        self.assertEqual(m.get("payrelay_deliveries_pending", webhook="later"), 2)

        self.assertEqual(m.get("payrelay_redis_up"), 1, m.text)
        # storage: Redis's memory and its limit (alerts: contrib/prometheus)
        self.assertGreater(m.get("payrelay_redis_used_memory_bytes"), 100000, m.text)
        self.assertEqual(m.get("payrelay_redis_maxmemory_bytes"),
                         float(self.r.cmd("CONFIG", "GET", "maxmemory")[1]), m.text)
        version = h.project_version()
        info = m.series("payrelay_build_info")
        self.assertEqual(len(info), 1, m.text)
        self.assertIn("version", info[0][0], info)
        if version:
            self.assertEqual(info[0], ({"version": version}, 1), m.text)

        # replaying the dead ones moves the gauges and the counters
        rcv.set_default({"/good": "ok", "/flaky": "ok", "/dead": "ok", "/later": "ok"})
        r = self.admin("POST", "/v1/replay", {"webhook": "dead", "state": "dead"})
        self.assertEqual((r.status, r.json), (200, {"replayed": 2}), self.ctx(r, "replay"))
        self.wait_states("dead", 2, "delivered", 5.0)
        m = self.scrape()
        gauges_match_redis(m)
        self.assertEqual(m.get("payrelay_deliveries_dead", webhook="dead"), 0, m.text)
        self.assertEqual(m.get("payrelay_deliveries_total", webhook="dead", outcome="delivered"),
                         2, m.text)
        self.assertEqual(m.get("payrelay_deliveries_total", webhook="dead", outcome="dead"), 2)
        self.assertEqual(m.get("payrelay_ack_latency_seconds_count"), 3)


# --------------------------------------------------------------------------
# the admin listener's protections (before the token is looked at)


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class AdminHardeningTest(AdminCase):
    """Header and body limits, the connection cap, the per-request deadline
    and the framing checks on the admin port, and the unix socket path."""

    READ_TIMEOUT = 2
    CAP = 64  # ADMIN_MAX_CONNECTIONS

    def write_config(self, webhooks, admin_listen=None):
        path = super().write_config(webhooks, admin_listen)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        text = text.replace("shutdown_timeout = 3\n",
                            "shutdown_timeout = 3\nread_timeout = %d\n" % self.READ_TIMEOUT, 1)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def connect(self):
        s = socket.create_connection((h.HOST, self.admin_port), timeout=h.TIMEOUT)
        self.addCleanup(s.close)
        return s

    def closed_within(self, s, timeout):
        """Seconds until the daemon closed `s` (what it sent is dropped), or None."""
        t0 = time.monotonic()
        s.settimeout(0.1)
        while time.monotonic() - t0 < timeout:
            try:
                if s.recv(65536) == b"":
                    return time.monotonic() - t0
            except socket.timeout:
                continue
            except OSError:
                return time.monotonic() - t0
        return None

    def huge_headers(self, size=4 << 20):
        """Sends a request with `size` bytes of headers (and no token);
        returns (status or None, seconds until answered or closed)."""
        line = b"X-Pad: " + b"a" * 8000 + b"\r\n"
        raw = b"GET /readyz HTTP/1.1\r\nHost: admin\r\n" + line * (size // len(line)) + b"\r\n"
        s = socket.create_connection((h.HOST, self.admin_port), timeout=3)
        t0 = time.monotonic()
        data = b""
        try:
            try:
                s.sendall(raw)
            except OSError:
                pass  # closed under us: what we want
            s.settimeout(3)
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
        finally:
            s.close()
        m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
        return (int(m.group(1)) if m else None), time.monotonic() - t0

    def test_10_huge_headers_are_cut_short_and_memory_stays_flat(self):
        self.start_daemon([])
        pid = self.daemons[0].proc.pid
        self.assertEqual(self.admin("GET", "/readyz").status, 200)
        rss0 = vm_rss_kib(pid)
        for i in range(3):
            status, took = self.huge_headers()
            self.assertTrue(status is None or 400 <= status < 500,
                            "4 MiB of headers answered %r\n%s" % (status, self.log_tail(5)))
            self.assertLess(took, 2.0, "4 MiB of headers took %.1f s" % took)
        # several at once: none is buffered whole
        results = []
        threads = [threading.Thread(target=lambda: results.append(self.huge_headers()))
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        self.assertEqual(len(results), 6)
        for status, took in results:
            self.assertTrue(status is None or 400 <= status < 500, results)
            self.assertLess(took, 3.0, results)
        grown = vm_rss_kib(pid) - rss0
        self.assertLess(grown, 8 * 1024, "RSS grew by %d KiB after 9 x 4 MiB of headers" % grown)
        # the daemon still answers
        self.assertEqual(self.admin("GET", "/readyz").status, 200)
        # an over-long body is refused too, before the token
        r = self.admin("POST", "/v1/orders", body="x" * (64 * 1024 + 1), token=None)
        self.assertEqual(r.status, 413, self.ctx(r, "body over 64 KiB"))

    def test_11_idle_and_slowloris_connections_are_cut(self):
        self.start_daemon([])
        idle = [self.connect() for _ in range(3)]
        slow = self.connect()
        slow.sendall(b"GET /readyz HTTP/1.1\r\nHost: admin\r\n")
        t0 = time.monotonic()
        stop = threading.Event()

        def trickle():
            # one header byte every 0.3 s: never a whole request
            while not stop.is_set():
                try:
                    slow.sendall(b"X")
                except OSError:
                    return
                time.sleep(0.3)

        t = threading.Thread(target=trickle)
        t.start()
        self.addCleanup(stop.set)
        # others are answered meanwhile
        self.assertEqual(self.admin("GET", "/healthz", token=None).status, 200)
        for s in idle + [slow]:
            took = self.closed_within(s, self.READ_TIMEOUT + 3 - (time.monotonic() - t0))
            self.assertIsNotNone(took, "connection not closed by the deadline\n"
                                 + self.log_tail(5))
        self.assertLess(time.monotonic() - t0, self.READ_TIMEOUT + 2.5)
        self.assertGreaterEqual(time.monotonic() - t0, self.READ_TIMEOUT - 0.5)
        stop.set()
        t.join(5)
        m = self.scrape()
        self.assertGreaterEqual(m.get("payrelay_admin_http_timeouts_total"), 4, m.text)
        # a request that takes Redis or a poll its time is not cut: a keep-alive
        # connection is answered, and gets a fresh deadline for the next one
        conn = httpclient.HTTPConnection(h.HOST, self.admin_port, timeout=5)
        self.addCleanup(conn.close)
        for _ in range(2):
            conn.request("GET", "/readyz", headers={"Authorization": "Bearer " + h.ADMIN_TOKEN})
            self.assertEqual(conn.getresponse().read() and 200, 200)
            time.sleep(self.READ_TIMEOUT * 0.6)

    def test_12_the_connection_cap_holds(self):
        self.READ_TIMEOUT = 10
        self.start_daemon([])
        m = self.scrape()
        self.assertEqual(m.get("payrelay_admin_http_connections_max"), self.CAP, m.text)
        held = [self.connect() for _ in range(self.CAP)]
        time.sleep(0.3)
        # the next connection waits in the backlog: no answer while the cap is full
        late = self.connect()
        late.sendall(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        late.settimeout(1.0)
        with self.assertRaises(socket.timeout):
            late.recv(100)
        self.assertIn("connection cap reached", self.log_tail(20))
        self.assertIn("listener=admin", self.log_tail(20))
        # one slot free: answered at once
        held.pop().close()
        late.settimeout(2.0)
        t0 = time.monotonic()
        data = late.recv(4096)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        self.assertLess(time.monotonic() - t0, 1.0)
        for s in held:
            s.close()
        deadline = time.monotonic() + 5
        while True:
            m = self.scrape()
            if m.get("payrelay_admin_http_connections") == 1:  # this scrape's own
                break
            self.assertLess(time.monotonic(), deadline, m.text)
            time.sleep(0.1)
        self.assertGreaterEqual(m.get("payrelay_admin_http_accept_paused_total"), 1, m.text)

    def test_13_ambiguous_framing_is_refused_before_the_token(self):
        self.start_daemon([])
        body = json.dumps({"channel": "shop-epay", "out_trade_no": "A1", "amount": "1.00"})
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body.encode())
        for extra, payload in (
                (b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(body), len(body)),
                 body.encode()),
                (b"Content-Length: +%d\r\n" % len(body), body.encode()),
                (b"Transfer-Encoding: gzip, chunked\r\n", chunked)):
            raw = (b"POST /v1/orders HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer "
                   + h.ADMIN_TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                   + extra + b"\r\n" + payload)
            s = self.connect()
            s.sendall(raw)
            data = b""
            s.settimeout(3)
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            head, _, rbody = data.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 400"), (extra, data, self.log_tail(8)))
            self.assertRegex(head.decode("latin-1"), r"(?im)^connection:\s*close\s*$")
            self.assertEqual(json.loads(rbody).get("error"), "ambiguous request framing")
        self.assertEqual(self.r.keys(PREFIX + "order:*"), [])
        m = self.scrape()
        self.assertEqual(m.get("payrelay_http_framing_refused_total", listener="admin"), 3,
                         m.text)

    def test_14_unix_socket_path_that_is_not_a_socket_is_kept(self):
        sock = os.path.join(self.dir, "admin.sock")
        with open(sock, "w") as f:
            f.write("the operator's file\n")
        self.write_config([], admin_listen="unix:" + sock)
        d = h.Daemon(BINARY, self.dir, self.config, self.port, name="payrelayd-file")
        self.daemons.append(d)
        self.addCleanup(d.stop, signal.SIGKILL, 5)
        d.start(wait_ready=False)
        rc, in_time = d.wait(10)
        self.assertTrue(in_time, "the daemon did not refuse to start\n" + d.log_tail())
        self.assertNotEqual(rc, 0, d.log_tail())
        self.assertIn("is not a socket", d.log_text())
        with open(sock) as f:
            self.assertEqual(f.read(), "the operator's file\n")

        # a directory is left alone as well
        os.unlink(sock)
        os.mkdir(sock)
        d2 = h.Daemon(BINARY, self.dir, self.config, self.port, name="payrelayd-dir")
        self.daemons.append(d2)
        self.addCleanup(d2.stop, signal.SIGKILL, 5)
        d2.start(wait_ready=False)
        rc, in_time = d2.wait(10)
        self.assertTrue(in_time and rc != 0, d2.log_tail())
        self.assertTrue(os.path.isdir(sock))
        os.rmdir(sock)

        # a live socket of another process: refused, and still there
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(other.close)
        other.bind(sock)
        other.listen(1)
        d3 = h.Daemon(BINARY, self.dir, self.config, self.port, name="payrelayd-live")
        self.daemons.append(d3)
        self.addCleanup(d3.stop, signal.SIGKILL, 5)
        d3.start(wait_ready=False)
        rc, in_time = d3.wait(10)
        self.assertTrue(in_time and rc != 0, d3.log_tail())
        self.assertIn("another process listens", d3.log_text())
        self.assertTrue(stat.S_ISSOCK(os.stat(sock).st_mode))
        other.close()

        # a stale socket (nobody listens) is replaced, and the daemon serves on it
        self.admin_sock = sock
        self.start_daemon([], admin_listen="unix:" + sock)
        self.assertEqual(self.admin("GET", "/healthz", token=None).status, 200)
        self.assertEqual(self.scrape().get("payrelay_admin_http_connections_max"), self.CAP)


if __name__ == "__main__":
    sys.exit(h.run_tests())
