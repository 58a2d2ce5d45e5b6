#!/usr/bin/env python3
"""Signs a demo gateway callback, as the channel's gateway would (SPEC 2.1-2.3),
with the channel's key from payrelayd's config file, and prints the `curl`
command that sends it to payrelayd (Python standard library only; nothing is
sent).

    demo_callback.py [-c CONF] CHANNEL OUT_TRADE_NO AMOUNT

prints

    curl -sS -w '\\n' 'http://127.0.0.1:8787/notify/shop-epay?pid=1001&...&sign=...'
    # event evt_<32 hex>, acked "success"

epay callbacks are a GET (as epay platforms send them), gatepay and payindex
ones a form POST. The gateway trade id is derived from the channel and the
order, so the same arguments give the same payment again (a duplicate).
--script prints three bare lines instead: the curl command, the event id and
the ack body (scripts/demo.sh --check reads them).
"""

import argparse
import configparser
import hashlib
import os
import re
import sys
import time
import urllib.parse

AMOUNT_RE = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]{1,4})?$")
ACK = {"epay": "success", "gatepay": "success", "payindex": "OK"}


def md5hex(s):
    return hashlib.md5(s.encode("utf-8")).hexdigest()


def sorted_string(params, exclude, skip):
    items = sorted((k, v) for k, v in params.items() if k not in exclude and not skip(v))
    return "&".join("%s=%s" % kv for kv in items)


def trade_id(channel, order):
    """A gateway-like numeric trade id, fixed for (channel, order)."""
    return "2026" + "%016d" % (int(md5hex(channel + "\0" + order), 16) % 10**16)


def epay(merchant, key, order, amount, trade):
    p = {"pid": merchant, "trade_no": trade, "out_trade_no": order, "type": "alipay",
         "name": "VIP会员", "money": amount, "trade_status": "TRADE_SUCCESS"}
    p["sign"] = md5hex(sorted_string(p, ("sign", "sign_type"), lambda v: v == "") + key)
    p["sign_type"] = "MD5"
    return p


def gatepay(merchant, key, order, amount, trade):
    p = {"appkey": merchant, "order_id": trade, "out_order_id": order, "price": amount,
         "realprice": amount, "type": "wechat", "paytime": str(int(time.time())),
         "extend": "uid=42"}
    inner = merchant + "".join(p[k] for k in ("order_id", "out_order_id", "price",
                                               "realprice", "type", "paytime", "extend"))
    p["sign"] = md5hex(md5hex(inner) + key)
    return p


def payindex(merchant, key, order, amount, trade):
    p = {"memberid": merchant, "orderid": order, "amount": amount, "true_amount": amount,
         "transaction_id": trade, "datetime": time.strftime("%Y%m%d%H%M%S"),
         "returncode": "00", "attach": "uid=42"}
    s = sorted_string(p, ("sign", "attach"), lambda v: v in ("", "0"))
    p["sign"] = md5hex(s + "&key=" + key).upper()
    return p


def main():
    ap = argparse.ArgumentParser(description="sign a demo gateway callback")
    ap.add_argument("-c", "--config", default=".demo/payrelayd.conf")
    ap.add_argument("--script", action="store_true",
                    help="print the curl command, the event id and the ack body, one a line")
    ap.add_argument("channel")
    ap.add_argument("out_trade_no")
    ap.add_argument("amount")
    a = ap.parse_args()
    if not AMOUNT_RE.match(a.amount):
        sys.exit("demo_callback: AMOUNT must be a decimal such as 1.00, not %r" % a.amount)
    if not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", a.out_trade_no):
        sys.exit("demo_callback: OUT_TRADE_NO: 1 to 64 of A-Z a-z 0-9 _ . -")

    cp = configparser.ConfigParser(inline_comment_prefixes=(";",), comment_prefixes=(";", "#"),
                                   interpolation=None, strict=False)
    try:
        with open(a.config, encoding="utf-8") as f:
            cp.read_file(f)
    except OSError as e:
        sys.exit("demo_callback: %s" % e)
    sec = "channel:" + a.channel
    if not cp.has_section(sec):
        sys.exit("demo_callback: no [%s] in %s" % (sec, a.config))
    ch = cp[sec]
    family = ch.get("family", "")
    if family not in ACK:
        sys.exit("demo_callback: [%s] family %r is not epay, gatepay or payindex" % (sec, family))
    key = ch.get("key")
    if key is None and ch.get("key_file"):
        path = os.path.join(os.path.dirname(os.path.abspath(a.config)), ch["key_file"])
        with open(path, encoding="utf-8") as f:
            key = f.read().rstrip(" \t\r\n")
    if not key:
        sys.exit("demo_callback: [%s] has no key" % sec)

    host, _, port = cp.get("daemon", "listen", fallback="127.0.0.1:8787").rpartition(":")
    if host in ("", "*", "0.0.0.0", "localhost"):
        host = "127.0.0.1"
    url = "http://%s:%s/notify/%s" % (host, port, a.channel)
    trade = trade_id(a.channel, a.out_trade_no)
    params = globals()[family](ch["merchant_id"], key, a.out_trade_no, a.amount, trade)
    # Percent-encoding leaves no ' in the URL or the body: single quotes hold.
    form = urllib.parse.urlencode(params)
    if family == "epay":
        cmd = "curl -sS -w '\\n' '%s?%s'" % (url, form)
    else:
        cmd = "curl -sS -w '\\n' --data '%s' %s" % (form, url)
    evt = "evt_" + md5hex(a.channel + "\0" + trade + "\0paid")
    if a.script:
        print(cmd, evt, ACK[family], sep="\n")
    else:
        print(cmd)
        print('# event %s, acked "%s"' % (evt, ACK[family]))


if __name__ == "__main__":
    main()
