/* An HTTP client engine: libcurl multi driven by the daemon's libevent loop
 * (curl_multi_socket_action), shared by webhook deliveries and gateway
 * polls. No threads, no blocking calls. */
#ifndef PAYRELAY_HTTPC_H
#define PAYRELAY_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

#include "poll_answer.h"
#include "util.h"

struct event_base;
struct curl_slist;
struct httpc;
struct httpc_call;

/* How much of a response body is kept; the rest is read and dropped, or
 * fails the call (httpc_request.abort_over_max). */
#define HTTPC_MAX_BODY (256 * 1024)
/* The error of a call stopped for a body over its cap. */
#define HTTPC_TOO_LARGE "answer too large"

struct httpc_result {
	long status;       /* HTTP status; 0 when no answer came */
	int curl_code;     /* CURLE_OK (0) when the exchange completed */
	const char *error; /* curl's message when curl_code != 0, else NULL */
	long retry_after;  /* seconds from a Retry-After header, -1 when none */
	const char *body;  /* the first HTTPC_MAX_BODY bytes, NUL-terminated */
	size_t body_len;
	long elapsed_ms;
};

/* Called once per started call, from the event loop (never from inside a
 * libcurl callback); `r` and its strings live only during the call. */
typedef void httpc_done_cb(void *arg, const struct httpc_result *r);

struct httpc_request {
	const char *method; /* "GET" or "POST" */
	const char *url;
	const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
	const char *body;           /* POST body; copied */
	size_t body_len;
	long timeout_ms; /* the whole exchange */
	/* Bytes of the answer body kept; 0: HTTPC_MAX_BODY (at most). */
	size_t max_body;
	/* true: an answer longer than max_body stops the transfer there and
	 * fails the call (curl_code != 0, error HTTPC_TOO_LARGE) instead of
	 * being read to its end and cut: what a gateway answers is parsed,
	 * and a larger one is garbage or an attack. false (deliveries): the
	 * rest is read and dropped, the status is what counts. */
	bool abort_over_max;
};

struct httpc *httpc_new(struct event_base *base, const char *user_agent);
/* Cancels every call still running (their callbacks are not called). */
void httpc_free(struct httpc *h);
/* Starts a request. Returns a handle for httpc_cancel, or NULL (cb will not
 * be called). */
struct httpc_call *httpc_start(struct httpc *h, const struct httpc_request *rq, httpc_done_cb *cb,
    void *arg);
/* Starts a family's gateway request `q` (a GET, or a POST of a form, as
 * poll_query and the gateway-client builders make them) with an answer
 * larger than HTTPC_MAX_BODY refused (abort_over_max): what a gateway
 * answers is parsed. `q` is copied; the caller still frees it (its URL
 * or body may hold the key). Returns as httpc_start. */
struct httpc_call *httpc_start_gateway(struct httpc *h, const struct poll_query *q, long timeout_ms,
    httpc_done_cb *cb, void *arg);
/* Stops a running call; its callback is not called. NULL is ok. */
void httpc_cancel(struct httpc_call *c);
size_t httpc_running(const struct httpc *h);

#endif
