#include "account.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

#include "config.h"
#include "daemon.h"
#include "family.h"
#include "httpc.h"
#include "log.h"
#include "reply.h"

/* One GET waiting for the gateway. */
struct account_req {
	struct env *env;
	struct evhttp_request *req;
	char channel[65];
	bool settle; /* settlements, else the account */
	struct httpc_call *call;
};

static void
account_http_done(void *arg, const struct httpc_result *res)
{
	struct account_req *a = arg;
	const struct channel *ch = config_channel(a->env->cfg, a->channel);
	const char *what = a->settle ? "settlements" : "account";
	struct family_answer ans;
	char d[200];

	a->call = NULL;
	family_answer_init(&ans);
	if (res->curl_code != 0 || res->status < 200 || res->status > 299) {
		if (res->curl_code != 0)
			snprintf(d, sizeof(d), "%s request failed: %.150s", what,
			    res->error != NULL ? res->error : "error");
		else
			snprintf(d, sizeof(d), "%s request answered HTTP %ld", what, res->status);
		/* curl's text may quote the URL, and it holds the key */
		config_mask_secrets(a->env->cfg, d);
		if (ch != NULL && ch->key != NULL)
			(void)config_mask_text(d, strlen(d), ch->key, ch->key_len);
		reply_json(a->req, 502,
		    json_pack("{s:s,s:s}", "error", "no usable answer from the gateway", "detail",
			d));
		goto out;
	}
	if (ch == NULL ||
	    (a->settle ? ch->family->settle_parse : ch->family->account_parse) == NULL) {
		reply_error(a->req, 502, "the channel changed by a reload");
		goto out;
	}
	if (a->settle)
		ch->family->settle_parse(ch, res->body, res->body_len, &ans);
	else
		ch->family->account_parse(ch, res->body, res->body_len, &ans);
	switch (ans.outcome) {
	case FAMILY_ANSWER_OK:
		if (json_object_set_new(ans.data, "channel", json_string(a->channel)) == -1) {
			reply_error(a->req, 503, "out of memory");
			break;
		}
		reply_json(a->req, 200, json_incref(ans.data));
		break;
	case FAMILY_ANSWER_REFUSED:
		log_warnx("gateway refused a query", "channel=%s what=%s code=\"%s\" msg=\"%s\"",
		    a->channel, what, ans.code, ans.msg);
		reply_json(a->req, 502,
		    json_pack("{s:s,s:s,s:s}", "error", "the gateway answered an error",
			"gateway_code", ans.code, "gateway_msg", ans.msg));
		break;
	case FAMILY_ANSWER_GARBAGE:
		reply_json(a->req, 502,
		    json_pack("{s:s,s:s}", "error", "no usable answer from the gateway", "detail",
			ans.detail));
		break;
	}
out:
	family_answer_free(&ans);
	free(a);
}

bool
account_serve(struct env *env, struct evhttp_request *req, const char *rest)
{
	const char *slash = strchr(rest, '/');
	const struct channel *ch;
	struct poll_query pq = { 0 };
	struct account_req *a;
	char channel[65];
	bool settle;
	int rc;

	if (slash == NULL)
		return false;
	if (strcmp(slash, "/settlements") == 0)
		settle = true;
	else if (strcmp(slash, "/account") == 0)
		settle = false;
	else
		return false;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		reply_error(req, 405, "method not allowed");
		return true;
	}
	if ((size_t)(slash - rest) >= sizeof(channel)) {
		reply_error(req, 404, "unknown channel");
		return true;
	}
	memcpy(channel, rest, (size_t)(slash - rest));
	channel[slash - rest] = '\0';
	if ((ch = config_channel(env->cfg, channel)) == NULL) {
		reply_error(req, 404, "unknown channel");
		return true;
	}
	if ((settle ? ch->family->settle_query : ch->family->account_query) == NULL) {
		char msg[160];

		snprintf(msg, sizeof(msg), "the %s gateway has no %s API", ch->family->name,
		    settle ? "settlements" : "account");
		reply_error(req, 501, msg);
		return true;
	}
	if (ch->api_base == NULL) {
		reply_error(req, 409,
		    "the channel has no api_base: payrelay cannot reach its gateway");
		return true;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		reply_error(req, 503, "out of memory");
		return true;
	}
	a->env = env;
	a->req = req;
	a->settle = settle;
	snprintf(a->channel, sizeof(a->channel), "%s", ch->name);
	rc = settle ? ch->family->settle_query(ch, &pq) : ch->family->account_query(ch, &pq);
	if (rc == -1) {
		free(a);
		reply_error(req, 503, "out of memory");
		return true;
	}
	a->call = httpc_start_gateway(env->httpc, &pq, ch->poll_timeout_ms, account_http_done, a);
	poll_query_free(&pq); /* the URL holds the key: freed, never logged */
	if (a->call == NULL) {
		free(a);
		reply_error(req, 503, "cannot start the gateway request");
	}
	return true;
}
