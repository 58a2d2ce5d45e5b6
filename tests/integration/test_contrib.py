#!/usr/bin/env python3
"""The alert rules and the dashboard of contrib/ name only metrics payrelayd
exports. The names come from a real payrelayd's GET /metrics (after one
callback and one delivery, so that counters made on first use are there too)
and from the source (the helps[] table of src/core/metrics.c and every
metrics_family() call); the two must agree. Then every `expr` of
contrib/prometheus/payrelay.rules.yml, every input series of its promtool
tests, and every query of contrib/grafana/payrelay.json must name only those
(a histogram's _bucket/_sum/_count count as its name).

    PAYRELAYD=build/src/payrelayd PAYRELAY_VECTORS=../shared/vectors \\
    python3 tests/integration/test_contrib.py
"""

import glob
import json
import os
import re
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

TOP = os.path.normpath(os.path.join(h.HERE, "..", ".."))
RULES = os.path.join(TOP, "contrib", "prometheus", "payrelay.rules.yml")
RULE_TESTS = os.path.join(TOP, "contrib", "prometheus", "payrelay.rules.test.yml")
DASHBOARD = os.path.join(TOP, "contrib", "grafana", "payrelay.json")

# PromQL's functions, aggregations and keywords the files may use: a name
# followed by "(" that is not here fails (so a typo is no silent metric).
PROMQL_FUNCS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil",
    "changes", "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "count_values",
    "delta", "deriv", "exp", "floor", "group", "histogram_quantile", "holt_winters", "idelta",
    "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log2",
    "log10", "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc", "sqrt",
    "stddev", "stddev_over_time", "stdvar", "stdvar_over_time", "sum", "sum_over_time",
    "time", "timestamp", "topk", "vector",
}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}


def promql_names(expr):
    """The metric names an expression reads; raises ValueError on a call of
    something that is no PromQL function."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)        # strings (label values)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^}]*\}", " ", e)                      # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                     # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)                    # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if word in PROMQL_WORDS:
            continue
        if call:
            if word not in PROMQL_FUNCS:
                raise ValueError("%r calls %r, not a PromQL function" % (expr, word))
            continue
        names.add(word)
    return names


def yaml_values(path, key):
    """The values of `key:` in a YAML file written as the contrib files are:
    inline, or a block scalar (>-, |) on the lines indented below."""
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)(?:- )?%s:\s*(.*)$" % re.escape(key), line)
        i += 1
        if not m:
            continue
        rest = m.group(2).strip()
        if rest in (">-", ">", "|", "|-"):
            indent = len(m.group(1))
            block = []
            while i < len(lines) and (not lines[i].strip() or
                                      len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            out.append(" ".join(block))
        else:
            if rest[:1] in ("'", '"') and rest[-1:] == rest[:1]:
                rest = rest[1:-1]
            out.append(rest)
    return out


def source_names():
    """{name: type} that the source declares."""
    out = {}
    with open(os.path.join(TOP, "src", "core", "metrics.c"), encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("helps[] = {"):]
    table = table[:table.index("};")]
    for name in re.findall(r'\{\s*"(payrelay_\w+)"', table):
        out[name] = "counter"
    for path in glob.glob(os.path.join(TOP, "src", "**", "*.c"), recursive=True):
        with open(path, encoding="utf-8") as f:
            for name, typ in re.findall(r'metrics_family\(\s*[^,]+,\s*"(payrelay_\w+)",\s*'
                                        r'"(\w+)"', f.read()):
                out[name] = typ
    return out


def exported(names, name):
    """Whether `name` is an exported name, or a histogram's series."""
    if names.get(name) is not None:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and names.get(name[:-len(suffix)]) == "histogram":
            return True
    return False


class ContribTest(h.DaemonClassCase):
    workdir_prefix = "payrelay-contrib-"

    @classmethod
    def config_for(cls, setup):
        cls.rcv = h.Receiver(default="ok")
        cls.addClassCleanup(cls.rcv.stop)
        return setup.config_text().replace("url = http://127.0.0.1:9/x",
                                           "url = " + cls.rcv.url("/orders")) \
            .replace("schedule = 3600 3600", "schedule = 0")

    @classmethod
    def live_names(cls):
        """{name: type} of a running daemon's /metrics, after one callback
        and its delivery."""
        if hasattr(cls, "_live"):
            return cls._live
        p = {k: v for k, v in h.load_vectors("epay.json")["vectors"][0]["params"].items()
             if k != "sign"}
        p["trade_no"] = "CONTRIB-1"
        p["sign"] = h.epay_md5_sign(p, cls.setup.epay_key)
        r = h.http(cls.setup.port, "GET", "/notify/shop-epay?" + h.form_encode(p))
        assert (r.status, r.body) == (200, b"success"), r
        assert cls.rcv.wait_for(lambda rs: any(x.status == 200 for x in rs), 10), \
            "the delivery did not arrive"
        text = ""
        deadline = time.monotonic() + 10
        while "payrelay_deliveries_total{" not in text and time.monotonic() < deadline:
            text = h.http(cls.setup.admin_port, "GET", "/metrics",
                          headers={"Authorization": "Bearer " + h.ADMIN_TOKEN}).body.decode()
            time.sleep(0.05)
        out = {}
        for line in text.splitlines():
            m = re.match(r"^# TYPE (\S+) (\S+)$", line)
            if m:
                out[m.group(1)] = m.group(2)
            elif line and not line.startswith("#"):
                name = re.match(r"^([A-Za-z_:][\w:]*)", line).group(1)
                # every sample belongs to a declared family
                assert exported(out, name), "sample %r without # TYPE" % line
        cls._live = out
        return out

    def check_exprs(self, what, exprs):
        names = self.live_names()
        self.assertTrue(exprs, "no expressions found in %s" % what)
        seen = set()
        for expr in exprs:
            used = promql_names(expr)
            self.assertTrue(used, "%s: %r reads no metric" % (what, expr))
            for n in used:
                self.assertTrue(exported(names, n),
                                "%s: %r reads %s, which payrelayd does not export"
                                % (what, expr, n))
            seen |= used
        return seen

    def test_01_source_and_daemon_agree(self):
        live, src = self.live_names(), source_names()
        self.assertEqual(src, live, "the source's metric families and /metrics differ")
        # what the callback and the delivery made, and the Redis-side ones
        for n in ("payrelay_callbacks_total", "payrelay_deliveries_total",
                  "payrelay_ack_latency_seconds", "payrelay_deliveries_pending",
                  "payrelay_redis_used_memory_bytes", "payrelay_repeat_payments_total"):
            self.assertIn(n, live)
        self.assertEqual(live["payrelay_ack_latency_seconds"], "histogram")

    def test_02_rules(self):
        exprs = yaml_values(RULES, "expr")
        alerts = yaml_values(RULES, "alert")
        self.assertEqual(len(exprs), len(alerts), "one expr per alert")
        seen = self.check_exprs("payrelay.rules.yml", exprs)
        # the alerts the runbook promises
        for n in ("payrelay_callbacks_total", "payrelay_redis_up", "payrelay_deliveries_dead",
                  "payrelay_deliveries_pending", "payrelay_webhook_breaker_open",
                  "payrelay_polls_total", "payrelay_repeat_payments_total",
                  "payrelay_amount_mismatches_total", "payrelay_confirmations_total",
                  "payrelay_redis_used_memory_bytes", "payrelay_redis_maxmemory_bytes"):
            self.assertIn(n, seen)
        # every alert has a for: (or fires at once on purpose), a severity,
        # a summary, a description and a runbook in docs/operations.md
        with open(RULES, encoding="utf-8") as f:
            text = f.read()
        blocks = re.split(r"(?m)^\s*- alert: ", text)[1:]
        with open(os.path.join(TOP, "docs", "operations.md"), encoding="utf-8") as f:
            ops = f.read()
        anchors = {re.sub(r"[^a-z0-9 -]", "", t.strip().lower()).replace(" ", "-")
                   for t in re.findall(r"(?m)^#+ (.+)$", ops)}
        for b in blocks:
            name = b.split()[0]
            self.assertRegex(b, r"severity: (page|ticket)\b", name)
            for k in ("summary", "description", "runbook"):
                self.assertRegex(b, r"\b%s: " % k, name)
            if name not in ("PayrelayRepeatPayment", "PayrelayAmountMismatch",
                            "PayrelayRefundOutcomeUnknown"):
                self.assertRegex(b, r"\bfor: \d+m\b", name)
            anchor = re.search(r'runbook: "docs/operations\.md#([^"]+)"', b).group(1)
            self.assertIn(anchor, anchors, "%s: no section #%s in docs/operations.md"
                          % (name, anchor))

    def test_03_rule_tests(self):
        series = yaml_values(RULE_TESTS, "series")
        self.check_exprs("payrelay.rules.test.yml", series)
        # every alert is tested
        tested = set(yaml_values(RULE_TESTS, "alertname"))
        self.assertEqual(tested, set(yaml_values(RULES, "alert")))

    def test_04_dashboard(self):
        with open(DASHBOARD, encoding="utf-8") as f:
            dash = json.load(f)
        exprs, panels = [], 0
        for p in dash["panels"]:
            if p["type"] == "row":
                continue
            panels += 1
            self.assertTrue(p.get("targets"), p["title"])
            self.assertIn(p["type"], ("timeseries", "stat", "table"),
                          "%s: not a built-in panel type" % p["title"])
            exprs += [t["expr"] for t in p["targets"]]
        self.assertGreaterEqual(panels, 10)
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                m = re.match(r"^label_values\((\w+),\s*\w+\)$", v["query"]["query"])
                self.assertTrue(m, v)
                exprs.append(m.group(1))
        seen = self.check_exprs("payrelay.json", exprs)
        for n in ("payrelay_callbacks_total", "payrelay_ack_latency_seconds_bucket",
                  "payrelay_deliveries_total", "payrelay_deliveries_pending",
                  "payrelay_deliveries_dead", "payrelay_polls_total",
                  "payrelay_confirmations_total", "payrelay_repeat_payments_total",
                  "payrelay_http_connections"):
            self.assertIn(n, seen)

    def test_05_the_check_itself(self):
        names = self.live_names()
        self.assertEqual(promql_names('sum by (le) (rate(payrelay_ack_latency_seconds_bucket'
                                      '{instance=~"$instance"}[$__rate_interval]))'),
                         {"payrelay_ack_latency_seconds_bucket"})
        self.assertTrue(exported(names, "payrelay_ack_latency_seconds_count"))
        self.assertFalse(exported(names, "payrelay_callbacks_total_count"))
        self.assertFalse(exported(names, "payrelay_nope_total"))
        self.assertFalse(exported(names, "up"))
        self.assertEqual(promql_names("a / b > 0.5 and on (x) c offset 5m"), {"a", "b", "c"})
        with self.assertRaises(ValueError):
            promql_names("rte(payrelay_callbacks_total[5m])")


if __name__ == "__main__":
    sys.exit(h.run_tests())
