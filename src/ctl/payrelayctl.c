/* payrelayctl: the on-call tool (SPEC §7). Reads the admin address and token
 * from payrelayd's own config file and asks the admin API; tables for
 * people, the API's JSON for scripts, and exit statuses scripts can trust
 * (enum ctl_exit). */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include <curl/curl.h>
#include <jansson.h>

#include "amount.h"
#include "config.h"
#include "log.h"
#include "config_build.h"
#include "ctl_http.h"
#include "ctl_out.h"

#define DEFAULT_CONFIG "/etc/payrelay/payrelayd.conf"
#define DEFAULT_TIMEOUT_MS 10000L
#define MAX_POSITIONAL 4
/* A longer last_error is cut in the deliveries table (--json has it all). */
#define LAST_ERROR_COLUMNS 40
/* pay waits for the gateway: payrelayd gives it 15 s (PAYMENTS_TIMEOUT_MS). */
#define PAY_TIMEOUT_MS 25000L

/* Options without a short form. */
enum {
	OPT_JSON = 256,
	OPT_TIMEOUT,
	OPT_DEAD,
	OPT_PENDING,
	OPT_WEBHOOK,
	OPT_LIMIT,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_EXPIRES_IN,
	OPT_AMOUNT,
	OPT_STATUS,
	OPT_OUT_TRADE_NO,
	OPT_CHANNEL,
	OPT_TYPE,
	OPT_BEFORE,
	OPT_TRADE_NO,
	OPT_REFUND_ID,
	/* pay (SPEC §10.1) */
	OPT_METHOD,
	OPT_SUBJECT,
	OPT_PARAM,
	OPT_CLIENT_IP,
	OPT_DEVICE,
	OPT_RETURN_TO,
	OPT_REDIRECT,
	OPT_PRODUCT_ID,
	OPT_FIELDS,
};

struct ctl {
	const char *config_path;
	bool json;
	long timeout_ms; /* 0: not given */
	struct config *cfg;
	struct ctl_http *http;
};

/* What the command line said, checked by each command. */
struct args {
	char *pos[MAX_POSITIONAL];
	int npos;
	bool dead, pending;
	const char *webhook;
	const char *limit;
	const char *since, *until;
	const char *expires_in;
	const char *amount, *status;
	const char *out_trade_no, *channel, *type;
	const char *before;
	const char *trade_no, *refund_id;
	/* pay */
	const char *method, *subject, *param, *client_ip, *device, *return_to;
	const char *product_id, *fields;
	bool redirect;
};

struct command {
	const char *name;
	const char *sub; /* "show" of "events show"; NULL for one-word commands */
	const char *synopsis;
	const char *summary;
	const char *help;
	const struct option *opts; /* the command's own, besides global_opts */
	int min_pos, max_pos;
	/* Checks the arguments without the config: CTL_OK or CTL_USAGE. */
	int (*check)(const struct command *cmd, struct ctl *c, struct args *a);
	int (*run)(struct ctl *c, struct args *a);
};

static const char global_help[] =
    "Options (anywhere on the line):\n"
    "  -c, --config FILE   payrelayd's config file, for [admin] listen and token\n"
    "                      (default " DEFAULT_CONFIG ")\n"
    "      --json          print the API's JSON answer as it is, for scripts\n"
    "      --timeout S     give up on payrelayd after S seconds (default 10)\n"
    "  -h, --help          this help\n";

static const char exit_help[] =
    "Exit status:\n"
    "  0  success\n"
    "  1  the API answered an error (printed as \"payrelayctl: ERROR (HTTP N)\"),\n"
    "     or, for status, payrelayd is up but not ready\n"
    "  2  usage error: bad arguments, unknown command\n"
    "  3  payrelayd is unreachable: connection refused, timeout\n"
    "  4  the config file is unreadable or invalid (each problem as FILE:LINE: message)\n"
    "  5  authentication failed: the admin token was refused (HTTP 401)\n"
    "  6  not found (HTTP 404): no such event, delivery, order, channel or webhook\n";

/* --- small helpers ------------------------------------------------------- */

static void
print_json_body(const struct ctl_answer *ans)
{
	fwrite(ans->body.p, 1, ans->body.len, stdout);
	if (ans->body.len == 0 || ans->body.p[ans->body.len - 1] != '\n')
		putchar('\n');
}

/* "key: value", the value made safe for the terminal. */
static void
print_kv(const char *key, const char *value)
{
	fputs(key, stdout);
	fputs(": ", stdout);
	ctl_out_safe(stdout, value != NULL && *value != '\0' ? value : "-");
	putchar('\n');
}

static bool
in_list(const char *const *list, const char *s)
{
	for (; *list != NULL; list++) {
		if (strcmp(*list, s) == 0)
			return true;
	}
	return false;
}

/* One member as "key: value". A *_ms integer is a time: shown in UTC
 * under its name without _ms ("created_ms" -> "created"), 0 as "-". */
static void
print_member(const char *key, const json_t *v)
{
	size_t n = strlen(key);
	int64_t ms;
	char *text;

	if (json_is_object(v) || json_is_array(v))
		return;
	if (n > 3 && strcmp(key + n - 3, "_ms") == 0 && ctl_out_json_int(v, &ms) == 0) {
		char label[64], when[32];

		snprintf(label, sizeof(label), "%.*s", (int)(n - 3), key);
		if (ms > 0)
			ctl_out_time(when, ms);
		print_kv(label, ms > 0 ? when : NULL);
		return;
	}
	text = ctl_out_json_text(v);
	print_kv(key, text);
	free(text);
}

/* The members of `o` in the order of `first`, then the others that are not
 * in `skip`, as they come. */
static void
print_object(const json_t *o, const char *const *first, const char *const *skip)
{
	const char *const *k;
	const char *key;
	json_t *v;

	for (k = first; *k != NULL; k++) {
		if ((v = json_object_get(o, *k)) != NULL)
			print_member(*k, v);
	}
	json_object_foreach((json_t *)o, key, v)
	{
		if (!in_list(first, key) && !in_list(skip, key))
			print_member(key, v);
	}
}

static void
print_order(const json_t *o)
{
	static const char *const first[] = { "channel", "out_trade_no", "amount", "state",
		"event_id", "polls", "last_result", "last_detail", "created_ms", "expires_at_ms",
		"next_poll_ms", "last_poll_ms", "paid_at_ms", "expired_ms", NULL };
	static const char *const skip[] = { "amount_fen", "created", NULL };

	print_object(o, first, skip);
}

/* Positive whole number, at most `max`. */
static int
parse_count(const char *s, long long max, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Seconds, or a number with a unit: 90, 90s, 15m, 2h, 1d. */
static int
parse_duration(const char *s, long long *secs)
{
	static const struct {
		char unit;
		long long mult;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
	char num[24];
	size_t n = strlen(s), i;
	long long v;

	if (n == 0 || n >= sizeof(num))
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (s[n - 1] == units[i].unit) {
			memcpy(num, s, n - 1);
			num[n - 1] = '\0';
			if (parse_count(num, 1000000000LL, &v) == -1)
				return -1;
			*secs = v * units[i].mult;
			return 0;
		}
	}
	return parse_count(s, 1000000000000LL, secs);
}

/* --- usage and help ---------------------------------------------------- */

static void
help_command(FILE *f, const struct command *cmd)
{
	fprintf(f, "usage: payrelayctl %s\n\n%s\n%s\n%s", cmd->synopsis, cmd->help, global_help,
	    exit_help);
}

static int usage_error(const struct command *cmd, const char *fmt, ...) PRINTF_LIKE(2, 3);

static int
usage_error(const struct command *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("payrelayctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (cmd != NULL) {
		fprintf(stderr, "usage: payrelayctl %s\n", cmd->synopsis);
		if (cmd->sub != NULL)
			fprintf(stderr, "Try 'payrelayctl %s %s --help'.\n", cmd->name, cmd->sub);
		else
			fprintf(stderr, "Try 'payrelayctl %s --help'.\n", cmd->name);
	} else {
		fputs("usage: payrelayctl [-c FILE] [--json] [--timeout S] COMMAND [ARGS]\n"
		      "Try 'payrelayctl --help'.\n",
		    stderr);
	}
	return CTL_USAGE;
}

/* --- status -------------------------------------------------------------- */

/* A line per payrelay_* counter or gauge of /metrics, summed over labels:
 * the short view; `curl /metrics` has the rest. */
static void
status_metrics(const struct ctl_answer *m)
{
	char *text, *line, *save = NULL;
	/* Room for every family /metrics has (30 now) and some to come. */
	char names[64][96];
	double sums[64];
	size_t n = 0, i;

	if ((text = xstrdup(m->body.p)) == NULL)
		return;
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char name[96], kind[32];

		if (sscanf(line, "# TYPE %95s %31s", name, kind) == 2) {
			if (strncmp(name, "payrelay_", 9) == 0 && n < 64 &&
			    strstr(name, "_info") == NULL &&
			    (strcmp(kind, "counter") == 0 || strcmp(kind, "gauge") == 0)) {
				snprintf(names[n], sizeof(names[n]), "%s", name);
				sums[n++] = 0;
			}
			continue;
		}
		if (line[0] == '#')
			continue;
		for (i = 0; i < n; i++) {
			size_t len = strlen(names[i]);

			if (strncmp(line, names[i], len) == 0 &&
			    (line[len] == '{' || line[len] == ' ')) {
				const char *v = strrchr(line, ' ');

				if (v != NULL)
					sums[i] += strtod(v + 1, NULL);
				break;
			}
		}
	}
	free(text);
	if (n > 0)
		printf("metrics (summed over labels):\n");
	for (i = 0; i < n; i++)
		printf("  %s %.15g\n", names[i], sums[i]);
}

static int
cmd_status(struct ctl *c, struct args *a)
{
	struct ctl_answer health, ready, metrics;
	const char *why;
	int rc;

	if ((rc = ctl_http_request(c->http, "GET", "/healthz", NULL, &health)) != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &health)) != CTL_OK) {
		ctl_answer_free(&health);
		return rc;
	}
	if ((rc = ctl_http_request(c->http, "GET", "/readyz", NULL, &ready)) != CTL_OK) {
		ctl_answer_free(&health);
		return rc;
	}
	/* 503 is the answer "not ready", not a failure of the request. */
	if (ready.status != 503 || !json_is_object(ready.json)) {
		if ((rc = ctl_http_check(c->http, &ready)) != CTL_OK)
			goto out;
	}
	rc = ready.status == 200 ? CTL_OK : CTL_API_ERROR;
	if (c->json) {
		json_t *o = json_pack("{s:s,s:b,s:O,s:O}", "address", ctl_http_addr(c->http),
		    "ready", ready.status == 200, "healthz", health.json, "readyz", ready.json);
		char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

		if (text != NULL)
			printf("%s\n", text);
		free(text);
		json_decref(o);
		goto out;
	}
	printf("payrelayd at %s: ", ctl_http_addr(c->http));
	if (ready.status == 200) {
		printf("ready\n");
	} else {
		why = json_string_value(json_object_get(ready.json, "status"));
		fputs("not ready (", stdout);
		ctl_out_safe(stdout, why != NULL ? why : "unknown");
		fputs(")\n", stdout);
	}
	/* Optional: a daemon without /metrics is still a good daemon. */
	if (ctl_http_request(c->http, "GET", "/metrics", NULL, &metrics) == CTL_OK) {
		if (metrics.status == 200 && metrics.body.p != NULL)
			status_metrics(&metrics);
		ctl_answer_free(&metrics);
	}
out:
	ctl_answer_free(&health);
	ctl_answer_free(&ready);
	return rc;
}

/* --- events show ------------------------------------------------------- */

static int
cmd_events_show(struct ctl *c, struct args *a)
{
	static const char *const first[] = { "id", "type", "channel", "trade_no", "out_trade_no",
		"status", "amount", "paid_amount", "received_at", "source", "family", "merchant_id",
		"currency", "method", "subject", "passthrough", "gateway_time", "stream_id", NULL };
	static const char *const skip[] = { "amount_fen", "paid_amount_fen", "raw", NULL };
	struct ctl_answer ans;
	char *id, path[512];
	int rc;

	if ((id = ctl_http_escape(a->pos[0])) == NULL)
		return CTL_API_ERROR;
	snprintf(path, sizeof(path), "/v1/events/%s", id);
	free(id);
	if ((rc = ctl_http_request(c->http, "GET", path, NULL, &ans)) != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) == CTL_OK) {
		if (c->json)
			print_json_body(&ans);
		else
			print_object(ans.json, first, skip);
	}
	ctl_answer_free(&ans);
	return rc;
}

static int
check_event_id(const struct command *cmd, struct ctl *c, struct args *a)
{
	if (a->pos[0][0] == '\0' || strlen(a->pos[0]) > 128)
		return usage_error(cmd, "bad event id");
	return CTL_OK;
}

/* --- deliveries list --------------------------------------------------- */

/* At most `max` code points of `s`, "..." when cut. The caller frees. */
static char *
cut(const char *s, size_t max)
{
	size_t i, n = 0;
	char *out;

	for (i = 0; s[i] != '\0'; i++) {
		if (((unsigned char)s[i] & 0xc0) != 0x80 && n++ == max)
			break;
	}
	if (s[i] == '\0')
		return xstrdup(s);
	/* back off to leave room for "..." on a character boundary */
	while (i > 0 && n > max - 3) {
		i--;
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n--;
	}
	if ((out = malloc(i + 4)) == NULL)
		return NULL;
	memcpy(out, s, i);
	memcpy(out + i, "...", 4);
	return out;
}

static int
deliveries_table(const json_t *list, const struct args *a)
{
	static const char *const header[] = { "ID", "WEBHOOK", "EVENT", "STATE", "ATTEMPTS",
		"LAST STATUS", "LAST ERROR", "DUE/DEAD AT" };
	struct ctl_table t;
	size_t i;
	json_t *d;
	int rc = CTL_OK;

	if (json_array_size(list) == 0) {
		printf("no %s deliveries%s%s\n", a->pending ? "pending" : "dead",
		    a->webhook != NULL ? " of " : "", a->webhook != NULL ? a->webhook : "");
		return CTL_OK;
	}
	if (ctl_table_init(&t, header, 8) == -1)
		goto oom;
	json_array_foreach(list, i, d)
	{
		const char *state = json_string_value(json_object_get(d, "state"));
		char *attempts = ctl_out_json_text(json_object_get(d, "attempts"));
		char *status = ctl_out_json_text(json_object_get(d, "last_status"));
		const char *err = json_string_value(json_object_get(d, "last_error"));
		char *shown = err != NULL ? cut(err, LAST_ERROR_COLUMNS) : NULL;
		const json_t *when = NULL;
		char at[32] = "";
		int64_t ms;
		const char *row[8];

		if (state != NULL && strcmp(state, "dead") == 0)
			when = json_object_get(d, "dead_ms");
		if (when == NULL)
			when = json_object_get(d, "due_ms");
		if (when == NULL)
			when = json_object_get(d, "dead_ms");
		if (ctl_out_json_int(when, &ms) == 0 && ms > 0)
			ctl_out_time(at, ms);
		/* No answer at all was recorded as status 0. */
		if (status != NULL && strcmp(status, "0") == 0) {
			free(status);
			status = NULL;
		}
		row[0] = json_string_value(json_object_get(d, "id"));
		row[1] = json_string_value(json_object_get(d, "webhook"));
		row[2] = json_string_value(json_object_get(d, "event_id"));
		row[3] = state;
		row[4] = attempts;
		row[5] = status;
		row[6] = shown;
		row[7] = at;
		rc = ctl_table_add(&t, row);
		free(attempts);
		free(status);
		free(shown);
		if (rc == -1) {
			ctl_table_free(&t);
			goto oom;
		}
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	return CTL_OK;
oom:
	fprintf(stderr, "payrelayctl: out of memory\n");
	return CTL_API_ERROR;
}

static int
cmd_deliveries_list(struct ctl *c, struct args *a)
{
	struct ctl_answer ans;
	struct sbuf path;
	const json_t *list;
	char *w = NULL;
	int rc = CTL_API_ERROR, bad = 0;
	char sep = '?';

	sbuf_init(&path);
	bad |= sbuf_adds(&path, "/v1/deliveries");
	bad |= sbuf_printf(&path, "%cstate=%s", sep, a->pending ? "pending" : "dead");
	sep = '&';
	if (a->webhook != NULL) {
		if ((w = ctl_http_escape(a->webhook)) == NULL)
			bad = -1;
		else
			bad |= sbuf_printf(&path, "%cwebhook=%s", sep, w);
		sep = '&';
	}
	if (a->limit != NULL)
		bad |= sbuf_printf(&path, "%climit=%s", sep, a->limit);
	free(w);
	if (bad != 0) {
		fprintf(stderr, "payrelayctl: out of memory\n");
		goto out;
	}
	if ((rc = ctl_http_request(c->http, "GET", path.p, NULL, &ans)) != CTL_OK)
		goto out;
	if ((rc = ctl_http_check(c->http, &ans)) == CTL_OK) {
		list = json_object_get(ans.json, "deliveries");
		if (c->json) {
			print_json_body(&ans);
		} else if (!json_is_array(list)) {
			fprintf(stderr, "payrelayctl: the answer has no \"deliveries\" list\n");
			rc = CTL_API_ERROR;
		} else {
			rc = deliveries_table(list, a);
		}
	}
	ctl_answer_free(&ans);
out:
	sbuf_free(&path);
	return rc;
}

static int
check_deliveries_list(const struct command *cmd, struct ctl *c, struct args *a)
{
	long long n;

	if (a->dead && a->pending)
		return usage_error(cmd, "--dead and --pending exclude each other");
	if (a->webhook != NULL && !config_name_valid(a->webhook))
		return usage_error(cmd, "bad webhook name: 1 to 64 of A-Z a-z 0-9 . _ -");
	if (a->limit != NULL && parse_count(a->limit, 1000000, &n) == -1)
		return usage_error(cmd, "--limit wants a whole number from 1 to 1000000");
	return CTL_OK;
}

/* --- replay -------------------------------------------------------------- */

static int
replay_answer_count(struct ctl *c, const struct ctl_answer *ans, int64_t *n)
{
	if (ctl_out_json_int(json_object_get(ans->json, "replayed"), n) == -1) {
		fprintf(stderr, "payrelayctl: the answer has no \"replayed\" count\n");
		return CTL_API_ERROR;
	}
	return CTL_OK;
}

static int
cmd_replay(struct ctl *c, struct args *a)
{
	struct ctl_answer ans;
	json_t *body = NULL;
	char path[512];
	int64_t since = 0, until = 0, n = 0;
	int rc;

	if (a->npos == 1) {
		char *id = ctl_http_escape(a->pos[0]);

		if (id == NULL)
			return CTL_API_ERROR;
		snprintf(path, sizeof(path), "/v1/deliveries/%s/replay", id);
		free(id);
	} else {
		snprintf(path, sizeof(path), "/v1/replay");
		if (a->dead) {
			body = json_pack("{s:s,s:s}", "webhook", a->webhook, "state", "dead");
		} else {
			/* checked by check_replay */
			if (ctl_out_parse_time(a->since, &since) == -1)
				return CTL_USAGE;
			if (a->until == NULL)
				until = now_ms();
			else if (ctl_out_parse_time(a->until, &until) == -1)
				return CTL_USAGE;
			body = json_pack("{s:s,s:I,s:I}", "webhook", a->webhook, "since_ms",
			    (json_int_t)since, "until_ms", (json_int_t)until);
		}
		if (body == NULL) {
			fprintf(stderr, "payrelayctl: out of memory\n");
			return CTL_API_ERROR;
		}
	}
	rc = ctl_http_request(c->http, "POST", path, body, &ans);
	json_decref(body);
	if (rc != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) != CTL_OK)
		goto out;
	if (c->json) {
		print_json_body(&ans);
	} else if (a->npos == 1) {
		const char *fresh = json_string_value(json_object_get(ans.json, "delivery"));

		fputs("replayed ", stdout);
		ctl_out_safe(stdout, a->pos[0]);
		fputs(" as ", stdout);
		ctl_out_safe(stdout, fresh != NULL ? fresh : "?");
		putchar('\n');
	} else if ((rc = replay_answer_count(c, &ans, &n)) == CTL_OK) {
		if (a->dead) {
			printf("replayed %lld dead deliver%s of %s\n", (long long)n,
			    n == 1 ? "y" : "ies", a->webhook);
		} else {
			char from[32], to[32];

			ctl_out_time(from, since);
			ctl_out_time(to, until);
			printf("replayed %lld event%s to %s (%s .. %s)\n", (long long)n,
			    n == 1 ? "" : "s", a->webhook, from, to);
		}
	}
out:
	ctl_answer_free(&ans);
	return rc;
}

static int
check_replay(const struct command *cmd, struct ctl *c, struct args *a)
{
	int64_t since, until;

	if (a->npos == 1) {
		if (a->webhook != NULL || a->dead || a->since != NULL || a->until != NULL)
			return usage_error(cmd,
			    "replay DELIVERY_ID takes no --webhook, --dead, --since or --until");
		if (a->pos[0][0] == '\0' || strlen(a->pos[0]) > 128)
			return usage_error(cmd, "bad delivery id");
		return CTL_OK;
	}
	if (a->webhook == NULL)
		return usage_error(cmd,
		    "replay needs a DELIVERY_ID, or --webhook W with --dead "
		    "or --since T");
	if (!config_name_valid(a->webhook))
		return usage_error(cmd, "bad webhook name: 1 to 64 of A-Z a-z 0-9 . _ -");
	if (a->dead && (a->since != NULL || a->until != NULL))
		return usage_error(cmd, "--dead and --since/--until exclude each other");
	if (!a->dead && a->since == NULL)
		return usage_error(cmd, "replay --webhook W needs --dead or --since T");
	if (ctl_out_parse_time(a->since != NULL ? a->since : "0", &since) == -1)
		return usage_error(cmd,
		    "--since: not an ISO-8601 time (2026-11-22T10:00:00Z) or unix milliseconds");
	if (a->until != NULL && ctl_out_parse_time(a->until, &until) == -1)
		return usage_error(cmd,
		    "--until: not an ISO-8601 time (2026-11-22T10:00:00Z) or unix milliseconds");
	if (a->until == NULL)
		until = now_ms();
	/* 1700000000 is a time in seconds: read as milliseconds it is 1970. */
	if ((since > 0 && since < 100000000000LL) || (until > 0 && until < 100000000000LL))
		return usage_error(cmd,
		    "--since/--until: that looks like unix seconds; "
		    "give milliseconds or an ISO-8601 time");
	if (!a->dead && since > until)
		return usage_error(cmd, "--since is after --until");
	return CTL_OK;
}

/* --- deliveries purge ------------------------------------------------------ */

static int
cmd_deliveries_purge(struct ctl *c, struct args *a)
{
	struct ctl_answer ans;
	json_t *body;
	int64_t before = 0, n = 0;
	char when[32];
	int rc;

	if (ctl_out_parse_time(a->before, &before) == -1) /* checked by check_purge */
		return CTL_USAGE;
	if (a->webhook != NULL)
		body = json_pack("{s:s,s:I,s:s}", "state", "dead", "before_ms", (json_int_t)before,
		    "webhook", a->webhook);
	else
		body = json_pack("{s:s,s:I}", "state", "dead", "before_ms", (json_int_t)before);
	if (body == NULL) {
		fprintf(stderr, "payrelayctl: out of memory\n");
		return CTL_API_ERROR;
	}
	rc = ctl_http_request(c->http, "POST", "/v1/deliveries/purge", body, &ans);
	json_decref(body);
	if (rc != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) != CTL_OK)
		goto out;
	if (c->json) {
		print_json_body(&ans);
	} else if (ctl_out_json_int(json_object_get(ans.json, "purged"), &n) == -1) {
		fprintf(stderr, "payrelayctl: the answer has no \"purged\" count\n");
		rc = CTL_API_ERROR;
	} else {
		ctl_out_time(when, before);
		printf("purged %lld dead deliver%s that died before %s\n", (long long)n,
		    n == 1 ? "y" : "ies", when);
	}
out:
	ctl_answer_free(&ans);
	return rc;
}

static int
check_purge(const struct command *cmd, struct ctl *c, struct args *a)
{
	int64_t before;

	if (!a->dead)
		return usage_error(cmd, "purge needs --dead: only dead deliveries are purged");
	if (a->before == NULL)
		return usage_error(cmd, "purge needs --before T");
	if (ctl_out_parse_time(a->before, &before) == -1 || before <= 0)
		return usage_error(cmd,
		    "--before: not an ISO-8601 time (2026-11-22T10:00:00Z) or unix milliseconds");
	if (before < 100000000000LL)
		return usage_error(cmd,
		    "--before: that looks like unix seconds; give milliseconds or an ISO-8601 "
		    "time");
	if (a->webhook != NULL && !config_name_valid(a->webhook))
		return usage_error(cmd, "bad webhook name: 1 to 64 of A-Z a-z 0-9 . _ -");
	return CTL_OK;
}

/* --- orders expect / show, poll ------------------------------------------ */

static int
order_path(char *path, size_t size, const struct args *a, const char *suffix)
{
	char *ch = ctl_http_escape(a->pos[0]), *out = ctl_http_escape(a->pos[1]);
	int rc = -1;

	if (ch != NULL && out != NULL) {
		snprintf(path, size, "/v1/orders/%s/%s%s", ch, out, suffix);
		rc = 0;
	}
	free(ch);
	free(out);
	return rc;
}

static int
cmd_orders_expect(struct ctl *c, struct args *a)
{
	struct ctl_answer ans;
	long long secs = 0;
	json_t *body;
	int rc;

	body = json_pack("{s:s,s:s,s:s}", "channel", a->pos[0], "out_trade_no", a->pos[1], "amount",
	    a->pos[2]);
	if (body != NULL && a->expires_in != NULL && parse_duration(a->expires_in, &secs) == 0)
		json_object_set_new(body, "expires_in", json_integer(secs));
	if (body == NULL) {
		fprintf(stderr, "payrelayctl: out of memory (or not UTF-8 arguments)\n");
		return CTL_API_ERROR;
	}
	rc = ctl_http_request(c->http, "POST", "/v1/orders", body, &ans);
	json_decref(body);
	if (rc != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) == CTL_OK) {
		if (c->json) {
			print_json_body(&ans);
		} else {
			printf("%s\n", ans.status == 201 ? "registered" : "already registered");
			print_order(ans.json);
		}
	}
	ctl_answer_free(&ans);
	return rc;
}

static int
check_order_ids(const struct command *cmd, struct ctl *c, struct args *a)
{
	if (!config_name_valid(a->pos[0]))
		return usage_error(cmd, "bad channel name: 1 to 64 of A-Z a-z 0-9 . _ -");
	if (a->pos[1][0] == '\0' || strlen(a->pos[1]) > 128 || strchr(a->pos[1], '/') != NULL)
		return usage_error(cmd, "OUT_TRADE_NO must be 1 to 128 bytes, without '/'");
	return CTL_OK;
}

static int
check_orders_expect(const struct command *cmd, struct ctl *c, struct args *a)
{
	long long secs;
	int64_t fen;
	int rc;

	if ((rc = check_order_ids(cmd, c, a)) != CTL_OK)
		return rc;
	if (amount_parse(a->pos[2], strlen(a->pos[2]), &fen) == -1)
		return usage_error(cmd, "AMOUNT must be yuan as a decimal, like 1.00");
	if (a->expires_in != NULL &&
	    (parse_duration(a->expires_in, &secs) == -1 || secs > 30 * 86400))
		return usage_error(cmd,
		    "--expires-in wants seconds (or 15m, 2h, 1d), at most 30 days");
	return CTL_OK;
}

static int
cmd_orders_show(struct ctl *c, struct args *a)
{
	struct ctl_answer ans;
	char path[512];
	int rc;

	if (order_path(path, sizeof(path), a, "") == -1)
		return CTL_API_ERROR;
	if ((rc = ctl_http_request(c->http, "GET", path, NULL, &ans)) != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) == CTL_OK) {
		if (c->json)
			print_json_body(&ans);
		else
			print_order(ans.json);
	}
	ctl_answer_free(&ans);
	return rc;
}

static int
cmd_poll(struct ctl *c, struct args *a)
{
	struct ctl_answer ans;
	const json_t *order;
	char path[512];
	int rc;

	if (order_path(path, sizeof(path), a, "/poll") == -1)
		return CTL_API_ERROR;
	if ((rc = ctl_http_request(c->http, "POST", path, NULL, &ans)) != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) == CTL_OK) {
		if (c->json) {
			print_json_body(&ans);
		} else {
			print_kv("result", json_string_value(json_object_get(ans.json, "result")));
			print_kv("detail", json_string_value(json_object_get(ans.json, "detail")));
			if (json_is_object(order = json_object_get(ans.json, "order")))
				print_order(order);
		}
	}
	ctl_answer_free(&ans);
	return rc;
}

/* --- pay (SPEC §10.1) ------------------------------------------------------ */

static int
check_pay(const struct command *cmd, struct ctl *c, struct args *a)
{
	long long secs;
	int64_t fen;
	int rc;

	if ((rc = check_order_ids(cmd, c, a)) != CTL_OK)
		return rc;
	if (strcmp(a->pos[2], "-") == 0) {
		if (a->product_id == NULL && a->fields == NULL)
			return usage_error(cmd, "AMOUNT - (none) needs --product-id or --fields");
	} else if (amount_parse(a->pos[2], strlen(a->pos[2]), &fen) == -1 || fen <= 0) {
		return usage_error(cmd, "AMOUNT must be yuan as a decimal above zero, like 1.00");
	}
	if (a->expires_in != NULL &&
	    (parse_duration(a->expires_in, &secs) == -1 || secs > 30 * 86400))
		return usage_error(cmd,
		    "--expires-in wants seconds (or 15m, 2h, 1d), at most 30 days");
	return CTL_OK;
}

static int
cmd_pay(struct ctl *c, struct args *a)
{
	static const char *const kinds[] = { "pay_url", "qrcode", "urlscheme", NULL };
	const struct {
		const char *name;
		const char *value;
	} opt[] = { { "method", a->method }, { "subject", a->subject }, { "param", a->param },
		{ "client_ip", a->client_ip }, { "device", a->device },
		{ "return_to", a->return_to }, { "product_id", a->product_id },
		{ "fields", a->fields } };
	struct ctl_answer ans, ord;
	const char *const *k;
	long long secs = 0;
	char path[512];
	json_t *body;
	size_t i;
	int rc;

	body = json_pack("{s:s,s:s}", "channel", a->pos[0], "out_trade_no", a->pos[1]);
	for (i = 0; body != NULL && i < sizeof(opt) / sizeof(opt[0]); i++)
		if (opt[i].value != NULL &&
		    json_object_set_new(body, opt[i].name, json_string(opt[i].value)) == -1) {
			json_decref(body);
			body = NULL;
		}
	if (body != NULL && strcmp(a->pos[2], "-") != 0 &&
	    json_object_set_new(body, "amount", json_string(a->pos[2])) == -1) {
		json_decref(body);
		body = NULL;
	}
	if (body != NULL && a->redirect)
		json_object_set_new(body, "mode", json_string("redirect"));
	if (body != NULL && a->expires_in != NULL && parse_duration(a->expires_in, &secs) == 0)
		json_object_set_new(body, "expires_in", json_integer(secs));
	if (body == NULL) {
		fprintf(stderr, "payrelayctl: out of memory (or not UTF-8 arguments)\n");
		return CTL_API_ERROR;
	}
	rc = ctl_http_request(c->http, "POST", "/v1/payments", body, &ans);
	json_decref(body);
	if (rc != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) != CTL_OK || c->json) {
		if (rc == CTL_OK)
			print_json_body(&ans);
		ctl_answer_free(&ans);
		return rc;
	}
	printf("%s\n", ans.status == 201 ? "created" : "already created (the first answer)");
	for (k = kinds; *k != NULL; k++)
		if (json_object_get(ans.json, *k) != NULL)
			print_kv(*k, json_string_value(json_object_get(ans.json, *k)));
	print_kv("gateway_trade_no",
	    json_string_value(json_object_get(ans.json, "gateway_trade_no")));
	ctl_answer_free(&ans);
	/* The registered order, as orders show prints it. */
	if (order_path(path, sizeof(path), a, "") == -1)
		return CTL_API_ERROR;
	if ((rc = ctl_http_request(c->http, "GET", path, NULL, &ord)) != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ord)) == CTL_OK) {
		printf("order:\n");
		print_order(ord.json);
	}
	ctl_answer_free(&ord);
	return rc;
}

/* --- the on-call's commands: send-test, events find/tail, deliveries show */

static const char *
or_else(const char *s, const char *def)
{
	return s != NULL ? s : def;
}

/* The deliveries of one event (GET /v1/events/ID/deliveries) as an
 * indented table. Returns CTL_OK or the request's failure; *list gets the
 * answer's list (a reference) when asked for. */
static int
event_deliveries(struct ctl *c, const char *event_id, json_t **list)
{
	struct ctl_answer ans;
	char path[128];
	int rc;

	*list = NULL;
	snprintf(path, sizeof(path), "/v1/events/%.40s/deliveries", event_id);
	if ((rc = ctl_http_request(c->http, "GET", path, NULL, &ans)) != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) == CTL_OK) {
		*list = json_incref(json_object_get(ans.json, "deliveries"));
		if (!json_is_array(*list)) {
			json_decref(*list);
			*list = json_array();
		}
	}
	ctl_answer_free(&ans);
	return rc;
}

static void
print_event_deliveries(const json_t *list, const char *indent)
{
	static const char *const header[] = { "DELIVERY", "WEBHOOK", "STATE", "ATTEMPTS",
		"LAST STATUS", "LAST ERROR", "AT" };
	struct ctl_table t;
	const json_t *d;
	size_t i;

	if (json_array_size(list) == 0) {
		printf("%sno deliveries (no webhook wants this event)\n", indent);
		return;
	}
	if (ctl_table_init(&t, header, 7) == -1)
		return;
	json_array_foreach(list, i, d)
	{
		const char *state = json_string_value(json_object_get(d, "state"));
		char *attempts = ctl_out_json_text(json_object_get(d, "attempts"));
		char *status = ctl_out_json_text(json_object_get(d, "last_status"));
		const char *err = json_string_value(json_object_get(d, "last_error"));
		char *shown = err != NULL && *err != '\0' ? cut(err, LAST_ERROR_COLUMNS) : NULL;
		const char *key = "due_ms";
		char at[32] = "";
		const char *row[7];
		int64_t ms;

		if (state != NULL && strcmp(state, "delivered") == 0)
			key = "delivered_ms";
		else if (state != NULL && strcmp(state, "dead") == 0)
			key = "dead_ms";
		if (ctl_out_json_int(json_object_get(d, key), &ms) == 0 && ms > 0)
			ctl_out_time(at, ms);
		if (status != NULL && strcmp(status, "0") == 0) {
			free(status);
			status = NULL;
		}
		row[0] = json_string_value(json_object_get(d, "id"));
		row[1] = json_string_value(json_object_get(d, "webhook"));
		row[2] = state;
		row[3] = attempts;
		row[4] = status;
		row[5] = shown;
		row[6] = at;
		if (ctl_table_add(&t, row) == -1)
			i = json_array_size(list);
		free(attempts);
		free(status);
		free(shown);
	}
	/* The table's lines, indented under their event. */
	{
		char *text = NULL;
		size_t n = 0;
		FILE *m = open_memstream(&text, &n);
		char *line, *save = NULL;

		if (m != NULL) {
			ctl_table_print(&t, m);
			fclose(m);
			for (line = strtok_r(text, "\n", &save); line != NULL;
			     line = strtok_r(NULL, "\n", &save))
				printf("%s%s\n", indent, line);
		}
		free(text);
	}
	ctl_table_free(&t);
}

/* "test", "repeat_payment", "amount_mismatch", "passthrough_signed: false". */
static void
event_flags(const json_t *ev, char *out, size_t size)
{
	out[0] = '\0';
	if (json_is_true(json_object_get(ev, "test")))
		snprintf(out + strlen(out), size - strlen(out), "%stest", *out ? "," : "");
	if (json_is_true(json_object_get(ev, "repeat_payment")))
		snprintf(out + strlen(out), size - strlen(out), "%srepeat", *out ? "," : "");
	if (json_is_true(json_object_get(ev, "amount_mismatch")))
		snprintf(out + strlen(out), size - strlen(out), "%smismatch", *out ? "," : "");
}

static void
print_event_line(const json_t *ev)
{
	static const char *const first[] = { "id", "type", "channel", "trade_no", "out_trade_no",
		"status", "amount", "paid_amount", "received_at", "source", "test",
		"repeat_payment", "amount_mismatch", NULL };
	static const char *const skip[] = { "amount_fen", "paid_amount_fen", "raw", "unsigned",
		"family", "merchant_id", "currency", "method", "subject", "passthrough",
		"passthrough_signed", "gateway_time", "stream_id", "confirmed_by", NULL };

	print_object(ev, first, skip);
}

/* events find --out-trade-no X [--channel C]: was order X paid, and did
 * each webhook get it? */
static int
cmd_events_find(struct ctl *c, struct args *a)
{
	struct ctl_answer ans;
	struct sbuf path;
	json_t *events, *ev, *list;
	char *o = NULL, *ch = NULL;
	size_t i;
	int rc = CTL_API_ERROR;

	sbuf_init(&path);
	if ((o = ctl_http_escape(a->out_trade_no)) == NULL ||
	    (a->channel != NULL && (ch = ctl_http_escape(a->channel)) == NULL) ||
	    sbuf_printf(&path, "/v1/events?out_trade_no=%s%s%s", o, ch ? "&channel=" : "",
		ch ? ch : "") == -1) {
		fprintf(stderr, "payrelayctl: out of memory\n");
		goto out;
	}
	if ((rc = ctl_http_request(c->http, "GET", path.p, NULL, &ans)) != CTL_OK)
		goto out;
	if ((rc = ctl_http_check(c->http, &ans)) != CTL_OK)
		goto done;
	events = json_object_get(ans.json, "events");
	if (!json_is_array(events)) {
		fprintf(stderr, "payrelayctl: the answer has no \"events\" list\n");
		rc = CTL_API_ERROR;
		goto done;
	}
	/* Each event with its deliveries: the whole answer in one command. */
	json_array_foreach(events, i, ev)
	{
		const char *id = json_string_value(json_object_get(ev, "id"));

		if (id == NULL || json_is_true(json_object_get(ev, "trimmed")))
			continue;
		if ((rc = event_deliveries(c, id, &list)) != CTL_OK)
			goto done;
		json_object_set_new(ev, "deliveries", list);
	}
	if (c->json) {
		char *text = json_dumps(ans.json, JSON_COMPACT);

		if (text != NULL)
			printf("%s\n", text);
		free(text);
		goto done;
	}
	if (json_array_size(events) == 0) {
		fputs("no event of order ", stdout);
		ctl_out_safe(stdout, a->out_trade_no);
		printf(" within dedup_ttl%s%s: payrelayd got no verified callback or paid poll "
		       "for it\n",
		    a->channel ? " on channel " : "", a->channel ? a->channel : "");
		goto done;
	}
	json_array_foreach(events, i, ev)
	{
		if (i > 0)
			putchar('\n');
		if (json_is_true(json_object_get(ev, "trimmed"))) {
			print_kv("id", json_string_value(json_object_get(ev, "id")));
			printf("(trimmed from the stream: [stream] maxlen)\n");
			continue;
		}
		print_event_line(ev);
		print_event_deliveries(json_object_get(ev, "deliveries"), "  ");
	}
done:
	ctl_answer_free(&ans);
out:
	free(o);
	free(ch);
	sbuf_free(&path);
	return rc;
}

static int
check_events_find(const struct command *cmd, struct ctl *c, struct args *a)
{
	if (a->out_trade_no == NULL)
		return usage_error(cmd, "events find needs --out-trade-no X");
	if (a->out_trade_no[0] == '\0' || strlen(a->out_trade_no) > 128)
		return usage_error(cmd, "--out-trade-no wants 1 to 128 bytes");
	if (a->channel != NULL && !config_name_valid(a->channel))
		return usage_error(cmd, "bad channel name: 1 to 64 of A-Z a-z 0-9 . _ -");
	return CTL_OK;
}

/* One event as a row of the live table (fixed widths: rows come one by
 * one). */
static void
tail_row(const json_t *ev)
{
	const char *f[7];
	char flags[64];
	size_t i;
	static const int width[] = { 20, 21, 16, 24, 24, 10, 8 };

	f[0] = json_string_value(json_object_get(ev, "received_at"));
	f[1] = json_string_value(json_object_get(ev, "type"));
	f[2] = json_string_value(json_object_get(ev, "channel"));
	f[3] = json_string_value(json_object_get(ev, "out_trade_no"));
	f[4] = json_string_value(json_object_get(ev, "trade_no"));
	f[5] = json_string_value(json_object_get(ev, "paid_amount"));
	f[6] = json_string_value(json_object_get(ev, "source"));
	for (i = 0; i < 7; i++) {
		char *s = cut(f[i] != NULL ? f[i] : "-", (size_t)width[i]);
		size_t n = 0;
		const char *p;

		ctl_out_safe(stdout, s != NULL ? s : "-");
		for (p = s != NULL ? s : "-"; *p != '\0'; p++)
			n += ((unsigned char)*p & 0xc0) != 0x80;
		for (; n < (size_t)width[i] + 1; n++)
			putchar(' ');
		free(s);
	}
	event_flags(ev, flags, sizeof(flags));
	fputs(or_else(json_string_value(json_object_get(ev, "id")), "-"), stdout);
	if (flags[0] != '\0')
		printf(" [%s]", flags);
	putchar('\n');
}

/* events tail: long polls on GET /v1/events?after=ID&wait=S until Ctrl-C
 * (or --limit events). */
static int
cmd_events_tail(struct ctl *c, struct args *a)
{
	struct ctl_answer ans;
	char last[64], path[512];
	char *ch = NULL, *ty = NULL;
	long long max = 0, shown = 0;
	long wait = c->timeout_ms / 1000 - 3;
	const json_t *ev;
	size_t i;
	int rc;

	if (wait > 5)
		wait = 5;
	if (wait < 0)
		wait = 0;
	if (a->limit != NULL && parse_count(a->limit, 1000000, &max) == -1)
		return CTL_USAGE;
	if ((a->channel != NULL && (ch = ctl_http_escape(a->channel)) == NULL) ||
	    (a->type != NULL && (ty = ctl_http_escape(a->type)) == NULL)) {
		rc = CTL_API_ERROR;
		goto out;
	}
	if ((rc = ctl_http_request(c->http, "GET", "/v1/events", NULL, &ans)) != CTL_OK)
		goto out;
	if ((rc = ctl_http_check(c->http, &ans)) != CTL_OK) {
		ctl_answer_free(&ans);
		goto out;
	}
	snprintf(last, sizeof(last), "%s",
	    or_else(json_string_value(json_object_get(ans.json, "last_id")), "0-0"));
	ctl_answer_free(&ans);
	if (!c->json) {
		printf("%-21s%-22s%-17s%-25s%-25s%-11s%-9s%s\n", "RECEIVED", "TYPE", "CHANNEL",
		    "OUT_TRADE_NO", "TRADE_NO", "PAID", "SOURCE", "ID");
		fflush(stdout);
	}
	for (;;) {
		snprintf(path, sizeof(path), "/v1/events?after=%s&wait=%ld%s%s%s%s", last, wait,
		    ch ? "&channel=" : "", ch ? ch : "", ty ? "&type=" : "", ty ? ty : "");
		if ((rc = ctl_http_request(c->http, "GET", path, NULL, &ans)) != CTL_OK)
			goto out;
		if ((rc = ctl_http_check(c->http, &ans)) != CTL_OK) {
			ctl_answer_free(&ans);
			goto out;
		}
		json_array_foreach(json_object_get(ans.json, "events"), i, ev)
		{
			if (c->json) {
				char *text = json_dumps(ev, JSON_COMPACT);

				if (text != NULL)
					printf("%s\n", text);
				free(text);
			} else {
				tail_row(ev);
			}
			if (max > 0 && ++shown >= max)
				break;
		}
		if (json_string_value(json_object_get(ans.json, "last_id")) != NULL)
			snprintf(last, sizeof(last), "%s",
			    json_string_value(json_object_get(ans.json, "last_id")));
		ctl_answer_free(&ans);
		if (fflush(stdout) == EOF || (max > 0 && shown >= max))
			break;
	}
	rc = CTL_OK;
out:
	free(ch);
	free(ty);
	return rc;
}

static int
check_events_tail(const struct command *cmd, struct ctl *c, struct args *a)
{
	long long n;

	if (a->channel != NULL && !config_name_valid(a->channel))
		return usage_error(cmd, "bad channel name: 1 to 64 of A-Z a-z 0-9 . _ -");
	if (a->type != NULL && strcmp(a->type, "order.paid") != 0 &&
	    strcmp(a->type, "order.status") != 0 && strcmp(a->type, "order.amount_mismatch") != 0 &&
	    strcmp(a->type, "order.refunded") != 0)
		return usage_error(cmd,
		    "--type is order.paid, order.status, order.amount_mismatch or order.refunded");
	if (a->limit != NULL && parse_count(a->limit, 1000000, &n) == -1)
		return usage_error(cmd, "--limit wants a whole number from 1 to 1000000");
	return CTL_OK;
}

/* deliveries show ID: one delivery and its last attempts. */
static int
cmd_deliveries_show(struct ctl *c, struct args *a)
{
	static const char *const first[] = { "id", "webhook", "event_id", "state", "attempts",
		"last_status", "last_error", "created_ms", "due_ms", "last_attempt_ms",
		"delivered_ms", "dead_ms", "replay_of", "replayed_as", NULL };
	static const char *const skip[] = { "history", "stream_id", NULL };
	static const char *const header[] = { "AT", "OUTCOME", "HTTP", "ERROR" };
	struct ctl_answer ans;
	struct ctl_table t;
	const json_t *h, *e;
	char *id, path[512];
	size_t i;
	int rc;

	if ((id = ctl_http_escape(a->pos[0])) == NULL)
		return CTL_API_ERROR;
	snprintf(path, sizeof(path), "/v1/deliveries/%s", id);
	free(id);
	if ((rc = ctl_http_request(c->http, "GET", path, NULL, &ans)) != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) != CTL_OK || c->json) {
		if (rc == CTL_OK)
			print_json_body(&ans);
		ctl_answer_free(&ans);
		return rc;
	}
	print_object(ans.json, first, skip);
	h = json_object_get(ans.json, "history");
	if (json_array_size(h) == 0) {
		printf("history: no attempt yet\n");
	} else if (ctl_table_init(&t, header, 4) == 0) {
		printf("history (last %zu attempts):\n", json_array_size(h));
		json_array_foreach(h, i, e)
		{
			char at[32] = "", *status = ctl_out_json_text(json_object_get(e, "status"));
			const char *row[4];
			int64_t ms;

			if (ctl_out_json_int(json_object_get(e, "at_ms"), &ms) == 0 && ms > 0)
				ctl_out_time(at, ms);
			row[0] = at;
			row[1] = json_string_value(json_object_get(e, "outcome"));
			row[2] = status != NULL && strcmp(status, "0") != 0 ? status : NULL;
			row[3] = json_string_value(json_object_get(e, "error"));
			if (row[3] != NULL && *row[3] == '\0')
				row[3] = NULL;
			if (ctl_table_add(&t, row) == -1)
				i = json_array_size(h);
			free(status);
		}
		ctl_table_print(&t, stdout);
		ctl_table_free(&t);
	}
	ctl_answer_free(&ans);
	return rc;
}

static int
check_delivery_id(const struct command *cmd, struct ctl *c, struct args *a)
{
	if (a->pos[0][0] == '\0' || strlen(a->pos[0]) > 128)
		return usage_error(cmd, "bad delivery id");
	return CTL_OK;
}

/* send-test CHANNEL: the daemon makes and signs a test callback (POST
 * /v1/channels/CH/test), this sends it to the public listener as the
 * gateway would, then shows the event and its deliveries. */
static int
cmd_send_test(struct ctl *c, struct args *a)
{
	struct ctl_answer made, cb, evans;
	json_t *req = json_object(), *list = NULL, *out = NULL;
	const char *body, *path, *evid;
	char url[512], addr[160], *chan;
	int rc, tries;

	if (req == NULL ||
	    (a->amount != NULL &&
		json_object_set_new(req, "amount", json_string(a->amount)) != 0) ||
	    (a->status != NULL &&
		json_object_set_new(req, "status", json_string(a->status)) != 0) ||
	    (chan = ctl_http_escape(a->pos[0])) == NULL) {
		json_decref(req);
		fprintf(stderr, "payrelayctl: out of memory\n");
		return CTL_API_ERROR;
	}
	snprintf(url, sizeof(url), "/v1/channels/%s/test", chan);
	free(chan);
	rc = ctl_http_request(c->http, "POST", url, req, &made);
	json_decref(req);
	if (rc != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &made)) != CTL_OK) {
		ctl_answer_free(&made);
		return rc;
	}
	body = json_string_value(json_object_get(made.json, "body"));
	path = json_string_value(json_object_get(made.json, "path"));
	evid = json_string_value(json_object_get(made.json, "event_id"));
	if (body == NULL || path == NULL || evid == NULL) {
		fprintf(stderr, "payrelayctl: the answer has no test callback\n");
		ctl_answer_free(&made);
		return CTL_API_ERROR;
	}
	if ((rc = ctl_http_public_post(c->cfg, c->timeout_ms, path, body, strlen(body), &cb,
		 addr)) != CTL_OK) {
		ctl_answer_free(&made);
		return rc;
	}
	if (!c->json) {
		printf("test callback of %s (%s): POST http://%s%s\n", a->pos[0],
		    or_else(json_string_value(json_object_get(made.json, "family")), "?"), addr,
		    path);
		printf("answer: HTTP %ld \"", cb.status);
		if (sbuf_add(&cb.body, "", 0) == 0 && cb.body.p != NULL)
			ctl_out_safe(stdout, cb.body.p);
		printf("\"\n");
	}
	if (cb.status < 200 || cb.status >= 300) {
		fprintf(stderr,
		    "payrelayctl: the public listener did not take the test callback (HTTP "
		    "%ld)%s\n",
		    cb.status,
		    cb.status == 403 ? ": the channel's allow_from does not admit this host" : "");
		rc = CTL_API_ERROR;
		goto out;
	}
	snprintf(url, sizeof(url), "/v1/events/%s", evid);
	if ((rc = ctl_http_request(c->http, "GET", url, NULL, &evans)) != CTL_OK)
		goto out;
	if ((rc = ctl_http_check(c->http, &evans)) != CTL_OK) {
		ctl_answer_free(&evans);
		goto out;
	}
	/* The first attempts start at once: give them a moment to settle. */
	for (tries = 0; tries < 20; tries++) {
		const json_t *d;
		size_t i;
		bool waiting = false;

		json_decref(list);
		if ((rc = event_deliveries(c, evid, &list)) != CTL_OK) {
			ctl_answer_free(&evans);
			goto out;
		}
		json_array_foreach(list, i, d)
		{
			int64_t n = 0;

			if (ctl_out_json_int(json_object_get(d, "attempts"), &n) == 0 && n == 0 &&
			    json_string_value(json_object_get(d, "state")) != NULL &&
			    strcmp(json_string_value(json_object_get(d, "state")), "pending") == 0)
				waiting = true;
		}
		if (!waiting)
			break;
		nanosleep(&(struct timespec){ 0, 250000000L }, NULL);
	}
	if (c->json) {
		char *text;

		json_object_del(made.json, "body");
		out = json_pack("{s:O,s:{s:I,s:s#},s:O,s:O}", "test", made.json, "callback",
		    "status", (json_int_t)cb.status, "body", cb.body.p ? cb.body.p : "",
		    cb.body.len, "event", evans.json, "deliveries", list);
		if (out != NULL && (text = json_dumps(out, JSON_COMPACT)) != NULL) {
			printf("%s\n", text);
			free(text);
		}
	} else {
		printf("\nevent:\n");
		print_event_line(evans.json);
		printf("\ndeliveries:\n");
		print_event_deliveries(list, "  ");
	}
	ctl_answer_free(&evans);
out:
	json_decref(out);
	json_decref(list);
	ctl_answer_free(&cb);
	ctl_answer_free(&made);
	return rc;
}

static int
check_send_test(const struct command *cmd, struct ctl *c, struct args *a)
{
	if (!config_name_valid(a->pos[0]))
		return usage_error(cmd, "bad channel name: 1 to 64 of A-Z a-z 0-9 . _ -");
	if (a->amount != NULL && (a->amount[0] == '\0' || strlen(a->amount) > 32))
		return usage_error(cmd, "--amount wants yuan, like 0.01");
	if (a->status != NULL && (a->status[0] == '\0' || strlen(a->status) > 64))
		return usage_error(cmd, "--status wants the gateway's raw status");
	return CTL_OK;
}

/* --- refund, account, settlements (SPEC §10.3) ------------------------- */

static int
check_refund(const struct command *cmd, struct ctl *c, struct args *a)
{
	const char *id = a->out_trade_no != NULL ? a->out_trade_no : a->trade_no;
	int64_t fen;

	if (!config_name_valid(a->pos[0]))
		return usage_error(cmd, "bad channel name: 1 to 64 of A-Z a-z 0-9 . _ -");
	if ((a->out_trade_no == NULL) == (a->trade_no == NULL))
		return usage_error(cmd, "give one of --out-trade-no X or --trade-no X");
	if (id[0] == '\0' || strlen(id) > 128 || strchr(id, '/') != NULL)
		return usage_error(cmd, "the order id must be 1 to 128 bytes, without '/'");
	if (amount_parse(a->pos[1], strlen(a->pos[1]), &fen) == -1 || fen < 1)
		return usage_error(cmd, "AMOUNT must be yuan as a decimal above 0, like 1.00");
	if (a->refund_id == NULL)
		return usage_error(cmd, "refund needs --refund-id ID (your id of this refund)");
	if (a->refund_id[0] == '\0' || strlen(a->refund_id) > 64)
		return usage_error(cmd, "--refund-id must be 1 to 64 bytes");
	return CTL_OK;
}

static int
cmd_refund(struct ctl *c, struct args *a)
{
	static const char *const first[] = { "state", "channel", "refund_id", "out_trade_no",
		"trade_no", "amount", "refunded_fen", "refundable_fen", "paid_amount_fen",
		"event_id", "event_recorded", "gateway_msg", NULL };
	static const char *const skip[] = { "amount_fen", NULL };
	struct ctl_answer ans;
	json_t *body;
	int rc;

	body = json_pack("{s:s,s:s,s:s,s:s}", "channel", a->pos[0], "amount", a->pos[1],
	    "refund_id", a->refund_id, a->out_trade_no != NULL ? "out_trade_no" : "trade_no",
	    a->out_trade_no != NULL ? a->out_trade_no : a->trade_no);
	if (body == NULL) {
		fprintf(stderr, "payrelayctl: out of memory (or not UTF-8 arguments)\n");
		return CTL_API_ERROR;
	}
	rc = ctl_http_request(c->http, "POST", "/v1/refunds", body, &ans);
	json_decref(body);
	if (rc != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, &ans)) == CTL_OK) {
		if (c->json) {
			print_json_body(&ans);
		} else {
			printf("%s\n", ans.status == 201 ? "refunded" : "already refunded");
			print_object(ans.json, first, skip);
		}
	} else if (c->json && ans.json != NULL) {
		/* Scripts want the gateway's code and message too. */
		print_json_body(&ans);
	}
	ctl_answer_free(&ans);
	return rc;
}

static int
check_channel_only(const struct command *cmd, struct ctl *c, struct args *a)
{
	if (!config_name_valid(a->pos[0]))
		return usage_error(cmd, "bad channel name: 1 to 64 of A-Z a-z 0-9 . _ -");
	return CTL_OK;
}

/* GET /v1/channels/CH/WHAT into ans; CTL_OK or the exit status. */
static int
channel_get(struct ctl *c, const struct args *a, const char *what, struct ctl_answer *ans)
{
	char *ch = ctl_http_escape(a->pos[0]);
	char path[256];
	int rc;

	if (ch == NULL)
		return CTL_API_ERROR;
	snprintf(path, sizeof(path), "/v1/channels/%s/%s", ch, what);
	free(ch);
	if ((rc = ctl_http_request(c->http, "GET", path, NULL, ans)) != CTL_OK)
		return rc;
	if ((rc = ctl_http_check(c->http, ans)) != CTL_OK)
		ctl_answer_free(ans);
	return rc;
}

static int
cmd_account(struct ctl *c, struct args *a)
{
	static const char *const first[] = { "channel", "merchant_id", "status", "balance",
		"balance_fen", "orders", "orders_today", "orders_yesterday", "settle_method",
		"settle_account", "settle_name", NULL };
	static const char *const skip[] = { "active", "settle_type", NULL };
	struct ctl_answer ans;
	int rc;

	if ((rc = channel_get(c, a, "account", &ans)) != CTL_OK)
		return rc;
	if (c->json)
		print_json_body(&ans);
	else
		print_object(ans.json, first, skip);
	ctl_answer_free(&ans);
	return rc;
}

static int
cmd_settlements(struct ctl *c, struct args *a)
{
	static const char *const header[] = { "ID", "MONEY", "REAL MONEY", "STATUS", "ADDED",
		"ENDED", "ACCOUNT" };
	static const char *const fields[] = { "id", "money", "realmoney", "status", "addtime",
		"endtime", "account" };
	const json_t *list, *r;
	struct ctl_table t;
	struct ctl_answer ans;
	size_t i, j;
	int rc;

	if ((rc = channel_get(c, a, "settlements", &ans)) != CTL_OK)
		return rc;
	list = json_object_get(ans.json, "settlements");
	if (c->json) {
		print_json_body(&ans);
	} else if (json_array_size(list) == 0) {
		printf("no settlement of channel ");
		ctl_out_safe(stdout, a->pos[0]);
		putchar('\n');
	} else if (ctl_table_init(&t, header, 7) == 0) {
		json_array_foreach(list, i, r)
		{
			char *cells[7];

			for (j = 0; j < 7; j++)
				cells[j] = ctl_out_json_text(json_object_get(r, fields[j]));
			if (ctl_table_add(&t, (const char *const *)cells) == -1)
				rc = CTL_API_ERROR;
			for (j = 0; j < 7; j++)
				free(cells[j]);
		}
		ctl_table_print(&t, stdout);
		ctl_table_free(&t);
	} else {
		rc = CTL_API_ERROR;
	}
	ctl_answer_free(&ans);
	return rc;
}

/* --- the command table --------------------------------------------------- */

/* The options of every command; a command's own table is joined to these
 * by parse_command. */
static const struct option global_opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};
static const struct option opts_none[] = { { NULL, 0, NULL, 0 } };
static const struct option opts_deliveries[] = {
	{ "dead", no_argument, NULL, OPT_DEAD },
	{ "pending", no_argument, NULL, OPT_PENDING },
	{ "webhook", required_argument, NULL, OPT_WEBHOOK },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ NULL, 0, NULL, 0 },
};
static const struct option opts_replay[] = {
	{ "dead", no_argument, NULL, OPT_DEAD },
	{ "webhook", required_argument, NULL, OPT_WEBHOOK },
	{ "since", required_argument, NULL, OPT_SINCE },
	{ "until", required_argument, NULL, OPT_UNTIL },
	{ NULL, 0, NULL, 0 },
};
static const struct option opts_purge[] = {
	{ "dead", no_argument, NULL, OPT_DEAD },
	{ "before", required_argument, NULL, OPT_BEFORE },
	{ "webhook", required_argument, NULL, OPT_WEBHOOK },
	{ NULL, 0, NULL, 0 },
};
static const struct option opts_send_test[] = {
	{ "amount", required_argument, NULL, OPT_AMOUNT },
	{ "status", required_argument, NULL, OPT_STATUS },
	{ NULL, 0, NULL, 0 },
};
static const struct option opts_find[] = {
	{ "out-trade-no", required_argument, NULL, OPT_OUT_TRADE_NO },
	{ "channel", required_argument, NULL, OPT_CHANNEL },
	{ NULL, 0, NULL, 0 },
};
static const struct option opts_tail[] = {
	{ "channel", required_argument, NULL, OPT_CHANNEL },
	{ "type", required_argument, NULL, OPT_TYPE },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ NULL, 0, NULL, 0 },
};
static const struct option opts_expect[] = {
	{ "expires-in", required_argument, NULL, OPT_EXPIRES_IN },
	{ NULL, 0, NULL, 0 },
};
static const struct option opts_refund[] = {
	{ "out-trade-no", required_argument, NULL, OPT_OUT_TRADE_NO },
	{ "trade-no", required_argument, NULL, OPT_TRADE_NO },
	{ "refund-id", required_argument, NULL, OPT_REFUND_ID },
	{ NULL, 0, NULL, 0 },
};
static const struct option opts_pay[] = {
	{ "method", required_argument, NULL, OPT_METHOD },
	{ "subject", required_argument, NULL, OPT_SUBJECT },
	{ "param", required_argument, NULL, OPT_PARAM },
	{ "client-ip", required_argument, NULL, OPT_CLIENT_IP },
	{ "device", required_argument, NULL, OPT_DEVICE },
	{ "return-to", required_argument, NULL, OPT_RETURN_TO },
	{ "redirect", no_argument, NULL, OPT_REDIRECT },
	{ "product-id", required_argument, NULL, OPT_PRODUCT_ID },
	{ "fields", required_argument, NULL, OPT_FIELDS },
	{ "expires-in", required_argument, NULL, OPT_EXPIRES_IN },
	{ NULL, 0, NULL, 0 },
};

static const struct command commands[] = {
	{ "status", NULL, "status", "is payrelayd up, and ready (Redis reachable)?",
	    "Asks GET /healthz and GET /readyz and prints \"payrelayd at ADDR: ready\", or\n"
	    "\"not ready (WHY)\" and exits 1. When the daemon serves /metrics, a summary\n"
	    "of its payrelay_* counters follows. With --json: {\"address\", \"ready\",\n"
	    "\"healthz\": <answer>, \"readyz\": <answer>}.\n",
	    opts_none, 0, 0, NULL, cmd_status },
	{ "events", "show", "events show EVENT_ID", "one recorded event (GET /v1/events/ID)",
	    "Prints the event's fields as \"key: value\" lines: id, type, channel, trade_no,\n"
	    "out_trade_no, status, amount, paid_amount, received_at, source, then the\n"
	    "others. --json prints the event JSON (with its stream_id) as the API gives it.\n"
	    "Exit 6 when no such event is recorded.\n",
	    opts_none, 1, 1, check_event_id, cmd_events_show },
	{ "events", "find", "events find --out-trade-no X [--channel C]",
	    "every event of one merchant order, with its deliveries (GET "
	    "/v1/events?out_trade_no=X)",
	    "Was order X paid, and did each webhook get it? Lists every event recorded for\n"
	    "the merchant order X within dedup_ttl, registered for polling or not (callbacks,\n"
	    "polls, sweeps, repeat payments, amount mismatches, tests), each followed by its\n"
	    "deliveries: webhook, state (pending, delivered, dead, replayed), attempts, last\n"
	    "status and error. --channel C looks in one channel only (default: every\n"
	    "channel). --json gives {\"out_trade_no\", \"events\": [event + \"deliveries\"]}.\n"
	    "Prints \"no event of order X\" (exit 0) when payrelayd got no verified callback\n"
	    "or paid poll for it.\n",
	    opts_find, 0, 0, check_events_find, cmd_events_find },
	{ "events", "tail", "events tail [--channel C] [--type T] [--limit N]",
	    "follow the event stream live, as a table (GET /v1/events?after=ID&wait=S)",
	    "Prints each event recorded from now on as one row: RECEIVED, TYPE, CHANNEL,\n"
	    "OUT_TRADE_NO, TRADE_NO, PAID, SOURCE, ID and flags ([test], [repeat],\n"
	    "[mismatch]). --channel C and --type T (order.paid, order.status,\n"
	    "order.amount_mismatch, order.refunded) filter; --limit N stops after N\n"
	    "events; otherwise it runs until Ctrl-C. --json prints one event JSON per line.\n",
	    opts_tail, 0, 0, check_events_tail, cmd_events_tail },
	{ "deliveries", "list", "deliveries list [--dead|--pending] [--webhook W] [--limit N]",
	    "webhook deliveries, dead or waiting (GET /v1/deliveries)",
	    "  --dead        dead deliveries, whose retry schedule is used up (the default)\n"
	    "  --pending     deliveries waiting for their next attempt instead\n"
	    "  --webhook W   only those of [webhook:W]\n"
	    "  --limit N     at most N deliveries\n"
	    "\n"
	    "Prints a table: ID, WEBHOOK, EVENT, STATE, ATTEMPTS, LAST STATUS, LAST ERROR\n"
	    "(cut at 40 characters; --json has it whole), DUE/DEAD AT (UTC): when the next\n"
	    "attempt is due, or when a dead delivery died.\n",
	    opts_deliveries, 0, 0, check_deliveries_list, cmd_deliveries_list },
	{ "deliveries", "show", "deliveries show DELIVERY_ID",
	    "one delivery and its attempt history (GET /v1/deliveries/ID)",
	    "Prints the delivery as \"key: value\" lines (webhook, event_id, state,\n"
	    "attempts, last status and error, its times in UTC, replay_of/replayed_as),\n"
	    "then its last 10 attempts: AT, OUTCOME (ok, retry, dead, probe), HTTP, ERROR.\n"
	    "Exit 6 when no such delivery is kept (delivered and replayed ones live\n"
	    "delivery_retention).\n",
	    opts_none, 1, 1, check_delivery_id, cmd_deliveries_show },
	{ "deliveries", "purge", "deliveries purge --dead --before T [--webhook W]",
	    "delete dead deliveries that died before T (POST /v1/deliveries/purge)",
	    "  --dead        dead deliveries (the only ones purged: delivered and replayed\n"
	    "                ones expire after delivery_retention by themselves)\n"
	    "  --before T    those that died before T\n"
	    "  --webhook W   only those of webhook W (also one no longer configured);\n"
	    "                default: every configured webhook\n"
	    "\n"
	    "Deletes each delivery and every index entry naming it, in batches of 500 so\n"
	    "Redis never stalls the callbacks, and prints \"purged N dead deliveries that\n"
	    "died before T\". A purged delivery cannot be replayed any more (replay the\n"
	    "events with replay --since instead). T is as for replay.\n",
	    opts_purge, 0, 0, check_purge, cmd_deliveries_purge },
	{ "replay", NULL,
	    "replay DELIVERY_ID | --webhook W --dead | --webhook W --since T [--until T]",
	    "deliver again: one delivery, every dead one of a webhook, or a time range",
	    "  replay DELIVERY_ID\n"
	    "      a new delivery of that delivery's event, due now (POST\n"
	    "      /v1/deliveries/ID/replay); prints \"replayed ID as NEW_ID\"\n"
	    "  replay --webhook W --dead\n"
	    "      replays every dead delivery of [webhook:W] (POST /v1/replay)\n"
	    "  replay --webhook W --since T [--until T]\n"
	    "      re-delivers to W every event the stream holds from T to T (POST\n"
	    "      /v1/replay); --until defaults to now\n"
	    "\n"
	    "T is an ISO-8601 time with a zone (2026-11-22T10:00:00Z,\n"
	    "2026-11-22T18:00:00+08:00, 2026-11-22 = midnight UTC) or unix milliseconds\n"
	    "(1795341600000). The receivers get the same event ids again: they must be\n"
	    "idempotent on them, as they are for retries.\n",
	    opts_replay, 0, 1, check_replay, cmd_replay },
	{ "send-test", NULL, "send-test CHANNEL [--amount A] [--status S]",
	    "send a signed test callback through the public listener (smoke test)",
	    "Asks payrelayd for a test callback of CHANNEL (POST /v1/channels/CH/test):\n"
	    "signed with the channel's own key exactly as its gateway signs, with a test\n"
	    "trade id (paytest_...) only this daemon handed out. Sends it to the public\n"
	    "listener ([daemon] listen) as the gateway would, then prints the answer, the\n"
	    "recorded event (\"test\": true: consumers ignore it) and its deliveries.\n"
	    "  --amount A   yuan (default 0.01)\n"
	    "  --status S   the gateway's raw status instead of paid (epay trade_status,\n"
	    "               payindex returncode; gatepay has none)\n"
	    "Run it after every deploy and key rotation. Test events skip confirmation by\n"
	    "query (no gateway knows them). epay RSA channels cannot be tested: payrelay\n"
	    "does not hold the platform's private key. Exit 1 when the listener refuses it.\n",
	    opts_send_test, 1, 1, check_send_test, cmd_send_test },
	{ "orders", "expect", "orders expect CHANNEL OUT_TRADE_NO AMOUNT [--expires-in S]",
	    "register an order to reconcile (POST /v1/orders)",
	    "Registers an order the merchant created, so that payrelayd polls the gateway\n"
	    "for it if its callback never comes. AMOUNT is in yuan (\"1.00\"). --expires-in\n"
	    "gives its lifetime in seconds (or 15m, 2h, 1d; default: the daemon's, 24 h).\n"
	    "Registering the same order with the same amount again is harmless (\"already\n"
	    "registered\"); with another amount it is an error (HTTP 409).\n",
	    opts_expect, 3, 3, check_orders_expect, cmd_orders_expect },
	{ "orders", "show", "orders show CHANNEL OUT_TRADE_NO",
	    "a registered order (GET /v1/orders/CHANNEL/OUT_TRADE_NO)",
	    "Prints the order as \"key: value\" lines: state (pending, paid, expired, ...),\n"
	    "amount, polls, the last poll's result, and its times in UTC.\n",
	    opts_none, 2, 2, check_order_ids, cmd_orders_show },
	{ "poll", NULL, "poll CHANNEL OUT_TRADE_NO",
	    "ask the gateway about one registered order now",
	    "POST /v1/orders/CHANNEL/OUT_TRADE_NO/poll: queries the gateway now and prints\n"
	    "the result (paid, unpaid, ...), its detail and the order afterwards. A paid\n"
	    "answer is recorded as a callback would be. Without --timeout, the wait is the\n"
	    "channel's poll_timeout_ms plus 10 s (at least 10 s).\n",
	    opts_none, 2, 2, check_order_ids, cmd_poll },
	{ "refund", NULL, "refund CHANNEL (--out-trade-no X | --trade-no X) AMOUNT --refund-id ID",
	    "refund a recorded payment through the channel's gateway (POST /v1/refunds)",
	    "Asks the gateway of CHANNEL, through its family's refund API, to give back AMOUNT\n"
	    "yuan (\"1.00\") of the payment of order X (--out-trade-no: the merchant's\n"
	    "order id; --trade-no: the gateway's trade id). ID is your own id of this\n"
	    "refund: asking again with the same ID never refunds twice, it prints the first\n"
	    "answer (\"already refunded\"). Refunds of one payment never add up to more\n"
	    "than it paid: more is refused before the gateway is asked (HTTP 409). A made\n"
	    "refund is recorded as an order.refunded event and sent to the webhooks.\n"
	    "Prints \"refunded\" and the refund as \"key: value\" lines. A gateway's refusal\n"
	    "prints its code and message and exits 1; a channel whose family has no refund API\n"
	    "exits 1 (HTTP 501); an unknown channel or order exits 6. Without\n"
	    "--timeout, the wait is the channel's poll_timeout_ms plus 10 s.\n",
	    opts_refund, 2, 2, check_refund, cmd_refund },
	{ "account", NULL, "account CHANNEL",
	    "the merchant's account at the channel's gateway (GET /v1/channels/CH/account)",
	    "Asks the channel's gateway (its family's account API) and prints the account as\n"
	    "\"key: value\" lines: status (active or banned), balance (yuan, and fen),\n"
	    "order counts (all, today, yesterday) and where settlements go. The merchant\n"
	    "key the gateway echoes is never shown. --json prints the API's answer.\n",
	    opts_none, 1, 1, check_channel_only, cmd_account },
	{ "settlements", NULL, "settlements CHANNEL",
	    "the merchant's settlements at the channel's gateway (GET "
	    "/v1/channels/CH/settlements)",
	    "Asks the channel's gateway (its family's settlements API) and prints a table: ID, "
	    "MONEY,\n"
	    "REAL MONEY, STATUS, ADDED, ENDED, ACCOUNT (\"-\" where the platform gives no\n"
	    "such field). --json prints the API's answer, every field the platform sent\n"
	    "but a key.\n",
	    opts_none, 1, 1, check_channel_only, cmd_settlements },
	{ "pay", NULL,
	    "pay CHANNEL OUT_TRADE_NO AMOUNT [--method M] [--subject S] [--redirect] [options]",
	    "create a payment at the channel's gateway (POST /v1/payments)",
	    "payrelayd signs and sends the gateway's create call with the keys it holds,\n"
	    "registers the order with its amount in the same step, and prints the pay URL\n"
	    "(or QR code / URL scheme) the payer is sent to, then the registered order.\n"
	    "AMOUNT is in yuan (\"1.00\"); \"-\" for none with --product-id or --fields.\n"
	    "  --method M      the gateway's payment type (alipay, wxpay, wechat, or a\n"
	    "                  bank code such as 903: see payrelayctl(1))\n"
	    "  --subject S     the product name\n"
	    "  --param P       passthrough, given back in the notify\n"
	    "  --client-ip IP  the payer's address\n"
	    "  --device D      the payer's device type (default: the channel's device key)\n"
	    "  --return-to U   where the payer's browser goes afterwards (a host of\n"
	    "                  [daemon] return_hosts)\n"
	    "  --redirect      no call: print the signed URL of the gateway's payment page\n"
	    "                  (where the gateway has one)\n"
	    "  --product-id ID a fixed product of the gateway instead of an amount\n"
	    "  --fields F      products and counts (\"id:count,...\") instead of an amount\n"
	    "  --expires-in S  how long the order is polled for (default 24 h)\n"
	    "Creating the same order again with the same amount prints the first answer\n"
	    "(no second gateway call); another amount is refused (HTTP 409). A gateway\n"
	    "refusal exits 1 with its code and message (HTTP 502). Without --timeout, the\n"
	    "wait is 25 s.\n",
	    opts_pay, 3, 3, check_pay, cmd_pay },
};
static const size_t ncommands = sizeof(commands) / sizeof(commands[0]);

static void
usage_all(FILE *f)
{
	size_t i;

	fprintf(f,
	    "usage: payrelayctl [-c FILE] [--json] [--timeout S] COMMAND [ARGS]\n"
	    "       payrelayctl COMMAND --help\n"
	    "       payrelayctl --version\n"
	    "\n"
	    "The on-call tool of payrelayd: asks its admin API, at the [admin] listen\n"
	    "address and with the [admin] token of the daemon's config file.\n"
	    "\n"
	    "Commands:\n");
	for (i = 0; i < ncommands; i++) {
		const char *s = commands[i].synopsis;

		fprintf(f, "  %s\n      %s\n", s, commands[i].summary);
	}
	fprintf(f,
	    "  help [COMMAND]\n      this text, or the help of one command\n\n%s"
	    "  -V, --version       print the version\n\n%s",
	    global_help, exit_help);
}

/* A group: "events", "deliveries", "orders". */
static void
help_group(FILE *f, const char *name)
{
	size_t i;

	fprintf(f, "usage:\n");
	for (i = 0; i < ncommands; i++) {
		if (strcmp(commands[i].name, name) == 0)
			fprintf(f, "  payrelayctl %s\n      %s\n", commands[i].synopsis,
			    commands[i].summary);
	}
	for (i = 0; i < ncommands; i++) {
		if (strcmp(commands[i].name, name) == 0)
			fprintf(f, "Try 'payrelayctl %s %s --help'.\n", name, commands[i].sub);
	}
}

static const struct command *
find_command(const char *name, const char *sub)
{
	size_t i;

	for (i = 0; i < ncommands; i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		if (commands[i].sub == NULL || (sub != NULL && strcmp(commands[i].sub, sub) == 0))
			return &commands[i];
	}
	return NULL;
}

static bool
is_group(const char *name)
{
	size_t i;

	for (i = 0; i < ncommands; i++) {
		if (strcmp(commands[i].name, name) == 0 && commands[i].sub != NULL)
			return true;
	}
	return false;
}

/* --- main ---------------------------------------------------------------- */

/* Seconds, maybe with a fraction, from 0.001 to one day. */
static int
parse_timeout(const char *s, long *ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= 0.001 && v <= 86400))
		return -1;
	*ms = (long)(v * 1000 + 0.5);
	return 0;
}

/* The options every command takes. Returns 0, or CTL_USAGE. */
static int
global_option(const struct command *cmd, struct ctl *c, int ch, const char *arg)
{
	switch (ch) {
	case 'c':
		c->config_path = arg;
		return 0;
	case OPT_JSON:
		c->json = true;
		return 0;
	case OPT_TIMEOUT:
		if (parse_timeout(arg, &c->timeout_ms) == -1)
			return usage_error(cmd, "--timeout wants seconds, like 10 or 0.5");
		return 0;
	}
	return usage_error(cmd, "unexpected option");
}

/* "--foo" or "-x" of the option getopt refused. */
static void
bad_option_name(char **argv, char *out, size_t size)
{
	const char *o = optind > 0 ? argv[optind - 1] : "?";

	if (optopt != 0 && optopt < 256)
		snprintf(out, size, "-%c", optopt);
	else
		snprintf(out, size, "%s", o);
}

static int
parse_command(const struct command *cmd, struct ctl *c, int argc, char **argv, struct args *a)
{
	struct option opts[16];
	const struct option *o;
	size_t n = 0;
	char name[128];
	int ch, rc;

	for (o = cmd->opts; o->name != NULL; o++)
		opts[n++] = *o;
	for (o = global_opts; o->name != NULL; o++)
		opts[n++] = *o;
	memset(&opts[n], 0, sizeof(opts[n]));
	opterr = 0;
	optind = 0; /* glibc: start over */
	while ((ch = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			help_command(stdout, cmd);
			return -1; /* done, exit 0 */
		case OPT_DEAD:
			a->dead = true;
			break;
		case OPT_PENDING:
			a->pending = true;
			break;
		case OPT_WEBHOOK:
			a->webhook = optarg;
			break;
		case OPT_LIMIT:
			a->limit = optarg;
			break;
		case OPT_SINCE:
			a->since = optarg;
			break;
		case OPT_UNTIL:
			a->until = optarg;
			break;
		case OPT_EXPIRES_IN:
			a->expires_in = optarg;
			break;
		case OPT_AMOUNT:
			a->amount = optarg;
			break;
		case OPT_STATUS:
			a->status = optarg;
			break;
		case OPT_OUT_TRADE_NO:
			a->out_trade_no = optarg;
			break;
		case OPT_CHANNEL:
			a->channel = optarg;
			break;
		case OPT_TYPE:
			a->type = optarg;
			break;
		case OPT_BEFORE:
			a->before = optarg;
			break;
		case OPT_TRADE_NO:
			a->trade_no = optarg;
			break;
		case OPT_REFUND_ID:
			a->refund_id = optarg;
			break;
		case OPT_METHOD:
			a->method = optarg;
			break;
		case OPT_SUBJECT:
			a->subject = optarg;
			break;
		case OPT_PARAM:
			a->param = optarg;
			break;
		case OPT_CLIENT_IP:
			a->client_ip = optarg;
			break;
		case OPT_DEVICE:
			a->device = optarg;
			break;
		case OPT_RETURN_TO:
			a->return_to = optarg;
			break;
		case OPT_REDIRECT:
			a->redirect = true;
			break;
		case OPT_PRODUCT_ID:
			a->product_id = optarg;
			break;
		case OPT_FIELDS:
			a->fields = optarg;
			break;
		case ':':
			bad_option_name(argv, name, sizeof(name));
			return usage_error(cmd, "option %s needs a value", name);
		case '?':
			bad_option_name(argv, name, sizeof(name));
			return usage_error(cmd, "unknown option %s", name);
		default:
			if ((rc = global_option(cmd, c, ch, optarg)) != 0)
				return rc;
			break;
		}
	}
	for (; optind < argc; optind++) {
		if (a->npos == MAX_POSITIONAL || a->npos == cmd->max_pos)
			return usage_error(cmd, "too many arguments");
		a->pos[a->npos++] = argv[optind];
	}
	if (a->npos < cmd->min_pos)
		return usage_error(cmd, "missing arguments");
	return cmd->check != NULL ? cmd->check(cmd, c, a) : CTL_OK;
}

static int
load_config(struct ctl *c)
{
	struct config_errors errs = { 0 };
	size_t i;

	/* The daemon's warnings about its own files (e.g. permissions) are
	 * for its log, not for this command's output. */
	log_set_level(LOG_ERROR);
	c->cfg = config_load(c->config_path, &errs);
	if (c->cfg == NULL) {
		for (i = 0; i < errs.n; i++) {
			if (errs.v[i].line > 0)
				fprintf(stderr, "%s:%d: %s\n", c->config_path, errs.v[i].line,
				    errs.v[i].msg);
			else
				fprintf(stderr, "%s: %s\n", c->config_path, errs.v[i].msg);
		}
		if (errs.n == 0)
			fprintf(stderr, "%s: cannot be loaded\n", c->config_path);
		config_errors_free(&errs);
		return CTL_BAD_CONFIG;
	}
	config_errors_free(&errs);
	if (c->cfg->admin_token != NULL && strpbrk(c->cfg->admin_token, "\r\n") != NULL) {
		fprintf(stderr, "%s: the [admin] token contains a line break\n", c->config_path);
		return CTL_BAD_CONFIG;
	}
	return CTL_OK;
}

/* A poll waits for the gateway: give it the channel's own time limit. */
static long
poll_timeout(const struct ctl *c, const struct args *a)
{
	const struct channel *ch = config_channel(c->cfg, a->pos[0]);
	long ms = ch != NULL ? ch->poll_timeout_ms + 10000L : 0;

	return ms > DEFAULT_TIMEOUT_MS ? ms : DEFAULT_TIMEOUT_MS;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl c = { .config_path = DEFAULT_CONFIG };
	struct args a = { 0 };
	const struct command *cmd;
	const char *name, *sub;
	char bad[128];
	int ch, rc, first;

	/* Before the admin token is read: no core dump holds it. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		fprintf(stderr, "payrelayctl: warning: cannot disable core dumps: %s\n",
		    strerror(errno));
	opterr = 0;
	/* '+': stop at the command; its own options come after it */
	while ((ch = getopt_long(argc, argv, "+:c:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			usage_all(stdout);
			return CTL_OK;
		case 'V':
			printf("payrelayctl %s\n", PAYRELAY_VERSION);
			return CTL_OK;
		case ':':
			bad_option_name(argv, bad, sizeof(bad));
			return usage_error(NULL, "option %s needs a value", bad);
		case '?':
			bad_option_name(argv, bad, sizeof(bad));
			return usage_error(NULL, "unknown option %s", bad);
		default:
			if ((rc = global_option(NULL, &c, ch, optarg)) != 0)
				return rc;
		}
	}
	if (optind >= argc)
		return usage_error(NULL, "no command");
	name = argv[optind];
	sub = optind + 1 < argc ? argv[optind + 1] : NULL;

	if (strcmp(name, "help") == 0) {
		if (sub == NULL) {
			usage_all(stdout);
		} else if ((cmd = find_command(sub, optind + 2 < argc ? argv[optind + 2] : NULL)) !=
			NULL &&
		    (cmd->sub == NULL || optind + 2 < argc)) {
			help_command(stdout, cmd);
		} else if (is_group(sub)) {
			help_group(stdout, sub);
		} else {
			return usage_error(NULL, "no such command: %s", sub);
		}
		return CTL_OK;
	}
	if (is_group(name)) {
		if (sub == NULL)
			return usage_error(NULL,
			    "%s needs a subcommand (try 'payrelayctl %s --help')", name, name);
		if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
			help_group(stdout, name);
			return CTL_OK;
		}
		if ((cmd = find_command(name, sub)) == NULL)
			return usage_error(NULL,
			    "no such command: %s %s (try 'payrelayctl %s --help')", name, sub,
			    name);
		first = optind + 1;
	} else if ((cmd = find_command(name, NULL)) != NULL) {
		first = optind;
	} else {
		return usage_error(NULL, "no such command: %s", name);
	}
	/* argv[first] (the command's last word) stands in for argv[0] */
	rc = parse_command(cmd, &c, argc - first, argv + first, &a);
	if (rc == -1)
		return CTL_OK; /* --help */
	if (rc != CTL_OK)
		return rc;

	if ((rc = load_config(&c)) != CTL_OK)
		goto out;
	if (c.timeout_ms == 0)
		c.timeout_ms = cmd->run == cmd_poll || cmd->run == cmd_refund ||
			cmd->run == cmd_account || cmd->run == cmd_settlements
		    ? poll_timeout(&c, &a)
		    : cmd->run == cmd_pay ? PAY_TIMEOUT_MS
					  : DEFAULT_TIMEOUT_MS;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "payrelayctl: cannot initialise libcurl\n");
		rc = CTL_API_ERROR;
		goto out;
	}
	if ((c.http = ctl_http_new(c.cfg, c.config_path, c.timeout_ms)) == NULL) {
		fprintf(stderr, "payrelayctl: out of memory\n");
		rc = CTL_API_ERROR;
	} else {
		rc = cmd->run(&c, &a);
	}
	ctl_http_free(c.http);
	curl_global_cleanup();
out:
	config_free(c.cfg);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "payrelayctl: cannot write the output: %s\n", strerror(errno));
		if (rc == CTL_OK)
			rc = CTL_API_ERROR;
	}
	return rc;
}
