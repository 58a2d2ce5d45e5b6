#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "amount.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "poll.h"
#include "store.h"

static void
admin_json(struct evhttp_request *req, int code, json_t *body)
{
	struct evbuffer *buf = evbuffer_new();
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	if (buf != NULL && text != NULL) {
		evbuffer_add(buf, text, strlen(text));
		evbuffer_add(buf, "\n", 1);
	}
	evhttp_send_reply(req, code, code < 300 ? "OK" : "Error", buf);
	if (buf != NULL)
		evbuffer_free(buf);
	free(text);
	json_decref(body);
}

static void
admin_error(struct evhttp_request *req, int code, const char *msg)
{
	admin_json(req, code, json_pack("{s:s}", "error", msg));
}

static bool
admin_authorized(struct env *env, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	const char *token = env->cfg->admin_token;

	if (token == NULL || h == NULL || strncmp(h, "Bearer ", 7) != 0)
		return false;
	return ct_equal(h + 7, strlen(h + 7), token, strlen(token));
}

/* The order hash (HGETALL) as JSON: numbers as numbers, the amount also
 * in yuan. NULL when the reply is empty. */
static json_t *
order_json(const struct redisReply *rep)
{
	static const char *const numeric[] = { "amount_fen", "polls", "created_ms", "expires_ms",
		"next_poll_ms", "last_poll_ms", "paid_at_ms", "expired_ms", "lease_until_ms",
		NULL };
	json_t *o;
	size_t i;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements == 0 ||
	    (o = json_object()) == NULL)
		return NULL;
	for (i = 0; i + 1 < rep->elements; i += 2) {
		const char *k = rep->element[i]->str, *v = rep->element[i + 1]->str;
		const char *const *n;
		bool num = false;

		if (k == NULL || v == NULL)
			continue;
		for (n = numeric; *n != NULL; n++)
			num |= strcmp(k, *n) == 0;
		if (num) {
			json_object_set_new(o, k, json_integer(strtoll(v, NULL, 10)));
		} else {
			json_t *js = json_string(v); /* NULL when v is not UTF-8 */

			json_object_set_new(o, k, js != NULL ? js : json_null());
		}
	}
	/* The same name as the registration answer uses. */
	if (json_object_get(o, "expires_ms") != NULL) {
		json_object_set(o, "expires_at_ms", json_object_get(o, "expires_ms"));
		json_object_del(o, "expires_ms");
	}
	if (json_is_integer(json_object_get(o, "amount_fen"))) {
		char amt[32];

		amount_format(json_integer_value(json_object_get(o, "amount_fen")), amt,
		    sizeof(amt));
		json_object_set_new(o, "amount", json_string(amt));
	}
	return o;
}

/* An admin request waiting for Redis or a poll. */
struct areq {
	struct env *env;
	struct evhttp_request *req;
	char channel[65];
	char out_trade_no[ADMIN_MAX_OUT_TRADE_NO + 1];
	int64_t amount_fen;
	int64_t expires_ms;
	char result[16];
	char detail[160];
};

static void
order_get_reply(void *arg, const struct redisReply *rep)
{
	struct areq *a = arg;
	json_t *o;

	if (rep == NULL)
		admin_error(a->req, 503, "redis failed");
	else if ((o = order_json(rep)) == NULL)
		admin_error(a->req, 404, "no such order");
	else if (a->result[0] != '\0')
		admin_json(a->req, 200,
		    json_pack("{s:s,s:s,s:o}", "result", a->result, "detail", a->detail, "order",
			o));
	else
		admin_json(a->req, 200, o);
	free(a);
}

static void
order_register_reply(void *arg, const struct redisReply *rep)
{
	struct areq *a = arg;
	const char *what, *state;
	char amt[32];

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
	    rep->element[0]->type != REDIS_REPLY_STRING) {
		admin_error(a->req, 503, "redis failed");
		free(a);
		return;
	}
	what = rep->element[0]->str;
	state = rep->element[1]->str != NULL ? rep->element[1]->str : "";
	amount_format(a->amount_fen, amt, sizeof(amt));
	if (strcmp(what, "conflict") == 0) {
		admin_json(a->req, 409,
		    json_pack("{s:s,s:s,s:I}", "error",
			"the order is registered with another amount", "state", state,
			"registered_amount_fen",
			(json_int_t)strtoll(rep->element[2]->str ? rep->element[2]->str : "0", NULL,
			    10)));
		free(a);
		return;
	}
	if (strcmp(what, "exists") == 0) {
		/* Registered before with the same amount: answer what is stored. */
		if (store_order_get(a->env->store, a->channel, a->out_trade_no, order_get_reply,
			a) == 0)
			return;
		admin_error(a->req, 503, "redis is not ready");
		free(a);
		return;
	}
	if (strcmp(what, "created") == 0)
		log_info("order registered", "channel=%s out_trade_no=\"%.64s\" amount_fen=%lld",
		    a->channel, a->out_trade_no, (long long)a->amount_fen);
	admin_json(a->req, strcmp(what, "created") == 0 ? 201 : 200,
	    json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:b}", "channel", a->channel, "out_trade_no",
		a->out_trade_no, "amount", amt, "amount_fen", (json_int_t)a->amount_fen, "state",
		state, "expires_at_ms", (json_int_t)a->expires_ms, "created",
		strcmp(what, "created") == 0));
	free(a);
}

/* poll_after from now, but never after the order expires. */
static int64_t
first_poll_ms(const struct channel *ch, int64_t now, int64_t expires_ms)
{
	int64_t t = now + (int64_t)ch->poll_after * 1000;

	return t < expires_ms ? t : expires_ms;
}

static void
admin_register(struct env *env, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_t *body, *jexp;
	json_error_t jerr;
	const char *channel, *out, *amount;
	const struct channel *ch;
	struct areq *a;
	json_int_t expires_in = 86400;
	int64_t now = now_ms(), fen;
	size_t i;

	body =
	    json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
	if (body == NULL || !json_is_object(body)) {
		json_decref(body);
		admin_error(req, 400, "the body must be a JSON object");
		return;
	}
	channel = json_string_value(json_object_get(body, "channel"));
	out = json_string_value(json_object_get(body, "out_trade_no"));
	amount = json_string_value(json_object_get(body, "amount"));
	jexp = json_object_get(body, "expires_in");
	if (channel == NULL || out == NULL || amount == NULL) {
		admin_error(req, 400,
		    "channel, out_trade_no and amount (a decimal string) are required");
		goto out;
	}
	if ((ch = config_channel(env->cfg, channel)) == NULL) {
		admin_error(req, 404, "unknown channel");
		goto out;
	}
	if (*out == '\0' || strlen(out) > ADMIN_MAX_OUT_TRADE_NO || strchr(out, '/') != NULL) {
		admin_error(req, 400, "out_trade_no must be 1 to 128 bytes, without '/'");
		goto out;
	}
	for (i = 0; out[i] != '\0'; i++) {
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f) {
			admin_error(req, 400, "out_trade_no must not contain control characters");
			goto out;
		}
	}
	if (amount_parse(amount, strlen(amount), &fen) == -1) {
		admin_error(req, 400, "amount must be a decimal string of yuan, like \"1.00\"");
		goto out;
	}
	if (jexp != NULL) {
		if (!json_is_integer(jexp) || json_integer_value(jexp) < 1 ||
		    json_integer_value(jexp) > ADMIN_MAX_EXPIRES_IN) {
			admin_error(req, 400, "expires_in must be whole seconds from 1 to 2592000");
			goto out;
		}
		expires_in = json_integer_value(jexp);
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		admin_error(req, 503, "out of memory");
		goto out;
	}
	a->env = env;
	a->req = req;
	snprintf(a->channel, sizeof(a->channel), "%s", ch->name);
	snprintf(a->out_trade_no, sizeof(a->out_trade_no), "%s", out);
	a->amount_fen = fen;
	a->expires_ms = now + (int64_t)expires_in * 1000;
	if (store_order_register(env->store, ch->name, out, fen, a->expires_ms,
		ch->api_base != NULL ? first_poll_ms(ch, now, a->expires_ms) : 0,
		order_register_reply, a) == -1) {
		free(a);
		admin_error(req, 503, "redis is not ready");
	}
out:
	json_decref(body);
}

static void
poll_now_done(void *arg, enum poll_now_status st, const char *result, const char *detail)
{
	struct areq *a = arg;

	switch (st) {
	case POLL_NOW_DONE:
		snprintf(a->result, sizeof(a->result), "%s", result);
		snprintf(a->detail, sizeof(a->detail), "%s", detail);
		if (store_order_get(a->env->store, a->channel, a->out_trade_no, order_get_reply,
			a) == 0)
			return;
		admin_json(a->req, 200, json_pack("{s:s,s:s}", "result", result, "detail", detail));
		break;
	case POLL_NOW_MISSING:
		admin_error(a->req, 404, "no such order");
		break;
	case POLL_NOW_SETTLED:
		admin_json(a->req, 409,
		    json_pack("{s:s,s:s}", "error", "the order is not pending", "state", result));
		break;
	case POLL_NOW_BUSY:
		admin_error(a->req, 409, "the order is being polled");
		break;
	case POLL_NOW_FAILED:
		admin_error(a->req, 503, detail);
		break;
	}
	free(a);
}

/* /v1/orders/{channel}/{out_trade_no}[/poll] */
static void
admin_order(struct env *env, struct evhttp_request *req, const char *rest)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *slash = strchr(rest, '/');
	char *out = NULL, channel[65];
	bool poll = false;
	struct areq *a;
	size_t n;

	if (slash == NULL || (size_t)(slash - rest) >= sizeof(channel)) {
		admin_error(req, 404, "no such endpoint");
		return;
	}
	memcpy(channel, rest, (size_t)(slash - rest));
	channel[slash - rest] = '\0';
	if ((out = evhttp_uridecode(slash + 1, 0, &n)) == NULL) {
		admin_error(req, 400, "bad out_trade_no");
		return;
	}
	if (n > 5 && strcmp(out + n - 5, "/poll") == 0) {
		out[n - 5] = '\0';
		poll = true;
	}
	if (config_channel(env->cfg, channel) == NULL) {
		admin_error(req, 404, "unknown channel");
		goto done;
	}
	if (*out == '\0' || strlen(out) > ADMIN_MAX_OUT_TRADE_NO || strchr(out, '/') != NULL) {
		admin_error(req, 400, "bad out_trade_no");
		goto done;
	}
	if ((poll && m != EVHTTP_REQ_POST) || (!poll && m != EVHTTP_REQ_GET)) {
		admin_error(req, 405, "method not allowed");
		goto done;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		admin_error(req, 503, "out of memory");
		goto done;
	}
	a->env = env;
	a->req = req;
	snprintf(a->channel, sizeof(a->channel), "%s", channel);
	snprintf(a->out_trade_no, sizeof(a->out_trade_no), "%s", out);
	if (poll) {
		if (config_channel(env->cfg, channel)->api_base == NULL) {
			free(a);
			admin_error(req, 400, "the channel has no api_base: it cannot be polled");
		} else if (poll_now(env->poller, channel, out, poll_now_done, a) == -1) {
			free(a);
			admin_error(req, 503, "redis is not ready");
		}
	} else if (store_order_get(env->store, channel, out, order_get_reply, a) == -1) {
		free(a);
		admin_error(req, 503, "redis is not ready");
	}
done:
	free(out);
}

static void
admin_cb(struct evhttp_request *req, void *arg)
{
	struct env *env = arg;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	if (path == NULL) {
		admin_error(req, 400, "bad request");
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		admin_json(req, 200, json_pack("{s:s}", "status", "ok"));
		return;
	}
	if (!admin_authorized(env, req)) {
		admin_error(req, 401,
		    env->cfg->admin_token == NULL ? "no admin token is configured"
						  : "missing or wrong bearer token");
		return;
	}
	if (strcmp(path, "/readyz") == 0) {
		bool ok = store_ready(env->store);

		admin_json(req, ok ? 200 : 503,
		    json_pack("{s:s,s:b}", "status", ok ? "ready" : "redis not ready", "redis",
			ok));
	} else if (strcmp(path, "/v1/orders") == 0) {
		if (m != EVHTTP_REQ_POST)
			admin_error(req, 405, "method not allowed");
		else
			admin_register(env, req);
	} else if (strncmp(path, "/v1/orders/", 11) == 0) {
		admin_order(env, req, path + 11);
	} else {
		admin_error(req, 404, "no such endpoint");
	}
}

static int
admin_bind_unix(struct env *env, const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	/* A stale socket from a previous run would make bind fail. */
	if (unlink(path) == -1 && errno != ENOENT)
		goto fail;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 || chmod(path, 0660) == -1 ||
	    listen(fd, 128) == -1)
		goto fail;
	if (evhttp_accept_socket_with_handle(env->admin_http, fd) == NULL)
		goto fail;
	return 0;
fail:
	close(fd);
	return -1;
}

int
admin_start(struct env *env)
{
	const struct netaddr *a = &env->cfg->admin_listen;

	if ((env->admin_http = evhttp_new(env->base)) == NULL)
		return -1;
	evhttp_set_max_body_size(env->admin_http, ADMIN_MAX_BODY);
	evhttp_set_timeout(env->admin_http, 30);
	evhttp_set_allowed_methods(env->admin_http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
		EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(env->admin_http, admin_cb, env);
	if (a->is_unix) {
		if (admin_bind_unix(env, a->path) == -1) {
			log_errorx("cannot listen (admin)", "path=%s error=\"%s\"", a->path,
			    strerror(errno));
			return -1;
		}
		log_info("admin listening", "path=%s", a->path);
	} else if (evhttp_bind_socket_with_handle(env->admin_http, a->host, a->port) == NULL) {
		log_errorx("cannot listen (admin)", "addr=%s port=%u", a->host, (unsigned)a->port);
		return -1;
	} else {
		log_info("admin listening", "addr=%s port=%u", a->host, (unsigned)a->port);
	}
	if (env->cfg->admin_token == NULL)
		log_warnx("no [admin] token: the admin API refuses everything but /healthz", "");
	return 0;
}

void
admin_free(struct env *env)
{
	if (env->admin_http != NULL)
		evhttp_free(env->admin_http);
	env->admin_http = NULL;
}
