/* Deliveries (docs/delivery.md): claims, outcomes, releases. */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

/* --- deliveries ---------------------------------------------------------- */

static void
claim_done(struct store_req *r, const redisReply *rep)
{
	store_claim_cb *cb = r->cb.claim;
	struct store_claimed *items = NULL;
	size_t i, n = 0;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
		cb(r->arg, -1, NULL, 0);
		return;
	}
	if (rep->elements > 0 && (items = calloc(rep->elements, sizeof(*items))) == NULL) {
		/* Claimed but not reported: the leases expire and they come back. */
		cb(r->arg, -1, NULL, 0);
		return;
	}
	for (i = 0; i < rep->elements; i++) {
		const redisReply *e = rep->element[i];

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 4 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[1]->type != REDIS_REPLY_STRING ||
		    e->element[2]->type != REDIS_REPLY_STRING ||
		    e->element[3]->type != REDIS_REPLY_STRING)
			continue;
		items[n].id = e->element[0]->str;
		items[n].event_id = e->element[1]->str;
		items[n].body = e->element[2]->str;
		items[n].body_len = e->element[2]->len;
		items[n].attempts = strtol(e->element[3]->str, NULL, 10);
		n++;
	}
	cb(r->arg, 0, items, n);
	free(items);
}

int
store_claim(struct store *s, const char *webhook, int max, const char *owner,
    int64_t lease_until_ms, store_claim_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_CLAIM, 8, 256, claim_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.claim = cb;
	rc = store_req_begin(r, 3);
	rc |= store_req_cat(r, s->prefix, "wh:", webhook, ":due", NULL);
	rc |= store_req_args(r, s->stream_key);
	rc |= store_req_cat(r, s->prefix, "wh:", webhook, ":dead", NULL);
	rc |= store_req_argll(r, (long long)now_ms());
	rc |= store_req_argll(r, (long long)lease_until_ms);
	rc |= store_req_argll(r, max);
	rc |= store_req_args(r, owner);
	rc |= store_req_cat(r, s->prefix, "delivery:", NULL);
	return store_req_send(r, rc);
}

static void
status_done(struct store_req *r, const redisReply *rep)
{
	store_done_cb *cb = r->cb.done;

	if (cb == NULL)
		return;
	if (rep == NULL)
		cb(r->arg, -1, NULL);
	else if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
		cb(r->arg, 0, rep->str);
	else if (rep->type == REDIS_REPLY_INTEGER)
		cb(r->arg, 0, rep->integer ? "1" : "0");
	else
		cb(r->arg, 0, "");
}

static void
finish_done(struct store_req *r, const redisReply *rep)
{
	store_finish_cb *cb = r->cb.finish;
	const char **answers = NULL;
	size_t i;

	if (cb == NULL)
		return;
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
	    (rep->elements > 0 && (answers = calloc(rep->elements, sizeof(*answers))) == NULL)) {
		cb(r->arg, -1, NULL, 0);
		return;
	}
	for (i = 0; i < rep->elements; i++)
		answers[i] = rep->element[i]->type == REDIS_REPLY_STRING ||
			rep->element[i]->type == REDIS_REPLY_STATUS
		    ? rep->element[i]->str
		    : "";
	cb(r->arg, 0, answers, rep->elements);
	free(answers);
}

int
store_finish(struct store *s, const struct store_outcome *o, size_t n, store_finish_cb *cb,
    void *arg)
{
	struct store_req *r;
	size_t i, bytes = 256;
	int rc;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++)
		bytes += 192 + strlen(o[i].webhook) + (o[i].error != NULL ? strlen(o[i].error) : 0);
	if ((r = store_req_new(s, SCRIPT_FINISH, 5 + 6 * n, bytes, finish_done, arg)) == NULL)
		return -1;
	r->cb.finish = cb;
	rc = store_req_begin(r, 0);
	rc |= store_req_args(r, s->prefix);
	rc |= store_req_args(r, o[0].owner);
	rc |= store_req_argll(r, (long long)now_ms());
	/* 0 would make EXPIRE delete the hash at once. */
	rc |= store_req_argll(r,
	    (long long)(o[0].retention_s > 0 ? o[0].retention_s : STORE_RETENTION));
	for (i = 0; i < n; i++) {
		rc |= store_req_args(r, o[i].webhook);
		rc |= store_req_args(r, o[i].id);
		rc |= store_req_args(r, o[i].outcome);
		rc |= store_req_argll(r, (long long)o[i].next_due_ms);
		rc |= store_req_argll(r, o[i].http_status);
		rc |= store_req_args(r, o[i].error != NULL ? o[i].error : "");
	}
	return store_req_send(r, rc);
}

int
store_release(struct store *s, const char *webhook, const char *id, const char *owner,
    store_done_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_RELEASE, 5, 256, status_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.done = cb;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "wh:", webhook, ":due", NULL);
	rc |= store_req_cat(r, s->prefix, "delivery:", id, NULL);
	rc |= store_req_args(r, id);
	rc |= store_req_args(r, owner);
	rc |= store_req_argll(r, (long long)now_ms());
	return store_req_send(r, rc);
}
