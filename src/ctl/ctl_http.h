/* payrelayctl's side of the admin API (SPEC §7): one blocking libcurl easy
 * handle aimed at [admin] listen, with the bearer token of the same config
 * file. A CLI may block; the daemon never links this. */
#ifndef PAYRELAY_CTL_HTTP_H
#define PAYRELAY_CTL_HTTP_H

#include <stdbool.h>

#include <jansson.h>

#include "config.h"
#include "util.h"

/* Exit statuses scripts can trust (payrelayctl --help lists them). */
enum ctl_exit {
	CTL_OK = 0,
	CTL_API_ERROR = 1,   /* the API answered an error */
	CTL_USAGE = 2,       /* bad arguments */
	CTL_UNREACHABLE = 3, /* no HTTP answer at all */
	CTL_BAD_CONFIG = 4,  /* the config file is unreadable or invalid */
	CTL_AUTH = 5,        /* 401: the token was refused */
	CTL_NOT_FOUND = 6,   /* 404 */
};

/* The longest answer read: a long delivery listing stays far below. */
#define CTL_HTTP_MAX_ANSWER (64 * 1024 * 1024)

struct ctl_http;

struct ctl_answer {
	long status;
	struct sbuf body; /* as received */
	json_t *json;     /* the body parsed; NULL when it is not JSON */
};

/* Copies what it needs from `cfg` (address, token); `config_path` is kept
 * for messages and must outlive the handle. NULL when out of memory. */
struct ctl_http *ctl_http_new(const struct config *cfg, const char *config_path, long timeout_ms);
void ctl_http_free(struct ctl_http *h);
/* How the daemon's address is shown: 127.0.0.1:8788, [::1]:8788, unix:/path. */
const char *ctl_http_addr(const struct ctl_http *h);

/* One request. `path` starts with '/' and is already %-escaped; `body` is
 * sent as JSON (NULL: no body). Returns CTL_OK when an HTTP answer came,
 * whatever its status (`ans` then holds it and the caller frees it with
 * ctl_answer_free), else prints why on stderr and returns CTL_UNREACHABLE
 * or CTL_API_ERROR. */
int ctl_http_request(struct ctl_http *h, const char *method, const char *path, const json_t *body,
    struct ctl_answer *ans) WUR;

/* CTL_OK for a 2xx answer with a JSON object; otherwise prints the API's
 * error as "payrelayctl: <error> (HTTP N)" and returns the exit status the
 * status code maps to. */
int ctl_http_check(const struct ctl_http *h, const struct ctl_answer *ans) WUR;

void ctl_answer_free(struct ctl_answer *a);

/* POSTs `body` (a form) to `path` on payrelayd's public listener ([daemon]
 * listen, reached on loopback when it listens on every address), as a
 * gateway would: never with the admin token. Returns as ctl_http_request;
 * `addr` (at least 160 bytes) gets the address, for messages. */
int ctl_http_public_post(const struct config *cfg, long timeout_ms, const char *path,
    const char *body, size_t len, struct ctl_answer *ans, char *addr) WUR;

/* `s` %-escaped for one path segment or query value; the caller frees the
 * result with free(). NULL when out of memory. */
char *ctl_http_escape(const char *s);

#endif
