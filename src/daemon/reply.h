/* JSON answers of the admin API (admin.c and the endpoints it routes to:
 * payments.c, refunds.c, account.c). */
#ifndef PAYRELAY_REPLY_H
#define PAYRELAY_REPLY_H

#include <event2/http.h>
#include <jansson.h>

/* Sends `body` (stolen: decref'd here; NULL sends an empty body) as one
 * compact JSON line with status `code`. */
void reply_json(struct evhttp_request *req, int code, json_t *body);
/* Sends {"error": msg} with status `code`. */
void reply_error(struct evhttp_request *req, int code, const char *msg);

#endif
