#!/usr/bin/env python3
"""Pre-sign distinct epay (易支付) notify callbacks for the ingest benchmark.

Writes one request path per line, e.g.

    /notify/bench-epay?pid=1001&trade_no=...&out_trade_no=...&type=alipay&name=VIP%E4%BC%9A%E5%91%98&money=1.00&trade_status=TRADE_SUCCESS&sign=...&sign_type=MD5

Every line has its own trade_no and out_trade_no, so every line is one distinct
callback: payrelayd must record exactly one stream entry for each.

Signing follows SPEC §2.1 (epay, sign_type=MD5): every parameter except `sign`,
`sign_type` and those whose value is the empty string, sorted by name in byte
order, joined `k=v&...` over the decoded values, the merchant key appended,
lowercase hex md5. Before writing anything the signer is checked against the
vector embedded below and, when given (--vectors), against every vector of
shared/vectors/epay.json; a mismatch exits 1.

Usage:
    gen_requests.py --out FILE [--count N] [--channel NAME] [--pid ID]
                    [--key KEY] [--vectors epay.json] [--prefix DIGITS]
    gen_requests.py --check-only --vectors epay.json
"""

import argparse
import hashlib
import json
import sys
from urllib.parse import quote

# The first vector of shared/vectors/epay.json, so the signer is checked even
# when the shared directory is not beside the repository.
BUILTIN_VECTOR = {
    "key": "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i",
    "params": {
        "pid": "1001",
        "trade_no": "20160806151343349021",
        "out_trade_no": "20160806151343349",
        "type": "alipay",
        "name": "VIP会员",
        "money": "1.00",
        "trade_status": "TRADE_SUCCESS",
        "sign": "3ec3bda0f65fd24c5320e7ab770b2547",
        "sign_type": "MD5",
    },
    "string_to_sign": "money=1.00&name=VIP会员&out_trade_no=20160806151343349"
    "&pid=1001&trade_no=20160806151343349021&trade_status=TRADE_SUCCESS"
    "&type=alipay89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i",
    "sign": "3ec3bda0f65fd24c5320e7ab770b2547",
}

# The bench channel's merchant key (a throw-away secret for 127.0.0.1 only).
DEFAULT_KEY = "bench0ingest0key0not0a0real0secret00"


def string_to_sign(params, key):
    """The epay MD5 string: bytes, sorted by name in byte order."""
    items = []
    for name, value in params.items():
        if name in ("sign", "sign_type") or value == "":
            continue
        items.append((name.encode("utf-8"), value.encode("utf-8")))
    items.sort(key=lambda kv: kv[0])
    return b"&".join(k + b"=" + v for k, v in items) + key.encode("utf-8")


def epay_sign(params, key):
    return hashlib.md5(string_to_sign(params, key)).hexdigest()


def check_vector(vec, label):
    """Returns a list of problems (empty when the vector is reproduced)."""
    problems = []
    s = string_to_sign(vec["params"], vec["key"])
    want_s = vec.get("string_to_sign")
    if want_s is not None and s != want_s.encode("utf-8"):
        problems.append(f"{label}: string_to_sign differs:\n  got  {s!r}\n  want {want_s.encode('utf-8')!r}")
    got = epay_sign(vec["params"], vec["key"])
    if got != vec["sign"]:
        problems.append(f"{label}: sign {got} != {vec['sign']}")
    return problems


def check_signer(vectors_path):
    problems = check_vector(BUILTIN_VECTOR, "builtin vector")
    checked = 1
    if vectors_path:
        with open(vectors_path, encoding="utf-8") as f:
            doc = json.load(f)
        if doc.get("family") != "epay":
            problems.append(f"{vectors_path}: family is {doc.get('family')!r}, not epay")
        for i, vec in enumerate(doc.get("vectors", [])):
            # Vectors whose params carry a sign_type other than MD5 are not ours.
            if vec["params"].get("sign_type", "MD5") != "MD5":
                continue
            problems += check_vector(vec, f"{vectors_path} vector {i} ({vec.get('description', '')})")
            checked += 1
    return checked, problems


def encode(value):
    # RFC 3986 percent-encoding of the UTF-8 bytes; PHP's $_GET decoding
    # (and payrelayd's, SPEC §2) turns it back into the same bytes.
    return quote(value, safe="-_.~")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="file of request paths to write")
    ap.add_argument("--count", type=int, default=200000, help="distinct callbacks (default 200000)")
    ap.add_argument("--channel", default="bench-epay")
    ap.add_argument("--pid", default="1001", help="merchant id (the channel's merchant_id)")
    ap.add_argument("--key", default=DEFAULT_KEY, help="merchant key (the channel's key)")
    ap.add_argument("--vectors", help="shared/vectors/epay.json to check the signer against")
    ap.add_argument("--prefix", default="2026112200",
                    help="digits that start every trade_no (default 2026112200)")
    ap.add_argument("--extra", type=int, default=0,
                    help="also write this many further distinct callbacks to OUT.extra "
                         "(for sanity requests outside the benchmark set)")
    ap.add_argument("--check-only", action="store_true", help="only check the signer")
    args = ap.parse_args()

    checked, problems = check_signer(args.vectors)
    if problems:
        for p in problems:
            print("gen_requests: " + p, file=sys.stderr)
        print("gen_requests: the signer does not reproduce the epay vectors", file=sys.stderr)
        return 1
    print(f"gen_requests: signer reproduces {checked} epay vector(s)", file=sys.stderr)
    if args.check_only:
        return 0
    if not args.out:
        ap.error("--out is required")
    if args.count < 1:
        ap.error("--count must be positive")
    if not args.prefix.isdigit():
        ap.error("--prefix must be digits")

    base = "/notify/" + args.channel + "?"
    order = ("pid", "trade_no", "out_trade_no", "type", "name", "money", "trade_status")

    encoded = {}

    def enc(value):
        # Most values repeat on every line: encode each once.
        e = encoded.get(value)
        if e is None:
            e = encoded[value] = encode(value)
        return e

    def line(i):
        params = {
            "pid": args.pid,
            "trade_no": f"{args.prefix}{i:010d}",
            "out_trade_no": f"BENCH{i:010d}",
            "type": "alipay" if i % 2 == 0 else "wxpay",
            "name": "VIP会员",
            "money": "1.00",
            "trade_status": "TRADE_SUCCESS",
        }
        sign = epay_sign(params, args.key)
        q = "&".join(f"{k}={enc(params[k])}" for k in order)
        return f"{base}{q}&sign={sign}&sign_type=MD5\n"

    with open(args.out, "w", encoding="ascii", newline="\n") as f:
        for i in range(args.count):
            f.write(line(i))
    if args.extra > 0:
        with open(args.out + ".extra", "w", encoding="ascii", newline="\n") as f:
            for i in range(args.count, args.count + args.extra):
                f.write(line(i))
    print(f"gen_requests: wrote {args.count} distinct signed callbacks to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
