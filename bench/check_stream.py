#!/usr/bin/env python3
"""After a wrk run against payrelayd: does payrelay:events hold exactly one entry
per distinct callback sent? (bench/ingest.sh)

The set of callbacks sent is rebuilt exactly from the BENCH_THREAD lines that
bench/callbacks.lua prints (thread t sent positions 1..min(issued, slice) of its
slice: the lines i with i % threads == t). The stream is read whole, keeping
each entry's `id` (event id) and `out_trade_no` fields.

When wrk stops, up to one request per connection is written but not answered:
payrelayd may or may not have recorded it (it never acked it, so either is
right). Those callbacks, and only those, may be missing from the stream: there
must be no more missing than unanswered requests, and each missing one is sent
again now (it must be acked "success") as a gateway would retry it. Then the
stream must hold every callback sent, each exactly once, and nothing else
(except the sanity callbacks of --known).

Prints one line `STREAM key=value ...` and, for each problem, `PROBLEM: ...`;
exits 1 when there is a problem.
"""

import argparse
import http.client
import re
import subprocess
import sys
from urllib.parse import unquote_plus

SCAN = """
local out, last = {}, "-"
while true do
  local r = redis.call("XRANGE", KEYS[1], last, "+", "COUNT", 10000)
  if #r == 0 then break end
  for _, e in ipairs(r) do
    local f, id, otn = e[2], "", ""
    for i = 1, #f, 2 do
      if f[i] == "id" then id = f[i + 1] elseif f[i] == ARGV[1] then otn = f[i + 1] end
    end
    out[#out + 1] = otn
    out[#out + 1] = id
  end
  last = "(" .. r[#r][1]
end
return out
"""

# The query parameter that names a callback, and the stream entry's field that
# holds it: out_trade_no for payrelayd's events; --field trade_no for the peer
# handlers of ../shared/peers, whose entries hold trade_no and money only.
OTN = re.compile(r"[?&]out_trade_no=([^&]*)")
FIELD = "out_trade_no"


def out_trade_no(path):
    m = OTN.search(path)
    return unquote_plus(m.group(1)) if m else None


def scan_stream(redis_port, key):
    """Returns [(out_trade_no, id)] for every entry of the stream."""
    res = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(redis_port), "--raw", "eval", SCAN, "1", key, FIELD],
        capture_output=True, text=True, check=True)
    lines = res.stdout.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 2:
        raise RuntimeError("unexpected answer from redis: " + res.stdout[:200])
    return list(zip(lines[0::2], lines[1::2]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", required=True, help="the paths file wrk sent")
    ap.add_argument("--wrk-output", required=True, help="wrk's output (BENCH_THREAD lines)")
    ap.add_argument("--known", help="file of sanity paths sent before the run (allowed in the stream)")
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--stream", default="payrelay:events")
    ap.add_argument("--port", type=int, required=True, help="payrelayd's public port (to re-send)")
    ap.add_argument("--field", default="out_trade_no",
                    help="query parameter and stream field that name a callback (default out_trade_no)")
    args = ap.parse_args()
    global OTN, FIELD
    if not re.fullmatch(r"[a-z_]+", args.field):
        ap.error("--field must be a parameter name")
    FIELD = args.field
    OTN = re.compile(r"[?&]" + args.field + r"=([^&]*)")

    threads = []
    with open(args.wrk_output, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("BENCH_THREAD "):
                kv = dict(x.split("=", 1) for x in line.split()[1:])
                threads.append({k: int(v) for k, v in kv.items()})
    if not threads:
        print("PROBLEM: no BENCH_THREAD lines in " + args.wrk_output)
        return 1
    threads.sort(key=lambda t: t["tid"])
    nthreads = len(threads)
    issued = sum(t["issued"] for t in threads)
    answered = sum(t["answered"] for t in threads)
    unanswered = issued - answered

    sent = {}  # out_trade_no -> path
    with open(args.paths, encoding="ascii") as f:
        i = 0
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            t = threads[i % nthreads]
            if i // nthreads < min(t["issued"], t["slice"]):
                sent[out_trade_no(line)] = line
            i += 1
    known = set()
    if args.known:
        with open(args.known, encoding="ascii") as f:
            known = {out_trade_no(l.strip()) for l in f if l.strip()}

    def examine():
        entries = scan_stream(args.redis_port, args.stream)
        seen, repeated, otns = set(), 0, set()
        for otn, eid in entries:
            k = eid or ("otn:" + otn)
            if k in seen:
                repeated += 1
            seen.add(k)
            otns.add(otn)
        missing = [o for o in sent if o not in otns]
        unexpected = [o for o in otns if o not in sent and o not in known]
        no_id = sum(1 for _, eid in entries if not eid)
        return entries, repeated, missing, unexpected, no_id

    problems = []
    entries, repeated, missing, unexpected, no_id = examine()
    missing_after_run = len(missing)
    resent = resent_bad = 0
    if missing_after_run > unanswered:
        problems.append(f"{missing_after_run} callbacks sent are not in the stream, but only "
                        f"{unanswered} requests were unanswered when wrk stopped: acked callbacks are missing "
                        f"(e.g. out_trade_no={sorted(missing)[0]})")
    elif missing:
        # Re-send the callbacks that were in flight when wrk stopped.
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
        for o in sorted(missing):
            try:
                conn.request("GET", sent[o])
                r = conn.getresponse()
                status, body = r.status, r.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                status, body = "error", repr(e).encode()
            resent += 1
            if status != 200 or body != b"success":
                resent_bad += 1
                problems.append(f"re-sent out_trade_no={o}: {status} {body[:60]!r}")
        conn.close()
        entries, repeated, missing, unexpected, no_id = examine()
        if missing:
            problems.append(f"{len(missing)} callbacks still not in the stream after being re-sent "
                            f"(e.g. out_trade_no={sorted(missing)[0]})")
    if repeated:
        problems.append(f"{repeated} stream entries repeat an earlier event id")
    if unexpected:
        problems.append(f"{len(unexpected)} stream entries are for callbacks never sent "
                        f"(e.g. out_trade_no={sorted(unexpected)[0]!r})")

    print(f"STREAM entries={len(entries)} distinct_sent={len(sent)} issued={issued} answered={answered} "
          f"unanswered={unanswered} missing_after_run={missing_after_run} resent={resent} "
          f"missing_final={len(missing)} repeated={repeated} unexpected={len(unexpected)} no_id={no_id} "
          f"known={len(known)}")
    for p in problems:
        print("PROBLEM: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
