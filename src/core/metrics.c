#include "metrics.h"

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct counter {
	char *name;
	char *labels; /* rendered: a="x",b="y" (may be empty) */
	uint64_t value;
};

static const double ack_buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
	0.5, 1, 2.5, 5 };
#define NBUCKETS (sizeof(ack_buckets) / sizeof(ack_buckets[0]))

struct metrics {
	struct counter *v;
	size_t n, cap;
	uint64_t ack_buckets[NBUCKETS];
	uint64_t ack_count;
	double ack_sum;
};

static const struct {
	const char *name;
	const char *help;
} helps[] = {
	{ "payrelay_callbacks_total", "Gateway callbacks by channel and result." },
	{ "payrelay_callbacks_refused_total",
	    "Callbacks refused by verification (SPEC 2.5), by channel and reason." },
	{ "payrelay_repeat_payments_total",
	    "Payments of an order already paid by another gateway trade id, by channel." },
	{ "payrelay_amount_mismatches_total",
	    "Payments whose amount differs from the registered order's, by channel." },
	{ "payrelay_deliveries_total", "Webhook delivery attempts by webhook and outcome." },
	{ "payrelay_polls_total", "Gateway polls by channel and result." },
	{ "payrelay_orders_registered_total", "Orders registered, by channel." },
	{ "payrelay_payments_total",
	    "Payments created through POST /v1/payments (SPEC 10.1), by channel and outcome "
	    "(created, existing, refused: the gateway said no, failed: no usable answer)." },
	{ "payrelay_refunds_total",
	    "Refunds asked for through POST /v1/refunds (SPEC 10.3), by channel and result "
	    "(done, refused: the gateway said no, unknown: no usable answer, the refund may "
	    "have been made, over_refund: more than is left of the payment, not_supported: "
	    "the family has no refund API, repeat: a refund_id used before, rejected: no "
	    "such paid order or a bad request, failed: nothing was asked: redis, memory)." },
	{ "payrelay_sweeps_total", "Sweeps of recent orders started (sweep = on), by channel." },
	{ "payrelay_confirmations_total",
	    "Paid callbacks confirmed by query, by channel and outcome "
	    "(confirmed, refused, unavailable)." },
	{ "payrelay_confirm_refusals_total",
	    "Paid callbacks the gateway's query did not confirm, by channel and reason." },
	{ "payrelay_http_accept_paused_total",
	    "Times the public listener stopped accepting at max_connections." },
	{ "payrelay_http_accept_errors_total",
	    "accept() failures on the public listener (out of descriptors or memory)." },
	{ "payrelay_http_timeouts_total",
	    "Public connections closed for not sending a whole request within read_timeout." },
	{ "payrelay_admin_http_accept_paused_total",
	    "Times the admin listener stopped accepting at its connection cap." },
	{ "payrelay_admin_http_accept_errors_total",
	    "accept() failures on the admin listener (out of descriptors or memory)." },
	{ "payrelay_admin_http_timeouts_total",
	    "Admin connections closed for not sending a whole request within read_timeout." },
	{ "payrelay_returns_total",
	    "Payers' browser returns (/return, SPEC 10.2) by channel and result: paid, pending, "
	    "invalid (redirected with that status), no_redirect (no allowed return_to), "
	    "disabled (no return_secret), other (not found, method, stopping)." },
	{ "payrelay_answers_written_total",
	    "Answers to recorded callbacks by when they were written: at_once (in the loop turn "
	    "their Redis reply arrived), later (the socket took only part at once)." },
	{ "payrelay_http_framing_refused_total",
	    "Requests refused for ambiguous body framing (request smuggling), by listener." },
	{ "payrelay_http_refused_total",
	    "Public connections closed before a request (SPEC 3.1), by reason: per_ip "
	    "(max_connections_per_ip), header_timeout, proxy_header (PROXY header missing or "
	    "malformed)." },
};

struct metrics *
metrics_new(void)
{
	return calloc(1, sizeof(struct metrics));
}

void
metrics_free(struct metrics *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n; i++) {
		free(m->v[i].name);
		free(m->v[i].labels);
	}
	free(m->v);
	free(m);
}

/* Prometheus label value escaping: backslash, quote, newline. */
static int
add_label(struct sbuf *b, const char *name, const char *value)
{
	const char *c;
	int rc = 0;

	if (b->len > 0)
		rc |= sbuf_addc(b, ',');
	rc |= sbuf_adds(b, name);
	rc |= sbuf_adds(b, "=\"");
	for (c = value; *c != '\0'; c++) {
		if (*c == '\\' || *c == '"')
			rc |= sbuf_addc(b, '\\') | sbuf_addc(b, *c);
		else if (*c == '\n')
			rc |= sbuf_adds(b, "\\n");
		else
			rc |= sbuf_addc(b, *c);
	}
	rc |= sbuf_addc(b, '"');
	return rc;
}

static void
metrics_add(struct metrics *m, const char *name, const char *l1, const char *v1, const char *l2,
    const char *v2, uint64_t n)
{
	struct sbuf labels;
	size_t i;

	if (m == NULL)
		return;
	sbuf_init(&labels);
	if ((l1 != NULL && add_label(&labels, l1, v1 != NULL ? v1 : "") != 0) ||
	    (l2 != NULL && add_label(&labels, l2, v2 != NULL ? v2 : "") != 0) ||
	    sbuf_add(&labels, "", 0) != 0) {
		sbuf_free(&labels);
		return;
	}
	for (i = 0; i < m->n; i++) {
		if (strcmp(m->v[i].name, name) == 0 && strcmp(m->v[i].labels, labels.p) == 0) {
			m->v[i].value += n;
			sbuf_free(&labels);
			return;
		}
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 32;
		struct counter *nv = realloc(m->v, cap * sizeof(*nv));

		if (nv == NULL) {
			sbuf_free(&labels);
			return;
		}
		m->v = nv;
		m->cap = cap;
	}
	if ((m->v[m->n].name = strdup(name)) == NULL) {
		sbuf_free(&labels);
		return;
	}
	m->v[m->n].labels = sbuf_steal(&labels);
	m->v[m->n].value = n;
	m->n++;
}

void
metrics_inc(struct metrics *m, const char *name, const char *l1, const char *v1, const char *l2,
    const char *v2)
{
	metrics_add(m, name, l1, v1, l2, v2, 1);
}

void
metrics_touch(struct metrics *m, const char *name, const char *l1, const char *v1, const char *l2,
    const char *v2)
{
	metrics_add(m, name, l1, v1, l2, v2, 0);
}

void
metrics_touch_channels(struct metrics *m, const struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nchannels; i++) {
		const struct channel *ch = &cfg->channels[i];

		metrics_touch(m, "payrelay_repeat_payments_total", "channel", ch->name, NULL, NULL);
		metrics_touch(m, "payrelay_amount_mismatches_total", "channel", ch->name, NULL,
		    NULL);
		metrics_touch(m, "payrelay_callbacks_total", "channel", ch->name, "result",
		    "unavailable");
		metrics_touch(m, "payrelay_returns_total", "channel", ch->name, "result",
		    "invalid");
		metrics_touch(m, "payrelay_payments_total", "channel", ch->name, "outcome",
		    "failed");
		metrics_touch(m, "payrelay_refunds_total", "channel", ch->name, "result",
		    "unknown");
		if (ch->confirm)
			metrics_touch(m, "payrelay_confirmations_total", "channel", ch->name,
			    "outcome", "unavailable");
		if (ch->api_base != NULL)
			metrics_touch(m, "payrelay_polls_total", "channel", ch->name, "result",
			    "error");
	}
}

void
metrics_observe_ack(struct metrics *m, double seconds)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < NBUCKETS; i++)
		if (seconds <= ack_buckets[i])
			m->ack_buckets[i]++;
	m->ack_count++;
	m->ack_sum += seconds;
}

int
metrics_family(struct sbuf *out, const char *name, const char *type, const char *help)
{
	return sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int
metrics_sample(struct sbuf *out, const char *name, const char *l1, const char *v1, double value)
{
	struct sbuf labels;
	int rc;

	sbuf_init(&labels);
	if (l1 != NULL && (add_label(&labels, l1, v1) != 0 || sbuf_add(&labels, "", 0) != 0)) {
		sbuf_free(&labels);
		return -1;
	}
	if (labels.len > 0)
		rc = sbuf_printf(out, "%s{%s} %.17g\n", name, labels.p, value);
	else
		rc = sbuf_printf(out, "%s %.17g\n", name, value);
	sbuf_free(&labels);
	return rc;
}

int
metrics_render(const struct metrics *m, struct sbuf *out)
{
	size_t h, i;
	int rc = 0;

	for (h = 0; h < sizeof(helps) / sizeof(helps[0]); h++) {
		rc |= metrics_family(out, helps[h].name, "counter", helps[h].help);
		for (i = 0; i < m->n; i++) {
			const struct counter *c = &m->v[i];

			if (strcmp(c->name, helps[h].name) != 0)
				continue;
			if (c->labels[0] != '\0')
				rc |= sbuf_printf(out, "%s{%s} %llu\n", c->name, c->labels,
				    (unsigned long long)c->value);
			else
				rc |= sbuf_printf(out, "%s %llu\n", c->name,
				    (unsigned long long)c->value);
		}
	}
	rc |= metrics_family(out, "payrelay_ack_latency_seconds", "histogram",
	    "Time from a callback's arrival to its answer, for recorded and duplicate callbacks.");
	for (i = 0; i < NBUCKETS; i++)
		rc |= sbuf_printf(out, "payrelay_ack_latency_seconds_bucket{le=\"%g\"} %llu\n",
		    ack_buckets[i], (unsigned long long)m->ack_buckets[i]);
	rc |= sbuf_printf(out, "payrelay_ack_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
	    (unsigned long long)m->ack_count);
	rc |= sbuf_printf(out, "payrelay_ack_latency_seconds_sum %.9f\n", m->ack_sum);
	rc |= sbuf_printf(out, "payrelay_ack_latency_seconds_count %llu\n",
	    (unsigned long long)m->ack_count);
	return rc;
}
