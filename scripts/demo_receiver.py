#!/usr/bin/env python3
"""The demo's webhook receiver (Python standard library only).

It stands for the merchant's own service behind a [webhook:...] section: it
checks each delivery's Standard Webhooks signature (SPEC 5.2) with the
webhook's secret and prints one line per request:

    verified evt_... order.paid shop-epay 1.00      -> 204
    failing  evt_... order.paid shop-gatepay 1.88 (FAIL_FILE exists) -> 500
    REFUSED  bad signature webhook-id=evt_...        -> 400

While the fail file exists every verified delivery is answered 500, so
payrelayd's retries and dead letters can be watched; remove it to heal.
GET / answers 200 (scripts/demo.sh waits for it).

Usage: demo_receiver.py --port P --secret-file F [--fail-file F] [--host H]
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Standard Webhooks' recommended tolerance: an older (or newer) timestamp is
# a replayed capture, not a delivery.
TOLERANCE_S = 300
MAX_BODY = 1 << 20

out_lock = threading.Lock()


def say(line):
    with out_lock:
        print(line, flush=True)


def hmac_keys(text):
    """The HMAC keys of a `secret =` value: one per space-separated secret,
    a `whsec_<base64>` one base64-decoded (as payrelayd does)."""
    keys = []
    for s in text.split():
        if s.startswith("whsec_"):
            keys.append(base64.b64decode(s[len("whsec_"):], validate=True))
        else:
            keys.append(s.encode("utf-8"))
    return keys


def signature_ok(keys, msg_id, timestamp, body, header):
    """True when one `v1,<base64>` entry of `header` is the HMAC-SHA256 of
    "{id}.{timestamp}.{body}" under one of `keys` (constant-time compare)."""
    msg = ("%s.%s." % (msg_id, timestamp)).encode("utf-8") + body
    wanted = [hmac.new(k, msg, hashlib.sha256).digest() for k in keys]
    for entry in header.split():
        version, _, sig = entry.partition(",")
        if version != "v1":
            continue
        try:
            got = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            continue
        for w in wanted:
            if hmac.compare_digest(got, w):
                return True
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # payrelayd keeps connections alive
    server_version = "payrelay-demo-receiver"
    sys_version = ""

    def log_message(self, *a):
        pass

    def answer(self, status, text):
        body = (text + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(200, "payrelay demo receiver")

    def refuse(self, why, msg_id):
        say("REFUSED  %s webhook-id=%s -> 400" % (why, msg_id or "-"))
        self.answer(400, why)

    def do_POST(self):
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            self.refuse("no usable Content-Length", None)
            return
        body = self.rfile.read(n)
        msg_id = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        sig = self.headers.get("webhook-signature", "")
        if not msg_id or not ts or not sig:
            self.refuse("missing webhook-id, webhook-timestamp or webhook-signature", msg_id)
            return
        if not ts.isdigit() or abs(time.time() - int(ts)) > TOLERANCE_S:
            self.refuse("webhook-timestamp %r is not within %d s of now" % (ts[:20], TOLERANCE_S),
                        msg_id)
            return
        if not signature_ok(self.server.keys, msg_id, ts, body, sig):
            self.refuse("bad signature", msg_id)
            return
        try:
            ev = json.loads(body)
        except ValueError:
            self.refuse("signed, but the body is not JSON", msg_id)
            return
        if not isinstance(ev, dict) or ev.get("id") != msg_id:
            self.refuse("signed, but webhook-id is not the body's event id", msg_id)
            return
        what = "%s %s %s %s" % (ev.get("id"), ev.get("type"), ev.get("channel"), ev.get("amount"))
        if ev.get("paid_amount") not in (None, ev.get("amount")):
            what += " (paid %s)" % ev.get("paid_amount")
        if self.server.fail_file and os.path.exists(self.server.fail_file):
            say("failing  %s (%s exists) -> 500" % (what, self.server.fail_file))
            self.answer(500, "told to fail")
            return
        say("verified %s" % what)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that hangs up is not news


def main():
    ap = argparse.ArgumentParser(description="payrelay's demo webhook receiver")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret-file", required=True,
                    help="the webhook's secret(s), as in its `secret =` line")
    ap.add_argument("--fail-file",
                    help="answer 500 to every delivery while this file exists")
    a = ap.parse_args()
    with open(a.secret_file, encoding="utf-8") as f:
        keys = hmac_keys(f.read())
    if not keys:
        sys.exit("demo_receiver: no secret in %s" % a.secret_file)
    srv = Server((a.host, a.port), Handler)
    srv.keys = keys
    srv.fail_file = a.fail_file
    # demo.sh stops it with SIGTERM: exit 0, as for Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
