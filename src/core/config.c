/* Configuration (SPEC §8).
 *
 * The file is INI as libinih reads it, with these rules on top:
 * - a line is at most 199 bytes; a line starting with ';' or '#' is a
 *   comment, and " ;" (white space, then ';') starts a comment anywhere, so
 *   a value can never contain " ;";
 * - "key = value" (or "key: value"); leading white space is ignored, so
 *   there are no continuation lines;
 * - every section at most once, every key at most once per section.
 * Every problem is recorded with its line and parsing goes on, so
 * --check-config shows them all at once. No message quotes a secret or a
 * URL (URLs may carry credentials).
 *
 * [redis] url: redis://[[user][:password]@]host[:port][/db] (host numeric or
 * localhost; port 6379 and db 0 by default; user and password are taken
 * verbatim, so a password with '/', '?' or '#' goes in password_file), or
 * unix:/path or unix:///path, both with an optional ?db=N. No rediss://:
 * hiredis 0.14 has no TLS. With [redis] sentinels (and master_name) the
 * url must be redis://, and only its user, password and db are used.
 *
 * allow_from: addresses or CIDR ranges separated by spaces or commas; a
 * bare address is /32 or /128, 0.0.0.0/0 is any IPv4 peer (an IPv6 peer
 * then needs an IPv6 range, unless it is IPv4-mapped).
 *
 * trusted_proxies: the same syntax, and may be empty (no proxy trusted,
 * the default). proxy_protocol = on needs at least one.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>

#include <ini.h>

#include "crypto.h"
#include "family.h"
#include "log.h"

#define CONFIG_MAX (1024 * 1024)
#define SECRET_MAX (64 * 1024)
#define WS " \t"

static const char SYNTAX_ERROR[] = "syntax error: expected [section] or key = value";
static const char NO_MEMORY[] = "out of memory";

enum sect_kind {
	SEC_NONE,   /* before the first header: a key is an error */
	SEC_IGNORE, /* after a bad header: its keys are not looked at */
	SEC_DAEMON,
	SEC_ADMIN,
	SEC_REDIS,
	SEC_STREAM, /* in the order of single_names */
	SEC_CHANNEL,
	SEC_WEBHOOK,
};
static const char *const single_names[] = { "daemon", "admin", "redis", "stream" };

enum key {
	K_LISTEN,
	K_SHUTDOWN_TIMEOUT,
	K_DEDUP_TTL,
	K_DELIVERY_RETENTION,
	K_LOG_LEVEL,
	K_MAX_CONNECTIONS,
	K_READ_TIMEOUT,
	K_TRUSTED_PROXIES,
	K_PROXY_PROTOCOL,
	K_MAX_CONNECTIONS_PER_IP,
	K_HEADER_TIMEOUT,
	K_PUBLIC_URL,
	K_RETURN_HOSTS,
	K_RETURN_SECRET,
	K_RETURN_SECRET_FILE,
	K_ADMIN_LISTEN,
	K_TOKEN,
	K_TOKEN_FILE,
	K_REDIS_URL,
	K_PASSWORD_FILE,
	K_PREFIX,
	K_REDIS_TIMEOUT,
	K_SENTINELS,
	K_MASTER_NAME,
	K_SENTINEL_PASSWORD_FILE,
	K_MIN_REPLICAS,
	K_REPLICA_TIMEOUT_MS,
	K_STREAM_KEY,
	K_MAXLEN,
	K_FAMILY,
	K_SIGN_TYPE,
	K_PUBKEY_FILE,
	K_MERCHANT_ID,
	K_KEY,
	K_KEY_FILE,
	K_API_BASE,
	K_POLL_AFTER,
	K_POLL_RATE,
	K_SWEEP,
	K_SWEEP_INTERVAL,
	K_ALLOW_FROM,
	K_POLL_GAPS,
	K_POLL_TIMEOUT_MS,
	K_CONFIRM,
	K_CONFIRM_TIMEOUT_MS,
	K_CONFIRM_MAX_IN_FLIGHT,
	K_CONFIRM_RATE,
	K_DEVICE,
	K_RETURN_TO,
	K_URL,
	K_SECRET,
	K_EVENTS,
	K_CHANNELS,
	K_TIMEOUT_MS,
	K_MAX_IN_FLIGHT,
	K_SCHEDULE,
	K_BREAKER_AFTER,
	K_PROBE_INTERVAL_MAX,
	K_COUNT
};

/* Every key; an integer key has max > 0 and is range-checked before use. */
static const struct {
	enum sect_kind sect;
	const char *name;
	long long min, max;
} keys[K_COUNT] = {
	[K_LISTEN] = { SEC_DAEMON, "listen", 0, 0 },
	[K_SHUTDOWN_TIMEOUT] = { SEC_DAEMON, "shutdown_timeout", 1, 600 },
	[K_DEDUP_TTL] = { SEC_DAEMON, "dedup_ttl", 3600, 315360000 },
	[K_DELIVERY_RETENTION] = { SEC_DAEMON, "delivery_retention", 60, 315360000 },
	[K_LOG_LEVEL] = { SEC_DAEMON, "log_level", 0, 0 },
	[K_MAX_CONNECTIONS] = { SEC_DAEMON, "max_connections", 16, 1000000 },
	[K_READ_TIMEOUT] = { SEC_DAEMON, "read_timeout", 1, 3600 },
	[K_TRUSTED_PROXIES] = { SEC_DAEMON, "trusted_proxies", 0, 0 },
	[K_PROXY_PROTOCOL] = { SEC_DAEMON, "proxy_protocol", 0, 0 },
	[K_MAX_CONNECTIONS_PER_IP] = { SEC_DAEMON, "max_connections_per_ip", 1, 1000000 },
	[K_HEADER_TIMEOUT] = { SEC_DAEMON, "header_timeout", 1, 3600 },
	[K_PUBLIC_URL] = { SEC_DAEMON, "public_url", 0, 0 },
	[K_RETURN_HOSTS] = { SEC_DAEMON, "return_hosts", 0, 0 },
	[K_RETURN_SECRET] = { SEC_DAEMON, "return_secret", 0, 0 },
	[K_RETURN_SECRET_FILE] = { SEC_DAEMON, "return_secret_file", 0, 0 },
	[K_ADMIN_LISTEN] = { SEC_ADMIN, "listen", 0, 0 },
	[K_TOKEN] = { SEC_ADMIN, "token", 0, 0 },
	[K_TOKEN_FILE] = { SEC_ADMIN, "token_file", 0, 0 },
	[K_REDIS_URL] = { SEC_REDIS, "url", 0, 0 },
	[K_PASSWORD_FILE] = { SEC_REDIS, "password_file", 0, 0 },
	[K_PREFIX] = { SEC_REDIS, "prefix", 0, 0 },
	[K_REDIS_TIMEOUT] = { SEC_REDIS, "timeout_ms", 100, 60000 },
	[K_SENTINELS] = { SEC_REDIS, "sentinels", 0, 0 },
	[K_MASTER_NAME] = { SEC_REDIS, "master_name", 0, 0 },
	[K_SENTINEL_PASSWORD_FILE] = { SEC_REDIS, "sentinel_password_file", 0, 0 },
	[K_MIN_REPLICAS] = { SEC_REDIS, "min_replicas", 0, 16 },
	[K_REPLICA_TIMEOUT_MS] = { SEC_REDIS, "replica_timeout_ms", 10, 60000 },
	[K_STREAM_KEY] = { SEC_STREAM, "key", 0, 0 },
	[K_MAXLEN] = { SEC_STREAM, "maxlen", 1000, 1000000000 },
	[K_FAMILY] = { SEC_CHANNEL, "family", 0, 0 },
	[K_SIGN_TYPE] = { SEC_CHANNEL, "sign_type", 0, 0 },
	[K_PUBKEY_FILE] = { SEC_CHANNEL, "platform_public_key_file", 0, 0 },
	[K_MERCHANT_ID] = { SEC_CHANNEL, "merchant_id", 0, 0 },
	[K_KEY] = { SEC_CHANNEL, "key", 0, 0 },
	[K_KEY_FILE] = { SEC_CHANNEL, "key_file", 0, 0 },
	[K_API_BASE] = { SEC_CHANNEL, "api_base", 0, 0 },
	[K_POLL_AFTER] = { SEC_CHANNEL, "poll_after", 1, 86400 },
	[K_POLL_RATE] = { SEC_CHANNEL, "poll_rate", 1, 1000 },
	[K_SWEEP] = { SEC_CHANNEL, "sweep", 0, 0 },
	[K_SWEEP_INTERVAL] = { SEC_CHANNEL, "sweep_interval", 10, 86400 },
	[K_ALLOW_FROM] = { SEC_CHANNEL, "allow_from", 0, 0 },
	[K_POLL_GAPS] = { SEC_CHANNEL, "poll_gaps", 0, 0 },
	[K_POLL_TIMEOUT_MS] = { SEC_CHANNEL, "poll_timeout_ms", 100, 120000 },
	[K_CONFIRM] = { SEC_CHANNEL, "confirm", 0, 0 },
	[K_CONFIRM_TIMEOUT_MS] = { SEC_CHANNEL, "confirm_timeout_ms", 100, 60000 },
	[K_CONFIRM_MAX_IN_FLIGHT] = { SEC_CHANNEL, "confirm_max_in_flight", 1, 1024 },
	[K_CONFIRM_RATE] = { SEC_CHANNEL, "confirm_rate", 1, 1000 },
	[K_DEVICE] = { SEC_CHANNEL, "device", 0, 0 },
	[K_RETURN_TO] = { SEC_CHANNEL, "return_to", 0, 0 },
	[K_URL] = { SEC_WEBHOOK, "url", 0, 0 },
	[K_SECRET] = { SEC_WEBHOOK, "secret", 0, 0 },
	[K_EVENTS] = { SEC_WEBHOOK, "events", 0, 0 },
	[K_CHANNELS] = { SEC_WEBHOOK, "channels", 0, 0 },
	[K_TIMEOUT_MS] = { SEC_WEBHOOK, "timeout_ms", 100, 300000 },
	[K_MAX_IN_FLIGHT] = { SEC_WEBHOOK, "max_in_flight", 1, 1024 },
	[K_SCHEDULE] = { SEC_WEBHOOK, "schedule", 0, 0 },
	[K_BREAKER_AFTER] = { SEC_WEBHOOK, "breaker_after", 0, 86400 },
	[K_PROBE_INTERVAL_MAX] = { SEC_WEBHOOK, "probe_interval_max", 1, 86400 },
};

static const unsigned default_poll_gaps[] = { 60, 120, 300, 600, 1800, 3600 };
static const unsigned default_schedule[] = { 0, 5, 300, 1800, 7200, 18000, 36000, 36000 };
#define DEFAULT_NSCHEDULE (sizeof(default_schedule) / sizeof(default_schedule[0]))

/* Where a section and each of its keys were given (0: not given). */
struct seen {
	int header;
	int at[K_COUNT];
};

struct parser {
	struct config *c;
	struct config_errors *errs; /* may be NULL */
	size_t nerr;                /* problems found, recorded or not */
	char *dir;                  /* of the config file, for relative paths */
	const char *buf;            /* the file, served to inih one line per call */
	size_t len, pos;
	int line;         /* the line inih is working on */
	int first_syntax; /* the first line with a syntax error, or 0 */
	enum sect_kind kind;
	char section[INI_MAX_LINE]; /* its name, for messages */
	const char *key;            /* the key being set, for messages */
	size_t idx;                 /* of the current channel or webhook */
	struct seen single[4];      /* daemon, admin, redis, stream */
	struct seen *chseen;        /* parallel to c->channels */
	struct seen *whseen;        /* parallel to c->webhooks */
	bool url_password;          /* [redis] url carried a password */
	bool inline_secret;         /* a key, token, password or secret is in the file itself */
};

static void err(struct parser *p, int line, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void
err(struct parser *p, int line, const char *fmt, ...)
{
	struct config_errors *e = p->errs;
	struct config_error *v;
	va_list ap;

	p->nerr++;
	if (e == NULL)
		return;
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 8;

		if ((v = realloc(e->v, cap * sizeof(*v))) == NULL)
			return;
		e->v = v;
		e->cap = cap;
	}
	v = &e->v[e->n++];
	v->line = line;
	va_start(ap, fmt);
	vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
	va_end(ap);
}

void
config_errors_free(struct config_errors *e)
{
	if (e == NULL)
		return;
	free(e->v);
	e->v = NULL;
	e->n = e->cap = 0;
}

static char *
pdup(struct parser *p, const char *s)
{
	char *d = xstrdup(s);

	if (d == NULL)
		err(p, p->line, NO_MEMORY);
	return d;
}

/* `arr` (n items of `size` bytes) grown by one zeroed item; NULL (and `arr`
 * untouched) when out of memory. */
static void *
grow(void *arr, size_t n, size_t size)
{
	char *q = realloc(arr, (n + 1) * size);

	if (q != NULL)
		memset(q + n * size, 0, size);
	return q;
}

static void
wipe_free(void *p, size_t n)
{
	if (p != NULL)
		explicit_bzero(p, n);
	free(p);
}

/* Strict decimal: n bytes of digits, within [min, max]. Returns 0 or -1. */
static int
parse_ll(const char *s, size_t n, long long min, long long max, long long *out)
{
	long long v = 0;
	size_t i;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		int d = s[i] - '0';

		if (d < 0 || d > 9 || v > max / 10 || v * 10 > max - d)
			return -1;
		v = v * 10 + d;
	}
	if (v < min)
		return -1;
	*out = v;
	return 0;
}

/* The next token of *s delimited by any of `seps`; NULL at the end. */
static const char *
next_token(const char **s, const char *seps, size_t *n)
{
	const char *t = *s + strspn(*s, seps);

	if (*t == '\0')
		return NULL;
	*n = strcspn(t, seps);
	*s = t + *n;
	return t;
}

/* `host[:port]` or `[v6][:port]`, n bytes. "localhost" is 127.0.0.1 and,
 * with `wildcard`, "*" is 0.0.0.0. Without a port, `defport` (0: a port is
 * required). Returns 0, -1 on bad syntax, -2 on a host that is not numeric. */
static int
parse_hostport(const char *s, size_t n, unsigned defport, bool wildcard, struct netaddr *na)
{
	char host[sizeof(na->host)];
	unsigned char bin[16];
	const char *h = s, *port = NULL, *end = s + n, *sep;
	size_t hlen;
	long long pv = defport;

	if (n > 0 && s[0] == '[') {
		if ((sep = memchr(s, ']', n)) == NULL || (sep + 1 < end && sep[1] != ':'))
			return -1;
		h = s + 1;
		hlen = (size_t)(sep - h);
		port = sep + 1 < end ? sep + 2 : NULL;
	} else {
		sep = memchr(s, ':', n);
		hlen = sep ? (size_t)(sep - s) : n;
		port = sep ? sep + 1 : NULL;
		if (port != NULL && memchr(port, ':', (size_t)(end - port)) != NULL)
			return -1; /* an IPv6 address needs brackets */
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return hlen == 0 ? -1 : -2;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if ((port != NULL && parse_ll(port, (size_t)(end - port), 1, 65535, &pv) == -1) || pv == 0)
		return -1;
	if (h != s) {
		if (inet_pton(AF_INET6, host, bin) != 1)
			return -2;
	} else if (strcmp(host, "localhost") == 0) {
		strcpy(host, "127.0.0.1");
	} else if (wildcard && strcmp(host, "*") == 0) {
		strcpy(host, "0.0.0.0");
	} else if (inet_pton(AF_INET, host, bin) != 1) {
		return -2;
	}
	memset(na, 0, sizeof(*na));
	memcpy(na->host, host, sizeof(host));
	na->port = (uint16_t)pv;
	return 0;
}

/* A unix socket path of n bytes; it must fit sockaddr_un. */
static int
set_unix(const char *path, size_t n, struct netaddr *na)
{
	if (n == 0 || path[0] != '/' || n >= sizeof(na->path))
		return -1;
	memset(na, 0, sizeof(*na));
	na->is_unix = true;
	memcpy(na->path, path, n);
	return 0;
}

/* The public listener is TCP only: allow_from needs a peer address. */
static void
set_listen(struct parser *p, const char *v, bool unix_ok, struct netaddr *na)
{
	int rc;

	if (strncmp(v, "unix:", 5) == 0 && !unix_ok) {
		err(p, p->line, "listen must be host:port or [v6]:port (no unix socket here)");
		return;
	}
	if (strncmp(v, "unix:", 5) == 0)
		rc = set_unix(v + 5, strlen(v + 5), na);
	else
		rc = parse_hostport(v, strlen(v), 0, true, na);
	if (rc == -2)
		err(p, p->line, "listen: the host must be a numeric address, localhost or *");
	else if (rc < 0 && unix_ok)
		err(p, p->line,
		    "listen must be host:port, [v6]:port or unix:/path (under %zu bytes)",
		    sizeof(na->path));
	else if (rc < 0)
		err(p, p->line, "listen must be host:port or [v6]:port");
}

static void
set_redis_url(struct parser *p, const char *v)
{
	struct config *c = p->c;
	const char *s, *auth_end, *at = NULL, *colon, *q;
	char *user = NULL, *pass = NULL;
	size_t ulen;
	long long db = 0;
	int rc = -1;

	if (strncmp(v, "unix:", 5) == 0) {
		s = v + 5 + (strncmp(v + 5, "//", 2) == 0 ? 2 : 0);
		q = strchr(s, '?');
		if (q != NULL &&
		    (strncmp(q, "?db=", 4) != 0 ||
			parse_ll(q + 4, strlen(q + 4), 0, INT_MAX, &db) == -1))
			goto out;
		rc = set_unix(s, q ? (size_t)(q - s) : strlen(s), &c->redis);
		goto out;
	}
	if (strncasecmp(v, "rediss://", 9) == 0) {
		err(p, p->line, "redis url: rediss:// (TLS) is not supported");
		return;
	}
	if (strncasecmp(v, "redis://", 8) != 0)
		goto out;
	s = v + 8;
	auth_end = s + strcspn(s, "/?#");
	if (*auth_end == '?' || *auth_end == '#')
		goto out;
	for (q = s; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		colon = memchr(s, ':', (size_t)(at - s));
		ulen = (size_t)((colon ? colon : at) - s);
		if (ulen > 0 && (user = strndup(s, ulen)) == NULL)
			goto out;
		if (colon != NULL && colon + 1 < at &&
		    (pass = strndup(colon + 1, (size_t)(at - colon - 1))) == NULL)
			goto out;
		s = at + 1;
	}
	if ((rc = parse_hostport(s, (size_t)(auth_end - s), 6379, false, &c->redis)) == -2) {
		err(p, p->line, "redis host must be a numeric address");
		goto out;
	}
	if (rc == 0 && *auth_end == '/' && auth_end[1] != '\0')
		rc = parse_ll(auth_end + 1, strlen(auth_end + 1), 0, INT_MAX, &db);
	if (rc == 0) {
		c->redis_user = user;
		user = NULL;
		if (pass != NULL) { /* with password_file too: an error in finish() */
			if (c->redis_password != NULL)
				wipe_free(c->redis_password, strlen(c->redis_password));
			c->redis_password = pass;
			p->url_password = true;
			pass = NULL;
		}
	}
out:
	if (rc == -1)
		err(p, p->line,
		    "redis url must be redis://[[user]:password@]host[:port][/db] "
		    "or unix:/path[?db=N]");
	else if (rc == 0)
		c->redis_db = (int)db;
	free(user);
	if (pass != NULL)
		wipe_free(pass, strlen(pass));
}

/* `sentinels = host:port host:port ...` (spaces or commas; port 26379 by
 * default; numeric hosts only, as for url). */
static void
set_sentinels(struct parser *p, const char *v)
{
	struct config *c = p->c;
	struct netaddr *list = NULL, *q;
	const char *t;
	size_t len, n = 0;
	int rc;

	while ((t = next_token(&v, WS ",", &len)) != NULL) {
		if (n == CONFIG_MAX_SENTINELS) {
			err(p, p->line, "sentinels: at most %d addresses", CONFIG_MAX_SENTINELS);
			goto fail;
		}
		if ((q = grow(list, n, sizeof(*list))) == NULL) {
			err(p, p->line, NO_MEMORY);
			goto fail;
		}
		list = q;
		if ((rc = parse_hostport(t, len, 26379, false, &list[n])) != 0) {
			err(p, p->line,
			    rc == -2 ? "sentinels: '%.*s': the host must be a numeric address"
				     : "sentinels: '%.*s' is not host:port or [v6]:port",
			    (int)(len > 64 ? 64 : len), t);
			goto fail;
		}
		n++;
	}
	if (n == 0) {
		err(p, p->line, "sentinels must list at least one host:port");
		goto fail;
	}
	free(c->redis_sentinels);
	c->redis_sentinels = list;
	c->nredis_sentinels = n;
	return;
fail:
	free(list);
}

/* Secret files readable by every local user, or writable by other users
 * than their owner, are a warning, not an error: payrelayd still starts
 * (refusing would turn a permission slip into lost payments), and the log
 * says what to fix. A public key is not secret, but whoever may write it
 * may forge callbacks: it is checked for writing too. */
static void
warn_if_world_readable(struct parser *p, const char *path)
{
	struct stat st;
	const char *key = p->key != NULL ? p->key : "-";

	if (stat(path, &st) == -1)
		return;
	if ((st.st_mode & S_IROTH) && strcmp(key, "platform_public_key_file") != 0)
		log_warnx("secret file is readable by every user: chmod o-r it",
		    "file=\"%s\" key=%s", path, key);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		log_warnx("secret file is writable by other users: chmod go-w it",
		    "file=\"%s\" key=%s", path, key);
}

/* Reads the file `v` (relative to the config file's directory), at most
 * `max` bytes, trailing white space trimmed. The caller wipes and frees
 * *out. Returns 0 or -1 (the problem recorded with the path, never the
 * content). */
static int
read_value_file(struct parser *p, const char *v, size_t max, char **out, size_t *outlen)
{
	char *path = NULL, *buf;
	size_t len = 0, n;
	int rc = -1;

	if (*v == '\0') {
		err(p, p->line, "%s must not be empty", p->key);
		goto out;
	}
	n = strlen(p->dir) + strlen(v) + 2;
	if ((path = malloc(n)) == NULL) {
		err(p, p->line, NO_MEMORY);
		goto out;
	}
	snprintf(path, n, "%s/%s", v[0] == '/' ? "" : p->dir, v[0] == '/' ? v + 1 : v);
	if ((buf = read_file(path, max, &len)) == NULL) {
		if (errno == EFBIG)
			err(p, p->line, "%s %s: larger than %zu KiB", p->key, path, max / 1024);
		else
			err(p, p->line, "%s %s: %s", p->key, path, strerror(errno));
		goto out;
	}
	warn_if_world_readable(p, path);
	while (len > 0 && strchr(" \t\r\n", buf[len - 1]) != NULL)
		buf[--len] = '\0';
	if (strlen(buf) != len) {
		err(p, p->line, "%s %s: contains a NUL byte", p->key, path);
		wipe_free(buf, len);
		goto out;
	}
	*out = buf;
	*outlen = len;
	rc = 0;
out:
	free(path);
	return rc;
}

/* A secret given inline (`file` false) or in the file `v`. The caller wipes
 * and frees *out. Returns 0 or -1. */
static int
get_secret(struct parser *p, bool file, const char *v, char **out, size_t *len)
{
	if (file)
		return read_value_file(p, v, SECRET_MAX, out, len);
	p->inline_secret = true;
	*len = strlen(v);
	return (*out = pdup(p, v)) != NULL ? 0 : -1;
}

static bool
valid_http_url(const char *v)
{
	size_t skip = strncasecmp(v, "http://", 7) == 0 ? 7
	    : strncasecmp(v, "https://", 8) == 0        ? 8
							: 0;

	return skip > 0 && v[skip] != '\0' && v[skip] != '/' && strpbrk(v, " \t") == NULL;
}

#define IDENT_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#define HOST_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-"

/* return_hosts: host names (no port, no scheme) separated by spaces or
 * commas, kept lowercase. */
static void
set_return_hosts(struct parser *p, const char *v)
{
	struct config *c = p->c;
	const char *t = v;
	size_t n, i;

	for (i = 0; i < c->nreturn_hosts; i++)
		free(c->return_hosts[i]);
	c->nreturn_hosts = 0;
	for (;;) {
		t += strspn(t, " \t,");
		if (*t == '\0')
			break;
		n = strcspn(t, " \t,");
		if (n > 253 || strspn(t, HOST_CHARS) < n || t[0] == '.' || t[0] == '-') {
			err(p, p->line, "return_hosts: '%.*s' is not a host name",
			    (int)(n > 64 ? 64 : n), t);
			return;
		}
		if (c->nreturn_hosts == CONFIG_MAX_RETURN_HOSTS) {
			err(p, p->line, "return_hosts: at most %d hosts", CONFIG_MAX_RETURN_HOSTS);
			return;
		}
		if ((c->return_hosts[c->nreturn_hosts] = strndup(t, n)) == NULL) {
			err(p, p->line, "out of memory");
			return;
		}
		for (i = 0; i < n; i++)
			c->return_hosts[c->nreturn_hosts][i] =
			    (char)tolower((unsigned char)c->return_hosts[c->nreturn_hosts][i]);
		c->nreturn_hosts++;
		t += n;
	}
	if (c->nreturn_hosts == 0)
		err(p, p->line, "return_hosts is empty");
}

/* ADDRESS or ADDRESS/PREFIX, n bytes. Returns 0 or -1. */
static int
parse_cidr(const char *t, size_t n, struct cidr *r)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = memchr(t, '/', n);
	size_t alen = slash ? (size_t)(slash - t) : n;
	long long prefix;

	memset(r, 0, sizeof(*r));
	r->family = memchr(t, ':', alen) ? AF_INET6 : AF_INET;
	prefix = r->family == AF_INET ? 32 : 128;
	if (alen >= sizeof(addr))
		return -1;
	memcpy(addr, t, alen);
	addr[alen] = '\0';
	if (inet_pton(r->family, addr, r->addr) != 1 ||
	    (slash && parse_ll(slash + 1, n - alen - 1, 0, prefix, &prefix) == -1))
		return -1;
	r->prefix = (unsigned)prefix;
	return 0;
}

/* A list of addresses and CIDR ranges, the value of key `name`, into
 * *out and *nout (left alone on error). Returns the number of entries, or
 * -1 after an error was recorded. */
static int
parse_cidr_list(struct parser *p, const char *name, const char *v, struct cidr **out, size_t *nout)
{
	struct cidr *list = NULL, *q, r;
	size_t n = 0, len;
	const char *t;
	bool bad = false;

	while ((t = next_token(&v, " \t,", &len)) != NULL) {
		if (parse_cidr(t, len, &r) == -1) {
			err(p, p->line,
			    "%s: bad entry '%.*s' (expected ADDRESS or "
			    "ADDRESS/PREFIX)",
			    name, (int)(len > 64 ? 64 : len), t);
			bad = true;
		} else if ((q = grow(list, n, sizeof(*list))) == NULL) {
			err(p, p->line, NO_MEMORY);
			bad = true;
			break;
		} else {
			list = q;
			list[n++] = r;
		}
	}
	if (bad) {
		free(list);
		return -1;
	}
	*out = list;
	*nout = n;
	return (int)n;
}

static void
set_allow_from(struct parser *p, struct channel *ch, const char *v)
{
	if (parse_cidr_list(p, "allow_from", v, &ch->allow, &ch->nallow) == 0)
		err(p, p->line, "allow_from is empty (leave it out to allow any address)");
}

/* Keeps a copy of a secret's text for config_mask_secrets (duplicates
 * and empty ones once or not at all). */
static void
add_secret(struct parser *p, const char *s, size_t n)
{
	struct config *c = p->c;
	struct config_secret *v;
	size_t i;

	if (s == NULL || n == 0)
		return;
	for (i = 0; i < c->nsecrets; i++)
		if (c->secrets[i].len == n && memcmp(c->secrets[i].p, s, n) == 0)
			return;
	if ((v = grow(c->secrets, c->nsecrets, sizeof(*v))) == NULL) {
		err(p, p->line, NO_MEMORY);
		return;
	}
	c->secrets = v;
	if ((v[c->nsecrets].p = malloc(n + 1)) == NULL) {
		err(p, p->line, NO_MEMORY);
		return;
	}
	memcpy(v[c->nsecrets].p, s, n);
	v[c->nsecrets].p[n] = '\0';
	v[c->nsecrets++].len = n;
}

static int
secret_cmp(const void *a, const void *b)
{
	const struct config_secret *x = a, *y = b;

	return x->len > y->len ? -1 : x->len < y->len;
}

static void
set_secrets(struct parser *p, struct webhook *w, const char *v)
{
	const char *t;
	size_t len, i = 0;

	p->inline_secret = true;
	while ((t = next_token(&v, WS, &len)) != NULL) {
		unsigned char *key = NULL;
		size_t klen = 0;

		if (++i > WEBHOOK_MAX_SECRETS) {
			err(p, p->line, "secret: at most %d secrets", WEBHOOK_MAX_SECRETS);
			break;
		}
		add_secret(p, t, len);
		if (len >= 6 && strncmp(t, "whsec_", 6) == 0) {
			add_secret(p, t + 6, len - 6);
			if (crypto_base64_decode(t + 6, len - 6, &key, &klen) == -1 || klen == 0) {
				err(p, p->line, "secret %zu: whsec_ value is not valid base64", i);
				wipe_free(key, klen);
				continue;
			}
		} else if ((key = malloc(len)) == NULL) {
			err(p, p->line, NO_MEMORY);
			break;
		} else {
			memcpy(key, t, len);
			klen = len;
		}
		w->secrets[w->nsecrets].key = key;
		w->secrets[w->nsecrets++].len = klen;
	}
	if (i == 0)
		err(p, p->line, "secret must not be empty");
}

static void
set_events(struct parser *p, struct webhook *w, const char *v)
{
	const char *t, *name;
	size_t len;
	int e;

	w->events = 0;
	while ((t = next_token(&v, WS, &len)) != NULL) {
		for (e = EVENT_PAID; e < EVENT_NTYPES; e++) {
			name = event_type_str((enum event_type)e);
			if (strlen(name) == len && memcmp(name, t, len) == 0)
				break;
		}
		if (e < EVENT_NTYPES)
			w->events |= 1u << e;
		else
			err(p, p->line,
			    "unknown event '%.*s' (order.paid, order.status, "
			    "order.amount_mismatch or order.refunded)",
			    (int)(len > 64 ? 64 : len), t);
	}
	if (w->events == 0)
		err(p, p->line, "events must name at least one event");
}

/* The names are checked against the channels once the whole file is read. */
static void
set_channels(struct parser *p, struct webhook *w, const char *v)
{
	const char *t;
	size_t len;
	char **q;

	if (strcmp(v, "*") == 0)
		return;
	while ((t = next_token(&v, WS, &len)) != NULL) {
		if (len == 1 && *t == '*') {
			err(p, p->line, "channels: * cannot be mixed with channel names");
			continue;
		}
		if ((q = grow(w->channels, w->nchannels, sizeof(*q))) == NULL) {
			err(p, p->line, NO_MEMORY);
			return;
		}
		w->channels = q;
		if ((q[w->nchannels] = strndup(t, len)) == NULL) {
			err(p, p->line, NO_MEMORY);
			return;
		}
		w->nchannels++;
	}
	if (w->nchannels == 0)
		err(p, p->line, "channels must be * or channel names");
}

/* A list of 1 to max delays in seconds, each at most `limit`; returns how
 * many, 0 on error (reported). */
static size_t
set_delays(struct parser *p, const char *key, unsigned *out, size_t max, long long min,
    long long limit, const char *v)
{
	const char *t;
	size_t len, n = 0;
	long long d;

	while ((t = next_token(&v, WS, &len)) != NULL) {
		if (n == max || parse_ll(t, len, min, limit, &d) == -1) {
			n = 0;
			break;
		}
		out[n++] = (unsigned)d;
	}
	if (n == 0)
		err(p, p->line, "%s must be 1 to %zu delays in seconds, each from %lld to %lld",
		    key, max, min, limit);
	return n;
}

static void
set_schedule(struct parser *p, struct webhook *w, const char *v)
{
	unsigned d[WEBHOOK_MAX_SCHEDULE];
	size_t n = set_delays(p, "schedule", d, WEBHOOK_MAX_SCHEDULE, 0, 604800, v);

	if (n > 0) {
		memcpy(w->schedule, d, n * sizeof(d[0]));
		w->nschedule = n;
	}
}

static bool
parse_bool(const char *v, bool *out)
{
	static const char *const names[] = { "off", "on", "false", "true", "no", "yes", "0", "1" };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(v, names[i]) == 0) {
			*out = i % 2 == 1;
			return true;
		}
	return false;
}

/* Sets key `k` of the current section; an integer key arrives checked in `n`. */
static void
set_key(struct parser *p, struct seen *s, enum key k, const char *v, long long n)
{
	struct config *c = p->c;
	struct channel *ch = p->kind == SEC_CHANNEL ? &c->channels[p->idx] : NULL;
	struct webhook *w = p->kind == SEC_WEBHOOK ? &c->webhooks[p->idx] : NULL;
	enum log_level lvl;
	char *buf = NULL;
	size_t len = 0;

	switch (k) {
	case K_LISTEN:
		set_listen(p, v, false, &c->listen);
		break;
	case K_SHUTDOWN_TIMEOUT:
		c->shutdown_timeout = (int)n;
		break;
	case K_DEDUP_TTL:
		c->dedup_ttl = n;
		break;
	case K_DELIVERY_RETENTION:
		c->delivery_retention = n;
		break;
	case K_MAX_CONNECTIONS:
		c->max_connections = (int)n;
		break;
	case K_READ_TIMEOUT:
		c->read_timeout = (int)n;
		break;
	case K_TRUSTED_PROXIES:
		(void)parse_cidr_list(p, "trusted_proxies", v, &c->trusted_proxies,
		    &c->ntrusted_proxies);
		break;
	case K_PROXY_PROTOCOL:
		if (!parse_bool(v, &c->proxy_protocol))
			err(p, p->line, "proxy_protocol must be on or off");
		break;
	case K_MAX_CONNECTIONS_PER_IP:
		c->max_connections_per_ip = (int)n;
		break;
	case K_HEADER_TIMEOUT:
		c->header_timeout = (int)n;
		break;
	case K_PUBLIC_URL:
		if (!valid_http_url(v) || strpbrk(v, "?#") != NULL) {
			err(p, p->line,
			    "public_url must be an http:// or https:// URL without spaces, "
			    "query or fragment");
			break;
		}
		free(c->public_url);
		if ((c->public_url = pdup(p, v)) == NULL)
			break;
		len = strlen(c->public_url);
		while (len > 0 && c->public_url[len - 1] == '/')
			c->public_url[--len] = '\0';
		break;
	case K_RETURN_HOSTS:
		set_return_hosts(p, v);
		break;
	case K_RETURN_SECRET:
	case K_RETURN_SECRET_FILE:
		if (s->at[K_RETURN_SECRET] && s->at[K_RETURN_SECRET_FILE])
			err(p, p->line, "give return_secret or return_secret_file, not both");
		else if (get_secret(p, k == K_RETURN_SECRET_FILE, v, &buf, &len) == -1)
			break;
		else if (len < 16)
			err(p, p->line, "return secret must be at least 16 bytes");
		else {
			c->return_secret = buf;
			c->return_secret_len = len;
			buf = NULL;
		}
		break;
	case K_LOG_LEVEL:
		if (log_parse_level(v, &lvl) == 0)
			c->log_level = (int)lvl;
		else
			err(p, p->line, "log_level must be debug, info, warn or error");
		break;
	case K_ADMIN_LISTEN:
		set_listen(p, v, true, &c->admin_listen);
		break;
	case K_TOKEN:
	case K_TOKEN_FILE:
		if (s->at[K_TOKEN] && s->at[K_TOKEN_FILE])
			err(p, p->line, "give token or token_file, not both");
		else if (get_secret(p, k == K_TOKEN_FILE, v, &buf, &len) == -1)
			break;
		else if (len < 16)
			err(p, p->line, "admin token must be at least 16 bytes");
		else {
			c->admin_token = buf;
			buf = NULL;
		}
		break;
	case K_REDIS_URL:
		set_redis_url(p, v);
		break;
	case K_PASSWORD_FILE:
		if (get_secret(p, true, v, &buf, &len) == -1)
			break;
		if (len == 0) {
			err(p, p->line, "password_file is empty");
			break;
		}
		if (c->redis_password != NULL) /* given in the url too: an error in finish() */
			wipe_free(c->redis_password, strlen(c->redis_password));
		c->redis_password = buf;
		buf = NULL;
		break;
	case K_PREFIX:
		free(c->redis_prefix);
		c->redis_prefix = pdup(p, v);
		break;
	case K_REDIS_TIMEOUT:
		c->redis_timeout_ms = (int)n;
		break;
	case K_SENTINELS:
		set_sentinels(p, v);
		break;
	case K_MASTER_NAME:
		if (*v == '\0' || strlen(v) > 64 || strpbrk(v, " \t\"") != NULL) {
			err(p, p->line,
			    "master_name must be 1 to 64 bytes without spaces or quotes");
			break;
		}
		free(c->redis_master_name);
		c->redis_master_name = pdup(p, v);
		break;
	case K_SENTINEL_PASSWORD_FILE:
		if (get_secret(p, true, v, &buf, &len) == -1)
			break;
		if (len == 0) {
			err(p, p->line, "sentinel_password_file is empty");
			break;
		}
		c->redis_sentinel_password = buf;
		buf = NULL;
		break;
	case K_MIN_REPLICAS:
		c->redis_min_replicas = (int)n;
		break;
	case K_REPLICA_TIMEOUT_MS:
		c->redis_replica_timeout_ms = (int)n;
		break;
	case K_STREAM_KEY:
		if (*v == '\0') {
			err(p, p->line, "key must not be empty");
			break;
		}
		free(c->stream_key);
		c->stream_key = pdup(p, v);
		break;
	case K_MAXLEN:
		c->stream_maxlen = n;
		break;
	case K_FAMILY:
		if ((ch->family = family_find(v)) == NULL) {
			char names[128];

			family_names(NULL, names, sizeof(names));
			err(p, p->line, "unknown family '%.64s' (%s)", v, names);
		}
		break;
	case K_SIGN_TYPE:
		if (strcasecmp(v, "MD5") == 0)
			ch->sign_type = SIGN_MD5;
		else if (strcasecmp(v, "RSA") == 0)
			ch->sign_type = SIGN_RSA;
		else
			err(p, p->line, "sign_type must be MD5 or RSA");
		break;
	case K_PUBKEY_FILE:
		if (read_value_file(p, v, SECRET_MAX, &buf, &len) == 0 &&
		    (ch->platform_key = crypto_pkey_load_pem(buf, len)) == NULL)
			err(p, p->line, "platform_public_key_file %.160s: not a PEM public key", v);
		break;
	case K_MERCHANT_ID:
		if (*v == '\0')
			err(p, p->line, "merchant_id must not be empty");
		else
			ch->merchant_id = pdup(p, v);
		break;
	case K_KEY:
	case K_KEY_FILE:
		if (s->at[K_KEY] && s->at[K_KEY_FILE])
			err(p, p->line, "give key or key_file, not both");
		else if (get_secret(p, k == K_KEY_FILE, v, &buf, &len) == -1)
			break;
		else if (len == 0)
			err(p, p->line, "channel has an empty key");
		else {
			ch->key = buf;
			ch->key_len = len;
			buf = NULL;
		}
		break;
	case K_API_BASE:
		if (!valid_http_url(v)) {
			err(p, p->line,
			    "api_base must be an http:// or https:// URL without spaces");
			break;
		}
		if ((ch->api_base = pdup(p, v)) == NULL)
			break;
		len = strlen(ch->api_base);
		while (len > 0 && ch->api_base[len - 1] == '/')
			ch->api_base[--len] = '\0';
		break;
	case K_POLL_AFTER:
		ch->poll_after = (int)n;
		break;
	case K_POLL_RATE:
		ch->poll_rate = (int)n;
		break;
	case K_SWEEP:
		if (!parse_bool(v, &ch->sweep))
			err(p, p->line, "sweep must be on or off");
		break;
	case K_SWEEP_INTERVAL:
		ch->sweep_interval = (int)n;
		break;
	case K_POLL_GAPS: {
		unsigned d[CHANNEL_MAX_POLL_GAPS];
		size_t nd = set_delays(p, "poll_gaps", d, CHANNEL_MAX_POLL_GAPS, 1, 86400, v);

		if (nd > 0) {
			memcpy(ch->poll_gaps, d, nd * sizeof(d[0]));
			ch->npoll_gaps = nd;
		}
		break;
	}
	case K_POLL_TIMEOUT_MS:
		ch->poll_timeout_ms = (int)n;
		break;
	case K_CONFIRM:
		if (strcmp(v, "query") == 0)
			ch->confirm = true;
		else if (strcmp(v, "off") == 0)
			ch->confirm = false;
		else
			err(p, p->line, "confirm must be query or off");
		break;
	case K_CONFIRM_TIMEOUT_MS:
		ch->confirm_timeout_ms = (int)n;
		break;
	case K_CONFIRM_MAX_IN_FLIGHT:
		ch->confirm_max_in_flight = (int)n;
		break;
	case K_CONFIRM_RATE:
		ch->confirm_rate = (int)n;
		break;
	case K_DEVICE:
		if (*v == '\0' || strlen(v) > 32 || strspn(v, IDENT_CHARS) != strlen(v))
			err(p, p->line, "device must be 1 to 32 letters, digits, '_' or '-'");
		else {
			free(ch->device);
			ch->device = pdup(p, v);
		}
		break;
	case K_RETURN_TO:
		/* Checked against return_hosts in finish(): the order of keys
		 * in the file does not matter. */
		if (!valid_http_url(v) || strlen(v) > CONFIG_RETURN_URL_MAX)
			err(p, p->line,
			    "return_to must be an http:// or https:// URL of at most %d bytes",
			    CONFIG_RETURN_URL_MAX);
		else {
			free(ch->return_to);
			ch->return_to = pdup(p, v);
		}
		break;
	case K_ALLOW_FROM:
		set_allow_from(p, ch, v);
		break;
	case K_URL:
		if (valid_http_url(v))
			w->url = pdup(p, v);
		else
			err(p, p->line, "url must be an http:// or https:// URL without spaces");
		break;
	case K_SECRET:
		set_secrets(p, w, v);
		break;
	case K_EVENTS:
		set_events(p, w, v);
		break;
	case K_CHANNELS:
		set_channels(p, w, v);
		break;
	case K_TIMEOUT_MS:
		w->timeout_ms = (int)n;
		break;
	case K_MAX_IN_FLIGHT:
		w->max_in_flight = (int)n;
		break;
	case K_SCHEDULE:
		set_schedule(p, w, v);
		break;
	case K_BREAKER_AFTER:
		w->breaker_after = (int)n;
		break;
	case K_PROBE_INTERVAL_MAX:
		w->probe_interval_max = (int)n;
		break;
	case K_COUNT:
		break;
	}
	wipe_free(buf, len);
}

static int
on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	struct seen *s;
	long long n = 0;
	int k;

	(void)section; /* inih cuts it at 49 bytes: ours is p->section */
	if (p->kind == SEC_NONE)
		err(p, p->line, "key '%.64s' outside any section", name);
	if (p->kind == SEC_NONE || p->kind == SEC_IGNORE)
		return 1;
	for (k = 0; k < K_COUNT; k++)
		if (keys[k].sect == p->kind && strcmp(keys[k].name, name) == 0)
			break;
	if (p->kind == SEC_CHANNEL)
		s = &p->chseen[p->idx];
	else if (p->kind == SEC_WEBHOOK)
		s = &p->whseen[p->idx];
	else
		s = &p->single[p->kind - SEC_DAEMON];
	p->key = name;
	if (k == K_COUNT) {
		err(p, p->line, "unknown key '%.64s' in [%.100s]", name, p->section);
	} else if (s->at[k]) {
		err(p, p->line, "duplicate key '%s' in [%.100s] (first at line %d)", name,
		    p->section, s->at[k]);
	} else {
		s->at[k] = p->line;
		if (keys[k].max > 0 &&
		    parse_ll(value, strlen(value), keys[k].min, keys[k].max, &n) == -1)
			err(p, p->line, "%s must be an integer from %lld to %lld", name,
			    keys[k].min, keys[k].max);
		else
			set_key(p, s, (enum key)k, value, n);
	}
	return 1; /* problems go to p->errs: inih's own result is syntax only */
}

/* Adds a channel or webhook section called `name` (valid and new). */
static void
add_named(struct parser *p, enum sect_kind kind, const char *name)
{
	struct config *c = p->c;
	struct seen **seen = kind == SEC_CHANNEL ? &p->chseen : &p->whseen;
	size_t n = kind == SEC_CHANNEL ? c->nchannels : c->nwebhooks;
	struct channel *ch;
	struct webhook *w;
	void *q;

	if ((q = grow(*seen, n, sizeof(**seen))) == NULL)
		goto oom;
	*seen = q;
	(*seen)[n].header = p->line;
	if (kind == SEC_CHANNEL) {
		if ((ch = grow(c->channels, n, sizeof(*ch))) == NULL)
			goto oom;
		c->channels = ch;
		ch += n;
		ch->line = p->line;
		ch->sign_type = SIGN_MD5;
		ch->poll_after = 60;
		ch->poll_rate = 5;
		ch->sweep_interval = 300;
		memcpy(ch->poll_gaps, default_poll_gaps, sizeof(default_poll_gaps));
		ch->npoll_gaps = sizeof(default_poll_gaps) / sizeof(default_poll_gaps[0]);
		ch->poll_timeout_ms = 10000;
		ch->confirm_timeout_ms = 3000;
		ch->confirm_max_in_flight = 16;
		ch->confirm_rate = 20;
		if ((ch->name = pdup(p, name)) == NULL)
			return;
		c->nchannels++;
	} else {
		if ((w = grow(c->webhooks, n, sizeof(*w))) == NULL)
			goto oom;
		c->webhooks = w;
		w += n;
		w->line = p->line;
		w->events = 1u << EVENT_PAID | 1u << EVENT_STATUS | 1u << EVENT_AMOUNT_MISMATCH |
		    1u << EVENT_REFUNDED;
		w->timeout_ms = 10000;
		w->max_in_flight = 32;
		w->breaker_after = 300;
		w->probe_interval_max = 300;
		memcpy(w->schedule, default_schedule, sizeof(default_schedule));
		w->nschedule = DEFAULT_NSCHEDULE;
		if ((w->name = pdup(p, name)) == NULL)
			return;
		c->nwebhooks++;
	}
	p->idx = n;
	p->kind = kind;
	return;
oom:
	err(p, p->line, NO_MEMORY);
}

static void
begin_section(struct parser *p, const char *name)
{
	struct config *c = p->c;
	enum sect_kind kind;
	const char *n = name + 8;
	int first = 0;
	size_t i;

	p->kind = SEC_IGNORE;
	snprintf(p->section, sizeof(p->section), "%s", name);
	for (i = 0; i < 4; i++)
		if (strcmp(name, single_names[i]) == 0)
			break;
	if (i < 4) {
		if ((first = p->single[i].header) == 0) {
			p->single[i].header = p->line;
			p->kind = SEC_DAEMON + (int)i;
		}
	} else if (strncmp(name, "channel:", 8) == 0 || strncmp(name, "webhook:", 8) == 0) {
		kind = name[0] == 'c' ? SEC_CHANNEL : SEC_WEBHOOK;
		if (!config_name_valid(n)) {
			err(p, p->line,
			    "invalid name in [%.100s] (1 to 64 bytes of A-Z a-z 0-9 . _ -)", name);
			return;
		}
		if (kind == SEC_CHANNEL && config_channel(c, n) != NULL)
			first = config_channel(c, n)->line;
		for (i = 0; kind == SEC_WEBHOOK && i < c->nwebhooks; i++)
			if (strcmp(c->webhooks[i].name, n) == 0)
				first = c->webhooks[i].line;
		if (first == 0)
			add_named(p, kind, n);
	} else {
		err(p, p->line, "unknown section [%.100s]", name);
	}
	if (first != 0)
		err(p, p->line, "duplicate section [%.100s] (first at line %d)", name, first);
}

/* inih's find_chars_or_comment: the first of `chars` or of an inline
 * comment (';' after white space), or the end. */
static char *
find_end(char *s, const char *chars)
{
	bool was_space = false;

	while (*s && !strchr(chars, *s) && !(was_space && *s == ';')) {
		was_space = *s == ' ' || *s == '\t' || *s == '\r' || *s == '\f' || *s == '\v';
		s++;
	}
	return s;
}

/* The ini_reader: serves one line per call, so that p->line is the line
 * the handler is called for. It also sees what inih does not tell us:
 * section headers (inih cuts names at 49 bytes and says nothing of an
 * empty section) and every syntax error (inih returns the first only). */
static char *
read_line(char *str, int num, void *stream)
{
	struct parser *p = stream;
	const char *s = p->buf + p->pos, *nl;
	size_t n;
	char *end;

	if (p->pos >= p->len)
		return NULL;
	nl = memchr(s, '\n', p->len - p->pos);
	n = nl ? (size_t)(nl - s) : p->len - p->pos;
	p->pos += n + (nl != NULL);
	p->line++;
	if (n > 0 && s[n - 1] == '\r')
		n--;
	if (p->line == 1 && n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
		s += 3;
		n -= 3;
	}
	str[0] = '\0';
	if (n > (size_t)num - 1) {
		err(p, p->line, "line too long (at most %d bytes)", num - 1);
		return str;
	}
	if (memchr(s, '\0', n) != NULL) {
		err(p, p->line, "line contains a NUL byte");
		return str;
	}
	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	memcpy(str, s, n);
	str[n] = '\0';
	if (*str == '\0' || *str == ';' || *str == '#')
		return str;
	if (*str == '[') {
		if (*(end = find_end(str + 1, "]")) == ']') {
			*end = '\0';
			begin_section(p, str + 1);
			*end = ']';
			return str;
		}
		p->kind = SEC_IGNORE;
	} else if (*(end = find_end(str, "=:")) == '=' || *end == ':') {
		return str;
	}
	err(p, p->line, SYNTAX_ERROR);
	if (p->first_syntax == 0)
		p->first_syntax = p->line;
	return str;
}

static void
missing(struct parser *p, int line, const char *key, const char *kind, const char *name)
{
	err(p, line, "missing required key '%s' in [%s:%s]", key, kind, name);
}

/* confirm's default depends on the family, given anywhere in the section
 * (FAMILY_CONFIRM_DEFAULT: a signature that cannot be made unambiguous,
 * SPEC §2.5); turning it off there is warned about by the family's
 * config_warn. */
static void
finish_confirm(struct parser *p, struct channel *ch, const struct seen *s)
{
	bool by_default = ch->family != NULL && (ch->family->caps & FAMILY_CONFIRM_DEFAULT);

	if (!s->at[K_CONFIRM])
		ch->confirm = by_default;
	if (ch->confirm && ch->api_base == NULL) {
		if (s->at[K_CONFIRM])
			err(p, s->at[K_CONFIRM], "confirm = query needs api_base");
		else if (ch->family != NULL)
			err(p, ch->line,
			    "[channel:%s]: family %s confirms payments by query (confirm = query "
			    "is its default), which needs api_base; or set confirm = off",
			    ch->name, ch->family->name);
	}
}

/* The keys only some families take: sign_type and platform_public_key_file
 * (family_rsa), sweep (family_sweeps). With an unknown family (already an
 * error), the keys are checked as an RSA family's. */
static void
finish_family_keys(struct parser *p, struct channel *ch, const struct seen *s)
{
	bool rsa = ch->family == NULL || family_rsa(ch->family);
	char names[128];

	family_names(family_rsa, names, sizeof(names));
	if (!rsa && s->at[K_SIGN_TYPE])
		err(p, s->at[K_SIGN_TYPE], "sign_type is only for family %s", names);
	if (ch->family != NULL && !family_sweeps(ch->family) && ch->sweep) {
		char sweepers[128];

		family_names(family_sweeps, sweepers, sizeof(sweepers));
		err(p, s->at[K_SWEEP], "sweep = on is only for family %s", sweepers);
	}
	if (!rsa) {
		if (s->at[K_PUBKEY_FILE])
			err(p, s->at[K_PUBKEY_FILE],
			    "platform_public_key_file is only for family %s", names);
	} else if (ch->sign_type == SIGN_RSA && !s->at[K_PUBKEY_FILE]) {
		err(p, ch->line,
		    "sign_type = RSA needs platform_public_key_file in "
		    "[channel:%s]",
		    ch->name);
	} else if (ch->sign_type != SIGN_RSA && s->at[K_PUBKEY_FILE]) {
		err(p, s->at[K_PUBKEY_FILE],
		    "platform_public_key_file is only for "
		    "sign_type = RSA");
	}
}

/* Checks that need the whole file. */
static void
finish(struct parser *p)
{
	struct config *c = p->c;
	struct seen *s = &p->single[SEC_REDIS - SEC_DAEMON];
	size_t i, j;

	if (p->url_password && s->at[K_PASSWORD_FILE])
		err(p, s->at[K_PASSWORD_FILE],
		    "give the redis password in url or password_file, "
		    "not both");
	if (s->at[K_SENTINELS] && !s->at[K_MASTER_NAME])
		err(p, s->at[K_SENTINELS], "sentinels needs master_name in [redis]");
	if (s->at[K_MASTER_NAME] && !s->at[K_SENTINELS])
		err(p, s->at[K_MASTER_NAME], "master_name needs sentinels in [redis]");
	if (s->at[K_SENTINEL_PASSWORD_FILE] && !s->at[K_SENTINELS])
		err(p, s->at[K_SENTINEL_PASSWORD_FILE],
		    "sentinel_password_file needs sentinels in [redis]");
	if (s->at[K_SENTINELS] && c->redis.is_unix)
		err(p, s->at[K_REDIS_URL],
		    "with sentinels, url must be redis://... (it gives the db and the password; "
		    "the sentinels give the address)");
	s = &p->single[0]; /* [daemon] */
	if (c->proxy_protocol && c->ntrusted_proxies == 0)
		err(p, s->at[K_PROXY_PROTOCOL],
		    "proxy_protocol = on needs trusted_proxies (the proxies that send the header)");
	/* The headers are part of the request: given a longer time than the
	 * whole request, the setting would mean nothing. */
	if (s->at[K_HEADER_TIMEOUT] && c->header_timeout > c->read_timeout)
		err(p, s->at[K_HEADER_TIMEOUT],
		    "header_timeout (%d) must not exceed read_timeout (%d)", c->header_timeout,
		    c->read_timeout);
	else if (c->header_timeout > c->read_timeout)
		c->header_timeout = c->read_timeout;
	for (i = 0; i < c->nchannels; i++) {
		struct channel *ch = &c->channels[i];

		s = &p->chseen[i];
		if (!s->at[K_FAMILY])
			missing(p, ch->line, "family", "channel", ch->name);
		if (!s->at[K_MERCHANT_ID])
			missing(p, ch->line, "merchant_id", "channel", ch->name);
		if (!s->at[K_KEY] && !s->at[K_KEY_FILE])
			missing(p, ch->line, "key' or 'key_file", "channel", ch->name);
		if (ch->sweep && ch->api_base == NULL)
			err(p, s->at[K_SWEEP], "sweep = on needs api_base");
		finish_confirm(p, ch, s);
		finish_family_keys(p, ch, s);
		if (ch->return_to != NULL && !config_return_url_ok(c, ch->return_to))
			err(p, s->at[K_RETURN_TO],
			    "return_to: its host is not in [daemon] return_hosts (SPEC §10.2: "
			    "no redirect to a host that is not configured)");
	}
	for (i = 0; i < c->nwebhooks; i++) {
		struct webhook *w = &c->webhooks[i];

		s = &p->whseen[i];
		if (!s->at[K_URL])
			missing(p, w->line, "url", "webhook", w->name);
		if (!s->at[K_SECRET])
			missing(p, w->line, "secret", "webhook", w->name);
		for (j = 0; j < w->nchannels; j++)
			if (config_channel(c, w->channels[j]) == NULL)
				err(p, s->at[K_CHANNELS], "channels: no channel named '%.64s'",
				    w->channels[j]);
	}
	if (c->nchannels == 0)
		err(p, 0, "no [channel:NAME] section: nothing to receive");
	for (i = 0; i < c->nchannels; i++)
		add_secret(p, c->channels[i].key, c->channels[i].key_len);
	if (c->admin_token != NULL)
		add_secret(p, c->admin_token, strlen(c->admin_token));
	if (c->redis_password != NULL)
		add_secret(p, c->redis_password, strlen(c->redis_password));
	if (c->redis_sentinel_password != NULL)
		add_secret(p, c->redis_sentinel_password, strlen(c->redis_sentinel_password));
	if (c->return_secret != NULL)
		add_secret(p, c->return_secret, c->return_secret_len);
	if (c->nsecrets > 1)
		qsort(c->secrets, c->nsecrets, sizeof(c->secrets[0]), secret_cmp);
}

/* Warnings about a valid file: what it exposes. */
static void
warn_exposure(struct parser *p, const char *path)
{
	struct config *c = p->c;
	struct stat st;
	size_t i;

	if (stat(path, &st) == 0) {
		if ((p->inline_secret || p->url_password) && (st.st_mode & S_IROTH))
			log_warnx("config file holds secrets and is readable by every user: "
				  "chmod o-r it",
			    "file=\"%s\"", path);
		/* Whoever may write it chooses the keys, key files and webhooks. */
		if (st.st_mode & (S_IWGRP | S_IWOTH))
			log_warnx("config file is writable by other users: chmod go-w it",
			    "file=\"%s\"", path);
	}
	for (i = 0; i < c->nchannels; i++) {
		const struct channel *ch = &c->channels[i];

		if (ch->family != NULL && ch->family->config_warn != NULL)
			ch->family->config_warn(ch, c->path != NULL ? c->path : "-",
			    p->chseen[i].at[K_CONFIRM]);
	}
}

static void
set_defaults(struct parser *p)
{
	struct config *c = p->c;

	strcpy(c->listen.host, "0.0.0.0");
	c->listen.port = 8787;
	strcpy(c->admin_listen.host, "127.0.0.1");
	c->admin_listen.port = 8788;
	strcpy(c->redis.host, "127.0.0.1");
	c->redis.port = 6379;
	c->shutdown_timeout = 10;
	c->dedup_ttl = 2592000;
	c->delivery_retention = 604800;
	c->max_connections = CONFIG_MAX_CONNECTIONS;
	c->read_timeout = 10;
	c->max_connections_per_ip = CONFIG_MAX_CONNECTIONS_PER_IP;
	c->header_timeout = 5;
	c->log_level = LOG_INFO;
	c->redis_timeout_ms = 2000;
	c->redis_replica_timeout_ms = 1000;
	c->stream_maxlen = 1000000;
	c->redis_prefix = pdup(p, "payrelay:");
	c->stream_key = pdup(p, "payrelay:events");
}

static int
error_cmp(const void *a, const void *b)
{
	const struct config_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	/* qsort is not stable: keep messages of one line in their order. */
	return x < y ? -1 : (x > y);
}

struct config *
config_load(const char *path, struct config_errors *errs)
{
	struct parser p = { 0 };
	const char *slash = strrchr(path, '/');
	char *buf = NULL;
	size_t len = 0;
	int rc;

	p.errs = errs;
	if ((p.c = calloc(1, sizeof(*p.c))) == NULL) {
		err(&p, 0, NO_MEMORY);
		goto out;
	}
	p.c->path = pdup(&p, path);
	set_defaults(&p);
	if (slash == NULL)
		p.dir = pdup(&p, ".");
	else if ((p.dir = strndup(path, slash == path ? 1 : (size_t)(slash - path))) == NULL)
		err(&p, 0, NO_MEMORY);
	if (p.nerr > 0)
		goto out;
	if ((buf = read_file(path, CONFIG_MAX, &len)) == NULL) {
		if (errno == EFBIG)
			err(&p, 0, "larger than %d MiB", CONFIG_MAX / 1024 / 1024);
		else
			err(&p, 0, "cannot read: %s", strerror(errno));
		goto out;
	}
	p.buf = buf;
	p.len = len;
	rc = ini_parse_stream(read_line, &p, on_key, &p);
	if (rc > 0 && rc != p.first_syntax)
		err(&p, rc, SYNTAX_ERROR);
	else if (rc < 0)
		err(&p, 0, NO_MEMORY);
	finish(&p);
out:
	wipe_free(buf, len); /* it may hold inline secrets */
	free(p.dir);
	if (p.nerr == 0)
		warn_exposure(&p, path); /* reads p.chseen */
	free(p.chseen);
	free(p.whseen);
	if (p.nerr > 0) {
		/* Checks made after the whole file was read report last: show
		 * the problems in file order. */
		if (errs->n > 1)
			qsort(errs->v, errs->n, sizeof(errs->v[0]), error_cmp);
		config_free(p.c);
		return NULL;
	}
	return p.c;
}

void
config_free(struct config *c)
{
	size_t i, j;

	if (c == NULL)
		return;
	free(c->path);
	if (c->admin_token != NULL)
		wipe_free(c->admin_token, strlen(c->admin_token));
	if (c->redis_password != NULL)
		wipe_free(c->redis_password, strlen(c->redis_password));
	free(c->redis_user);
	free(c->redis_prefix);
	free(c->redis_sentinels);
	free(c->redis_master_name);
	if (c->redis_sentinel_password != NULL)
		wipe_free(c->redis_sentinel_password, strlen(c->redis_sentinel_password));
	free(c->stream_key);
	free(c->public_url);
	for (i = 0; i < c->nreturn_hosts; i++)
		free(c->return_hosts[i]);
	if (c->return_secret != NULL)
		wipe_free(c->return_secret, c->return_secret_len);
	for (i = 0; i < c->nchannels; i++) {
		struct channel *ch = &c->channels[i];

		free(ch->name);
		free(ch->device);
		free(ch->return_to);
		free(ch->merchant_id);
		wipe_free(ch->key, ch->key_len);
		crypto_pkey_free(ch->platform_key);
		free(ch->api_base);
		free(ch->allow);
	}
	free(c->channels);
	free(c->trusted_proxies);
	for (i = 0; i < c->nwebhooks; i++) {
		struct webhook *w = &c->webhooks[i];

		free(w->name);
		free(w->url);
		for (j = 0; j < w->nsecrets; j++)
			wipe_free(w->secrets[j].key, w->secrets[j].len);
		for (j = 0; j < w->nchannels; j++)
			free(w->channels[j]);
		free(w->channels);
	}
	free(c->webhooks);
	for (i = 0; i < c->nsecrets; i++)
		wipe_free(c->secrets[i].p, c->secrets[i].len);
	free(c->secrets);
	if (config_masking() == c)
		config_set_masking(NULL);
	free(c);
}

bool
config_return_url_ok(const struct config *c, const char *url)
{
	size_t skip, alen, hlen, len = strlen(url), i;
	const char *a, *colon;

	if (len > CONFIG_RETURN_URL_MAX)
		return false;
	skip = strncasecmp(url, "https://", 8) == 0 ? 8
	    : strncasecmp(url, "http://", 7) == 0   ? 7
						    : 0;
	if (skip == 0)
		return false;
	/* No byte a browser or a proxy might read another way: controls,
	 * spaces, backslashes (some browsers take "\\" for "/"), quotes. */
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)url[i];

		if (ch <= 0x20 || ch >= 0x7f || ch == '\\' || ch == '"' || ch == '<' || ch == '>' ||
		    ch == '\'')
			return false;
	}
	a = url + skip;
	alen = strcspn(a, "/?#");
	/* userinfo ("https://good@evil") would put the real host after '@' */
	if (alen == 0 || memchr(a, '@', alen) != NULL)
		return false;
	colon = memchr(a, ':', alen);
	hlen = colon != NULL ? (size_t)(colon - a) : alen;
	if (colon != NULL) {
		size_t plen = alen - hlen - 1;

		if (plen == 0 || plen > 5 || strspn(colon + 1, "0123456789") < plen)
			return false;
	}
	if (hlen == 0 || strspn(a, HOST_CHARS) < hlen)
		return false;
	for (i = 0; i < c->nreturn_hosts; i++)
		if (strlen(c->return_hosts[i]) == hlen &&
		    strncasecmp(c->return_hosts[i], a, hlen) == 0)
			return true;
	return false;
}

const struct channel *
config_channel(const struct config *c, const char *name)
{
	size_t i;

	if (c == NULL || name == NULL)
		return NULL;
	for (i = 0; i < c->nchannels; i++)
		if (strcmp(c->channels[i].name, name) == 0)
			return &c->channels[i];
	return NULL;
}

bool
config_name_valid(const char *name)
{
	size_t n =
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");

	return n >= 1 && n <= 64 && name[n] == '\0';
}

bool
webhook_matches(const struct webhook *w, enum event_type type, const char *channel)
{
	size_t i;

	if ((unsigned)type >= 32 || !(w->events & (1u << type)))
		return false;
	if (w->channels == NULL)
		return true;
	for (i = 0; channel != NULL && i < w->nchannels; i++)
		if (strcmp(w->channels[i], channel) == 0)
			return true;
	return false;
}

static bool
cidr_match(const struct cidr *r, const unsigned char *a)
{
	unsigned full = r->prefix / 8, rest = r->prefix % 8;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));

	if (memcmp(r->addr, a, full) != 0)
		return false;
	return rest == 0 || (r->addr[full] & mask) == (a[full] & mask);
}

bool
cidr_list_match(const struct cidr *list, size_t n, const struct sockaddr *sa)
{
	const unsigned char *v4 = NULL, *v6 = NULL;
	const struct in6_addr *a6;
	size_t i;

	if (sa != NULL && sa->sa_family == AF_INET) {
		v4 = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)
			 ->sin_addr;
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		v6 = a6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6))
			v4 = v6 + 12;
	}
	for (i = 0; i < n; i++)
		if ((list[i].family == AF_INET && v4 && cidr_match(&list[i], v4)) ||
		    (list[i].family == AF_INET6 && v6 && cidr_match(&list[i], v6)))
			return true;
	return false;
}

/* A peer with no address (a unix socket) passes only when there is no
 * allow_from. */
bool
channel_allows(const struct channel *ch, const struct sockaddr *sa)
{
	if (ch->allow == NULL)
		return true;
	return cidr_list_match(ch->allow, ch->nallow, sa);
}

size_t
config_mask_text(char *buf, size_t len, const char *secret, size_t slen)
{
	size_t mlen = slen < 3 ? slen : 3, at = 0, n = len;
	char *k;

	if (buf == NULL || secret == NULL || slen == 0)
		return len;
	while (at < n && (k = memmem(buf + at, n - at, secret, slen)) != NULL) {
		size_t off = (size_t)(k - buf);

		memset(k, '*', mlen);
		memmove(k + mlen, k + slen, n - off - slen);
		n -= slen - mlen;
		at = off + mlen;
	}
	if (n < len)
		buf[n] = '\0';
	return n;
}

size_t
config_mask_secrets_n(const struct config *c, char *buf, size_t len)
{
	size_t i;

	if (c == NULL)
		return len;
	for (i = 0; i < c->nsecrets; i++)
		len = config_mask_text(buf, len, c->secrets[i].p, c->secrets[i].len);
	return len;
}

void
config_mask_secrets(const struct config *c, char *s)
{
	if (s != NULL)
		(void)config_mask_secrets_n(c, s, strlen(s));
}

/* Process-wide, like the log level: the family parsers that write poll
 * details know their channel only. */
static const struct config *masking;

void
config_set_masking(const struct config *c)
{
	masking = c;
}

const struct config *
config_masking(void)
{
	return masking;
}
