/* The recording step (SPEC §3): src/store/lua/record.lua. */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "log.h"

/* --- the record step ----------------------------------------------------- */

enum store_result
store_record_answer(const redisReply *rep, const char **type, const char **first)
{
	*type = *first = "";
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
	    rep->element[0]->type != REDIS_REPLY_STRING)
		return STORE_ERROR;
	if (strcmp(rep->element[0]->str, "dup") == 0)
		return STORE_DUP;
	if (strcmp(rep->element[0]->str, "new") == 0 && rep->elements >= 5 &&
	    rep->element[2]->type == REDIS_REPLY_STRING &&
	    rep->element[4]->type == REDIS_REPLY_STRING) {
		*type = rep->element[2]->str;
		*first = rep->element[4]->str;
		return STORE_NEW;
	}
	return STORE_ERROR;
}

static void
record_done(struct store_req *r, const redisReply *rep)
{
	store_record_cb *cb = r->cb.record;
	const char *type, *first;

	if (rep == NULL) {
		cb(r->arg, r->timed_out ? STORE_TIMEOUT : STORE_ERROR, NULL, NULL);
		return;
	}
	switch (store_record_answer(rep, &type, &first)) {
	case STORE_NEW:
		cb(r->arg, STORE_NEW, type, first[0] != '\0' ? first : NULL);
		break;
	case STORE_DUP:
		cb(r->arg, STORE_DUP, NULL, NULL);
		break;
	default:
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING)
			log_errorx("redis record step gave an unexpected reply", "type=%d",
			    rep->type);
		cb(r->arg, STORE_ERROR, NULL, NULL);
		break;
	}
}

/* The record step's answer, kept in r->args by store_wait_begin, once the
 * WAIT answered (rep: its integer) or not (NULL). */
void
store_record_wait_done(struct store_req *r, const redisReply *rep)
{
	store_record_cb *cb = r->cb.record;
	const char *first = r->args.p + r->wait_first_off;

	if (rep == NULL)
		cb(r->arg, r->timed_out ? STORE_TIMEOUT : STORE_ERROR, NULL, NULL);
	else if (rep->integer < r->s->min_replicas)
		cb(r->arg, STORE_UNREPLICATED, NULL, NULL);
	else if (r->wait_result == STORE_DUP)
		cb(r->arg, STORE_DUP, NULL, NULL);
	else
		cb(r->arg, STORE_NEW, r->args.p, first[0] != '\0' ? first : NULL);
}

/* "dlv_" + 32 random hex digits. The dedup key already keeps an event from
 * being scheduled twice; an event recorded again after its dedup key expired
 * (a manual re-send a month later) gets new deliveries, never old hashes. */
static int
delivery_id(char out[37])
{
	unsigned char rnd[16];

	if (crypto_random(rnd, sizeof(rnd)) == -1)
		return -1;
	memcpy(out, "dlv_", 4);
	hex_lower(out + 4, rnd, sizeof(rnd));
	return 0;
}

int
store_record(struct store *s, const struct record *rec, store_record_cb *cb, void *arg)
{
	const struct event *ev = rec->ev;
	int64_t now = now_ms();
	struct store_req *r;
	char(*dids)[37] = NULL;
	size_t i;
	int rc;

	if (ev->id[0] == '\0')
		return -1;
	r = store_req_new(s, SCRIPT_RECORD, 1 + 8 + 2 * rec->nhooks + 12 + 5 * rec->nhooks,
	    strlen(rec->json) + 512 + 160 * rec->nhooks, record_done, arg);
	if (r == NULL)
		return -1;
	r->cb.record = cb;
	if (rec->nhooks > 0 && (dids = calloc(rec->nhooks, sizeof(*dids))) == NULL) {
		store_req_free(r);
		return -1;
	}
	for (i = 0; i < rec->nhooks; i++) {
		if (delivery_id(dids[i]) == -1) {
			free(dids);
			store_req_free(r);
			return -1;
		}
	}

	/* One of this loop turn's record steps (store_batch_add): its
	 * webhook count, its keys, its arguments. */
	r->nkeys = (int)(8 + 2 * rec->nhooks);
	rc = store_req_argll(r, (long long)rec->nhooks);
	rc |= store_req_cat(r, s->prefix, "dedup:", ev->id, NULL);
	rc |= store_req_args(r, s->stream_key);
	rc |= store_req_cat(r, s->prefix, "order:", ev->channel, ":", ev->out_trade_no, NULL);
	rc |= store_req_cat(r, s->prefix, "ch:", ev->channel, ":orders:due", NULL);
	rc |= store_req_cat(r, s->prefix, "paid:", ev->channel, ":", ev->out_trade_no, NULL);
	rc |= store_req_cat(r, s->prefix, "held", NULL);
	for (i = 0; i < rec->nhooks; i++) {
		rc |= store_req_cat(r, s->prefix, "delivery:", dids[i], NULL);
		rc |= store_req_cat(r, s->prefix, "wh:", rec->hooks[i].name, ":due", NULL);
	}
	rc |= store_req_cat(r, s->prefix, "evd:", ev->id, NULL);
	rc |= store_req_cat(r, s->prefix, "oix:", ev->channel, ":", ev->out_trade_no, NULL);
	rc |= store_req_args(r, ev->id);
	rc |= store_req_args(r, event_type_str(ev->type));
	rc |= store_req_args(r, ev->channel);
	rc |= store_req_args(r, ev->out_trade_no);
	rc |= store_req_args(r, rec->json);
	if (ev->type == EVENT_PAID)
		rc |= store_req_argll(r, (long long)ev->amount_fen);
	else
		rc |= store_req_args(r, "");
	rc |= store_req_args(r, s->dedup_ttl);
	rc |= store_req_args(r, s->maxlen);
	rc |= store_req_argll(r, (long long)now);
	rc |= store_req_args(r, ev->out_trade_no);
	rc |= store_req_args(r, ev->trade_no);
	rc |= store_req_args(r, s->prefix);
	for (i = 0; i < rec->nhooks; i++) {
		rc |= store_req_args(r, rec->hooks[i].name);
		rc |= store_req_args(r, dids[i]);
		rc |= store_req_args(r, rec->hooks[i].match_paid ? "1" : "0");
		rc |= store_req_args(r, rec->hooks[i].match_mismatch ? "1" : "0");
		rc |= store_req_argll(r, (long long)(now + rec->hooks[i].first_delay_ms));
	}
	free(dids);
	return store_batch_add(r, rc);
}
