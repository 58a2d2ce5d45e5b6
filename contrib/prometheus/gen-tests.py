#!/usr/bin/env python3
"""Writes payrelay.rules.test.yml, the promtool unit tests of
payrelay.rules.yml: for each alert, input series and the times it must fire
(with which labels) and stay quiet. promtool compares the annotations too, so
they are rendered here from the rules file ({{ $labels.X }}, {{ $value }},
{{ $value | humanizePercentage }}: all the rules use).

Run it after changing the rules or the cases (needs PyYAML, python3-yaml;
the tests themselves need only promtool):

    python3 contrib/prometheus/gen-tests.py
"""
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = "payrelay.rules.yml"

# alert: (interval, [series, values], [(eval time, [(labels, value)])])
# An empty list at a time: the alert must be quiet then.
CASES = {
    "PayrelayDown": ("1m", [
        ('payrelay_build_info{version="1.0"}', "1x5"),
    ], [("4m", []), ("16m", [({}, 1)])]),
    "PayrelayRedisDown": ("1m", [
        ('payrelay_redis_up{instance="a"}', "1 1 0x10"),
        ('payrelay_redis_up{instance="b"}', "1x12"),
    ], [("1m", []), ("2m", []), ("5m", [({"instance": "a"}, 0)])]),
    "PayrelayCallbacksUnavailable": ("1m", [
        # 503s from 6m on; one 503 at 1m (a blip: the gateway retries)
        ('payrelay_callbacks_total{instance="a",channel="shop",result="unavailable"}',
         "0x5 1+1x20"),
        ('payrelay_callbacks_total{instance="a",channel="blip",result="unavailable"}',
         "0 1x25"),
        ('payrelay_callbacks_total{instance="a",channel="ok",result="recorded"}', "0+5x25"),
        ('payrelay_callbacks_total{instance="a",channel="ok",result="unavailable"}', "0x25"),
    ], [("6m", []), ("15m", [({"instance": "a", "channel": "shop"}, None)])]),
    "PayrelayDeadDeliveries": ("1m", [
        ('payrelay_deliveries_dead{instance="a",webhook="orders"}', "0 0 2x10"),
        ('payrelay_deliveries_dead{instance="b",webhook="orders"}', "0 0 2x10"),
        ('payrelay_deliveries_dead{instance="a",webhook="other"}', "0x12"),
    ], [("1m", []), ("5m", [({"webhook": "orders"}, 2)])]),
    "PayrelayDeliveriesPendingGrowing": ("1m", [
        ('payrelay_deliveries_pending{instance="a",webhook="orders"}', "0+2x60"),
        ('payrelay_deliveries_pending{instance="a",webhook="steady"}', "50x60"),
        ('payrelay_deliveries_pending{instance="a",webhook="small"}', "0+0.1x60"),
    ], [("20m", []), ("50m", [({"webhook": "orders"}, 100)])]),
    "PayrelayWebhookBreakerOpen": ("1m", [
        ('payrelay_webhook_breaker_open{instance="a",webhook="orders"}', "0 1x20"),
        ('payrelay_webhook_breaker_open{instance="a",webhook="other"}', "1 0x20"),
    ], [("5m", []), ("15m", [({"instance": "a", "webhook": "orders"}, 1)])]),
    "PayrelayPollsFailing": ("1m", [
        ('payrelay_polls_total{instance="a",channel="shop",result="error"}', "0+3x60"),
        ('payrelay_polls_total{instance="a",channel="shop",result="paid"}', "0+1x60"),
        ('payrelay_polls_total{instance="a",channel="ok",result="error"}', "0+1x60"),
        ('payrelay_polls_total{instance="a",channel="ok",result="unpaid"}', "0+9x60"),
    ], [("20m", []), ("45m", [({"channel": "shop"}, None)])]),
    "PayrelayRepeatPayment": ("1m", [
        # the daemon exports 0 from its start: the first one shows
        ('payrelay_repeat_payments_total{instance="a",channel="shop"}', "0x5 1x25"),
        ('payrelay_repeat_payments_total{instance="a",channel="other"}', "0x30"),
    ], [("5m", []), ("7m", [({"channel": "shop"}, None)]), ("25m", [])]),
    "PayrelayRefundOutcomeUnknown": ("1m", [
        # touched at 0 from the start; the other results never fire it
        ('payrelay_refunds_total{instance="a",channel="shop",result="unknown"}', "0x5 1x25"),
        ('payrelay_refunds_total{instance="a",channel="shop",result="refused"}', "0x5 3x25"),
        ('payrelay_refunds_total{instance="a",channel="other",result="unknown"}', "0x30"),
    ], [("5m", []), ("7m", [({"channel": "shop"}, None)]), ("25m", [])]),
    "PayrelayAmountMismatch": ("1m", [
        ('payrelay_amount_mismatches_total{instance="a",channel="shop"}', "0x5 1x25"),
        ('payrelay_amount_mismatches_total{instance="a",channel="other"}', "0x30"),
    ], [("5m", []), ("7m", [({"channel": "shop"}, None)]), ("25m", [])]),
    "PayrelayConfirmationsUnavailable": ("1m", [
        ('payrelay_confirmations_total{instance="a",channel="gate",outcome="unavailable"}',
         "0+1x40"),
        ('payrelay_confirmations_total{instance="a",channel="gate",outcome="confirmed"}',
         "0+10x40"),
        ('payrelay_confirmations_total{instance="a",channel="ok",outcome="unavailable"}',
         "0x40"),
    ], [("10m", []), ("30m", [({"channel": "gate"}, None)])]),
    "PayrelayRedisMemoryNearLimit": ("1m", [
        ('payrelay_redis_used_memory_bytes{instance="a"}', "900x30"),
        ('payrelay_redis_maxmemory_bytes{instance="a"}', "1000x30"),
        ('payrelay_redis_used_memory_bytes{instance="b"}', "900x30"),
        ('payrelay_redis_maxmemory_bytes{instance="b"}', "0x30"),  # no limit
        ('payrelay_redis_used_memory_bytes{instance="c"}', "990x30"),
        ('payrelay_redis_maxmemory_bytes{instance="c"}', "1000x30"),
        ('payrelay_redis_used_memory_bytes{instance="d"}', "500x30"),
        ('payrelay_redis_maxmemory_bytes{instance="d"}', "1000x30"),
    ], [("10m", []), ("20m", [({"instance": "a"}, 0.9), ({"instance": "c"}, 0.99)])]),
    "PayrelayRedisMemoryFull": ("1m", [
        ('payrelay_redis_used_memory_bytes{instance="a"}', "900x30"),
        ('payrelay_redis_maxmemory_bytes{instance="a"}', "1000x30"),
        ('payrelay_redis_used_memory_bytes{instance="b"}', "900x30"),
        ('payrelay_redis_maxmemory_bytes{instance="b"}', "0x30"),
        ('payrelay_redis_used_memory_bytes{instance="c"}', "990x30"),
        ('payrelay_redis_maxmemory_bytes{instance="c"}', "1000x30"),
    ], [("3m", []), ("10m", [({"instance": "c"}, 0.99)])]),
    "PayrelayConnectionsNearCap": ("1m", [
        ('payrelay_http_connections{instance="a"}', "950x10"),
        ('payrelay_http_connections_max{instance="a"}', "1000x10"),
        ('payrelay_http_connections{instance="b"}', "100x10"),
        ('payrelay_http_connections_max{instance="b"}', "1000x10"),
    ], [("3m", []), ("8m", [({"instance": "a"}, 0.95)])]),
}


def fmt_value(v):
    """Go's %v of a float64, for the values the cases use."""
    return ("%d" % v) if float(v).is_integer() else repr(float(v))


def render(text, labels, value):
    def sub(m):
        expr = m.group(1).strip()
        if expr.startswith("$labels."):
            return labels.get(expr[len("$labels."):], "")
        if expr == "$value":
            return fmt_value(value)
        if expr == "$value | humanizePercentage":
            return "%.4g%%" % (value * 100)
        raise SystemExit("gen-tests: cannot render {{ %s }}" % expr)
    return re.sub(r"\{\{(.*?)\}\}", sub, text)


def main():
    with open(os.path.join(HERE, RULES), encoding="utf-8") as f:
        rules = {r["alert"]: r for g in yaml.safe_load(f)["groups"] for r in g["rules"]}
    missing = set(rules) ^ set(CASES)
    if missing:
        sys.exit("gen-tests: alerts without cases, or cases without alerts: %s"
                 % ", ".join(sorted(missing)))
    tests = []
    for alert, (interval, series, evals) in CASES.items():
        rule = rules[alert]
        checks = []
        for t, fired in evals:
            exp = []
            for labels, value in fired:
                if value is None and any("$value" in v for v in rule["annotations"].values()):
                    sys.exit("gen-tests: %s renders $value: give it" % alert)
                exp.append({
                    "exp_labels": dict(labels, **rule["labels"]),
                    "exp_annotations": {k: render(v, labels, value)
                                        for k, v in rule["annotations"].items()},
                })
            checks.append({"eval_time": t, "alertname": alert, "exp_alerts": exp})
        tests.append({
            "name": alert,
            "interval": interval,
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": checks,
        })
    doc = {"rule_files": [RULES], "evaluation_interval": "1m", "tests": tests}
    out = os.path.join(HERE, "payrelay.rules.test.yml")
    with open(out, "w", encoding="utf-8") as f:
        f.write("# promtool unit tests of %s: written by gen-tests.py from its cases\n"
                "# (edit those, not this file). Run: promtool test rules %s\n"
                % (RULES, os.path.basename(out)))
        yaml.safe_dump(doc, f, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    main()
