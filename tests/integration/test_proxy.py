#!/usr/bin/env python3
"""Integration tests of payrelayd behind a proxy (SPEC 3.1, issue 12):
trusted_proxies, X-Forwarded-For / X-Real-IP from trusted peers only, the
PROXY protocol v1 and v2 (proxy_protocol = on), max_connections_per_ip and
header_timeout; then a real nginx terminating TLS in front, as
X-Forwarded-For (http module) and as PROXY protocol (stream module), with
allow_from enforced on the client's address.

Loopback is 127.0.0.0/8: a client socket bound to 127.0.0.2 or 127.0.0.3
is another client address. 127.0.0.1 is the (trusted) proxy.

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
        python3 tests/integration/test_proxy.py [-k PATTERN]
"""

import http.client as httpclient
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

STREAM = "payrelay:events"
EPAY = h.load_vectors("epay.json")["vectors"]
ALLOWED = "127.0.0.2"   # in shop-two's allow_from
REFUSED = "127.0.0.3"   # not in it
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def metric(admin_port, name, reason):
    r = h.http(admin_port, "GET", "/metrics",
               headers={"Authorization": "Bearer " + h.ADMIN_TOKEN})
    if r.status != 200:
        raise AssertionError("/metrics answered %d" % r.status)
    m = re.search(r'^%s\{reason="%s"\} (\S+)$' % (re.escape(name), reason), r.body.decode(),
                  re.M)
    return float(m.group(1)) if m else 0.0


def v1(src, port=40000, dst=None, dport=8787):
    fam = "TCP6" if ":" in src else "TCP4"
    dst = dst or ("::1" if fam == "TCP6" else "127.0.0.1")
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, port, dport)).encode()


def v2(src, port=40000, local=False):
    if local:
        return V2SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    block = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", port, 8787)
    return V2SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(block)) + block


class ProxyCase(h.DaemonClassCase):
    """One redis-server and one payrelayd per class, with `daemon_keys`
    added to [daemon] and a channel shop-two that allows only 127.0.0.2."""

    workdir_prefix = "payrelay-proxy-"
    daemon_keys = ""

    @classmethod
    def config_for(cls, setup):
        return setup.config_text().replace(
            "shutdown_timeout = 5\n", "shutdown_timeout = 5\n" + cls.daemon_keys, 1) + """
[channel:shop-two]
family = epay
merchant_id = 1001
key = %s
allow_from = %s
""" % (setup.epay_key, ALLOWED)

    def setUp(self):
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        self.r.cmd("FLUSHALL")
        self.n = 0

    def plain_metric(self, name):
        r = h.http(self.setup.admin_port, "GET", "/metrics",
                   headers={"Authorization": "Bearer " + h.ADMIN_TOKEN})
        m = re.search(r"^%s (\S+)$" % re.escape(name), r.body.decode(), re.M)
        return float(m.group(1)) if m else 0.0

    def refused(self, reason):
        return metric(self.setup.admin_port, "payrelay_http_refused_total", reason)

    def path(self, channel="shop-two"):
        """A distinct, correctly signed epay callback."""
        self.n += 1
        p = {k: v for k, v in EPAY[0]["params"].items() if k != "sign"}
        p["trade_no"] = "PRX%d%08d" % (os.getpid() % 1000, self.n)
        p["out_trade_no"] = "ORD%08d" % self.n
        p["sign"] = h.epay_md5_sign(p, self.setup.epay_key)
        return "/notify/%s?%s" % (channel, h.form_encode(p))

    def request(self, channel="shop-two", headers=()):
        return ("GET %s HTTP/1.1\r\nHost: gw\r\n%sConnection: close\r\n\r\n"
                % (self.path(channel), "".join("%s: %s\r\n" % kv for kv in headers))).encode()

    def connect(self, src):
        s = socket.create_connection((h.HOST, self.setup.port), timeout=h.TIMEOUT,
                                     source_address=(src, 0))
        self.addCleanup(s.close)
        return s

    @staticmethod
    def read_all(s, timeout=h.TIMEOUT):
        """Reads until the peer closes (or resets); b"" if it said nothing."""
        s.settimeout(timeout)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return data

    def exchange(self, src, data, pieces=None):
        """Sends `data` from a socket bound to `src` (in `pieces`, 0.2 s
        apart, when given) and returns (status or None, raw reply)."""
        s = self.connect(src)
        try:
            for part in pieces or [data]:
                s.sendall(part)
                if pieces:
                    time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = self.read_all(s)
        s.close()
        m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
        return (int(m.group(1)) if m else None), raw

    def assert_answer(self, got, status):
        code, raw = got
        self.assertEqual(code, status, "%r\n%s" % (raw[:200], self.daemon.log_tail(8)))
        if status == 200:
            self.assertTrue(raw.endswith(b"success"), raw[-50:])

    def assert_logged_refusal(self, client, start):
        """A refusal log line after character `start` naming `client`."""
        line = self.daemon.wait_log(r'callback refused.*peer=%s(\s|$)' % re.escape(client),
                                    timeout=5, start=start)
        self.assertIn("allow_from", line)

    def closed_within(self, s, timeout, t0=None):
        """Seconds until the peer closed `s` without an answer (from `t0`,
        by default now), or None."""
        t0 = t0 or time.monotonic()
        s.settimeout(0.1)
        data = b""
        while time.monotonic() - t0 < timeout:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.assertEqual(data, b"", "answered before closing")
                return time.monotonic() - t0
            data += chunk
        return None


class ForwardedForTest(ProxyCase):
    """trusted_proxies without the PROXY protocol: X-Forwarded-For and
    X-Real-IP from 127.0.0.1 name the client, from anyone else they are
    ignored; per-address limits and header_timeout."""

    daemon_keys = ("trusted_proxies = 127.0.0.1\nmax_connections_per_ip = 4\n"
                   "header_timeout = 1\n")

    def test_direct_clients_are_their_own_address(self):
        self.assert_answer(self.exchange(ALLOWED, self.request()), 200)
        start = len(self.daemon.log_text())
        self.assert_answer(self.exchange(REFUSED, self.request()), 403)
        self.assert_logged_refusal(REFUSED, start)
        self.assertEqual(self.r.cmd("XLEN", STREAM), 1)

    def test_forged_forwarding_headers_from_an_untrusted_peer_are_ignored(self):
        start = len(self.daemon.log_text())
        for hdrs in ([("X-Forwarded-For", ALLOWED)], [("X-Real-IP", ALLOWED)],
                     [("X-Forwarded-For", "127.0.0.1, " + ALLOWED)]):
            self.assert_answer(self.exchange(REFUSED, self.request(headers=hdrs)), 403)
        self.assert_logged_refusal(REFUSED, start)
        self.assertNotIn("peer=%s" % ALLOWED, self.daemon.log_text()[start:])
        self.assertEqual(self.r.cmd("XLEN", STREAM), 0)

    def test_trusted_proxy_names_the_client(self):
        ok = [
            [("X-Forwarded-For", ALLOWED)],
            [("X-Forwarded-For", REFUSED + ", " + ALLOWED)],  # rightmost counts
            [("X-Forwarded-For", ALLOWED + ", 127.0.0.1")],  # the proxy skipped
            [("X-Forwarded-For", REFUSED), ("X-Forwarded-For", ALLOWED)],  # one list
            [("X-Real-IP", ALLOWED)],
            [("X-Forwarded-For", ALLOWED + ":4711")],  # with a port
            [("X-Forwarded-For", "[::ffff:%s]:4711" % ALLOWED)],
        ]
        for hdrs in ok:
            self.assert_answer(self.exchange("127.0.0.1", self.request(headers=hdrs)), 200)
        bad = [
            [("X-Forwarded-For", REFUSED)],
            [("X-Forwarded-For", ALLOWED + ", " + REFUSED)],  # a client forged the left
            [("X-Forwarded-For", "garbage")],                 # falls back to the proxy
            # X-Real-IP only stands in for a missing X-Forwarded-For.
            [("X-Forwarded-For", "garbage"), ("X-Real-IP", ALLOWED)],
            [],                                               # the proxy itself
        ]
        start = len(self.daemon.log_text())
        for hdrs in bad:
            self.assert_answer(self.exchange("127.0.0.1", self.request(headers=hdrs)), 403)
        self.assert_logged_refusal(REFUSED, start)
        self.assert_logged_refusal("127.0.0.1", start)
        self.assertEqual(self.r.cmd("XLEN", STREAM), len(ok))

    def test_per_ip_cap(self):
        before = self.refused("per_ip")
        held = [self.connect("127.0.0.5") for _ in range(4)]
        for s in held:  # each one taken (an answer proves it)
            s.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 404"))
        extra = self.connect("127.0.0.5")
        took = self.closed_within(extra, 2)
        self.assertIsNotNone(took, "a 5th connection from one address was kept")
        self.assertGreaterEqual(self.refused("per_ip"), before + 1)
        self.assertIn("reason=per_ip", self.daemon.log_text())
        self.assertIn("peer=127.0.0.5", self.daemon.log_text())
        # Another address is not limited by it ...
        self.assert_answer(self.exchange(ALLOWED, self.request()), 200)
        # ... nor is the trusted proxy, whose clients change per request.
        proxies = [self.connect("127.0.0.1") for _ in range(6)]
        for s in proxies:
            s.sendall(self.request(headers=[("X-Forwarded-For", ALLOWED)]))
        for s in proxies:
            self.assertTrue(self.read_all(s).startswith(b"HTTP/1.1 200"))
        # A slot freed is free again.
        held.pop().close()
        deadline = time.monotonic() + 3
        while True:
            code, raw = self.exchange("127.0.0.5", self.request("shop-epay"))
            if code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(code, 200, raw[:100])

    def test_header_timeout(self):
        before = self.refused("header_timeout")
        idle_before = self.plain_metric("payrelay_http_timeouts_total")
        t0 = time.monotonic()
        idle = self.connect("127.0.0.6")
        partial = self.connect("127.0.0.7")
        partial.sendall(b"GET /notify/shop-epay HTTP/1.1\r\nHost: gw\r\n")
        for s in (idle, partial):
            took = self.closed_within(s, 4, t0)
            self.assertIsNotNone(took, "a connection without whole headers was kept")
            self.assertGreater(took, 0.5)
        # The idle one is an idle connection closed; the other a refusal,
        # logged with its client.
        self.assertGreaterEqual(self.refused("header_timeout"), before + 1)
        self.assertGreaterEqual(self.plain_metric("payrelay_http_timeouts_total"),
                                idle_before + 1)
        self.assertIn("peer=127.0.0.7", self.daemon.log_text())
        self.assertNotIn("peer=127.0.0.6", self.daemon.log_text())
        # Headers in time and a body slower than header_timeout (but
        # within read_timeout): answered.
        body = h.form_encode({k: v for k, v in EPAY[0]["params"].items()}).encode()
        s = self.connect(ALLOWED)
        s.sendall(("POST /notify/shop-two HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
                   "Content-Type: application/x-www-form-urlencoded\r\n"
                   "Content-Length: %d\r\n\r\n" % len(body)).encode())
        time.sleep(1.6)
        s.sendall(body)
        self.assertTrue(self.read_all(s).startswith(b"HTTP/1.1 200"))


class ProxyProtocolTest(ProxyCase):
    """proxy_protocol = on: 127.0.0.1 must send a PROXY header (v1 or v2),
    which names the client; others must not."""

    daemon_keys = ("trusted_proxies = 127.0.0.1\nproxy_protocol = on\n"
                   "max_connections_per_ip = 3\nheader_timeout = 1\n")

    def test_v1_and_v2_name_the_client(self):
        port = self.setup.port
        for hdr in (v1(ALLOWED, dport=port), v2(ALLOWED)):
            self.assert_answer(self.exchange("127.0.0.1", hdr + self.request()), 200)
        start = len(self.daemon.log_text())
        for hdr in (v1(REFUSED, dport=port), v2(REFUSED)):
            self.assert_answer(self.exchange("127.0.0.1", hdr + self.request()), 403)
        self.assert_logged_refusal(REFUSED, start)
        # The header alone first, the request later; and the header cut
        # in two.
        self.assert_answer(self.exchange("127.0.0.1", None,
                                         pieces=[v2(ALLOWED), self.request()]), 200)
        hdr = v1(ALLOWED, dport=port)
        self.assert_answer(self.exchange("127.0.0.1", None,
                                         pieces=[hdr[:9], hdr[9:], self.request()]), 200)
        # IPv6 clients too.
        self.assert_answer(self.exchange("127.0.0.1", v1("2001:db8::7") + self.request()),
                           403)
        self.assertIn("peer=2001:db8::7", self.daemon.log_text())
        self.assertEqual(self.r.cmd("XLEN", STREAM), 4)

    def test_local_means_the_proxy(self):
        self.assert_answer(self.exchange("127.0.0.1", v2("", local=True)
                                         + self.request("shop-epay")), 200)
        self.assert_answer(self.exchange("127.0.0.1", v2("", local=True) + self.request()), 403)
        self.assert_answer(self.exchange("127.0.0.1", b"PROXY UNKNOWN\r\n"
                                         + self.request("shop-epay")), 200)

    def test_forwarding_headers_do_not_override_the_header(self):
        self.assert_answer(self.exchange(
            "127.0.0.1", v1(REFUSED) + self.request(headers=[("X-Forwarded-For", ALLOWED)])),
            403)

    def test_missing_or_garbage_header_closes(self):
        before = self.refused("proxy_header")
        for data in (self.request(),                                 # none at all
                     b"PROXY TCP4 127.0.0.2 nonsense\r\n" + self.request(),
                     b"PROXY TCP6 127.0.0.2 127.0.0.1 1 2\r\n" + self.request(),  # family
                     V2SIG + b"\x21\x12\x00\x0c" + bytes(12) + self.request(),  # UDP
                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)):  # TLS
            code, raw = self.exchange("127.0.0.1", data)
            self.assertEqual(raw, b"", data[:40])
        self.assertGreaterEqual(self.refused("proxy_header"), before + 5)
        self.assertIn("reason=proxy_header", self.daemon.log_text())
        self.assertEqual(self.r.cmd("XLEN", STREAM), 0)

    def test_untrusted_peers_may_not_send_one(self):
        # A gateway calling directly is served as itself ...
        self.assert_answer(self.exchange(ALLOWED, self.request()), 200)
        # ... but cannot claim another address with a header of its own.
        # (Its first bytes are HTTP to payrelayd: libevent answers its
        # own 400 page, which reads as no ack, and closes.)
        for hdr in (v1(ALLOWED), v2(ALLOWED)):
            code, raw = self.exchange(REFUSED, hdr + self.request())
            self.assertEqual(code, 400, raw[:100])
            self.assertIn(b"\r\nConnection: close\r\n", raw)
            self.assertNotIn(b"success", raw)
        self.assertEqual(self.r.cmd("XLEN", STREAM), 1)

    def test_per_ip_cap_counts_the_header_client(self):
        held = []
        for _ in range(3):
            s = self.connect("127.0.0.1")
            s.sendall(v1("10.9.9.9"))
            held.append(s)
        time.sleep(0.3)
        extra = self.connect("127.0.0.1")
        extra.sendall(v1("10.9.9.9"))
        self.assertIsNotNone(self.closed_within(extra, 0.9), "a 4th connection was kept")
        self.assertIn("peer=10.9.9.9", self.daemon.log_text())
        # The proxy's other clients are not limited by it.
        self.assert_answer(self.exchange("127.0.0.1", v1(ALLOWED) + self.request()), 200)

    def test_header_timeout_covers_the_proxy_header(self):
        before = self.refused("header_timeout")
        s = self.connect("127.0.0.1")
        s.sendall(b"PROXY TCP4 ")
        took = self.closed_within(s, 4)
        self.assertIsNotNone(took)
        self.assertGreater(took, 0.5)
        self.assertGreaterEqual(self.refused("header_timeout"), before + 1)


# --------------------------------------------------------------------------
# a real nginx in front, terminating TLS

def make_cert(workdir):
    """A self-signed certificate for localhost and 127.0.0.1."""
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    return cert, key


NGINX_HEAD = """\
{load}
daemon off;
master_process off;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
"""

NGINX_HTTP = """\
http {{
	access_log {prefix}/access.log;
	client_body_temp_path {prefix}/body;
	proxy_temp_path {prefix}/proxy;
	fastcgi_temp_path {prefix}/fastcgi;
	uwsgi_temp_path {prefix}/uwsgi;
	scgi_temp_path {prefix}/scgi;
	server {{
		listen 127.0.0.1:{port} ssl;
		ssl_certificate {cert};
		ssl_certificate_key {key};
		client_max_body_size 64k;
		client_header_timeout 5s;
		client_body_timeout 10s;
		location /notify/ {{
			proxy_pass http://127.0.0.1:{upstream};
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_set_header X-Real-IP $remote_addr;
			proxy_connect_timeout 5s;
			proxy_read_timeout 30s;
		}}
	}}
}}
"""

NGINX_STREAM = """\
stream {{
	server {{
		listen 127.0.0.1:{port} ssl;
		ssl_certificate {cert};
		ssl_certificate_key {key};
		proxy_pass 127.0.0.1:{upstream};
		proxy_protocol on;
		proxy_connect_timeout 5s;
		proxy_timeout 30s;
	}}
}}
"""


class Nginx:
    def __init__(self, workdir, body, upstream, cert, key, stream):
        self.prefix = os.path.join(workdir, "nginx")
        os.makedirs(self.prefix, exist_ok=True)
        self.port = h.free_port()
        self.conf = os.path.join(self.prefix, "nginx.conf")
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(binary, os.X_OK):
            raise RuntimeError("nginx not found: scripts/deps.sh installs it")
        if stream and not os.path.exists(NGINX_STREAM_MODULE):
            raise RuntimeError("%s not found: scripts/deps.sh installs libnginx-mod-stream"
                               % NGINX_STREAM_MODULE)
        user = ""
        if os.geteuid() == 0:  # nginx would switch to nobody, who cannot read the temp dir
            user = "user root root;"
        fill = dict(prefix=self.prefix, port=self.port, upstream=upstream, cert=cert, key=key,
                    user=user, load="load_module %s;" % NGINX_STREAM_MODULE if stream else "")
        with open(self.conf, "w") as f:
            f.write(NGINX_HEAD.format(**fill) + body.format(**fill))
        self.log = os.path.join(self.prefix, "nginx.out")
        self.proc = h._spawn([binary, "-p", self.prefix + "/", "-e", self.prefix + "/error.log",
                              "-c", self.conf], self.log)
        deadline = time.monotonic() + 10
        while not h.port_open(self.port, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nginx did not start:\n%s\n%s" % (self.text(self.log),
                                   self.text(os.path.join(self.prefix, "error.log"))))
            time.sleep(0.05)

    @staticmethod
    def text(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        h._reap(self.proc, signal.SIGTERM, 5)


class NginxCase(ProxyCase):
    stream = False
    nginx_body = ""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cert, key = make_cert(cls.dir)
        cls.cert = cert
        cls.nginx = Nginx(cls.dir, cls.nginx_body, cls.setup.port, cert, key, cls.stream)
        cls.addClassCleanup(cls.nginx.stop)

    def https(self, src, path, headers=None):
        """One callback through nginx over TLS, verified against the test's
        certificate, from a socket bound to `src`."""
        ctx = ssl.create_default_context(cafile=self.cert)
        conn = httpclient.HTTPSConnection(h.HOST, self.nginx.port, timeout=10,
                                          context=ctx, source_address=(src, 0))
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def check_allow_from_on_the_client(self):
        self.assertEqual(self.https(ALLOWED, self.path()), (200, b"success"))
        start = len(self.daemon.log_text())
        self.assertEqual(self.https(REFUSED, self.path()), (403, b"fail"))
        self.assert_logged_refusal(REFUSED, start)
        # A client that forges the header is still itself.
        self.assertEqual(self.https(REFUSED, self.path(),
                                    {"X-Forwarded-For": ALLOWED, "X-Real-IP": ALLOWED}),
                         (403, b"fail"))
        # The channels open to all still take every client.
        self.assertEqual(self.https(REFUSED, self.path("shop-epay")), (200, b"success"))
        self.assertEqual(self.r.cmd("XLEN", STREAM), 2)
        # TLS with a certificate the client does not trust: refused by the client.
        ctx = ssl.create_default_context()
        with self.assertRaises(ssl.SSLError):
            with socket.create_connection((h.HOST, self.nginx.port), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname="localhost"):
                    pass


class NginxForwardedForTest(NginxCase):
    """nginx's http module terminates TLS and sets X-Forwarded-For."""

    daemon_keys = "trusted_proxies = 127.0.0.1\n"
    nginx_body = NGINX_HTTP

    def test_allow_from_is_enforced_on_the_client_behind_nginx(self):
        self.check_allow_from_on_the_client()


class NginxProxyProtocolTest(NginxCase):
    """nginx's stream module terminates TLS and sends a PROXY v1 header."""

    daemon_keys = "trusted_proxies = 127.0.0.1\nproxy_protocol = on\n"
    nginx_body = NGINX_STREAM
    stream = True

    def test_allow_from_is_enforced_on_the_client_behind_nginx(self):
        self.check_allow_from_on_the_client()
        # Several callbacks over one kept-alive TLS connection: one header.
        ctx = ssl.create_default_context(cafile=self.cert)
        conn = httpclient.HTTPSConnection(h.HOST, self.nginx.port, timeout=10,
                                          context=ctx, source_address=(ALLOWED, 0))
        try:
            for _ in range(3):
                conn.request("GET", self.path())
                r = conn.getresponse()
                self.assertEqual((r.status, r.read()), (200, b"success"))
        finally:
            conn.close()


if __name__ == "__main__":
    sys.exit(h.run_tests())
