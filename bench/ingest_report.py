#!/usr/bin/env python3
"""The Markdown report of bench/ingest.sh: medians over the rounds, ratios,
the issue's targets, every round's raw figures.

    ingest_report.py --raw RAW --meta META > ingest-YYYYMMDD-HHMM.md

RAW holds `ROUND key=value ...` lines (one per target and round, from
bench/ingest_run.py plus the checks) and `SYSCALLS ...` lines (the syscall
pass); META holds `key=value` lines (date, versions, params, note=, fail=).
"""

import argparse
import statistics
import sys

LABELS = {
    "nginx": "nginx, static `success` (ceiling)",
    "node": "Node, fastify + ioredis",
    "php": "PHP-FPM + phpredis",
    "payrelayd": "**payrelayd, shipped defaults + 1 webhook**",
    "payrelayd-nohook": "**payrelayd, shipped defaults, no webhook**",
    "payrelayd-lean": "payrelayd lean (warn, no webhook)",
}
SERVER = {
    "nginx": "nginx master + workers",
    "node": "the node process",
    "php": "nginx master + workers and php-fpm master + children",
    "payrelayd": "payrelayd",
    "payrelayd-nohook": "payrelayd",
    "payrelayd-lean": "payrelayd",
}
OTHER = {
    "payrelayd": "the log reader and the webhook receiver (nginx `return 204`)",
    "payrelayd-nohook": "the log reader",
    "payrelayd-lean": "the log reader (nothing to read at warn)",
}
# The targets (issue 16).
RATIO_NOHOOK_NODE = 1.5
RATIO_HOOK_NODE = 1.0
RATIO_HOOK_PHP = 4.0
DRAIN_MAX_S = 3.0
P99_MAX_MS = 5.0
INFO_CPU_MAX = 1.2


def parse_kv(line):
    out = {}
    for tok in line.split()[1:]:
        k, sep, v = tok.partition("=")
        if sep:
            out[k] = v
    return out


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def f0(v):
    return "—" if v is None else f"{v:,.0f}".replace(",", " ")


def f1(v):
    return "—" if v is None else f"{v:.1f}"


def f2(v):
    return "—" if v is None else f"{v:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--meta", required=True)
    args = ap.parse_args()

    meta, notes, fails = {}, [], []
    with open(args.meta, encoding="utf-8") as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            if k == "note":
                notes.append(v)
            elif k == "fail":
                fails.append(v)
            elif k:
                meta[k] = v
    rounds, sysc, fsync = {}, {}, {}
    raw_lines = []
    with open(args.raw, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            raw_lines.append(line)
            kv = parse_kv(line)
            if line.startswith("ROUND ") and kv.get("mode") == "measure":
                rounds.setdefault(kv["target"], []).append(kv)
            elif line.startswith("SYSCALLS "):
                sysc[kv["target"]] = kv
            elif line.startswith("FSYNC "):
                fsync[kv["target"]] = kv

    targets = meta.get("targets", "").split()
    targets = [t for t in targets if t in rounds]

    def per_cb(r, key):
        n = num(r.get("answered"))
        v = num(r.get(key))
        if not n or v is None:
            return None
        return v * 1e6 / n

    summary = {}
    for t in targets:
        rs = rounds[t]
        s = {
            "n": len(rs),
            "rps": med(num(r.get("rps")) for r in rs),
            "p50": med(num(r.get("p50_ms")) for r in rs),
            "p99": med(num(r.get("p99_ms")) for r in rs),
            "srv": med(per_cb(r, "cpu_server") for r in rs),
            "redis": med(per_cb(r, "cpu_redis") for r in rs) if t != "nginx" else None,
            "other": med(per_cb(r, "cpu_other") for r in rs) if t in OTHER else None,
            "drain": med(num(r.get("drain_s")) for r in rs) if t == "payrelayd" else None,
            "checks": "ok" if all(r.get("checks") == "ok" for r in rs) else "**FAIL**",
            "rewrites": med(num(r.get("aof_rewrites")) for r in rs) if t != "nginx" else None,
        }
        sc = sysc.get(t)
        if sc and num(sc.get("answered")):
            s["sys"] = num(sc.get("total")) / num(sc.get("answered"))
            s["sys_top"] = []
            for item in sc.get("top", "").split(","):
                name, _, c = item.partition(":")
                if c.isdigit():
                    s["sys_top"].append((name, int(c) / num(sc.get("answered"))))
        else:
            s["sys"] = None
        summary[t] = s

    def ratio(t, base):
        a = summary.get(t, {}).get("rps")
        b = summary.get(base, {}).get("rps")
        return a / b if a and b else None

    out = []
    w = out.append
    w(f"# payrelay ingest benchmark, {meta.get('date', '?')}")
    w("")
    w(f"`bash bench/ingest.sh` with {meta.get('params', '?')}; {meta.get('elapsed_s', '?')} s in all.")
    w(f"Commit {meta.get('commit', '?')}, build {meta.get('build', '?')}.")
    w("")
    w("Medians over the rounds. Load: `wrk` with one distinct pre-signed epay GET callback per request "
      "over keep-alive connections; Redis `appendonly yes`, `appendfsync always`, fresh per target and round. "
      "CPU µs per callback: CPU time (utime + stime) of the processes over the load, and for the "
      "webhook target until every delivery is done, divided by the callbacks answered.")
    w("")
    w("| target | req/s | p50 ms | p99 ms | server CPU µs/cb | Redis CPU µs/cb | helpers CPU µs/cb | "
      "syscalls/cb | × Node | × PHP | deliveries done after (s) | checks |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for t in targets:
        s = summary[t]
        w(f"| {LABELS[t]} | {f0(s['rps'])} | {f2(s['p50'])} | {f2(s['p99'])} | {f1(s['srv'])} | "
          f"{f1(s['redis'])} | {f1(s['other'])} | {f1(s['sys'])} | {f2(ratio(t, 'node'))} | "
          f"{f2(ratio(t, 'php'))} | {f2(s['drain'])} | {s['checks']} ({s['n']} round{'s' if s['n'] != 1 else ''}) |")
    w("")
    w("Server = " + "; ".join(f"{t}: {SERVER[t]}" for t in targets) + ". "
      "Helpers = " + ("; ".join(f"{t}: {OTHER[t]}" for t in targets if t in OTHER) or "none") + ". "
      f"Syscalls per callback: payrelayd alone, counted with {meta.get('params', '').split('SYSCALL_TOOL=')[-1].split()[0] if 'SYSCALL_TOOL=' in meta.get('params', '') else '?'} "
      "in a separate short pass (over the load and, with the webhook, until every delivery is done).")
    w("")

    # The targets.
    hook, nohook, lean = summary.get("payrelayd"), summary.get("payrelayd-nohook"), summary.get("payrelayd-lean")
    rows = []

    def verdict(ok):
        return "—" if ok is None else ("PASS" if ok else "**MISS**")

    def add(what, val, goal, ok):
        rows.append(f"| {what} | {val} | {goal} | {verdict(ok)} |")

    r = ratio("payrelayd-nohook", "node")
    if r is not None:
        add("shipped defaults, no webhook: req/s ÷ Node", f2(r), f"≥ {RATIO_NOHOOK_NODE}", r >= RATIO_NOHOOK_NODE)
    r = ratio("payrelayd", "node")
    if r is not None:
        add("shipped defaults + 1 webhook: req/s ÷ Node", f2(r), f"≥ {RATIO_HOOK_NODE}", r >= RATIO_HOOK_NODE)
    r = ratio("payrelayd", "php")
    if r is not None:
        add("shipped defaults + 1 webhook: req/s ÷ PHP-FPM", f2(r), f"≥ {RATIO_HOOK_PHP}", r >= RATIO_HOOK_PHP)
    if hook and hook["drain"] is not None:
        add(f"shipped defaults + 1 webhook: deliveries done after the end of the {meta.get('params', '').split('DURATION=')[-1].split()[0]} s load",
            f"{f2(hook['drain'])} s", f"≤ {DRAIN_MAX_S} s", hook["drain"] <= DRAIN_MAX_S)
    for name, s in ((", no webhook", nohook), (" + 1 webhook", hook)):
        if s and s["p99"] is not None:
            add(f"shipped defaults{name}: p99", f"{f2(s['p99'])} ms", f"≤ {P99_MAX_MS} ms", s["p99"] <= P99_MAX_MS)
    if nohook and lean and nohook["srv"] and lean["srv"]:
        q = nohook["srv"] / lean["srv"]
        add("payrelayd CPU per callback, info ÷ warn (no webhook)", f"{f2(q)} ({f1(nohook['srv'])} / {f1(lean['srv'])} µs)",
            f"≤ {INFO_CPU_MAX}", q <= INFO_CPU_MAX)
    add("every answer 200 `success`, every callback recorded once, every event delivered once",
        "all rounds ok" if not fails else f"{len(fails)} failure(s)", "all", not fails)
    w("| issue 16 target | measured | goal | |")
    w("|---|---:|---:|---|")
    out.extend(rows)
    w("")

    tops = [(t, summary[t]) for t in targets if summary[t].get("sys_top")]
    if tops:
        w("System calls per callback (the syscall pass), most frequent first:")
        w("")
        for t, s in tops:
            w(f"- {LABELS[t]}: " + ", ".join(f"`{n}` {v:.2f}" for n, v in s["sys_top"]))
        w("")

    rw = [(t, summary[t]["rewrites"]) for t in targets if summary[t].get("rewrites") is not None]
    if rw:
        w("Redis's AOF rewrites during a round (median; Redis's defaults rewrite when the AOF has "
          "doubled since the last, from 64 MB: each forks and writes the whole data set to disk "
          "beside the load, so more bytes per callback means more of them): "
          + ", ".join(f"{LABELS[t]} {v:.0f}" for t, v in rw) + ".")
        w("")

    fs_rows = []
    for t in targets:
        f = fsync.get(t)
        win, n, cb = (num(f.get("window_s")), num(f.get("calls")), num(f.get("answered"))) if f else (None,) * 3
        if not f or not win or not n or not cb:
            continue
        fs_pct = 100.0 * num(f.get("total_ms")) / 1000.0 / win
        cpu_pct = 100.0 * (num(f.get("cpu_redis")) or 0.0) / win
        fs_rows.append(f"| {LABELS[t]} | {cb / n:.1f} | {num(f.get('total_ms')) / n:.2f} | "
                       f"{cpu_pct:.0f} % | {fs_pct:.0f} % | {cpu_pct + fs_pct:.0f} % |")
    if fs_rows:
        w("Redis's one thread in the syscall pass (`perf trace -s -e fdatasync` on Redis beside its "
          "CPU time, over the same window): with `appendfsync always` it syncs once per loop turn "
          "that wrote, and waits there; CPU plus that wait is how busy the thread that every "
          "record step goes through is.")
        w("")
        w("| target | callbacks per fdatasync | ms per fdatasync | Redis CPU (% of a core) | "
          "in fdatasync | busy |")
        w("|---|---:|---:|---:|---:|---:|")
        out.extend(fs_rows)
        w("")

    if fails:
        w("## Checks that failed")
        w("")
        for f in fails:
            w(f"- {f}")
        w("")
    if notes:
        w("## Notes")
        w("")
        for n in notes:
            w(f"- {n}")
        w("")

    w("## Every round")
    w("")
    w("| target | round | req/s | p50 ms | p99 ms | answered | load s | window s | server CPU s | Redis CPU s | "
      "helpers CPU s | wrk CPU s | machine busy % | stream | deliveries | log lines | checks |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for t in targets:
        for r in rounds[t]:
            w(f"| {t} | {r.get('round')} | {f0(num(r.get('rps')))} | {f2(num(r.get('p50_ms')))} | "
              f"{f2(num(r.get('p99_ms')))} | {r.get('answered', '?')} | {r.get('load_s', '?')} | "
              f"{r.get('window_s', '?')} | {r.get('cpu_server', '—')} | {r.get('cpu_redis', '—')} | "
              f"{r.get('cpu_other', '—')} | {r.get('cpu_wrk_load', '—')} | {r.get('machine_busy_window_pct', '?')} | "
              f"{r.get('stream_len', '—')} | {r.get('deliveries', '—')} | {r.get('log_lines', '—')} | {r.get('checks')} |")
    w("")
    w("CPU seconds over the window (the load, and for the webhook target until every delivery was "
      "done); wrk's over the load only; machine busy: all CPUs over the window, in % of one core "
      "(its excess over the processes listed is softirq, kernel threads and anything else running). "
      "Stream, deliveries, log lines: whole round (sanity callback, warm-up, load and re-sent in-flight "
      "callbacks).")
    w("")
    w("## Machine and versions")
    w("")
    for k in ("machine", "disk", "wrk", "nginx", "redis", "node", "php", "payrelayd"):
        if k in meta:
            w(f"- {k}: {meta[k]}")
    w("")
    w("## Raw")
    w("")
    w("```")
    out.extend(raw_lines)
    w("```")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
