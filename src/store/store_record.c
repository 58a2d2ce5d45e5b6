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
	if (strcmp(rep->element[0]->str, "new") == 0 && rep->elements >= 7 &&
	    rep->element[2]->type == REDIS_REPLY_STRING &&
	    rep->element[3]->type == REDIS_REPLY_INTEGER &&
	    rep->element[4]->type == REDIS_REPLY_STRING &&
	    rep->element[5]->type == REDIS_REPLY_ARRAY &&
	    rep->element[6]->type == REDIS_REPLY_STRING) {
		*type = rep->element[2]->str;
		*first = rep->element[4]->str;
		return STORE_NEW;
	}
	return STORE_ERROR;
}

/* The claims on the stack up to this many; more (as many webhooks) in a
 * malloc'd array. */
#define RECORD_CLAIMS_STACK 8

/* The deliveries of a new record's answer (store_record_answer said
 * STORE_NEW) into *rd, living as long as rep; the claims in `buf` (room for
 * RECORD_CLAIMS_STACK) or, when more, in *heap (the caller frees it). A
 * malformed pair is left out (its delivery goes out after its lease).
 * Returns -1 when memory ran out. */
static int
record_recorded(const redisReply *rep, struct store_recorded *rd, struct store_record_claim *buf,
    struct store_record_claim **heap)
{
	const redisReply *c = rep->element[5];
	struct store_record_claim *out = buf;
	size_t i;

	*heap = NULL;
	memset(rd, 0, sizeof(*rd));
	rd->made = rep->element[3]->integer > 0 ? (size_t)rep->element[3]->integer : 0;
	if (rep->element[6]->len > 0) {
		rd->body = rep->element[6]->str;
		rd->body_len = rep->element[6]->len;
	}
	if (c->elements / 2 > RECORD_CLAIMS_STACK &&
	    (out = *heap = calloc(c->elements / 2, sizeof(*out))) == NULL)
		return -1;
	for (i = 0; i + 1 < c->elements; i += 2) {
		if (c->element[i]->type != REDIS_REPLY_INTEGER || c->element[i]->integer < 0 ||
		    c->element[i + 1]->type != REDIS_REPLY_STRING)
			continue;
		out[rd->nclaims].hook = (size_t)c->element[i]->integer;
		out[rd->nclaims].id = c->element[i + 1]->str;
		rd->nclaims++;
	}
	rd->claims = out;
	return 0;
}

static void
record_done(struct store_req *r, const redisReply *rep)
{
	store_record_cb *cb = r->cb.record;
	struct store_record_claim buf[RECORD_CLAIMS_STACK], *heap;
	struct store_recorded rd;
	const char *type, *first;

	if (rep == NULL) {
		cb(r->arg, r->timed_out ? STORE_TIMEOUT : STORE_ERROR, NULL, NULL, NULL);
		return;
	}
	switch (store_record_answer(rep, &type, &first)) {
	case STORE_NEW:
		if (record_recorded(rep, &rd, buf, &heap) == -1) {
			/* Recorded: the deliveries claimed here go out after
			 * their leases, the others as always. */
			log_errorx("deliveries claimed at record left to their leases",
			    "reason=\"out of memory\"");
			rd.nclaims = 0;
		}
		cb(r->arg, STORE_NEW, type, first[0] != '\0' ? first : NULL, &rd);
		free(heap);
		break;
	case STORE_DUP:
		cb(r->arg, STORE_DUP, NULL, NULL, NULL);
		break;
	default:
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING)
			log_errorx("redis record step gave an unexpected reply", "type=%d",
			    rep->type);
		cb(r->arg, STORE_ERROR, NULL, NULL, NULL);
		break;
	}
}

/* Keeps the record step's answer in r->args (its arguments are spent)
 * while its WAIT is out: the type, at wait_first_off the first trade id, at
 * wait_body_off the rewritten body (wait_body_len bytes, 0: none), and from
 * wait_claims_off wait_nclaims claims, each its hook index in decimal and
 * the delivery id, NUL-terminated. Returns 0 or -1. */
int
store_record_keep(struct store_req *r, const redisReply *rep)
{
	struct store_record_claim buf[RECORD_CLAIMS_STACK], *heap = NULL;
	struct store_recorded rd = { 0 };
	const char *type, *first;
	size_t i;
	int rc = 0;

	if (store_record_answer(rep, &type, &first) == STORE_NEW &&
	    record_recorded(rep, &rd, buf, &heap) == -1)
		return -1;
	sbuf_reset(&r->args);
	rc |= sbuf_add(&r->args, type, strlen(type) + 1);
	r->wait_first_off = r->args.len;
	rc |= sbuf_add(&r->args, first, strlen(first) + 1);
	r->wait_made = rd.made;
	r->wait_body_off = r->args.len;
	r->wait_body_len = rd.body_len;
	if (rd.body != NULL)
		rc |= sbuf_add(&r->args, rd.body, rd.body_len);
	rc |= sbuf_addc(&r->args, '\0');
	r->wait_claims_off = r->args.len;
	r->wait_nclaims = rd.nclaims;
	for (i = 0; i < rd.nclaims; i++) {
		rc |= sbuf_printf(&r->args, "%zu", rd.claims[i].hook);
		rc |= sbuf_addc(&r->args, '\0');
		rc |= sbuf_add(&r->args, rd.claims[i].id, strlen(rd.claims[i].id) + 1);
	}
	free(heap);
	return rc == 0 ? 0 : -1;
}

/* The record step's answer, kept in r->args by store_record_keep, once the
 * WAIT answered (rep: its integer) or not (NULL). */
void
store_record_wait_done(struct store_req *r, const redisReply *rep)
{
	store_record_cb *cb = r->cb.record;
	const char *first = r->args.p + r->wait_first_off, *p;
	struct store_record_claim buf[RECORD_CLAIMS_STACK], *claims = buf, *heap = NULL;
	struct store_recorded rd = { 0 };
	size_t i;

	if (r->wait_result == STORE_NEW) {
		rd.made = r->wait_made;
		if (r->wait_body_len > 0) {
			rd.body = r->args.p + r->wait_body_off;
			rd.body_len = r->wait_body_len;
		}
		if (r->wait_nclaims > RECORD_CLAIMS_STACK &&
		    (claims = heap = calloc(r->wait_nclaims, sizeof(*claims))) == NULL)
			log_errorx("deliveries claimed at record left to their leases",
			    "reason=\"out of memory\"");
		p = r->args.p + r->wait_claims_off;
		for (i = 0; claims != NULL && i < r->wait_nclaims; i++) {
			claims[i].hook = strtoul(p, NULL, 10);
			p += strlen(p) + 1;
			claims[i].id = p;
			p += strlen(p) + 1;
			rd.nclaims++;
		}
		rd.claims = claims;
	}
	if (rep == NULL)
		cb(r->arg, r->timed_out ? STORE_TIMEOUT : STORE_ERROR, NULL, NULL, NULL);
	else if (rep->integer < r->s->min_replicas)
		/* Recorded on the master all the same: the deliveries claimed
		 * there go out, as the claim path would send them. */
		cb(r->arg, STORE_UNREPLICATED, NULL, NULL,
		    r->wait_result == STORE_NEW ? &rd : NULL);
	else if (r->wait_result == STORE_DUP)
		cb(r->arg, STORE_DUP, NULL, NULL, NULL);
	else
		cb(r->arg, STORE_NEW, r->args.p, first[0] != '\0' ? first : NULL, &rd);
	free(heap);
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
	r = store_req_new(s, SCRIPT_RECORD, 1 + 8 + 2 * rec->nhooks + 13 + 6 * rec->nhooks,
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
	rc |= store_req_args(r, rec->owner != NULL ? rec->owner : "");
	for (i = 0; i < rec->nhooks; i++) {
		rc |= store_req_args(r, rec->hooks[i].name);
		rc |= store_req_args(r, dids[i]);
		rc |= store_req_args(r, rec->hooks[i].match_paid ? "1" : "0");
		rc |= store_req_args(r, rec->hooks[i].match_mismatch ? "1" : "0");
		rc |= store_req_argll(r, (long long)(now + rec->hooks[i].first_delay_ms));
		if (rec->hooks[i].lease_until_ms > 0)
			rc |= store_req_argll(r, (long long)rec->hooks[i].lease_until_ms);
		else
			rc |= store_req_args(r, "");
	}
	free(dids);
	return store_batch_add(r, rc);
}
