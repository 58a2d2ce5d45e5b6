/* POST /v1/refunds (SPEC §10.3, docs/payments.md): a refund asked of the
 * channel's gateway through its family's refund API, idempotent by
 * (channel, refund_id), never more than the payment paid, recorded as an
 * order.refunded event and fanned out like every event. */
#ifndef PAYRELAY_REFUNDS_H
#define PAYRELAY_REFUNDS_H

struct env;
struct evhttp_request;

/* The longest refund_id accepted. */
#define REFUND_MAX_ID 64

/* Answers `req` (any method: a refund is POST only), now or once Redis
 * and the gateway answered. */
void refunds_post(struct env *env, struct evhttp_request *req);

#endif
