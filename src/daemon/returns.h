/* The payer's browser coming back from the gateway: GET|POST
 * /return/{channel} on the public listener (SPEC §10.2, docs/payments.md).
 * A verified paid return is recorded as its notify would be (source
 * "return", the same event id), and the browser is sent with a 302 to the
 * order's return_to, or the channel's, with out_trade_no, status (paid,
 * pending or invalid), ts and an HMAC sig under [daemon] return_secret:
 * never to a host outside [daemon] return_hosts. */
#ifndef PAYRELAY_RETURNS_H
#define PAYRELAY_RETURNS_H

struct env;
struct conn;
struct evhttp_request;

#define RETURNS_PREFIX "/return/"

/* Answers `req`, whose path is RETURNS_PREFIX followed by `rest` (the
 * channel name, maybe with a trailing '/'), now or later. `conn` is its
 * connection (conns_request), watched while the answer waits. */
void returns_request(struct env *env, struct evhttp_request *req, struct conn *conn,
    const char *rest);

#endif
