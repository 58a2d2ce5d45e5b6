/* GET /v1/channels/{channel}/account and /settlements (SPEC §10.3): the
 * merchant's account and settlements as the channel's gateway tells them,
 * through its family's API, never with the key the gateway echoes. */
#ifndef PAYRELAY_ACCOUNT_H
#define PAYRELAY_ACCOUNT_H

#include <stdbool.h>

struct env;
struct evhttp_request;

/* `rest` is the path after "/v1/channels/". Answers `req` (now, or once
 * the gateway answered) and returns true when rest is CHANNEL/account or
 * CHANNEL/settlements; else returns false and leaves req alone. */
bool account_serve(struct env *env, struct evhttp_request *req, const char *rest);

#endif
