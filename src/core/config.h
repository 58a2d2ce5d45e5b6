/* Configuration (SPEC §8): parsed with libinih into a plain struct,
 * validated whole, then swapped in whole (a bad file never half-applies). */
#ifndef PAYRELAY_CONFIG_H
#define PAYRELAY_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "event.h"
#include "util.h"

struct family;
struct evp_pkey_st;

enum sign_type { SIGN_MD5, SIGN_RSA };

/* An address to listen on or connect to: host:port, [v6]:port, or unix:/path. */
struct netaddr {
	bool is_unix;
	char host[64]; /* numeric; empty for unix */
	uint16_t port;
	char path[108]; /* unix socket path */
};

struct cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

#define CHANNEL_MAX_POLL_GAPS 16
#define CONFIG_MAX_CONNECTIONS 16384      /* [daemon] max_connections by default */
#define CONFIG_MAX_CONNECTIONS_PER_IP 256 /* [daemon] max_connections_per_ip by default */
#define CONFIG_MAX_SENTINELS 16

struct channel {
	char *name;
	int line; /* of its [channel:NAME] header */
	const struct family *family;
	enum sign_type sign_type;
	char *merchant_id;
	char *key; /* the merchant key / appsecret: a secret */
	size_t key_len;
	struct evp_pkey_st *platform_key; /* epay RSA only */
	char *api_base;
	int poll_after;
	int poll_rate;
	unsigned poll_gaps[CHANNEL_MAX_POLL_GAPS]; /* seconds between polls; the last repeats */
	size_t npoll_gaps;
	int poll_timeout_ms;
	bool sweep;
	int sweep_interval;
	struct cidr *allow; /* NULL: any address */
	size_t nallow;
	/* SPEC §2.5: a paid callback is recorded only once the gateway's
	 * query API says the same (ingest.c, confirm.c). */
	bool confirm;              /* confirm = query (needs api_base) */
	int confirm_timeout_ms;    /* the query's time limit */
	int confirm_max_in_flight; /* queries of this channel at once, at most */
	int confirm_rate;          /* queries started per second, at most */
	/* SPEC §10: the gateway client. */
	char *device;    /* the default device of a created payment (epay); NULL: none */
	char *return_to; /* where a returning payer is sent by default; NULL: none */
};

#define WEBHOOK_MAX_SECRETS 4
#define WEBHOOK_MAX_SCHEDULE 32

struct webhook_secret {
	unsigned char *key; /* the HMAC key (a whsec_ secret is base64-decoded) */
	size_t len;
};

struct webhook {
	char *name;
	int line;
	char *url;
	struct webhook_secret secrets[WEBHOOK_MAX_SECRETS];
	size_t nsecrets;
	unsigned events; /* bitmask of 1 << enum event_type */
	char **channels; /* NULL: every channel */
	size_t nchannels;
	int timeout_ms;
	int max_in_flight;
	unsigned schedule[WEBHOOK_MAX_SCHEDULE]; /* delays in seconds */
	size_t nschedule;
	int breaker_after; /* seconds of nothing but failures that open the breaker; 0: never */
	int probe_interval_max; /* seconds: the longest gap between probes while open */
};

/* A configured secret's text, to mask it wherever network text goes. */
struct config_secret {
	char *p;
	size_t len;
};

#define CONFIG_MAX_RETURN_HOSTS 32
#define CONFIG_RETURN_URL_MAX 1024 /* bytes of a return_to URL */

struct config {
	char *path;
	/* [daemon] */
	struct netaddr listen;
	int shutdown_timeout;
	int64_t dedup_ttl;
	/* seconds a delivered (or replayed) delivery's hash is kept, without
	 * its body; reloadable */
	int64_t delivery_retention;
	int log_level;       /* enum log_level */
	int max_connections; /* open public connections at most; more wait in the backlog */
	int read_timeout;    /* seconds a connection has for each whole request (SPEC §3) */
	/* SPEC §3.1: the client's address behind a proxy, and its limits. */
	struct cidr *trusted_proxies; /* NULL: none */
	size_t ntrusted_proxies;
	bool proxy_protocol;        /* a PROXY header is required from trusted_proxies */
	int max_connections_per_ip; /* open public connections per client address */
	int header_timeout;         /* seconds for a request line and headers (<= read_timeout) */
	/* SPEC §10: the gateway client. public_url is the base URL gateways
	 * and browsers reach payrelayd at (no trailing '/'; NULL: not set, so
	 * no payment can be created); return_hosts are the only hosts a payer
	 * is redirected to; return_secret keys the HMAC of a return's redirect. */
	char *public_url;
	char *return_hosts[CONFIG_MAX_RETURN_HOSTS];
	size_t nreturn_hosts;
	char *return_secret; /* a secret; NULL: not set */
	size_t return_secret_len;
	/* [admin] */
	struct netaddr admin_listen;
	char *admin_token; /* a secret */
	/* [redis] */
	struct netaddr redis;
	int redis_db;
	char *redis_user;
	char *redis_password; /* a secret */
	char *redis_prefix;
	int redis_timeout_ms;
	/* SPEC §3.2: with sentinels the master's address comes from them
	 * (redis.host/port is then unused; url still gives db and password). */
	struct netaddr *redis_sentinels; /* NULL: connect to url */
	size_t nredis_sentinels;
	char *redis_master_name;
	char *redis_sentinel_password; /* a secret; NULL: the sentinels need none */
	int redis_min_replicas;        /* WAIT for this many replicas before an ack */
	int redis_replica_timeout_ms;  /* WAIT's time limit */
	/* [stream] */
	char *stream_key;
	long long stream_maxlen;
	struct channel *channels;
	size_t nchannels;
	struct webhook *webhooks;
	size_t nwebhooks;
	/* Every secret as text, longest first: channel keys, the admin token,
	 * webhook secrets as written (and a whsec_ one's base64 part), the
	 * Redis password. */
	struct config_secret *secrets;
	size_t nsecrets;
};

/* One problem found in a file. */
struct config_error {
	int line; /* 0 when the problem is not on one line */
	char msg[256];
};

struct config_errors {
	struct config_error *v;
	size_t n;
	size_t cap;
};

void config_errors_free(struct config_errors *e);
/* Parses and validates `path`. On success returns a config the caller frees
 * with config_free; on failure NULL, with every problem found in `errs`
 * (none of them quotes a secret). */
struct config *config_load(const char *path, struct config_errors *errs);
void config_free(struct config *c);

const struct channel *config_channel(const struct config *c, const char *name);
/* Whether `url` may be a payer's redirect target (SPEC §10.2): http(s),
 * at most CONFIG_RETURN_URL_MAX bytes, no userinfo, no control byte, space,
 * backslash or quote anywhere, and its host (any port) one of return_hosts,
 * compared without case. False when return_hosts is not set. */
bool config_return_url_ok(const struct config *c, const char *url);
bool config_name_valid(const char *name);
/* True when the webhook wants events of `type` from `channel`. */
bool webhook_matches(const struct webhook *w, enum event_type type, const char *channel);
/* True when `sa` is inside one of the `n` ranges of `list`; an IPv4-mapped
 * IPv6 address is matched against the IPv4 ranges too. */
bool cidr_list_match(const struct cidr *list, size_t n, const struct sockaddr *sa);
/* True when `sa` is inside one of the channel's allow_from ranges (or the
 * channel has none). */
bool channel_allows(const struct channel *ch, const struct sockaddr *sa);

/* Replaces every occurrence of `secret` in the `len` bytes of `buf` with
 * "***" (a secret shorter than 3 bytes with as many '*'), in place: the
 * text only shrinks. Returns the new length; buf[new length] is set to NUL
 * when it was shorter than `len`. */
size_t config_mask_text(char *buf, size_t len, const char *secret, size_t slen);
/* The same for every secret of `c` (NULL: none); longer secrets first, so
 * a short one inside a longer one cannot leave a part of it. */
size_t config_mask_secrets_n(const struct config *c, char *buf, size_t len);
/* The same on a NUL-terminated string. */
void config_mask_secrets(const struct config *c, char *s);
/* The configuration whose secrets text from gateways is masked with where
 * only a channel is at hand (family.c's poll answers): payrelayd sets it at
 * start and on every swap, before the old one is freed (config_free of the
 * registered one clears it). */
void config_set_masking(const struct config *c);
const struct config *config_masking(void);

#endif
