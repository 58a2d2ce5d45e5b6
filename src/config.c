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
 * [redis] url: redis://[[user][:password]@]host[:port][/db] (user and
 * password may be %XX-encoded; host numeric or localhost; port 6379 and
 * db 0 by default) or unix:/path or unix:///path, both with an optional
 * ?db=N. rediss:// is refused: hiredis 0.14 has no TLS.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "crypto.h"
#include "family.h"
#include "log.h"

#define CONFIG_MAX (1024 * 1024)
#define SECRET_MAX (64 * 1024)
#define MAX_KEYS 12
#define WS " \t"

static const char SYNTAX_ERROR[] = "syntax error: expected [section] or key = value";
static const char NO_MEMORY[] = "out of memory";

enum sect_kind {
	SEC_NONE, /* before the first header: keys are errors */
	SEC_IGNORE, /* a bad header: its keys are not checked */
	SEC_DAEMON,
	SEC_ADMIN,
	SEC_REDIS,
	SEC_STREAM,
	SEC_CHANNEL,
	SEC_WEBHOOK,
};

/* Each key list is in the order of the enum that follows it. */
static const char *const single_names[] = { "daemon", "admin", "redis", "stream" };
static const char *const daemon_keys[] = { "listen", "shutdown_timeout", "dedup_ttl",
	"log_level", NULL };
enum { D_LISTEN, D_SHUTDOWN_TIMEOUT, D_DEDUP_TTL, D_LOG_LEVEL };
static const char *const admin_keys[] = { "listen", "token", "token_file", NULL };
enum { A_LISTEN, A_TOKEN, A_TOKEN_FILE };
static const char *const redis_keys[] = { "url", "password_file", "prefix", "timeout_ms", NULL };
enum { R_URL, R_PASSWORD_FILE, R_PREFIX, R_TIMEOUT_MS };
static const char *const stream_keys[] = { "key", "maxlen", NULL };
enum { S_KEY, S_MAXLEN };
static const char *const channel_keys[] = { "family", "sign_type", "platform_public_key_file",
	"merchant_id", "key", "key_file", "api_base", "poll_after", "poll_rate", "sweep",
	"sweep_interval", "allow_from", NULL };
enum { C_FAMILY, C_SIGN_TYPE, C_PUBKEY_FILE, C_MERCHANT_ID, C_KEY, C_KEY_FILE, C_API_BASE,
	C_POLL_AFTER, C_POLL_RATE, C_SWEEP, C_SWEEP_INTERVAL, C_ALLOW_FROM };
static const char *const webhook_keys[] = { "url", "secret", "events", "channels", "timeout_ms",
	"max_in_flight", "schedule", NULL };
enum { W_URL, W_SECRET, W_EVENTS, W_CHANNELS, W_TIMEOUT_MS, W_MAX_IN_FLIGHT, W_SCHEDULE };

static const unsigned default_schedule[] = { 0, 5, 300, 1800, 7200, 18000, 36000, 36000 };

/* Where a section and each of its keys were given (0: not given). */
struct seen {
	int header;
	int at[MAX_KEYS];
};

struct parser {
	struct config *c;
	struct config_errors *errs; /* may be NULL */
	size_t nerr; /* problems found, recorded or not */
	char *dir; /* of the config file, for relative paths */
	const char *buf; /* the file, served to inih one line per call */
	size_t len, pos;
	int line; /* the line inih is working on */
	int first_syntax; /* the first line with a syntax error, or 0 */
	enum sect_kind kind;
	char section[INI_MAX_LINE];
	size_t idx; /* of the current channel or webhook */
	struct seen single[4]; /* daemon, admin, redis, stream */
	struct seen *chseen; /* parallel to c->channels */
	struct seen *whseen; /* parallel to c->webhooks */
	bool url_password; /* [redis] url carried a password */
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

/* A copy of `arr` (n items of `size` bytes) with one more, zeroed, item;
 * NULL (and `arr` untouched) when out of memory. */
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
	if (p == NULL)
		return;
	explicit_bzero(p, n);
	free(p);
}

/* Strict decimal: digits only, within [min, max]. Returns 0 or -1. */
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

static bool
get_int(struct parser *p, const char *key, const char *v, long long min, long long max,
    long long *out)
{
	if (parse_ll(v, strlen(v), min, max, out) == 0)
		return true;
	err(p, p->line, "%s must be an integer from %lld to %lld", key, min, max);
	return false;
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

/* `host[:port]` or `[v6][:port]` of n bytes. "localhost" is 127.0.0.1, and
 * with `wildcard` "*" is 0.0.0.0. Without a port, `defport` (0: required).
 * Returns 0, -1 on bad syntax, -2 on a host that is not numeric. */
static int
parse_hostport(const char *s, size_t n, unsigned defport, bool wildcard, struct netaddr *na)
{
	char host[sizeof(na->host)];
	unsigned char bin[16];
	const char *h = s, *port = NULL, *end = s + n;
	size_t hlen;
	long long pv = defport;

	if (n > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', n);

		if (rb == NULL || (rb + 1 < end && rb[1] != ':'))
			return -1;
		h = s + 1;
		hlen = (size_t)(rb - h);
		if (rb + 1 < end)
			port = rb + 2;
	} else {
		const char *colon = memchr(s, ':', n);

		hlen = colon ? (size_t)(colon - s) : n;
		if (colon != NULL) {
			port = colon + 1;
			if (memchr(port, ':', (size_t)(end - port)) != NULL)
				return -1; /* an IPv6 address needs brackets */
		}
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return hlen == 0 ? -1 : -2;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (port != NULL && parse_ll(port, (size_t)(end - port), 1, 65535, &pv) == -1)
		return -1;
	if (pv == 0)
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

/* unix:/path, or a path that must fit sockaddr_un. */
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

static void
set_listen(struct parser *p, const char *key, const char *v, struct netaddr *na)
{
	int rc;

	if (strncmp(v, "unix:", 5) == 0)
		rc = set_unix(v + 5, strlen(v + 5), na);
	else
		rc = parse_hostport(v, strlen(v), 0, true, na);
	if (rc == -2)
		err(p, p->line, "%s: host must be a numeric address, localhost or *", key);
	else if (rc < 0)
		err(p, p->line, "%s must be host:port, [v6]:port or unix:/path (path under %zu bytes)",
		    key, sizeof(na->path));
}

static int
hexval(char h)
{
	if (h >= '0' && h <= '9')
		return h - '0';
	if (h >= 'a' && h <= 'f')
		return h - 'a' + 10;
	if (h >= 'A' && h <= 'F')
		return h - 'A' + 10;
	return -1;
}

/* Decodes %XX in n bytes of s (%00 is refused). The caller frees the
 * result; NULL on a bad escape or no memory. */
static char *
pct_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	size_t i;

	if (out == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		int hi, lo;

		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0 ||
		    (hi | lo) == 0) {
			wipe_free(out, n + 1);
			return NULL;
		}
		*o++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*o = '\0';
	return out;
}

static int
parse_db(const char *s, size_t n, int *db)
{
	long long v;

	if (parse_ll(s, n, 0, INT_MAX, &v) == -1)
		return -1;
	*db = (int)v;
	return 0;
}

static void
set_redis_url(struct parser *p, const char *v)
{
	struct config *c = p->c;
	const char *s, *auth_end, *at, *q;
	char *user = NULL, *pass = NULL;
	int rc = -1, db = 0;

	if (strncmp(v, "unix:", 5) == 0) {
		s = v + 5;
		if (strncmp(s, "//", 2) == 0)
			s += 2;
		q = strchr(s, '?');
		if (q != NULL && (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, strlen(q + 4), &db)))
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
	for (at = NULL, q = s; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		const char *colon = memchr(s, ':', (size_t)(at - s));
		size_t ulen = colon ? (size_t)(colon - s) : (size_t)(at - s);

		if (ulen > 0 && (user = pct_decode(s, ulen)) == NULL)
			goto out;
		if (colon != NULL && colon + 1 < at &&
		    (pass = pct_decode(colon + 1, (size_t)(at - colon - 1))) == NULL)
			goto out;
		s = at + 1;
	}
	rc = parse_hostport(s, (size_t)(auth_end - s), 6379, false, &c->redis);
	if (rc == -2) {
		err(p, p->line, "redis host must be a numeric address");
		goto out;
	}
	if (rc == 0 && *auth_end == '/' && auth_end[1] != '\0')
		rc = parse_db(auth_end + 1, strlen(auth_end + 1), &db);
	if (rc == 0) {
		c->redis_user = user;
		c->redis_password = pass;
		p->url_password = pass != NULL;
		user = pass = NULL;
	}
out:
	if (rc == -1)
		err(p, p->line, "redis url must be redis://[[user]:password@]host[:port][/db] "
				"or unix:/path[?db=N]");
	else if (rc == 0)
		c->redis_db = db;
	free(user);
	if (pass != NULL)
		wipe_free(pass, strlen(pass));
}

/* `v` resolved against the config file's directory. The caller frees it. */
static char *
resolve(struct parser *p, const char *v)
{
	size_t n;
	char *path;

	if (v[0] == '/')
		return pdup(p, v);
	n = strlen(p->dir) + strlen(v) + 2;
	if ((path = malloc(n)) == NULL) {
		err(p, p->line, NO_MEMORY);
		return NULL;
	}
	snprintf(path, n, "%s/%s", p->dir, v);
	return path;
}

/* Reads the file named by `key` = `v`, at most `max` bytes, trailing white
 * space trimmed. The caller wipes and frees *out. Returns 0 or -1 (the
 * problem recorded, naming the path but never the content). */
static int
read_value_file(struct parser *p, const char *key, const char *v, size_t max, char **out,
    size_t *outlen)
{
	char *path = NULL, *buf = NULL;
	size_t len = 0;
	int rc = -1, e;

	if (*v == '\0') {
		err(p, p->line, "%s must not be empty", key);
		goto out;
	}
	if ((path = resolve(p, v)) == NULL)
		goto out;
	if ((buf = read_file(path, max, &len)) == NULL) {
		e = errno;
		if (e == EFBIG)
			err(p, p->line, "%s %s: larger than %zu KiB", key, path, max / 1024);
		else
			err(p, p->line, "%s %s: %s", key, path, strerror(e));
		goto out;
	}
	while (len > 0 && strchr(" \t\r\n", buf[len - 1]) != NULL)
		buf[--len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		err(p, p->line, "%s %s: contains a NUL byte", key, path);
		goto out;
	}
	*out = buf;
	*outlen = len;
	buf = NULL;
	rc = 0;
out:
	wipe_free(buf, len);
	free(path);
	return rc;
}

static bool
valid_http_url(const char *v)
{
	size_t skip = strncasecmp(v, "http://", 7) == 0 ? 7 :
	    strncasecmp(v, "https://", 8) == 0 ? 8 : 0;
	const char *q;

	if (skip == 0 || v[skip] == '\0' || v[skip] == '/')
		return false;
	for (q = v; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f)
			return false;
	return true;
}

static void
set_daemon(struct parser *p, int k, const char *v)
{
	struct config *c = p->c;
	long long n;
	enum log_level lvl;

	switch (k) {
	case D_LISTEN:
		set_listen(p, "listen", v, &c->listen);
		break;
	case D_SHUTDOWN_TIMEOUT:
		if (get_int(p, "shutdown_timeout", v, 1, 600, &n))
			c->shutdown_timeout = (int)n;
		break;
	case D_DEDUP_TTL:
		if (get_int(p, "dedup_ttl", v, 3600, 315360000, &n))
			c->dedup_ttl = n;
		break;
	case D_LOG_LEVEL:
		if (log_parse_level(v, &lvl) == 0)
			c->log_level = (int)lvl;
		else
			err(p, p->line, "log_level must be debug, info, warn or error");
		break;
	}
}

static void
set_admin(struct parser *p, int k, const char *v)
{
	struct config *c = p->c;
	struct seen *s = &p->single[SEC_ADMIN - SEC_DAEMON];
	char *tok = NULL;
	size_t len = 0, i;

	if (k == A_LISTEN) {
		set_listen(p, "listen", v, &c->admin_listen);
		return;
	}
	if (s->at[A_TOKEN] && s->at[A_TOKEN_FILE]) {
		err(p, p->line, "give token or token_file, not both");
		return;
	}
	if (k == A_TOKEN) {
		len = strlen(v);
		if ((tok = pdup(p, v)) == NULL)
			return;
	} else if (read_value_file(p, "token_file", v, SECRET_MAX, &tok, &len) == -1) {
		return;
	}
	for (i = 0; i < len; i++)
		if ((unsigned char)tok[i] <= ' ' || (unsigned char)tok[i] >= 0x7f)
			break;
	if (len < 16)
		err(p, p->line, "admin token must be at least 16 bytes");
	else if (i < len)
		err(p, p->line, "admin token must be printable ASCII without spaces");
	else {
		c->admin_token = tok;
		return;
	}
	wipe_free(tok, len);
}

static void
set_redis(struct parser *p, int k, const char *v)
{
	struct config *c = p->c;
	char *pw = NULL;
	size_t len = 0;
	long long n;

	switch (k) {
	case R_URL:
		set_redis_url(p, v);
		break;
	case R_PASSWORD_FILE:
		if (read_value_file(p, "password_file", v, SECRET_MAX, &pw, &len) == -1)
			break;
		if (len == 0) {
			err(p, p->line, "password_file is empty");
			wipe_free(pw, len);
			break;
		}
		if (c->redis_password != NULL)
			wipe_free(c->redis_password, strlen(c->redis_password));
		c->redis_password = pw;
		break;
	case R_PREFIX:
		free(c->redis_prefix);
		c->redis_prefix = pdup(p, v);
		break;
	case R_TIMEOUT_MS:
		if (get_int(p, "timeout_ms", v, 100, 60000, &n))
			c->redis_timeout_ms = (int)n;
		break;
	}
}

static void
set_stream(struct parser *p, int k, const char *v)
{
	struct config *c = p->c;
	long long n;

	if (k == S_KEY) {
		if (*v == '\0') {
			err(p, p->line, "key must not be empty");
			return;
		}
		free(c->stream_key);
		c->stream_key = pdup(p, v);
	} else if (get_int(p, "maxlen", v, 1000, 1000000000, &n)) {
		c->stream_maxlen = n;
	}
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
	if (inet_pton(r->family, addr, r->addr) != 1)
		return -1;
	if (slash && parse_ll(slash + 1, n - alen - 1, 0, prefix, &prefix) == -1)
		return -1;
	r->prefix = (unsigned)prefix;
	return 0;
}

static void
set_allow_from(struct parser *p, struct channel *ch, const char *v)
{
	struct cidr *list = NULL, *q;
	size_t n = 0, len;
	const char *t;
	bool bad = false;

	while ((t = next_token(&v, " \t,", &len)) != NULL) {
		struct cidr r;

		if (parse_cidr(t, len, &r) == -1) {
			err(p, p->line, "allow_from: bad entry '%.*s' (expected ADDRESS or ADDRESS/PREFIX)",
			    (int)(len > 64 ? 64 : len), t);
			bad = true;
			continue;
		}
		if ((q = grow(list, n, sizeof(*list))) == NULL) {
			err(p, p->line, NO_MEMORY);
			bad = true;
			break;
		}
		list = q;
		list[n++] = r;
	}
	if (n == 0 && !bad)
		err(p, p->line, "allow_from is empty (leave it out to allow any address)");
	if (bad || n == 0) {
		free(list);
		return;
	}
	ch->allow = list;
	ch->nallow = n;
}

static void
set_channel(struct parser *p, int k, const char *v)
{
	struct channel *ch = &p->c->channels[p->idx];
	struct seen *s = &p->chseen[p->idx];
	char *buf = NULL;
	size_t len = 0;
	long long n;

	switch (k) {
	case C_FAMILY:
		if ((ch->family = family_find(v)) == NULL)
			err(p, p->line, "unknown family '%.64s' (epay, gatepay or payindex)", v);
		break;
	case C_SIGN_TYPE:
		if (strcasecmp(v, "MD5") == 0)
			ch->sign_type = SIGN_MD5;
		else if (strcasecmp(v, "RSA") == 0)
			ch->sign_type = SIGN_RSA;
		else
			err(p, p->line, "sign_type must be MD5 or RSA");
		break;
	case C_PUBKEY_FILE:
		if (read_value_file(p, "platform_public_key_file", v, SECRET_MAX, &buf, &len) == -1)
			break;
		if ((ch->platform_key = crypto_pkey_load_pem(buf, len)) == NULL)
			err(p, p->line, "platform_public_key_file %.160s: not a PEM public key", v);
		free(buf);
		break;
	case C_MERCHANT_ID:
		if (*v == '\0')
			err(p, p->line, "merchant_id must not be empty");
		else
			ch->merchant_id = pdup(p, v);
		break;
	case C_KEY:
	case C_KEY_FILE:
		if (s->at[C_KEY] && s->at[C_KEY_FILE]) {
			err(p, p->line, "give key or key_file, not both");
			break;
		}
		if (k == C_KEY) {
			len = strlen(v);
			buf = pdup(p, v);
		} else if (read_value_file(p, "key_file", v, SECRET_MAX, &buf, &len) == -1) {
			break;
		}
		if (buf != NULL && len == 0) {
			err(p, p->line, "channel has an empty key");
			wipe_free(buf, len);
		} else {
			ch->key = buf;
			ch->key_len = len;
		}
		break;
	case C_API_BASE:
		if (!valid_http_url(v)) {
			err(p, p->line, "api_base must start with http:// or https:// and have no spaces");
			break;
		}
		if ((ch->api_base = pdup(p, v)) != NULL) {
			len = strlen(ch->api_base);
			while (len > 0 && ch->api_base[len - 1] == '/')
				ch->api_base[--len] = '\0';
		}
		break;
	case C_POLL_AFTER:
		if (get_int(p, "poll_after", v, 1, 86400, &n))
			ch->poll_after = (int)n;
		break;
	case C_POLL_RATE:
		if (get_int(p, "poll_rate", v, 1, 1000, &n))
			ch->poll_rate = (int)n;
		break;
	case C_SWEEP:
		if (strcasecmp(v, "on") == 0 || strcasecmp(v, "true") == 0 ||
		    strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0)
			ch->sweep = true;
		else if (strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0 ||
			 strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0)
			ch->sweep = false;
		else
			err(p, p->line, "sweep must be on or off");
		break;
	case C_SWEEP_INTERVAL:
		if (get_int(p, "sweep_interval", v, 10, 86400, &n))
			ch->sweep_interval = (int)n;
		break;
	case C_ALLOW_FROM:
		set_allow_from(p, ch, v);
		break;
	}
}

static void
set_secrets(struct parser *p, struct webhook *w, const char *v)
{
	const char *t;
	size_t len, i = 0;

	while ((t = next_token(&v, WS, &len)) != NULL) {
		unsigned char *key = NULL;
		size_t klen = 0;

		if (++i > WEBHOOK_MAX_SECRETS) {
			err(p, p->line, "secret: at most %d secrets", WEBHOOK_MAX_SECRETS);
			break;
		}
		if (len >= 6 && strncmp(t, "whsec_", 6) == 0) {
			if (crypto_base64_decode(t + 6, len - 6, &key, &klen) == -1 || klen == 0) {
				err(p, p->line, "secret %zu: whsec_ value is not valid base64", i);
				wipe_free(key, klen);
				continue;
			}
		} else if ((key = malloc(len)) != NULL) {
			memcpy(key, t, len);
			klen = len;
		} else {
			err(p, p->line, NO_MEMORY);
			break;
		}
		w->secrets[w->nsecrets].key = key;
		w->secrets[w->nsecrets++].len = klen;
	}
	if (i == 0)
		err(p, p->line, "secret must not be empty");
}

static void
set_webhook(struct parser *p, int k, const char *v)
{
	struct webhook *w = &p->c->webhooks[p->idx];
	const char *t;
	size_t len;
	long long n;

	switch (k) {
	case W_URL:
		if (valid_http_url(v))
			w->url = pdup(p, v);
		else
			err(p, p->line, "url must start with http:// or https:// and have no spaces");
		break;
	case W_SECRET:
		set_secrets(p, w, v);
		break;
	case W_EVENTS:
		w->events = 0;
		while ((t = next_token(&v, WS, &len)) != NULL) {
			enum event_type e;

			for (e = EVENT_PAID; e <= EVENT_AMOUNT_MISMATCH; e++) {
				const char *name = event_type_str(e);

				if (strlen(name) == len && memcmp(name, t, len) == 0)
					break;
			}
			if (e <= EVENT_AMOUNT_MISMATCH)
				w->events |= 1u << e;
			else
				err(p, p->line, "unknown event '%.*s' (order.paid, order.status, "
						"order.amount_mismatch)", (int)(len > 64 ? 64 : len), t);
		}
		if (w->events == 0)
			err(p, p->line, "events must name at least one event");
		break;
	case W_CHANNELS:
		if (strcmp(v, "*") == 0)
			break;
		while ((t = next_token(&v, WS, &len)) != NULL) {
			char **q;

			if (len == 1 && *t == '*') {
				err(p, p->line, "channels: '*' cannot be mixed with names");
				continue;
			}
			if ((q = grow(w->channels, w->nchannels, sizeof(*q))) == NULL ||
			    (q[w->nchannels] = strndup(t, len)) == NULL) {
				if (q != NULL)
					w->channels = q;
				err(p, p->line, NO_MEMORY);
				break;
			}
			w->channels = q;
			w->nchannels++;
		}
		if (w->channels == NULL)
			err(p, p->line, "channels must be * or channel names");
		break;
	case W_TIMEOUT_MS:
		if (get_int(p, "timeout_ms", v, 100, 300000, &n))
			w->timeout_ms = (int)n;
		break;
	case W_MAX_IN_FLIGHT:
		if (get_int(p, "max_in_flight", v, 1, 1024, &n))
			w->max_in_flight = (int)n;
		break;
	case W_SCHEDULE:
		w->nschedule = 0;
		while ((t = next_token(&v, WS, &len)) != NULL) {
			if (w->nschedule == WEBHOOK_MAX_SCHEDULE ||
			    parse_ll(t, len, 0, 604800, &n) == -1) {
				w->nschedule = 0;
				break;
			}
			w->schedule[w->nschedule++] = (unsigned)n;
		}
		if (w->nschedule == 0) {
			err(p, p->line, "schedule must be 1 to %d delays in seconds, each from 0 to 604800",
			    WEBHOOK_MAX_SCHEDULE);
			memcpy(w->schedule, default_schedule, sizeof(default_schedule));
			w->nschedule = sizeof(default_schedule) / sizeof(default_schedule[0]);
		}
		break;
	}
}

static int
key_index(const char *const *keys, const char *name)
{
	int i;

	for (i = 0; keys[i] != NULL; i++)
		if (strcmp(keys[i], name) == 0)
			return i;
	return -1;
}

static int
on_key(void *user, const char *section, const char *name, const char *value)
{
	static const char *const *const keys[] = { daemon_keys, admin_keys, redis_keys,
		stream_keys, channel_keys, webhook_keys };
	struct parser *p = user;
	struct seen *s;
	int k;

	(void)section; /* inih cuts it at 49 bytes: ours is p->section */
	if (p->kind == SEC_NONE) {
		err(p, p->line, "key '%.64s' outside any section", name);
		return 1;
	}
	if (p->kind == SEC_IGNORE)
		return 1;
	if (p->kind == SEC_CHANNEL)
		s = &p->chseen[p->idx];
	else if (p->kind == SEC_WEBHOOK)
		s = &p->whseen[p->idx];
	else
		s = &p->single[p->kind - SEC_DAEMON];
	if ((k = key_index(keys[p->kind - SEC_DAEMON], name)) < 0) {
		err(p, p->line, "unknown key '%.64s' in [%.100s]", name, p->section);
		return 1;
	}
	if (s->at[k]) {
		err(p, p->line, "duplicate key '%s' in [%.100s] (first at line %d)", name, p->section,
		    s->at[k]);
		return 1;
	}
	s->at[k] = p->line;
	switch (p->kind) {
	case SEC_DAEMON:
		set_daemon(p, k, value);
		break;
	case SEC_ADMIN:
		set_admin(p, k, value);
		break;
	case SEC_REDIS:
		set_redis(p, k, value);
		break;
	case SEC_STREAM:
		set_stream(p, k, value);
		break;
	case SEC_CHANNEL:
		set_channel(p, k, value);
		break;
	case SEC_WEBHOOK:
		set_webhook(p, k, value);
		break;
	default:
		break;
	}
	return 1; /* problems are in p->errs: inih's own error is syntax only */
}

static void
begin_section(struct parser *p, const char *name)
{
	struct config *c = p->c;
	const char *n;
	size_t i;
	void *q;
	int first;

	p->kind = SEC_IGNORE;
	snprintf(p->section, sizeof(p->section), "%s", name);
	for (i = 0; i < 4; i++) {
		if (strcmp(name, single_names[i]) != 0)
			continue;
		if ((first = p->single[i].header) != 0)
			goto dup;
		p->single[i].header = p->line;
		p->kind = SEC_DAEMON + (int)i;
		return;
	}
	if (strncmp(name, "channel:", 8) == 0) {
		n = name + 8;
		if (!config_name_valid(n))
			goto bad_name;
		for (i = 0; i < c->nchannels; i++)
			if (strcmp(c->channels[i].name, n) == 0) {
				first = c->channels[i].line;
				goto dup;
			}
		if ((q = grow(p->chseen, c->nchannels, sizeof(*p->chseen))) == NULL)
			goto oom;
		p->chseen = q;
		if ((q = grow(c->channels, c->nchannels, sizeof(*c->channels))) == NULL)
			goto oom;
		c->channels = q;
		c->channels[c->nchannels] = (struct channel){ .line = p->line,
			.sign_type = SIGN_MD5, .poll_after = 60, .poll_rate = 5,
			.sweep_interval = 300 };
		p->chseen[c->nchannels].header = p->line;
		if ((c->channels[c->nchannels].name = pdup(p, n)) == NULL)
			return;
		p->idx = c->nchannels++;
		p->kind = SEC_CHANNEL;
		return;
	}
	if (strncmp(name, "webhook:", 8) == 0) {
		struct webhook *w;

		n = name + 8;
		if (!config_name_valid(n))
			goto bad_name;
		for (i = 0; i < c->nwebhooks; i++)
			if (strcmp(c->webhooks[i].name, n) == 0) {
				first = c->webhooks[i].line;
				goto dup;
			}
		if ((q = grow(p->whseen, c->nwebhooks, sizeof(*p->whseen))) == NULL)
			goto oom;
		p->whseen = q;
		if ((q = grow(c->webhooks, c->nwebhooks, sizeof(*c->webhooks))) == NULL)
			goto oom;
		c->webhooks = q;
		w = &c->webhooks[c->nwebhooks];
		w->line = p->line;
		w->events = 1u << EVENT_PAID | 1u << EVENT_STATUS | 1u << EVENT_AMOUNT_MISMATCH;
		w->timeout_ms = 10000;
		w->max_in_flight = 32;
		memcpy(w->schedule, default_schedule, sizeof(default_schedule));
		w->nschedule = sizeof(default_schedule) / sizeof(default_schedule[0]);
		p->whseen[c->nwebhooks].header = p->line;
		if ((w->name = pdup(p, n)) == NULL)
			return;
		p->idx = c->nwebhooks++;
		p->kind = SEC_WEBHOOK;
		return;
	}
	err(p, p->line, "unknown section [%.100s]", name);
	return;
dup:
	err(p, p->line, "duplicate section [%.100s] (first at line %d)", name, first);
	return;
bad_name:
	err(p, p->line, "invalid name in [%.100s] (1 to 64 bytes of A-Z a-z 0-9 . _ -)", name);
	return;
oom:
	err(p, p->line, NO_MEMORY);
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
 * section headers (inih cuts names at 49 bytes and does not report empty
 * sections) and every syntax error (inih returns the first only). */
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
	} else {
		end = find_end(str, "=:");
		if (*end == '=' || *end == ':')
			return str;
	}
	err(p, p->line, SYNTAX_ERROR);
	if (p->first_syntax == 0)
		p->first_syntax = p->line;
	return str;
}

static void
missing(struct parser *p, int line, const char *section, const char *key)
{
	err(p, line, "missing required key '%s' in [%.100s]", key, section);
}

static bool
is_any(const char *host)
{
	return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

static bool
same_socket(const struct netaddr *a, const struct netaddr *b)
{
	if (a->is_unix || b->is_unix)
		return a->is_unix && b->is_unix && strcmp(a->path, b->path) == 0;
	return a->port == b->port &&
	    (strcmp(a->host, b->host) == 0 || is_any(a->host) || is_any(b->host));
}

/* Checks that need the whole file. */
static void
finish(struct parser *p)
{
	struct config *c = p->c;
	struct seen *s;
	size_t i, j;
	char sect[80];

	s = &p->single[SEC_REDIS - SEC_DAEMON];
	if (p->url_password && s->at[R_PASSWORD_FILE])
		err(p, s->at[R_PASSWORD_FILE],
		    "give the redis password in url or password_file, not both");
	if (same_socket(&c->listen, &c->admin_listen)) {
		int line = p->single[SEC_ADMIN - SEC_DAEMON].at[A_LISTEN];

		err(p, line ? line : p->single[0].at[D_LISTEN],
		    "[admin] listen must not be the same socket as [daemon] listen");
	}
	for (i = 0; i < c->nchannels; i++) {
		struct channel *ch = &c->channels[i];
		bool epay = ch->family && strcmp(ch->family->name, "epay") == 0;

		s = &p->chseen[i];
		snprintf(sect, sizeof(sect), "channel:%s", ch->name);
		if (!s->at[C_FAMILY])
			missing(p, ch->line, sect, "family");
		if (!s->at[C_MERCHANT_ID])
			missing(p, ch->line, sect, "merchant_id");
		if (!s->at[C_KEY] && !s->at[C_KEY_FILE])
			err(p, ch->line, "missing required key 'key' or 'key_file' in [%s]", sect);
		if (ch->family && !epay) {
			if (s->at[C_SIGN_TYPE])
				err(p, s->at[C_SIGN_TYPE], "sign_type is only for family epay");
			if (ch->sweep)
				err(p, s->at[C_SWEEP], "sweep = on is only for family epay");
			continue;
		}
		if (ch->sign_type == SIGN_RSA && !s->at[C_PUBKEY_FILE])
			err(p, ch->line, "sign_type = RSA needs platform_public_key_file in [%s]", sect);
		if (ch->sign_type != SIGN_RSA && s->at[C_PUBKEY_FILE])
			err(p, s->at[C_PUBKEY_FILE], "platform_public_key_file is only for sign_type = RSA");
	}
	for (i = 0; i < c->nwebhooks; i++) {
		struct webhook *w = &c->webhooks[i];

		s = &p->whseen[i];
		snprintf(sect, sizeof(sect), "webhook:%s", w->name);
		if (!s->at[W_URL])
			missing(p, w->line, sect, "url");
		if (!s->at[W_SECRET])
			missing(p, w->line, sect, "secret");
		for (j = 0; j < w->nchannels; j++)
			if (config_channel(c, w->channels[j]) == NULL)
				err(p, s->at[W_CHANNELS], "channels: no channel named '%.64s'",
				    w->channels[j]);
	}
	if (c->nchannels == 0)
		err(p, 0, "no [channel:NAME] section: nothing to receive");
}

/* Sorts the errors from `from` on by line (stably; line 0 last). */
static void
sort_errors(struct config_errors *e, size_t from)
{
	size_t i, j;

	for (i = from + 1; i < e->n; i++) {
		struct config_error t = e->v[i];
		unsigned key = t.line > 0 ? (unsigned)t.line : UINT_MAX;

		for (j = i; j > from; j--) {
			int l = e->v[j - 1].line;

			if ((l > 0 ? (unsigned)l : UINT_MAX) <= key)
				break;
			e->v[j] = e->v[j - 1];
		}
		e->v[j] = t;
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
	c->log_level = LOG_INFO;
	c->redis_timeout_ms = 2000;
	c->stream_maxlen = 1000000;
	c->redis_prefix = pdup(p, "payrelay:");
	c->stream_key = pdup(p, "payrelay:events");
}

struct config *
config_load(const char *path, struct config_errors *errs)
{
	struct parser p = { 0 };
	struct config *c = NULL;
	char *buf = NULL;
	const char *slash;
	size_t len = 0, first = errs ? errs->n : 0;
	int rc, e;

	p.errs = errs;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		err(&p, 0, NO_MEMORY);
		goto out;
	}
	p.c = c;
	c->path = pdup(&p, path);
	set_defaults(&p);
	slash = strrchr(path, '/');
	if (slash == NULL)
		p.dir = pdup(&p, ".");
	else if ((p.dir = strndup(path, slash == path ? 1 : (size_t)(slash - path))) == NULL)
		err(&p, 0, NO_MEMORY);
	if (p.nerr > 0)
		goto out;
	if ((buf = read_file(path, CONFIG_MAX, &len)) == NULL) {
		e = errno;
		if (e == EFBIG)
			err(&p, 0, "larger than %d MiB", CONFIG_MAX / 1024 / 1024);
		else
			err(&p, 0, "cannot read: %s", strerror(e));
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
	wipe_free(buf, len);
	free(p.dir);
	free(p.chseen);
	free(p.whseen);
	if (errs != NULL)
		sort_errors(errs, first);
	if (p.nerr > 0) {
		config_free(c);
		return NULL;
	}
	return c;
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
	free(c->stream_key);
	for (i = 0; i < c->nchannels; i++) {
		struct channel *ch = &c->channels[i];

		free(ch->name);
		free(ch->merchant_id);
		wipe_free(ch->key, ch->key_len);
		crypto_pkey_free(ch->platform_key);
		free(ch->api_base);
		free(ch->allow);
	}
	free(c->channels);
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
	free(c);
}

const struct channel *
config_channel(const struct config *c, const char *name)
{
	size_t i;

	if (c == NULL || name == NULL)
		return NULL;
	for (i = 0; i < c->nchannels; i++)
		if (c->channels[i].name != NULL && strcmp(c->channels[i].name, name) == 0)
			return &c->channels[i];
	return NULL;
}

bool
config_name_valid(const char *name)
{
	size_t n = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");

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
	for (i = 0; i < w->nchannels; i++)
		if (channel != NULL && strcmp(w->channels[i], channel) == 0)
			return true;
	return false;
}

static bool
cidr_match(const struct cidr *r, const unsigned char *a)
{
	unsigned full = r->prefix / 8, rest = r->prefix % 8;
	unsigned char mask;

	if (memcmp(r->addr, a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (unsigned char)(0xff << (8 - rest));
	return (r->addr[full] & mask) == (a[full] & mask);
}

/* A unix-socket peer (no address) passes only a channel without allow_from. */
bool
channel_allows(const struct channel *ch, const struct sockaddr *sa)
{
	const unsigned char *v4 = NULL, *v6 = NULL;
	size_t i;

	if (ch->allow == NULL)
		return true;
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		v4 = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		v6 = a6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6))
			v4 = v6 + 12;
	}
	for (i = 0; i < ch->nallow; i++) {
		const struct cidr *r = &ch->allow[i];

		if (r->family == AF_INET && v4 != NULL && cidr_match(r, v4))
			return true;
		if (r->family == AF_INET6 && v6 != NULL && cidr_match(r, v6))
			return true;
	}
	return false;
}
