/* The admin API (SPEC §7) on [admin] listen: health, readiness, and the
 * order endpoints of SPEC §6. JSON in and out; every request but /healthz
 * needs "Authorization: Bearer <token>". */
#ifndef PAYRELAY_ADMIN_H
#define PAYRELAY_ADMIN_H

#include "util.h"

struct env;
struct admin;

#define ADMIN_MAX_BODY (64 * 1024)
/* The request line and headers: a bearer token and a few short headers. */
#define ADMIN_MAX_HEADERS (16 * 1024)
#define ADMIN_MAX_OUT_TRADE_NO 128
/* Longest expires_in accepted for an order: 30 days. */
#define ADMIN_MAX_EXPIRES_IN (30 * 86400)

/* Creates the admin listener and binds [admin] listen, with the public
 * listener's protections (SPEC §7): header and body limits, a connection
 * cap, [daemon] read_timeout for each whole request, framing checks, all
 * before the token is looked at. A unix socket path is replaced only when
 * it is a stale socket. NULL (logged) on failure. */
struct admin *admin_new(struct env *env);
/* Closes the listener and its connections; accepts NULL. */
void admin_free(struct admin *ad);

#endif
