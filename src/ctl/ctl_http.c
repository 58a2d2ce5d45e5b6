#include "ctl_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "config_build.h"
#include "ctl_out.h"

struct ctl_http {
	CURL *curl;
	const char *config_path;
	char addr[160];      /* for messages */
	char base[176];      /* http://host:port, or http://localhost for unix */
	char unix_path[108]; /* empty for TCP */
	char *auth;          /* "Authorization: Bearer ..." (a secret); NULL without a token */
	long timeout_ms;
	bool too_big; /* the answer went over CTL_HTTP_MAX_ANSWER */
	char errbuf[CURL_ERROR_SIZE];
};

struct ctl_http *
ctl_http_new(const struct config *cfg, const char *config_path, long timeout_ms)
{
	const struct netaddr *a = &cfg->admin_listen;
	struct ctl_http *h;
	const char *host;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->config_path = config_path;
	h->timeout_ms = timeout_ms;
	if (a->is_unix) {
		snprintf(h->addr, sizeof(h->addr), "unix:%s", a->path);
		snprintf(h->base, sizeof(h->base), "http://localhost");
		snprintf(h->unix_path, sizeof(h->unix_path), "%s", a->path);
	} else {
		/* A daemon listening on every address is reached on loopback. */
		host = a->host;
		if (strcmp(host, "0.0.0.0") == 0)
			host = "127.0.0.1";
		else if (strcmp(host, "::") == 0)
			host = "::1";
		if (strchr(host, ':') != NULL) {
			snprintf(h->addr, sizeof(h->addr), "[%s]:%u", host, (unsigned)a->port);
		} else {
			snprintf(h->addr, sizeof(h->addr), "%s:%u", host, (unsigned)a->port);
		}
		snprintf(h->base, sizeof(h->base), "http://%s", h->addr);
	}
	if (cfg->admin_token != NULL) {
		size_t n = strlen("Authorization: Bearer ") + strlen(cfg->admin_token) + 1;

		if ((h->auth = malloc(n)) == NULL)
			goto fail;
		snprintf(h->auth, n, "Authorization: Bearer %s", cfg->admin_token);
	}
	if ((h->curl = curl_easy_init()) == NULL)
		goto fail;
	return h;
fail:
	ctl_http_free(h);
	return NULL;
}

void
ctl_http_free(struct ctl_http *h)
{
	if (h == NULL)
		return;
	if (h->curl != NULL)
		curl_easy_cleanup(h->curl);
	if (h->auth != NULL) {
		explicit_bzero(h->auth, strlen(h->auth));
		free(h->auth);
	}
	free(h);
}

const char *
ctl_http_addr(const struct ctl_http *h)
{
	return h->addr;
}

void
ctl_answer_free(struct ctl_answer *a)
{
	if (a == NULL)
		return;
	sbuf_free(&a->body);
	json_decref(a->json);
	a->json = NULL;
	a->status = 0;
}

struct sink {
	struct ctl_http *h;
	struct sbuf *body;
};

static size_t
ctl_http_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;

	if (s->body->len + n > CTL_HTTP_MAX_ANSWER) {
		s->h->too_big = true;
		return 0;
	}
	if (sbuf_add(s->body, data, n) == -1)
		return 0;
	return n;
}

/* The headers of one request; the Authorization line is a secret, so the
 * list is freed by the caller right after the transfer. */
static struct curl_slist *
ctl_http_headers(const struct ctl_http *h, bool with_body)
{
	static const char *const fixed[] = { "Accept: application/json",
		/* a 100-continue round trip buys nothing for a few hundred bytes */
		"Expect:", NULL };
	struct curl_slist *list = NULL, *t;
	const char *const *f;

	for (f = fixed; *f != NULL; f++) {
		if ((t = curl_slist_append(list, *f)) == NULL)
			goto fail;
		list = t;
	}
	if (with_body) {
		if ((t = curl_slist_append(list, "Content-Type: application/json")) == NULL)
			goto fail;
		list = t;
	}
	if (h->auth != NULL) {
		if ((t = curl_slist_append(list, h->auth)) == NULL)
			goto fail;
		list = t;
	}
	return list;
fail:
	curl_slist_free_all(list);
	return NULL;
}

int
ctl_http_request(struct ctl_http *h, const char *method, const char *path, const json_t *body,
    struct ctl_answer *ans)
{
	struct curl_slist *headers = NULL;
	struct sbuf url;
	struct sink sink = { h, &ans->body };
	char *text = NULL;
	CURLcode cc;
	int rc = CTL_API_ERROR;
	bool post = strcmp(method, "POST") == 0;

	memset(ans, 0, sizeof(*ans));
	sbuf_init(&ans->body);
	sbuf_init(&url);
	if (sbuf_adds(&url, h->base) == -1 || sbuf_adds(&url, path) == -1)
		goto oom;
	if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL)
		goto oom;
	if ((headers = ctl_http_headers(h, text != NULL)) == NULL)
		goto oom;

	curl_easy_reset(h->curl);
	h->too_big = false;
	h->errbuf[0] = '\0';
	curl_easy_setopt(h->curl, CURLOPT_URL, url.p);
	if (h->unix_path[0] != '\0')
		curl_easy_setopt(h->curl, CURLOPT_UNIX_SOCKET_PATH, h->unix_path);
	/* The token goes to the daemon only: never through a proxy from the
	 * environment, never to wherever a redirect points. */
	curl_easy_setopt(h->curl, CURLOPT_PROXY, "");
	curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, "http");
#else
	curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTP);
#endif
	curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->timeout_ms);
	curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, h->timeout_ms);
	curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "payrelayctl/" PAYRELAY_VERSION);
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, ctl_http_write);
	curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &sink);
	if (post) {
		curl_easy_setopt(h->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, text != NULL ? text : "");
		curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE,
		    (long)(text != NULL ? strlen(text) : 0));
	} else if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
	}

	cc = curl_easy_perform(h->curl);
	if (h->too_big) {
		fprintf(stderr, "payrelayctl: the answer of payrelayd at %s is over %d MiB\n",
		    h->addr, CTL_HTTP_MAX_ANSWER / (1024 * 1024));
		goto out;
	}
	if (cc != CURLE_OK) {
		/* Whatever kept us from an HTTP answer: refused, timed out, cut. */
		fprintf(stderr, "payrelayctl: cannot reach payrelayd at %s: %s\n", h->addr,
		    h->errbuf[0] != '\0' ? h->errbuf : curl_easy_strerror(cc));
		rc = CTL_UNREACHABLE;
		goto out;
	}
	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &ans->status);
	if (ans->body.len > 0)
		ans->json = json_loadb(ans->body.p, ans->body.len, 0, NULL);
	rc = CTL_OK;
	goto out;
oom:
	fprintf(stderr, "payrelayctl: out of memory\n");
out:
	/* No handle option keeps pointing at freed memory past this point. */
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(headers);
	free(text);
	sbuf_free(&url);
	if (rc != CTL_OK)
		ctl_answer_free(ans);
	return rc;
}

/* The other members of an error object ("state", "registered_amount_fen"):
 * the API adds them where they help to understand the error. */
static void
ctl_http_error_details(const json_t *o)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)o, k, v)
	{
		if (strcmp(k, "error") == 0)
			continue;
		if (json_is_string(v)) {
			fprintf(stderr, "  %s: ", k);
			ctl_out_safe(stderr, json_string_value(v));
			fputc('\n', stderr);
		} else if (json_is_integer(v)) {
			fprintf(stderr, "  %s: %lld\n", k, (long long)json_integer_value(v));
		} else if (json_is_boolean(v)) {
			fprintf(stderr, "  %s: %s\n", k, json_is_true(v) ? "true" : "false");
		}
	}
}

int
ctl_http_check(const struct ctl_http *h, const struct ctl_answer *ans)
{
	const char *err = json_string_value(json_object_get(ans->json, "error"));

	if (ans->status >= 200 && ans->status < 300) {
		if (json_is_object(ans->json))
			return CTL_OK;
		fprintf(stderr,
		    "payrelayctl: payrelayd at %s answered something other than JSON (HTTP %ld)\n",
		    h->addr, ans->status);
		return CTL_API_ERROR;
	}
	if (ans->status == 401) {
		fprintf(stderr,
		    "payrelayctl: the admin token was refused (check [admin] token in %s)\n",
		    h->config_path);
		return CTL_AUTH;
	}
	fputs("payrelayctl: ", stderr);
	ctl_out_safe(stderr, err != NULL ? err : "unexpected answer");
	fprintf(stderr, " (HTTP %ld)\n", ans->status);
	if (json_is_object(ans->json))
		ctl_http_error_details(ans->json);
	return ans->status == 404 ? CTL_NOT_FOUND : CTL_API_ERROR;
}

int
ctl_http_public_post(const struct config *cfg, long timeout_ms, const char *path, const char *body,
    size_t len, struct ctl_answer *ans, char *addr)
{
	const struct netaddr *a = &cfg->listen;
	struct curl_slist *headers = NULL, *t;
	struct sink sink;
	struct ctl_http h;
	char url[512];
	const char *host = a->host;
	CURLcode cc;
	CURL *curl;
	int rc = CTL_API_ERROR;

	memset(ans, 0, sizeof(*ans));
	sbuf_init(&ans->body);
	memset(&h, 0, sizeof(h));
	sink.h = &h;
	sink.body = &ans->body;
	if (strcmp(host, "0.0.0.0") == 0 || *host == '\0')
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	if (strchr(host, ':') != NULL)
		snprintf(addr, 160, "[%s]:%u", host, (unsigned)a->port);
	else
		snprintf(addr, 160, "%s:%u", host, (unsigned)a->port);
	snprintf(url, sizeof(url), "http://%s%s", addr, path);
	if ((curl = curl_easy_init()) == NULL ||
	    (headers = curl_slist_append(NULL,
		 "Content-Type: application/x-www-form-urlencoded")) == NULL ||
	    (t = curl_slist_append(headers, "Expect:")) == NULL) {
		fprintf(stderr, "payrelayctl: out of memory\n");
		goto out;
	}
	headers = t;
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "payrelayctl/" PAYRELAY_VERSION " send-test");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, h.errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, ctl_http_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(curl, CURLOPT_POST, 1L);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)len);
	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		fprintf(stderr, "payrelayctl: cannot reach the public listener at %s: %s\n", addr,
		    h.errbuf[0] != '\0' ? h.errbuf : curl_easy_strerror(cc));
		rc = CTL_UNREACHABLE;
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &ans->status);
	rc = CTL_OK;
out:
	if (curl != NULL)
		curl_easy_cleanup(curl);
	curl_slist_free_all(headers);
	if (rc != CTL_OK)
		ctl_answer_free(ans);
	return rc;
}

char *
ctl_http_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s), i;
	char *out, *o;

	if (n > (SIZE_MAX - 1) / 3 || (out = malloc(3 * n + 1)) == NULL)
		return NULL;
	for (o = out, i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}
