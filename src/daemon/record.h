/* The one way an event is recorded, whether a callback or a poll found it:
 * its JSON and the webhooks that want it go to the store's record step. */
#ifndef PAYRELAY_RECORD_H
#define PAYRELAY_RECORD_H

#include "store.h"
#include "util.h"

struct env;
struct channel;
struct event;

/* `type` as for store_record_cb: the type recorded, NULL unless STORE_NEW. */
typedef void record_cb(void *arg, enum store_result r, const char *type);

/* Records `ev` (of channel `ch`). Returns -1 when Redis is not ready or
 * memory ran out (cb is not called); else 0 and cb is called once. A new
 * event's deliveries that are due now are claimed at record where the
 * webhook has room (deliver_reserve), their first attempts started from the
 * record step's answer; any other made due wakes the delivery engine; both
 * before cb runs. A repeat payment (a second trade id paying the same
 * order) is logged and counted here, so callbacks, polls and sweeps report
 * it alike. */
int record_event(struct env *env, const struct channel *ch, const struct event *ev, record_cb *cb,
    void *arg) WUR;

#endif
