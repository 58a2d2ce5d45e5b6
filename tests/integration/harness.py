"""Integration-test harness for payrelayd.

Everything here uses the Python 3 standard library only:

- Resp          a tiny RESP2 client (no redis-cli, no redis-py)
- RedisServer   a throw-away redis-server on a free loopback port
- Daemon        payrelayd run in the foreground with its stderr captured
- signing helpers for the three gateway families (SPEC section 2), the
  epay V2 RSA signature through the `openssl` command line
- http()        one request over a fresh http.client connection

Every network call stays on 127.0.0.1 and has a timeout; every process the
harness starts is killed at exit even when a test fails.
"""

import atexit
import base64
import hashlib
import http.client as httpclient
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse

HOST = "127.0.0.1"
TIMEOUT = 5.0
HERE = os.path.dirname(os.path.abspath(__file__))
READY_RE = re.compile(r'msg="?ready')
# How much slower than natively the daemon runs (under valgrind: about 20x
# to start); the harness stretches its own waits for the daemon by it.
TIME_SCALE = float(os.environ.get("PAYRELAY_TIME_SCALE", "1"))
# valgrind's summary when it found something (memcheck, -q prints only errors)
VALGRIND_ERROR_RE = re.compile(r"==\d+== (ERROR SUMMARY: [1-9]|Invalid |Conditional jump|"
                               r"Syscall param|Mismatched free|are definitely lost)")

# --------------------------------------------------------------------------
# processes: whatever we start is killed at exit, even after a failure

_LIVE = set()


def _kill_all():
    for p in list(_LIVE):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass
    _LIVE.clear()


atexit.register(_kill_all)


def _spawn(argv, logpath, nofile=None):
    """Starts argv with its output appended to logpath; `nofile`: the
    process's open-file limit (soft and hard)."""
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = open(logpath, "ab")
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, close_fds=True,
                             preexec_fn=limit if nofile else None)
    finally:
        log.close()
    _LIVE.add(p)
    return p


def _reap(p, sig, timeout):
    """Send `sig`, wait up to `timeout` s; kill if still alive.
    Returns (returncode, exited_in_time)."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
    try:
        p.wait(timeout=timeout)
        in_time = True
    except subprocess.TimeoutExpired:
        in_time = False
        p.kill()
        p.wait(timeout=5)
    _LIVE.discard(p)
    return p.returncode, in_time


# Ports handed out by free_port in this process: a daemon or redis-server
# will bind them later, so neither free_port nor a test server (QuietServer,
# which binds port 0) may take one of them meanwhile: the kernel may hand a
# freed port to the next bind(0) of the same process.
_GIVEN_PORTS = set()


def free_port():
    """A loopback TCP port that was free a moment ago (bound, then closed),
    and not handed out before by this process."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port
    raise RuntimeError("no free loopback port")


def port_open(port, timeout=0.5):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def locate_binary():
    b = os.environ.get("PAYRELAYD")
    if b:
        return b
    guess = os.path.normpath(os.path.join(HERE, "..", "..", "build", "src", "payrelayd"))
    return guess if os.path.exists(guess) else None


def vectors_dir():
    d = os.environ.get("PAYRELAY_VECTORS")
    if d:
        return d
    return os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "vectors"))


def load_vectors(name):
    with open(os.path.join(vectors_dir(), name), encoding="utf-8") as f:
        return json.load(f)


def project_version():
    """The version in the top-level meson.build, or None."""
    try:
        with open(os.path.join(HERE, "..", "..", "meson.build"), encoding="utf-8") as f:
            m = re.search(r"version\s*:\s*'([^']+)'", f.read())
            return m.group(1) if m else None
    except OSError:
        return None


# --------------------------------------------------------------------------
# a tiny RESP client


class RedisError(Exception):
    pass


class Resp:
    def __init__(self, port, timeout=TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _bulk(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._bulk(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line[:40])

    def cmd(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, bytes):
                b = a
            elif isinstance(a, str):
                b = a.encode()
            else:
                b = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    # conveniences ---------------------------------------------------------

    def keys(self, pattern):
        return sorted(k.decode() for k in self.cmd("KEYS", pattern))

    def hgetall(self, key):
        flat = self.cmd("HGETALL", key) or []
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    def xrange(self, key):
        """[(entry id, {field: value(str)})] of the whole stream."""
        out = []
        for entry_id, flat in self.cmd("XRANGE", key, "-", "+") or []:
            fields = {flat[i].decode(): flat[i + 1].decode("utf-8")
                      for i in range(0, len(flat), 2)}
            out.append((entry_id.decode(), fields))
        return out


# --------------------------------------------------------------------------
# redis-server


class RedisServer:
    def __init__(self, workdir, port=None, extra_args=()):
        """`extra_args`: more redis-server options, e.g. ("--appendonly",
        "yes"); they come last, so they override the defaults. start() may be
        called again after stop(): same port, same data directory."""
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.log = os.path.join(self.dir, "redis.log")

    def start(self, timeout=10.0):
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server not found in PATH")
        self.proc = _spawn([binary, "--port", str(self.port), "--bind", HOST,
                            "--save", "", "--appendonly", "no", "--dir", self.dir,
                            "--unixsocket", os.path.join(self.dir, "redis.sock")]
                           + self.extra_args,
                           self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: " + self.log_text()[-2000:])
            try:
                c = Resp(self.port, timeout=1.0)
                try:
                    if c.cmd("PING") == "PONG":
                        return self
                finally:
                    c.close()
            except (OSError, RedisError):
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING within %.0f s" % timeout)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None:
            _reap(self.proc, sig, 5)
            self.proc = None
        # the port must really be closed before the test goes on
        deadline = time.monotonic() + 5
        while port_open(self.port, 0.2) and time.monotonic() < deadline:
            time.sleep(0.05)

    def client(self):
        return Resp(self.port)

    def log_text(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


# --------------------------------------------------------------------------
# payrelayd


class Daemon:
    def __init__(self, binary, workdir, config_path, port, name="payrelayd", nofile=None):
        self.binary = binary
        self.nofile = nofile
        self.config = config_path
        self.port = port
        self.log = os.path.join(workdir, name + ".log")
        self.proc = None

    def start(self, wait_ready=True, timeout=10.0):
        """PAYRELAY_DAEMON_WRAPPER, when set, is a command line the daemon
        runs under (split on spaces), e.g. "valgrind --error-exitcode=97";
        timeouts then stretch by PAYRELAY_TIME_SCALE (default 1)."""
        wrapper = os.environ.get("PAYRELAY_DAEMON_WRAPPER", "").split()
        timeout *= TIME_SCALE
        self.proc = _spawn(wrapper + [self.binary, "-c", self.config], self.log,
                           nofile=self.nofile)
        if wait_ready:
            self.wait_log(READY_RE, timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=30):
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_log(self, regex, timeout=10.0, start=0):
        """Waits for a line matching `regex` (after character offset `start`)."""
        if isinstance(regex, str):
            regex = re.compile(regex)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()[start:]
            for line in text.splitlines():
                if regex.search(line):
                    return line
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("payrelayd exited with %s before logging %r:\n%s"
                                   % (self.proc.returncode, regex.pattern, self.log_tail()))
            time.sleep(0.05)
        raise RuntimeError("payrelayd did not log %r within %.0f s:\n%s"
                           % (regex.pattern, timeout, self.log_tail()))

    def wait_listening(self, timeout=10.0):
        timeout *= TIME_SCALE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("payrelayd exited with %s:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            if port_open(self.port, 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("payrelayd is not listening on %d after %.0f s:\n%s"
                           % (self.port, timeout, self.log_tail()))

    def wait(self, timeout=10.0):
        """Waits for the process to exit on its own (killed after `timeout`).
        Returns (returncode, exited_within_timeout)."""
        if self.proc is None:
            return None, True
        p, self.proc = self.proc, None
        try:
            p.wait(timeout=timeout)
            in_time = True
        except subprocess.TimeoutExpired:
            in_time = False
            p.kill()
            p.wait(timeout=5)
        _LIVE.discard(p)
        return p.returncode, in_time

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Returns (returncode, exited_within_timeout)."""
        if self.proc is None:
            return None, True
        rc = _reap(self.proc, sig, timeout)
        self.proc = None
        return rc

    def stop_clean(self, timeout=10.0):
        """SIGTERM, and fail unless the daemon exits 0 in time with no
        sanitizer report (ASan, UBSan and LeakSanitizer print theirs to
        stderr at exit): how the ASan build of the suite finds leaks."""
        if self.proc is None:
            return
        timeout *= TIME_SCALE
        rc, in_time = self.stop(signal.SIGTERM, timeout)
        log = self.log_text()
        if "Sanitizer" in log or "runtime error:" in log or VALGRIND_ERROR_RE.search(log):
            raise AssertionError("payrelayd reported a sanitizer error:\n" + self.log_tail(60))
        if not in_time or rc != 0:
            raise AssertionError("payrelayd did not exit 0 within %.0f s of SIGTERM (rc=%s):\n%s"
                                 % (timeout, rc, self.log_tail()))


def run_binary(args, timeout=10.0):
    """Runs payrelayd with `args` to completion: (rc, stdout, stderr)."""
    p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


# --------------------------------------------------------------------------
# configuration

ADMIN_TOKEN = "adm-tok-7f3c9e1b5a2d4c6e8f0a1b2c3d4e5f60"
RSA_CHANNEL_KEY = "rsa-channel-key-0a1b2c3d4e5f6789"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def config_head(port, admin, redis_port, shutdown_timeout=5, redis_timeout_ms=1000,
                stream="payrelay:events", token=ADMIN_TOKEN, writer="tests/integration/harness.py"):
    """The [daemon], [admin], [redis] and [stream] sections every test
    configuration starts with (channels and webhooks follow). `admin`: a
    loopback port, or a whole `listen` value (unix:/path); `token` None: no
    admin token."""
    if isinstance(admin, int):
        admin = "127.0.0.1:%d" % admin
    return """\
; written by {writer}
[daemon]
listen = 127.0.0.1:{port}
shutdown_timeout = {shutdown_timeout}

[admin]
listen = {admin}
{token_line}
[redis]
url = redis://127.0.0.1:{redis_port}/0
timeout_ms = {redis_timeout_ms}

[stream]
key = {stream}
""".format(writer=writer, port=port, shutdown_timeout=shutdown_timeout, admin=admin,
           token_line="token = %s\n" % token if token else "", redis_port=redis_port,
           redis_timeout_ms=redis_timeout_ms, stream=stream)


class Setup:
    """The secrets and the file layout of one test class's payrelayd."""

    def __init__(self, workdir, redis_port):
        self.workdir = workdir
        self.redis_port = redis_port
        self.port = free_port()
        self.admin_port = free_port()
        epay = load_vectors("epay.json")["vectors"][0]
        gate = load_vectors("gatepay.json")["vectors"][0]
        pidx = load_vectors("payindex.json")["vectors"][0]
        rsa = load_vectors("epay_rsa.json")
        self.epay_key = epay["key"]
        self.gate_appkey = gate["appkey"]
        self.gate_secret = gate["appsecret"]
        self.payindex_key = pidx["key"]
        self.pubkey_file = os.path.join(workdir, "platform.pub.pem")
        with open(self.pubkey_file, "w") as f:
            f.write(rsa["platform_public_key_pem"])
        self.privkey_file = os.path.join(workdir, "platform.key.pem")
        with open(self.privkey_file, "w") as f:
            f.write(rsa["platform_private_key_pem_for_tests_only"])
        os.chmod(self.privkey_file, 0o600)
        self.config = os.path.join(workdir, "payrelayd.conf")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(self.config_text())

    def secrets(self):
        """Strings that must never appear in a log."""
        return [self.epay_key, RSA_CHANNEL_KEY, self.gate_secret, self.payindex_key,
                WEBHOOK_SECRET, WEBHOOK_SECRET[len("whsec_"):], ADMIN_TOKEN]

    def config_text(self):
        return config_head(self.port, self.admin_port, self.redis_port) + """
[channel:shop-epay]
family = epay
merchant_id = 1001
key = {epay_key}

[channel:shop-rsa]
family = epay
sign_type = RSA
platform_public_key_file = {pubkey}
merchant_id = 1001
key = {rsa_key}

[channel:shop-gatepay]
family = gatepay
merchant_id = {gate_appkey}
key = {gate_secret}
; no gateway to ask here: test_confirm.py tests confirmation (SPEC 2.5)
confirm = off

[channel:shop-payindex]
family = payindex
merchant_id = 10002
key = {payindex_key}

[channel:shop-locked]
family = epay
merchant_id = 1001
key = {epay_key}
allow_from = 10.0.0.0/8

[channel:shop-listed]
family = epay
merchant_id = 1001
key = {epay_key}
allow_from = 10.0.0.0/8, 127.0.0.0/8 ::1

[webhook:orders]
url = http://127.0.0.1:9/x
secret = {whsec}
events = order.paid
; first attempt an hour out: these tests look at what recording schedules,
; test_deliver.py at what the engine does with it
schedule = 3600 3600
""".format(epay_key=self.epay_key, pubkey=self.pubkey_file,
           rsa_key=RSA_CHANNEL_KEY, gate_appkey=self.gate_appkey,
           gate_secret=self.gate_secret, payindex_key=self.payindex_key,
           whsec=WEBHOOK_SECRET)


class DaemonClassCase(unittest.TestCase):
    """A test class with one redis-server and payrelayd, both started once
    for the class. Every daemon it starts (start_daemon) must exit 0 with no
    sanitizer or valgrind report (stop_clean) and log no configured secret.

    Subclasses may set `workdir_prefix`, `redis_args` (more redis-server
    options), `start_redis = False` (the daemon starts without Redis, and is
    then only waited for to listen) and `wait_ready = False` (the same with
    Redis), and override `config_for(setup)` to change the configuration
    text (Setup's by default; written 0600: it holds keys)."""

    workdir_prefix = "payrelay-it-"
    redis_args = ()
    nofile = None  # the daemons' open-file limit; None: inherited
    start_redis = True
    wait_ready = True

    @classmethod
    def config_for(cls, setup):
        return setup.config_text()

    @classmethod
    def setUpClass(cls):
        cls.binary = locate_binary()
        if not cls.binary or not os.access(cls.binary, os.X_OK):
            raise RuntimeError("payrelayd not found: set PAYRELAYD (got %r)" % cls.binary)
        cls.dir = new_workdir(cls.workdir_prefix)
        cls.redis = RedisServer(cls.dir, extra_args=cls.redis_args)
        cls.addClassCleanup(cls.redis.stop, signal.SIGKILL)
        if cls.start_redis:
            cls.redis.start()
        cls.setup = Setup(cls.dir, cls.redis.port)
        cls.config_text = cls.config_for(cls.setup)
        with open(cls.setup.config, "w", encoding="utf-8") as f:
            f.write(cls.config_text)
        os.chmod(cls.setup.config, 0o600)
        cls.daemons = []
        cls.daemon = cls.start_daemon(wait_ready=cls.start_redis and cls.wait_ready)

    @classmethod
    def start_daemon(cls, config=None, port=None, name="payrelayd", wait_ready=True):
        d = Daemon(cls.binary, cls.dir, config or cls.setup.config, port or cls.setup.port,
                   name=name, nofile=cls.nofile)
        cls.daemons.append(d)
        cls.addClassCleanup(d.stop, signal.SIGKILL, 5)
        cls.addClassCleanup(cls.assert_no_secret_logged, d)
        # Runs first (cleanups are LIFO): a clean exit, or the class fails.
        cls.addClassCleanup(d.stop_clean)
        if wait_ready:
            d.start(wait_ready=True)
        else:
            d.start(wait_ready=False)
            d.wait_listening()
        return d

    @classmethod
    def assert_no_secret_logged(cls, daemon):
        log = daemon.log_text()
        for secret in cls.setup.secrets():
            if secret and secret in log:
                raise AssertionError("a configured secret appears in %s" % daemon.log)


# --------------------------------------------------------------------------
# signing (SPEC section 2), written from the spec, checked against the vectors


def md5hex(b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hashlib.md5(b).hexdigest()


def sign_string(params, exclude, skip):
    """Sorted (by name, byte order) k=v&k=v over `params` (dict), leaving
    out the names in `exclude` and the values `skip(value)` says so."""
    items = [(k, v) for k, v in params.items() if k not in exclude and not skip(v)]
    items.sort(key=lambda kv: kv[0].encode("utf-8"))
    return "&".join("%s=%s" % (k, v) for k, v in items)


def epay_md5_string(params, key):
    return sign_string(params, ("sign", "sign_type"), lambda v: v == "") + key


def epay_md5_sign(params, key):
    return md5hex(epay_md5_string(params, key))


def epay_rsa_string(params):
    # PHP trim() white space: " \t\n\r\0\x0B"
    return sign_string(params, ("sign", "sign_type"),
                       lambda v: v.strip(" \t\n\r\0\x0b") == "")


def rsa_sign(data, privkey_file):
    """base64 SHA256withRSA (PKCS#1 v1.5) of `data`, by the openssl CLI."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    p = subprocess.run(["openssl", "dgst", "-sha256", "-sign", privkey_file],
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10)
    if p.returncode != 0:
        raise RuntimeError("openssl failed: " + p.stderr.decode(errors="replace"))
    return base64.b64encode(p.stdout).decode()


def gatepay_sign(params, appkey, appsecret):
    inner = appkey + "".join(params.get(k, "") for k in (
        "order_id", "out_order_id", "price", "realprice", "type", "paytime", "extend"))
    return md5hex(md5hex(inner) + appsecret)


def payindex_sign(params, key):
    s = sign_string(params, ("sign", "attach"), lambda v: v in ("", "0"))
    return md5hex(s + "&key=" + key).upper()


def event_id(channel, trade_id, status):
    return "evt_" + md5hex(channel + "\0" + trade_id + "\0" + status)


# --------------------------------------------------------------------------
# HTTP


def form_encode(params):
    """application/x-www-form-urlencoded as PHP's http_build_query writes it
    (UTF-8 bytes %XX-escaped, space as '+'). `params`: dict or list of pairs."""
    items = params.items() if isinstance(params, dict) else params
    return "&".join(urllib.parse.quote_plus(k, safe="") + "=" +
                    urllib.parse.quote_plus(v, safe="") for k, v in items)


class Reply:
    def __init__(self, status, body, headers, elapsed):
        self.status = status
        self.body = body
        self.headers = headers
        self.elapsed = elapsed

    def __repr__(self):
        return "<HTTP %d %r (%.2f s)>" % (self.status, self.body[:200], self.elapsed)


def http(port, method, path, body=None, headers=None, timeout=TIMEOUT):
    """One request over a fresh connection; `body` bytes/str or None."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    t0 = time.monotonic()
    conn = httpclient.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Reply(r.status, data, dict(r.getheaders()), time.monotonic() - t0)
    finally:
        conn.close()


def raw_exchange(port, head, body=b"", wait_before_body=1.0, timeout=TIMEOUT):
    """Sends `head` (bytes, the request line and headers), waits a little
    for an early reply (libevent answers 413 as soon as it reads the
    headers), sends `body` only if none came, and returns (status, reply
    body bytes, whole raw reply)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    data = b""
    try:
        s.sendall(head)
        s.settimeout(wait_before_body)
        try:
            chunk = s.recv(65536)
            data += chunk
        except socket.timeout:
            chunk = None
        s.settimeout(timeout)
        if not data and chunk is None:
            try:
                s.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in data:
                hdr, rest = data.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?im)^content-length:\s*(\d+)", hdr)
                if m and len(rest) >= int(m.group(1)):
                    break
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    status = int(m.group(1)) if m else None
    body_part = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    return status, body_part, data


def burst_while_stopped(proc, port, paths, timeout=TIMEOUT):
    """GETs every path of `paths` on its own connection while process
    `proc` is stopped (SIGSTOP: the kernel still takes the connections and
    the bytes), then lets it go on (SIGCONT): the daemon reads them all in
    one or two loop turns. Returns [(status, body)], in the order of paths;
    (0, error text) for a connection that failed."""
    socks = []
    proc.send_signal(signal.SIGSTOP)
    try:
        for p in paths:
            c = socket.create_connection((HOST, port), timeout=timeout)
            c.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (p, HOST)).encode())
            socks.append(c)
    finally:
        proc.send_signal(signal.SIGCONT)
    out = []
    for c in socks:
        data = b""
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            out.append((0, str(e)))
            continue
        finally:
            c.close()
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        out.append((int(m.group(1)) if m else 0, body))
    return out


def new_workdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("PAYRELAY_KEEP_TMP"):
        atexit.register(shutil.rmtree, d, True)
    return d


# --------------------------------------------------------------------------
# webhook deliveries: a scriptable local receiver, the Standard Webhooks
# signature (https://www.standardwebhooks.com/), a logfmt line parser

import hmac  # noqa: E402
import select  # noqa: E402
import threading  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402


class QuietServer(ThreadingHTTPServer):
    """The test servers' base (webhook receiver, fake gateway)."""
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs when many connections
    # open at once, and the kernel retries them a second later: timings would
    # then measure the test server.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # a client that went away (timeout, SIGKILL, shutdown) is expected

    def server_bind(self):
        """Binds as socketserver does, but never to a port free_port handed
        out (a daemon may be about to bind it)."""
        for _ in range(100):
            ThreadingHTTPServer.server_bind(self)
            if self.server_address[1] not in _GIVEN_PORTS:
                return
            self.socket.close()
            self.socket = socket.socket(self.address_family, self.socket_type)
            self.server_address = (self.server_address[0], 0)
        raise RuntimeError("no free loopback port for a test server")


class TrackedHandler(BaseHTTPRequestHandler):
    """Keeps `owner._conns` (under `owner.lock`) up to date, so the owner
    can close open connections when it stops."""
    protocol_version = "HTTP/1.1"
    timeout = 60
    owner = None

    def log_message(self, *a):
        pass

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        with self.owner.lock:
            self.owner._conns.add(self.connection)

    def finish(self):
        try:
            BaseHTTPRequestHandler.finish(self)
        except OSError:
            pass
        with self.owner.lock:
            self.owner._conns.discard(self.connection)


def webhook_key(secret):
    """The HMAC key of a configured webhook secret: a `whsec_<base64>`
    secret is base64-decoded, anything else is used as it is."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):], validate=True)
    return secret.encode("utf-8")


def webhook_sign(secret, msg_id, timestamp, body):
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    msg = ("%s.%s." % (msg_id, timestamp)).encode("utf-8") + body
    mac = hmac.new(webhook_key(secret), msg, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def webhook_signatures(header):
    """The `v1,...` entries of a webhook-signature header, in order."""
    return header.split(" ") if header else []


def webhook_verify(secret, msg_id, timestamp, body, header):
    """Index of the first signature in `header` that `secret` verifies
    (constant-time compare), or None. Independent of payrelay's code."""
    want = webhook_sign(secret, msg_id, timestamp, body)
    for i, sig in enumerate(webhook_signatures(header)):
        if hmac.compare_digest(sig.encode(), want.encode()):
            return i
    return None


_LOGFMT_RE = re.compile(r'([A-Za-z0-9_.\-]+)=("(?:[^"\\]|\\.)*"|\S*)')


def logfmt(line):
    """{key: value} of one `level=... msg="..." key=value` line; quoted
    values are unquoted (\\" and \\\\ unescaped)."""
    out = {}
    for k, v in _LOGFMT_RE.findall(line):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        out[k] = v
    return out


def log_records(text, msg=None):
    """The parsed lines of a log (only those whose msg is `msg`)."""
    out = []
    for line in text.splitlines():
        rec = logfmt(line)
        if msg is None or rec.get("msg") == msg:
            out.append(rec)
    return out


class Received:
    """One request the receiver got."""

    def __init__(self, method, path, headers, body, t, mono, action):
        self.method = method
        self.path = path
        self.headers = headers      # {lower-case name: value}
        self.header_list = []       # [(name, value)] as sent
        self.body = body            # bytes
        self.time = t               # time.time() when the body was read
        self.mono = mono            # time.monotonic() likewise
        self.action = action        # what the script said to do
        self.status = None          # the status answered (None: no answer)
        self.outcome = "pending"    # answered | client-gone | write-failed

    def __repr__(self):
        return "<%s %s id=%s action=%s status=%s %s>" % (
            self.method, self.path, self.headers.get("webhook-id"), self.action,
            self.status, self.outcome)


class ServedOnLoopback:
    """A test server's shared part: a lock and condition, the connections
    its TrackedHandler keeps (closed by stop()), and a QuietServer on a free
    127.0.0.1 port served by a background thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._stopping = threading.Event()
        self._conns = set()

    def serve(self, handler):
        """Starts serving `handler` (a TrackedHandler subclass): sets port."""
        self.server = QuietServer((HOST, 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self._stopping.set()
        try:
            self.server.shutdown()
        except Exception:
            pass
        self.server.server_close()
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)


class Receiver(ServedOnLoopback):
    """A webhook receiver on 127.0.0.1:<free port>, HTTP/1.1 with keep-alive,
    in background threads. Records every request. What it answers comes
    from `script` (one action per request, in arrival order) and then from
    `default`; an action is

        ok                      200
        fail                    500
        hang                    sleep `hang_s` (longer than any timeout), then 200
                                (gives up early when the client goes away)
        slow:SECONDS            sleep SECONDS, then 200
        gate:N                  hold the answer until N gated requests have come
                                (since the last set_script), then 200: all N
                                answers leave together
        status:CODE             answer CODE
        status:CODE:retry_after=N   CODE with `Retry-After: N`
        big:BYTES               200 with a body of BYTES bytes

    `script` may also be a dict {path: [actions]} with `default` a dict
    {path: action} for a receiver shared by several webhooks."""

    def __init__(self, script=(), default="ok", hang_s=30.0):
        ServedOnLoopback.__init__(self)
        self.requests = []
        self.hang_s = hang_s
        self._scripts = {}
        self._defaults = {}
        self.active = 0        # requests being answered now
        self.max_active = 0    # the most at once
        self._gated = 0        # gate:N requests come since set_script
        self.set_script(script, default)
        receiver = self

        class Handler(TrackedHandler):
            owner = receiver

            def _read_body(self):
                te = (self.headers.get("Transfer-Encoding") or "").lower()
                if "chunked" in te:
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self):
                body = self._read_body()
                rec = Received(self.command, self.path,
                               {k.lower(): v for k, v in self.headers.items()},
                               body, time.time(), time.monotonic(), None)
                rec.header_list = list(self.headers.items())
                with receiver.cond:
                    rec.action = receiver._next_action(self.path)
                    receiver.requests.append(rec)
                    receiver.active += 1
                    receiver.max_active = max(receiver.max_active, receiver.active)
                    receiver.cond.notify_all()
                try:
                    receiver._act(self, rec)
                finally:
                    with receiver.cond:
                        receiver.active -= 1
                        receiver.cond.notify_all()

            do_POST = do_GET = do_PUT = _handle


        self.serve(Handler)

    # --- behaviour --------------------------------------------------------

    def url(self, path="/hook"):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def set_script(self, script=(), default="ok"):
        """Replaces the behaviour (for requests arriving from now on)."""
        with self.lock:
            self._gated = 0
            if isinstance(script, dict):
                self._scripts = {p: list(a) for p, a in script.items()}
            else:
                self._scripts = {None: list(script)}
            if isinstance(default, dict):
                self._defaults = dict(default)
            else:
                self._defaults = {None: default}

    def set_default(self, default):
        with self.lock:
            if isinstance(default, dict):
                self._defaults.update(default)
            else:
                self._defaults = {None: default}

    def _next_action(self, path):  # with the lock held
        for key in (path, None):
            if key in self._scripts and self._scripts[key]:
                return self._scripts[key].pop(0)
        return self._defaults.get(path, self._defaults.get(None, "ok"))

    def _client_gone(self, handler, seconds):
        """Waits up to `seconds`; True as soon as the client closed."""
        deadline = time.monotonic() + seconds
        sock = handler.connection
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                return self._stopping.is_set()
            try:
                r, _, _ = select.select([sock], [], [], min(left, 0.05))
                if r and not sock.recv(1, socket.MSG_PEEK):
                    return True
            except (OSError, ValueError):
                return True

    def _act(self, handler, rec):
        action = rec.action
        status, extra, big = 200, [], None
        if action == "ok":
            pass
        elif action == "fail":
            status = 500
        elif action == "hang" or action.startswith("slow:"):
            wait = self.hang_s if action == "hang" else float(action.split(":", 1)[1])
            if self._client_gone(handler, wait):
                with self.cond:
                    rec.outcome = "client-gone"
                    self.cond.notify_all()
                handler.close_connection = True
                return
        elif action.startswith("gate:"):
            n = int(action.split(":", 1)[1])
            with self.cond:
                self._gated += 1
                self.cond.notify_all()
                self.cond.wait_for(lambda: self._gated >= n or self._stopping.is_set(),
                                   timeout=self.hang_s)
        elif action.startswith("big:"):
            big = int(action.split(":", 1)[1])
        elif action.startswith("status:"):
            parts = action.split(":")
            status = int(parts[1])
            for p in parts[2:]:
                if p.startswith("retry_after="):
                    extra.append(("Retry-After", p[len("retry_after="):]))
        else:
            raise ValueError("unknown receiver action %r" % action)
        payload = b"ok" if 200 <= status < 300 else b"no"
        if big is not None:
            payload = b"k" * big
        try:
            handler.send_response(status)
            for k, v in extra:
                handler.send_header(k, v)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
            outcome = "answered"
        except OSError:
            outcome = "write-failed"
            handler.close_connection = True
        with self.cond:
            rec.status = status
            rec.outcome = outcome
            self.cond.notify_all()

    # --- what it saw --------------------------------------------------------

    def snapshot(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]

    def count(self, path=None):
        return len(self.snapshot(path))

    def wait_for(self, pred, timeout):
        """Waits until pred(list of requests) is true; returns it, or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                reqs = list(self.requests)
                if pred(reqs):
                    return reqs
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.1))

    def wait_count(self, n, timeout, path=None):
        reqs = self.wait_for(lambda rs: len([r for r in rs if path is None or r.path == path]) >= n,
                             timeout)
        return None if reqs is None else [r for r in reqs if path is None or r.path == path]

def run_tests():
    """The main of every integration test file: runs its unittest cases and
    returns the exit status. A missing redis-server is a broken setup, not a
    pass (scripts/deps.sh installs it)."""
    import shutil as _shutil
    import unittest as _unittest

    if not _shutil.which("redis-server"):
        print("redis-server is not installed (run scripts/deps.sh): failing")
        return 1
    prog = _unittest.main(module="__main__", verbosity=2, exit=False)
    return 0 if prog.result.wasSuccessful() else 1
