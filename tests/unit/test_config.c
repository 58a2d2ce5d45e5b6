/* The configuration file (SPEC §8): values, defaults, and every kind of
 * error reported on the right line without quoting a secret. */
#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "family.h"
#include "log.h"
#include "vectors.h"

#define SECRET "Sup3rSecretMerchantKey"

static char dir[64];
static char conf_path[128];
static struct config_errors errs;

static void
setup(void)
{
	strcpy(dir, "/tmp/payrelay-test-config-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(conf_path, sizeof(conf_path), "%s/payrelayd.conf", dir);
	memset(&errs, 0, sizeof(errs));
}

static void
teardown(void)
{
	char cmd[128];

	config_errors_free(&errs);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* Writes `text` to `name` inside the test directory (creating one level of
 * sub-directory when the name has one). */
static void
write_file(const char *name, const char *text)
{
	char path[256], *slash;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((slash = strrchr(path, '/')) != NULL && slash > path + strlen(dir)) {
		*slash = '\0';
		mkdir(path, 0700);
		*slash = '/';
	}
	ck_assert_msg((f = fopen(path, "w")) != NULL, "cannot write %s", path);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

static struct config *
load(const char *text)
{
	config_errors_free(&errs);
	write_file("payrelayd.conf", text);
	return config_load(conf_path, &errs);
}

static void
dump_errors(void)
{
	size_t i;

	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "  line %d: %s\n", errs.v[i].line, errs.v[i].msg);
}

/* True when an error on `line` contains `text`. */
static bool
has_error(int line, const char *text)
{
	size_t i;

	for (i = 0; i < errs.n; i++)
		if (errs.v[i].line == line && strstr(errs.v[i].msg, text) != NULL)
			return true;
	return false;
}

#define ck_assert_error(line, text) \
	do { \
		if (!has_error((line), (text))) \
			dump_errors(); \
		ck_assert_msg(has_error((line), (text)), "no error '%s' on line %d", (text), \
		    (line)); \
	} while (0)

/* Loads `text`, which must be refused with `text_err` on `line`. */
static void
expect_error(const char *text, int line, const char *text_err)
{
	struct config *c = load(text);

	ck_assert_ptr_null(c);
	ck_assert_error(line, text_err);
}

static void
no_secret_in(const char *secret)
{
	size_t i;

	for (i = 0; i < errs.n; i++)
		ck_assert_msg(strstr(errs.v[i].msg, secret) == NULL,
		    "error on line %d quotes a secret: %s", errs.v[i].line, errs.v[i].msg);
}

#define MINIMAL_CHANNEL "[channel:shop]\nfamily = epay\nmerchant_id = 1001\nkey = " SECRET "\n"

static const char minimal[] = "[channel:shop]\n"
			      "family = epay\n"
			      "merchant_id = 1001\n"
			      "key = " SECRET "\n";

START_TEST(test_full_file)
{
	struct config *c;
	const struct channel *ch;
	const struct webhook *w;

	write_file("shop-epay.key", SECRET "\n\n");
	write_file("admin.token", "0123456789abcdef0123\n");
	write_file("redis.pw", "redis-pass\n");
	c = load("; payrelay\n"
		 "[daemon]\n"
		 "listen = 0.0.0.0:9787          ; public listener\n"
		 "shutdown_timeout = 20\n"
		 "dedup_ttl = 86400            ; seconds\n"
		 "log_level = debug\n"
		 "max_connections = 500\n"
		 "read_timeout = 3\n"
		 "\n"
		 "[admin]\n"
		 "listen = unix:/run/payrelay/admin.sock\n"
		 "token_file = admin.token   ; or: token = ...\n"
		 "\n"
		 "[redis]\n"
		 "url = redis://10.1.2.3:6380/2\n"
		 "password_file = redis.pw\n"
		 "prefix = pr:\n"
		 "timeout_ms = 500\n"
		 "\n"
		 "[stream]\n"
		 "key = pr:events\n"
		 "maxlen = 5000\n"
		 "\n"
		 "[channel:shop-epay]\n"
		 "family = epay                   ; epay | gatepay | payindex\n"
		 "sign_type = MD5\n"
		 "merchant_id = 1001\n"
		 "key_file = shop-epay.key    ; or: key = ...\n"
		 "api_base = https://pay.example.com/\n"
		 "poll_after = 30\n"
		 "poll_rate = 7\n"
		 "sweep = on\n"
		 "sweep_interval = 600\n"
		 "allow_from = 0.0.0.0/0\n"
		 "\n"
		 "[channel:gp]\n"
		 "family = gatepay\n"
		 "merchant_id = appkey1\n"
		 "key = gpsecret\n"
		 "confirm = off\n"
		 "\n"
		 "[webhook:orders-service]\n"
		 "url = http://127.0.0.1:9000/payrelay\n"
		 "secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw rawsecret\n"
		 "events = order.paid order.amount_mismatch   ; default: all\n"
		 "channels = shop-epay\n"
		 "timeout_ms = 5000\n"
		 "max_in_flight = 8\n"
		 "schedule = 0 5 300\n");
	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(errs.n, 0);

	ck_assert(!c->listen.is_unix);
	ck_assert_str_eq(c->listen.host, "0.0.0.0");
	ck_assert_uint_eq(c->listen.port, 9787);
	ck_assert_int_eq(c->shutdown_timeout, 20);
	ck_assert_int_eq(c->dedup_ttl, 86400);
	ck_assert_int_eq(c->log_level, LOG_DEBUG);
	ck_assert_int_eq(c->max_connections, 500);
	ck_assert_int_eq(c->read_timeout, 3);

	ck_assert(c->admin_listen.is_unix);
	ck_assert_str_eq(c->admin_listen.path, "/run/payrelay/admin.sock");
	ck_assert_str_eq(c->admin_token, "0123456789abcdef0123");

	ck_assert(!c->redis.is_unix);
	ck_assert_str_eq(c->redis.host, "10.1.2.3");
	ck_assert_uint_eq(c->redis.port, 6380);
	ck_assert_int_eq(c->redis_db, 2);
	ck_assert_ptr_null(c->redis_user);
	ck_assert_str_eq(c->redis_password, "redis-pass");
	ck_assert_str_eq(c->redis_prefix, "pr:");
	ck_assert_int_eq(c->redis_timeout_ms, 500);

	ck_assert_str_eq(c->stream_key, "pr:events");
	ck_assert_int_eq(c->stream_maxlen, 5000);

	ck_assert_uint_eq(c->nchannels, 2);
	ch = config_channel(c, "shop-epay");
	ck_assert_ptr_nonnull(ch);
	ck_assert_int_eq(ch->line, 24);
	ck_assert_ptr_eq(ch->family, family_find("epay"));
	ck_assert_int_eq(ch->sign_type, SIGN_MD5);
	ck_assert_str_eq(ch->merchant_id, "1001");
	ck_assert_uint_eq(ch->key_len, strlen(SECRET));
	ck_assert_mem_eq(ch->key, SECRET, strlen(SECRET));
	ck_assert_ptr_null(ch->platform_key);
	ck_assert_str_eq(ch->api_base, "https://pay.example.com");
	ck_assert_int_eq(ch->poll_after, 30);
	ck_assert_int_eq(ch->poll_rate, 7);
	ck_assert(ch->sweep);
	ck_assert_int_eq(ch->sweep_interval, 600);
	ck_assert_uint_eq(ch->nallow, 1);
	ck_assert_int_eq(ch->allow[0].family, AF_INET);
	ck_assert_uint_eq(ch->allow[0].prefix, 0);

	ch = config_channel(c, "gp");
	ck_assert_ptr_nonnull(ch);
	ck_assert_ptr_eq(ch->family, family_find("gatepay"));
	ck_assert_uint_eq(ch->key_len, 8);
	ck_assert_mem_eq(ch->key, "gpsecret", 8);
	ck_assert_ptr_null(ch->api_base);
	ck_assert(!ch->confirm);
	ck_assert_ptr_null(ch->allow);
	ck_assert_ptr_null(config_channel(c, "nope"));

	ck_assert_uint_eq(c->nwebhooks, 1);
	w = &c->webhooks[0];
	ck_assert_str_eq(w->name, "orders-service");
	ck_assert_int_eq(w->line, 42);
	ck_assert_str_eq(w->url, "http://127.0.0.1:9000/payrelay");
	ck_assert_uint_eq(w->nsecrets, 2);
	ck_assert_uint_eq(w->secrets[0].len, 24); /* 32 base64 characters */
	ck_assert_uint_eq(w->secrets[1].len, 9);
	ck_assert_mem_eq(w->secrets[1].key, "rawsecret", 9);
	ck_assert_uint_eq(w->events, 1u << EVENT_PAID | 1u << EVENT_AMOUNT_MISMATCH);
	ck_assert_uint_eq(w->nchannels, 1);
	ck_assert_str_eq(w->channels[0], "shop-epay");
	ck_assert_int_eq(w->timeout_ms, 5000);
	ck_assert_int_eq(w->max_in_flight, 8);
	ck_assert_uint_eq(w->nschedule, 3);
	ck_assert_uint_eq(w->schedule[2], 300);
	config_free(c);
}
END_TEST

START_TEST(test_defaults)
{
	static const unsigned sched[] = { 0, 5, 300, 1800, 7200, 18000, 36000, 36000 };
	struct config *c = load(minimal);
	const struct channel *ch;
	const struct webhook *w;
	size_t i;

	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->listen.host, "0.0.0.0");
	ck_assert_uint_eq(c->listen.port, 8787);
	ck_assert_int_eq(c->shutdown_timeout, 10);
	ck_assert_int_eq(c->dedup_ttl, 2592000);
	ck_assert_int_eq(c->log_level, LOG_INFO);
	ck_assert_int_eq(c->max_connections, CONFIG_MAX_CONNECTIONS);
	ck_assert_int_eq(c->read_timeout, 10); /* SPEC §3 */
	/* SPEC §3.1 */
	ck_assert_ptr_null(c->trusted_proxies);
	ck_assert_uint_eq(c->ntrusted_proxies, 0);
	ck_assert(!c->proxy_protocol);
	ck_assert_int_eq(c->max_connections_per_ip, 256);
	ck_assert_int_eq(c->header_timeout, 5);
	ck_assert_str_eq(c->admin_listen.host, "127.0.0.1");
	ck_assert_uint_eq(c->admin_listen.port, 8788);
	ck_assert_ptr_null(c->admin_token);
	ck_assert_str_eq(c->redis.host, "127.0.0.1");
	ck_assert_uint_eq(c->redis.port, 6379);
	ck_assert_int_eq(c->redis_db, 0);
	ck_assert_ptr_null(c->redis_password);
	ck_assert_str_eq(c->redis_prefix, "payrelay:");
	ck_assert_int_eq(c->redis_timeout_ms, 2000);
	ck_assert_str_eq(c->stream_key, "payrelay:events");
	ck_assert_int_eq(c->stream_maxlen, 1000000);
	ck_assert_str_eq(c->path, conf_path);
	ch = config_channel(c, "shop");
	ck_assert_ptr_nonnull(ch);
	ck_assert_int_eq(ch->sign_type, SIGN_MD5);
	ck_assert_int_eq(ch->poll_after, 60);
	ck_assert_int_eq(ch->poll_rate, 5);
	ck_assert(!ch->sweep);
	ck_assert_int_eq(ch->sweep_interval, 300);
	ck_assert_ptr_null(ch->allow);
	ck_assert_uint_eq(c->nwebhooks, 0);
	config_free(c);

	c = load("[webhook:w]\nurl = https://h.example/x\nsecret = s\n[channel:shop]\n"
		 "family = payindex\nmerchant_id = 10001\nkey = k\n");
	ck_assert_ptr_nonnull(c);
	w = &c->webhooks[0];
	ck_assert_uint_eq(w->events,
	    1u << EVENT_PAID | 1u << EVENT_STATUS | 1u << EVENT_AMOUNT_MISMATCH |
		1u << EVENT_REFUNDED);
	ck_assert_ptr_null(w->channels);
	ck_assert_int_eq(w->timeout_ms, 10000);
	ck_assert_int_eq(w->max_in_flight, 32);
	ck_assert_uint_eq(w->nschedule, 8);
	for (i = 0; i < 8; i++)
		ck_assert_uint_eq(w->schedule[i], sched[i]);
	config_free(c);
}
END_TEST

/* [redis] sentinels, master_name, sentinel_password_file, min_replicas,
 * replica_timeout_ms (SPEC §3.2). */
START_TEST(test_sentinels)
{
	static const char ch[] = "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n";
	char text[1024];
	struct config *c = load(minimal);

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_null(c->redis_sentinels);
	ck_assert_uint_eq(c->nredis_sentinels, 0);
	ck_assert_ptr_null(c->redis_master_name);
	ck_assert_ptr_null(c->redis_sentinel_password);
	ck_assert_int_eq(c->redis_min_replicas, 0);
	ck_assert_int_eq(c->redis_replica_timeout_ms, 1000);
	config_free(c);

	write_file("sentinel.pw", "sentinel-Secret-pw\n");
	snprintf(text, sizeof(text),
	    "[redis]\nurl = redis://:redispw@127.0.0.1/3\n"
	    "sentinels = 10.0.0.1:26380 10.0.0.2, [::1]:26381,localhost\n"
	    "master_name = pay-relay.1\nsentinel_password_file = sentinel.pw\n"
	    "min_replicas = 2\nreplica_timeout_ms = 250\n%s",
	    ch);
	c = load(text);
	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->nredis_sentinels, 4);
	ck_assert_str_eq(c->redis_sentinels[0].host, "10.0.0.1");
	ck_assert_uint_eq(c->redis_sentinels[0].port, 26380);
	ck_assert_str_eq(c->redis_sentinels[1].host, "10.0.0.2");
	ck_assert_uint_eq(c->redis_sentinels[1].port, 26379);
	ck_assert_str_eq(c->redis_sentinels[2].host, "::1");
	ck_assert_uint_eq(c->redis_sentinels[2].port, 26381);
	ck_assert_str_eq(c->redis_sentinels[3].host, "127.0.0.1");
	ck_assert_str_eq(c->redis_master_name, "pay-relay.1");
	ck_assert_str_eq(c->redis_sentinel_password, "sentinel-Secret-pw");
	ck_assert_int_eq(c->redis_db, 3); /* the url still gives db and password */
	ck_assert_str_eq(c->redis_password, "redispw");
	ck_assert_int_eq(c->redis_min_replicas, 2);
	ck_assert_int_eq(c->redis_replica_timeout_ms, 250);
	/* the sentinel password is masked like every other secret */
	{
		char msg[] = "AUTH sentinel-Secret-pw";

		config_mask_secrets(c, msg);
		ck_assert_str_eq(msg, "AUTH ***");
	}
	config_free(c);

	/* one without the other, with the line of the one given */
	snprintf(text, sizeof(text), "[redis]\nsentinels = 10.0.0.1:26379\n%s", ch);
	expect_error(text, 2, "sentinels needs master_name in [redis]");
	snprintf(text, sizeof(text), "[redis]\nmaster_name = m\n%s", ch);
	expect_error(text, 2, "master_name needs sentinels in [redis]");
	snprintf(text, sizeof(text), "[redis]\nsentinel_password_file = sentinel.pw\n%s", ch);
	expect_error(text, 2, "sentinel_password_file needs sentinels in [redis]");
	/* bad addresses */
	snprintf(text, sizeof(text), "[redis]\nmaster_name = m\nsentinels = sentinel-1:26379\n%s",
	    ch);
	expect_error(text, 3, "sentinels: 'sentinel-1:26379': the host must be a numeric address");
	snprintf(text, sizeof(text), "[redis]\nmaster_name = m\nsentinels = 10.0.0.1:0\n%s", ch);
	expect_error(text, 3, "sentinels: '10.0.0.1:0' is not host:port");
	snprintf(text, sizeof(text), "[redis]\nmaster_name = m\nsentinels = 10.0.0.1:70000\n%s",
	    ch);
	expect_error(text, 3, "is not host:port");
	snprintf(text, sizeof(text), "[redis]\nmaster_name = m\nsentinels = ::1:26379\n%s", ch);
	expect_error(text, 3, "is not host:port");
	snprintf(text, sizeof(text), "[redis]\nmaster_name = m\nsentinels = , ,\n%s", ch);
	expect_error(text, 3, "sentinels must list at least one host:port");
	snprintf(text, sizeof(text),
	    "[redis]\nmaster_name = m\nsentinels = 1.1.1.1 1.1.1.2 1.1.1.3 1.1.1.4 1.1.1.5 "
	    "1.1.1.6 1.1.1.7 1.1.1.8 1.1.1.9 1.1.1.10 1.1.1.11 1.1.1.12 1.1.1.13 1.1.1.14 "
	    "1.1.1.15 1.1.1.16 1.1.1.17\n%s",
	    ch);
	expect_error(text, 3, "sentinels: at most 16 addresses");
	snprintf(text, sizeof(text), "[redis]\nsentinels = 10.0.0.1\nmaster_name = a b\n%s", ch);
	expect_error(text, 3, "master_name must be 1 to 64 bytes without spaces or quotes");
	/* a unix url cannot go with sentinels */
	snprintf(text, sizeof(text),
	    "[redis]\nurl = unix:/run/redis.sock\nsentinels = 10.0.0.1\nmaster_name = m\n%s", ch);
	expect_error(text, 2, "with sentinels, url must be redis://");
	snprintf(text, sizeof(text),
	    "[redis]\nsentinels = 10.0.0.1\nmaster_name = m\n"
	    "sentinel_password_file = nowhere.pw\n%s",
	    ch);
	c = load(text);
	ck_assert_ptr_null(c);
	ck_assert_uint_ge(errs.n, 1);
	ck_assert_int_eq(errs.v[0].line, 4);
	write_file("empty.pw", "\n");
	snprintf(text, sizeof(text),
	    "[redis]\nsentinels = 10.0.0.1\nmaster_name = m\n"
	    "sentinel_password_file = empty.pw\n%s",
	    ch);
	expect_error(text, 4, "sentinel_password_file is empty");
	/* min_replicas and replica_timeout_ms ranges (WAIT 0 would block forever) */
	snprintf(text, sizeof(text), "[redis]\nmin_replicas = 17\n%s", ch);
	expect_error(text, 2, "min_replicas must be an integer from 0 to 16");
	snprintf(text, sizeof(text), "[redis]\nmin_replicas = -1\n%s", ch);
	expect_error(text, 2, "min_replicas must be an integer from 0 to 16");
	snprintf(text, sizeof(text), "[redis]\nreplica_timeout_ms = 0\n%s", ch);
	expect_error(text, 2, "replica_timeout_ms must be an integer from 10 to 60000");
	snprintf(text, sizeof(text), "[redis]\nmin_replicas = 1\nmin_replicas = 1\n%s", ch);
	expect_error(text, 3, "duplicate key 'min_replicas'");
	/* min_replicas works without sentinels too */
	snprintf(text, sizeof(text), "[redis]\nmin_replicas = 1\n%s", ch);
	c = load(text);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->redis_min_replicas, 1);
	ck_assert_uint_eq(c->nredis_sentinels, 0);
	config_free(c);
}
END_TEST

START_TEST(test_key_file)
{
	struct config *c;
	const struct channel *ch;

	write_file("keys/shop.key", "abc def\r\n \n");
	c = load("[channel:shop]\nfamily = epay\nmerchant_id = 1\nkey_file = keys/shop.key\n");
	ck_assert_ptr_nonnull(c);
	ch = config_channel(c, "shop");
	ck_assert_uint_eq(ch->key_len, 7);
	ck_assert_mem_eq(ch->key, "abc def", 7);
	config_free(c);

	/* an absolute path is used as it is */
	char text[512];
	snprintf(text, sizeof(text),
	    "[channel:shop]\nfamily = epay\nmerchant_id = 1\nkey_file = %s/keys/shop.key\n", dir);
	c = load(text);
	ck_assert_ptr_nonnull(c);
	config_free(c);

	expect_error("[channel:shop]\nfamily = epay\nmerchant_id = 1\nkey_file = missing.key\n", 4,
	    "missing.key: No such file");
}
END_TEST

START_TEST(test_forms)
{
	struct config *c;

	c = load("[daemon]\nlisten = *:80\n[admin]\nlisten = [::1]:9000\ntoken = 0123456789abcdef\n"
		 "[redis]\nurl = redis://app:pw:x@localhost\n"
		 "[channel:a]\n"
		 "family = epay\nmerchant_id = 1\nkey = k\n");
	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->listen.host, "0.0.0.0");
	ck_assert_uint_eq(c->listen.port, 80);
	ck_assert_str_eq(c->admin_listen.host, "::1");
	ck_assert_uint_eq(c->admin_listen.port, 9000);
	ck_assert_str_eq(c->admin_token, "0123456789abcdef");
	ck_assert_str_eq(c->redis.host, "127.0.0.1");
	ck_assert_uint_eq(c->redis.port, 6379);
	ck_assert_str_eq(c->redis_user, "app");
	ck_assert_str_eq(c->redis_password, "pw:x");
	config_free(c);

	c = load("[redis]\nurl = unix:///run/redis/redis.sock?db=3\n[channel:a]\n"
		 "family = epay\nmerchant_id = 1\nkey = k\n");
	ck_assert_ptr_nonnull(c);
	ck_assert(c->redis.is_unix);
	ck_assert_str_eq(c->redis.path, "/run/redis/redis.sock");
	ck_assert_int_eq(c->redis_db, 3);
	config_free(c);

	c = load("[redis]\nurl = redis://:pw@[::1]:7000/1\n[channel:a]\n"
		 "family = epay\nmerchant_id = 1\nkey = k\n");
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->redis.host, "::1");
	ck_assert_uint_eq(c->redis.port, 7000);
	ck_assert_int_eq(c->redis_db, 1);
	ck_assert_ptr_null(c->redis_user);
	ck_assert_str_eq(c->redis_password, "pw");
	config_free(c);

	/* password_file before a url without a password, and a user alone */
	write_file("pw", "from-file\n");
	c = load("[redis]\npassword_file = pw\nurl = redis://app@127.0.0.1:6379/4\n[channel:a]\n"
		 "family = epay\nmerchant_id = 1\nkey = k\n");
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->redis_user, "app");
	ck_assert_str_eq(c->redis_password, "from-file");
	ck_assert_int_eq(c->redis_db, 4);
	config_free(c);

	/* a CRLF file with a BOM, indented keys, and a 60-byte channel name
	 * (longer than inih's own section buffer) */
	c = load(
	    "\xef\xbb\xbf[channel:aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeeffffffffff]\r\n"
	    "  family = epay\r\n  merchant_id = 1\r\n  key = k ; comment\r\n");
	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->channels[0].name,
	    "aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeeffffffffff");
	ck_assert_uint_eq(c->channels[0].key_len, 1);
	config_free(c);
}
END_TEST

START_TEST(test_rsa)
{
	json_t *root = vectors_load("epay_rsa.json");
	struct config *c;

	write_file("platform.pem", vectors_str(root, "platform_public_key_pem"));
	write_file("bad.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
	json_decref(root);
	c = load("[channel:rsa]\nfamily = epay\nsign_type = RSA\nmerchant_id = 1\nkey = k\n"
		 "platform_public_key_file = platform.pem\n");
	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->channels[0].sign_type, SIGN_RSA);
	ck_assert_ptr_nonnull(c->channels[0].platform_key);
	config_free(c);

	expect_error("[channel:rsa]\nfamily = epay\nsign_type = RSA\nmerchant_id = 1\nkey = k\n", 1,
	    "platform_public_key_file");
	expect_error("[channel:rsa]\nfamily = epay\nsign_type = RSA\nmerchant_id = 1\nkey = k\n"
		     "platform_public_key_file = bad.pem\n",
	    6, "not a PEM public key");
	expect_error("[channel:md5]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "platform_public_key_file = platform.pem\n",
	    5, "only for sign_type = RSA");
}
END_TEST

/* SPEC §2.5: confirm = query by default for gatepay only; it needs
 * api_base; gatepay without it is allowed, with a warning. */
/* Runs config_load on the test file (first written with `text`, unless
 * NULL) with stderr (the log) captured into `out` (NUL-terminated).
 * Returns the config. */
static struct config *
load_logged(const char *text, char *out, size_t n)
{
	char path[160];
	struct config *c;
	FILE *f;
	int saved, fd;
	size_t len;

	snprintf(path, sizeof(path), "%s/stderr.txt", dir);
	fflush(stderr);
	saved = dup(2);
	ck_assert_int_ge(saved, 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dup2(fd, 2), 2);
	close(fd);
	config_errors_free(&errs);
	if (text != NULL)
		write_file("payrelayd.conf", text);
	c = config_load(conf_path, &errs);
	fflush(stderr);
	ck_assert_int_eq(dup2(saved, 2), 2);
	close(saved);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	len = fread(out, 1, n - 1, f);
	out[len] = '\0';
	fclose(f);
	return c;
}

START_TEST(test_confirm)
{
	static const struct {
		const char *family;
		bool confirm;
	} defaults[] = { { "epay", false }, { "gatepay", true }, { "payindex", false } };
	const struct channel *ch;
	struct config *c;
	char text[512], log[4096];
	size_t i;

	for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		snprintf(text, sizeof(text),
		    "[channel:a]\nfamily = %s\nmerchant_id = 1\nkey = k\n"
		    "api_base = https://gw.example\n",
		    defaults[i].family);
		c = load_logged(text, log, sizeof(log));
		if (c == NULL)
			dump_errors();
		ck_assert_ptr_nonnull(c);
		ch = config_channel(c, "a");
		ck_assert_msg(ch->confirm == defaults[i].confirm, "confirm default of %s",
		    defaults[i].family);
		ck_assert_int_eq(ch->confirm_timeout_ms, 3000);
		ck_assert_int_eq(ch->confirm_max_in_flight, 16);
		ck_assert_int_eq(ch->confirm_rate, 20);
		ck_assert_ptr_null(strstr(log, "confirm = off"));
		config_free(c);
	}

	/* Every family may ask for it; the limits are per channel. */
	c = load("[channel:a]\nfamily = payindex\nmerchant_id = 1\nkey = k\n"
		 "api_base = https://gw.example\nconfirm = query\nconfirm_timeout_ms = 500\n"
		 "confirm_max_in_flight = 2\nconfirm_rate = 7\n");
	ck_assert_ptr_nonnull(c);
	ch = config_channel(c, "a");
	ck_assert(ch->confirm);
	ck_assert_int_eq(ch->confirm_timeout_ms, 500);
	ck_assert_int_eq(ch->confirm_max_in_flight, 2);
	ck_assert_int_eq(ch->confirm_rate, 7);
	config_free(c);

	/* gatepay with confirm = off starts, and says what it gives up. */
	c = load_logged("[channel:g]\nfamily = gatepay\nmerchant_id = 1\nkey = k\n"
			"confirm = off\n",
	    log, sizeof(log));
	ck_assert_ptr_nonnull(c);
	ck_assert(!config_channel(c, "g")->confirm);
	ck_assert_ptr_nonnull(strstr(log, "level=warn msg=\"confirm = off on a gatepay channel"));
	ck_assert_ptr_nonnull(strstr(log, "line=5 channel=g"));
	config_free(c);
	c = load_logged("[channel:e]\nfamily = epay\nmerchant_id = 1\nkey = k\nconfirm = off\n",
	    log, sizeof(log));
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_null(strstr(log, "confirm = off"));
	config_free(c);

	/* query needs api_base: given or by gatepay's default. */
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\nconfirm = query\n", 5,
	    "confirm = query needs api_base");
	expect_error("[channel:g]\nfamily = gatepay\nmerchant_id = 1\nkey = k\n", 1,
	    "family gatepay confirms payments by query");
	ck_assert_uint_eq(errs.n, 1);
	/* Bad values, on their line. */
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "api_base = https://gw.example\nconfirm = yes\n",
	    6, "confirm must be query or off");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "api_base = https://gw.example\nconfirm = QUERY\n",
	    6, "confirm must be query or off");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "confirm_timeout_ms = 99\n",
	    5, "confirm_timeout_ms must be an integer from 100 to 60000");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "confirm_max_in_flight = 0\n",
	    5, "confirm_max_in_flight must be an integer from 1 to 1024");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "confirm_rate = 5/s\n",
	    5, "confirm_rate must be an integer from 1 to 1000");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\nconfirm = off\n"
		     "confirm = query\n",
	    6, "duplicate key 'confirm'");
}
END_TEST

START_TEST(test_line_errors)
{
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\ncolour = blue\n", 5,
	    "unknown key 'colour' in [channel:a]");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n\n[deamon]\n", 6,
	    "unknown section [deamon]");
	expect_error("[daemon]\nshutdown_timeout = 10s\n[channel:a]\nfamily = epay\n"
		     "merchant_id = 1\nkey = k\n",
	    2, "shutdown_timeout must be an integer from 1 to 600");
	expect_error("[daemon]\nmax_connections = 15\n[channel:a]\nfamily = epay\n"
		     "merchant_id = 1\nkey = k\n",
	    2, "max_connections must be an integer from 16 to 1000000");
	expect_error("[daemon]\nread_timeout = 0\n[channel:a]\nfamily = epay\n"
		     "merchant_id = 1\nkey = k\n",
	    2, "read_timeout must be an integer from 1 to 3600");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\npoll_rate = +5\n", 5,
	    "poll_rate must be an integer from 1 to 1000");
	expect_error("[stream]\nmaxlen = 99\n[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = "
		     "k\n",
	    2, "maxlen must be an integer from 1000 to 1000000000");
	expect_error("[daemon]\n[channel:a]\nfamily = epay\nkey = k\n", 2,
	    "missing required key 'merchant_id' in [channel:a]");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n[webhook:w]\n"
		     "secret = s\n",
	    5, "missing required key 'url' in [webhook:w]");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nmerchant_id = 2\nkey = k\n", 4,
	    "duplicate key 'merchant_id'");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n[channel:a]\n", 5,
	    "duplicate section [channel:a] (first at line 1)");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey =\n", 4,
	    "channel has an empty key");
	write_file("empty.key", "\n  \n");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey_file = empty.key\n", 4,
	    "channel has an empty key");
	write_file("a.key", "k\n");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\nkey_file = a.key\n", 5,
	    "not both");
	expect_error("[channel:a]\nfamily = gatepay\nmerchant_id = 1\nkey = k\nsign_type = MD5\n",
	    5, "sign_type is only for family epay");
	expect_error("[channel:a]\nfamily = payindex\nmerchant_id = 1\nkey = k\nsweep = on\n", 5,
	    "sweep = on is only for family epay");
	write_file("k.pem", "not a key\n");
	expect_error("[channel:a]\nfamily = gatepay\nmerchant_id = 1\nkey = k\n"
		     "platform_public_key_file = k.pem\n",
	    5, "only for family epay");
	expect_error("[channel:a]\nfamily = alipay\nmerchant_id = 1\nkey = k\n", 2,
	    "unknown family 'alipay'");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "allow_from = 10.0.0.0/8, 10.1.2.3/33\n",
	    5, "allow_from: bad entry '10.1.2.3/33'");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "allow_from = 2001:db8::/129\n",
	    5, "bad entry");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n[webhook:w]\n"
		     "url = http://h/\nsecret = s\nchannels = a b\n",
	    8, "channels: no channel named 'b'");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n[webhook:w]\n"
		     "url = http://h/\nsecret = whsec_not*base64\n",
	    7, "whsec_ value is not valid base64");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n[webhook:w]\n"
		     "url = http://h/\nsecret = s\nevents = order.paid order.shipped\n",
	    8, "unknown event 'order.shipped'");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n[webhook:w]\n"
		     "url = ftp://h/\nsecret = s\n",
	    6, "url must be");
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n[webhook:w]\n"
		     "url = http://h/\nsecret = s\nschedule = 0 5 604801\n",
	    8, "schedule must be");
	expect_error("key = k\n[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n", 1,
	    "outside any section");
	expect_error("[channel:a b]\n", 1, "invalid name");
	expect_error("[admin]\ntoken = short\n[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = "
		     "k\n",
	    2, "admin token must be at least 16 bytes");
	expect_error("[redis]\nurl = redis://redis.internal:6379/0\n", 2,
	    "redis host must be a numeric address");
	expect_error("[redis]\nurl = http://127.0.0.1/\n", 2, "redis url must be");
	expect_error("[daemon]\nlisten = example.com:80\n", 2, "numeric");
	expect_error("[daemon]\nlisten = 127.0.0.1\n", 2, "listen must be");
	expect_error("[daemon]\nlog_level = loud\n", 2, "log_level must be");
	expect_error("[daemon]\nlisten = unix:/run/p.sock\n", 2, "no unix socket here");
	expect_error("[daemon]\n", 0, "no [channel:NAME] section: nothing to receive");
}
END_TEST

START_TEST(test_delivery_retention)
{
	struct config *c = load(minimal);

	/* SPEC §3.2: delivered deliveries are kept 7 days by default. */
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->delivery_retention, 604800);
	config_free(c);
	c = load("[daemon]\ndelivery_retention = 60\n[channel:a]\nfamily = epay\n"
		 "merchant_id = 1\nkey = k\n");
	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->delivery_retention, 60);
	ck_assert_int_eq(c->dedup_ttl, 2592000);
	config_free(c);
	expect_error("[daemon]\ndelivery_retention = 59\n[channel:a]\nfamily = epay\n"
		     "merchant_id = 1\nkey = k\n",
	    2, "delivery_retention must be an integer from 60 to 315360000");
	expect_error("[daemon]\ndelivery_retention = 7d\n[channel:a]\nfamily = epay\n"
		     "merchant_id = 1\nkey = k\n",
	    2, "delivery_retention must be an integer from 60 to 315360000");
	expect_error("[stream]\ndelivery_retention = 60\n[channel:a]\nfamily = epay\n"
		     "merchant_id = 1\nkey = k\n",
	    2, "unknown key 'delivery_retention' in [stream]");
}
END_TEST

START_TEST(test_syntax_errors)
{
	char text[1024];

	memset(text, 0, sizeof(text));
	strcat(text, "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\napi_base = https://x/");
	memset(text + strlen(text), 'a', 200);
	strcat(text, "\n");
	expect_error(text, 5, "line too long (at most 199 bytes)");

	/* 199 bytes is fine */
	memset(text, 0, sizeof(text));
	strcat(text, "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\napi_base = https://x/");
	memset(text + strlen(text), 'a', 199 - strlen("api_base = https://x/"));
	strcat(text, "\n");
	struct config *c = load(text);
	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	config_free(c);

	expect_error("[channel:a]\nfamily = epay\nmerchant_id 1\nkey = k\n", 3,
	    "syntax error: expected [section] or key = value");
	expect_error("[channel:a\nfamily = epay\n", 1, "syntax error");
	write_file("payrelayd.conf", "");
	{
		FILE *f = fopen(conf_path, "w");

		ck_assert_ptr_nonnull(f);
		fwrite("[channel:a]\nkey = k\0x\n", 1, 22, f);
		fclose(f);
	}
	config_errors_free(&errs);
	ck_assert_ptr_null(config_load(conf_path, &errs));
	ck_assert_error(2, "line contains a NUL byte");
	expect_error("[channel:a]\nfamily ;= epay\n", 2, "syntax error");
}
END_TEST

START_TEST(test_many_errors)
{
	struct config *c = load("[daemon]\n"             /* 1 */
				"shutdown_timeout = 0\n" /* 2 */
				"bogus = 1\n"            /* 3 */
				"[nope]\n"               /* 4 */
				"x = 1\n"                /* 5: ignored */
				"[channel:a]\n"          /* 6 */
				"family = epay\n"        /* 7 */
				"key = " SECRET "\n"     /* 8 */
				"this is not ini\n"      /* 9 */
				"key = " SECRET "\n"     /* 10 */
				"[channel:b]\n"          /* 11 */
				"family = gatepay\n"     /* 12 */
				"merchant_id = 2\n"      /* 13 */
				"sign_type = RSA\n"      /* 14 */
				"also not ini\n");       /* 15 */

	ck_assert_ptr_null(c);
	ck_assert_error(2, "shutdown_timeout");
	ck_assert_error(3, "unknown key 'bogus' in [daemon]");
	ck_assert_error(4, "unknown section [nope]");
	ck_assert_error(6, "missing required key 'merchant_id' in [channel:a]");
	ck_assert_error(9, "syntax error");
	ck_assert_error(10, "duplicate key 'key'");
	ck_assert_error(11, "missing required key 'key' or 'key_file' in [channel:b]");
	ck_assert_error(11, "family gatepay confirms payments by query");
	ck_assert_error(14, "sign_type is only for family epay");
	ck_assert_error(15, "syntax error");
	ck_assert_uint_eq(errs.n, 10);
	no_secret_in(SECRET);
}
END_TEST

START_TEST(test_no_secret_in_errors)
{
	struct config *c;

	write_file("a.key", SECRET "\n");
	write_file("pw", "redispw-Secret\n");
	c = load("[admin]\ntoken = shortSECRETtok\n"
		 "[redis]\nurl = redis://user:redispw-Secret@redis.example:6379/0\n"
		 "password_file = pw\n"
		 "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = " SECRET "\nkey_file = a.key\n"
		 "key = " SECRET "\n"
		 "[webhook:w]\nurl = http://u:" SECRET "@h\turl/\nsecret = whsec_" SECRET "!\n");
	ck_assert_ptr_null(c);
	ck_assert_error(2, "admin token must be at least 16 bytes");
	ck_assert_error(4, "redis host must be a numeric address");
	ck_assert_error(10, "give key or key_file, not both");
	ck_assert_error(11, "duplicate key 'key'");
	ck_assert_error(13, "url must be");
	ck_assert_error(14, "whsec_ value is not valid base64");
	ck_assert_uint_eq(errs.n, 6);
	no_secret_in(SECRET);
	no_secret_in("shortSECRETtok");
	no_secret_in("redispw-Secret");

	/* the password in the url and in a file */
	c = load("[redis]\nurl = redis://:redispw-Secret@127.0.0.1/0\npassword_file = pw\n");
	ck_assert_ptr_null(c);
	ck_assert_error(3, "not both");
	no_secret_in("redispw-Secret");
}
END_TEST

static struct sockaddr_in
sin4(const char *a)
{
	struct sockaddr_in s;

	memset(&s, 0, sizeof(s));
	s.sin_family = AF_INET;
	ck_assert_int_eq(inet_pton(AF_INET, a, &s.sin_addr), 1);
	return s;
}

static struct sockaddr_in6
sin6(const char *a)
{
	struct sockaddr_in6 s;

	memset(&s, 0, sizeof(s));
	s.sin6_family = AF_INET6;
	ck_assert_int_eq(inet_pton(AF_INET6, a, &s.sin6_addr), 1);
	return s;
}

#define ALLOWS(ch, s) channel_allows((ch), (const struct sockaddr *)(const void *)&(s))

START_TEST(test_allow_from)
{
	struct config *c =
	    load("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		 "allow_from = 10.0.0.0/8, 192.168.1.5 2001:db8::/32,203.0.113.128/25\n"
		 "[channel:any4]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		 "allow_from = 0.0.0.0/0\n"
		 "[channel:open]\nfamily = epay\nmerchant_id = 1\nkey = k\n");
	const struct channel *a, *any4, *open;
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;

	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	a = config_channel(c, "a");
	any4 = config_channel(c, "any4");
	open = config_channel(c, "open");
	ck_assert_uint_eq(a->nallow, 4);

	s4 = sin4("10.200.3.4");
	ck_assert(ALLOWS(a, s4));
	s4 = sin4("11.0.0.1");
	ck_assert(!ALLOWS(a, s4));
	s4 = sin4("192.168.1.5");
	ck_assert(ALLOWS(a, s4));
	s4 = sin4("192.168.1.6");
	ck_assert(!ALLOWS(a, s4));
	s4 = sin4("203.0.113.200");
	ck_assert(ALLOWS(a, s4));
	s4 = sin4("203.0.113.127");
	ck_assert(!ALLOWS(a, s4));
	s6 = sin6("2001:db8:1::7");
	ck_assert(ALLOWS(a, s6));
	s6 = sin6("2001:db9::7");
	ck_assert(!ALLOWS(a, s6));
	s6 = sin6("::ffff:10.1.2.3");
	ck_assert(ALLOWS(a, s6));
	s6 = sin6("::ffff:192.168.1.6");
	ck_assert(!ALLOWS(a, s6));
	ck_assert(!channel_allows(a, NULL));

	s4 = sin4("8.8.8.8");
	ck_assert(ALLOWS(any4, s4));
	s6 = sin6("::ffff:8.8.8.8");
	ck_assert(ALLOWS(any4, s6));
	s6 = sin6("2001:db8::1");
	ck_assert(!ALLOWS(any4, s6));

	ck_assert(ALLOWS(open, s6));
	ck_assert(channel_allows(open, NULL));
	config_free(c);
}
END_TEST

/* SPEC §3.1: trusted_proxies, proxy_protocol, max_connections_per_ip,
 * header_timeout. */
/* SPEC §10: the gateway client's keys, and the redirect check that keeps
 * payrelayd from being an open redirect. */
START_TEST(test_gateway_client_keys)
{
	struct config *c = load("[daemon]\n"
				"public_url = https://pay.example.com//\n"
				"return_hosts = Shop.Example.com, www.example.com\n"
				"return_secret = 0123456789abcdef0123\n"
				"[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
				"device = jump\n"
				"return_to = https://shop.example.com/paid?x=1\n");
	static const char *const good[] = {
		"https://shop.example.com/paid",
		"http://SHOP.example.com:8443/p?a=b#c",
		"https://www.example.com",
		"https://www.example.com?x",
	};
	static const char *const bad[] = {
		"https://evil.com/",
		"https://shop.example.com@evil.com/",
		"https://evil.com\\@shop.example.com/",
		"https://shop.example.com.evil.com/",
		"//shop.example.com/",
		"javascript:alert(1)//shop.example.com",
		"https://shop.example.com:/x",
		"https://shop.example.com:123456/x",
		"https://shop.example.com /x",
		"https://shop.example.com/\r\nLocation: https://evil.com",
		"ftp://shop.example.com/",
		"https:///shop.example.com",
		"",
	};
	size_t i;

	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->public_url, "https://pay.example.com");
	ck_assert_uint_eq(c->nreturn_hosts, 2);
	ck_assert_str_eq(c->return_hosts[0], "shop.example.com");
	ck_assert_uint_eq(c->return_secret_len, 20);
	ck_assert_str_eq(c->channels[0].device, "jump");
	ck_assert_str_eq(c->channels[0].return_to, "https://shop.example.com/paid?x=1");
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(config_return_url_ok(c, good[i]), "refused %s", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!config_return_url_ok(c, bad[i]), "allowed %s", bad[i]);
	config_free(c);

	/* Without return_hosts nothing is allowed, and a channel's return_to
	 * is refused. */
	c = load(minimal);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_null(c->public_url);
	ck_assert(!config_return_url_ok(c, "https://shop.example.com/"));
	config_free(c);
	expect_error("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "return_to = https://shop.example.com/\n",
	    5, "not in [daemon] return_hosts");
	expect_error("[daemon]\nreturn_hosts = a.example\n"
		     "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
		     "return_to = https://b.example/\n",
	    7, "not in [daemon] return_hosts");
	expect_error("[daemon]\npublic_url = pay.example.com\n" MINIMAL_CHANNEL, 2,
	    "public_url must be");
	expect_error("[daemon]\npublic_url = https://pay.example.com/?a=1\n" MINIMAL_CHANNEL, 2,
	    "public_url must be");
	expect_error("[daemon]\nreturn_hosts = good.example evil@x\n" MINIMAL_CHANNEL, 2,
	    "is not a host name");
	expect_error("[daemon]\nreturn_hosts = ,\n" MINIMAL_CHANNEL, 2, "return_hosts is empty");
	expect_error("[daemon]\nreturn_secret = short\n" MINIMAL_CHANNEL, 2, "at least 16 bytes");
	no_secret_in("short");
	expect_error("[daemon]\nreturn_secret = 0123456789abcdef\nreturn_secret_file = "
		     "/x\n" MINIMAL_CHANNEL,
	    3, "not both");
	expect_error(MINIMAL_CHANNEL "device = a b\n", 5, "device must be");
}
END_TEST

START_TEST(test_proxy_keys)
{
	struct config *c = load("[daemon]\n"
				"trusted_proxies = 127.0.0.1, 10.0.0.0/8 2001:db8::/32\n"
				"proxy_protocol = on\n"
				"max_connections_per_ip = 16\n"
				"header_timeout = 2\n"
				"read_timeout = 8\n"
				"[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n");
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;

	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->ntrusted_proxies, 3);
	ck_assert(c->proxy_protocol);
	ck_assert_int_eq(c->max_connections_per_ip, 16);
	ck_assert_int_eq(c->header_timeout, 2);
	s4 = sin4("10.9.8.7");
	ck_assert(
	    cidr_list_match(c->trusted_proxies, c->ntrusted_proxies, (const struct sockaddr *)&s4));
	s4 = sin4("127.0.0.2");
	ck_assert(!cidr_list_match(c->trusted_proxies, c->ntrusted_proxies,
	    (const struct sockaddr *)&s4));
	s6 = sin6("::ffff:127.0.0.1");
	ck_assert(
	    cidr_list_match(c->trusted_proxies, c->ntrusted_proxies, (const struct sockaddr *)&s6));
	ck_assert(!cidr_list_match(NULL, 0, (const struct sockaddr *)&s6));
	config_free(c);

	/* Empty is the default: no proxy. */
	c = load("[daemon]\ntrusted_proxies =\nproxy_protocol = off\n"
		 "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n");
	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->ntrusted_proxies, 0);
	config_free(c);

	/* A header_timeout not given never exceeds read_timeout. */
	c = load("[daemon]\nread_timeout = 3\n"
		 "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n");
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->header_timeout, 3);
	config_free(c);

	expect_error("[daemon]\ntrusted_proxies = 127.0.0.1 10.0.0.0/33\n"
		     "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n",
	    2, "trusted_proxies: bad entry '10.0.0.0/33'");
	expect_error("[daemon]\ntrusted_proxies = nginx.local\n"
		     "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n",
	    2, "trusted_proxies: bad entry");
	expect_error("[daemon]\nlisten = 127.0.0.1:8787\nproxy_protocol = yes please\n"
		     "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n",
	    3, "proxy_protocol must be on or off");
	expect_error("[daemon]\nproxy_protocol = on\n"
		     "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n",
	    2, "proxy_protocol = on needs trusted_proxies");
	expect_error("[daemon]\nmax_connections_per_ip = 0\n"
		     "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n",
	    2, "max_connections_per_ip must be an integer from 1 to 1000000");
	expect_error("[daemon]\nheader_timeout = 0\n"
		     "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n",
	    2, "header_timeout must be an integer from 1 to 3600");
	expect_error("[daemon]\nread_timeout = 4\nheader_timeout = 6\n"
		     "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n",
	    3, "header_timeout (6) must not exceed read_timeout (4)");
	expect_error("[admin]\ntrusted_proxies = 127.0.0.1\n"
		     "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n",
	    2, "unknown key 'trusted_proxies' in [admin]");
}
END_TEST

START_TEST(test_webhook_matches)
{
	struct config *c = load("[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
				"[channel:b]\nfamily = epay\nmerchant_id = 1\nkey = k\n"
				"[webhook:all]\nurl = http://127.0.0.1/\nsecret = s\n"
				"[webhook:some]\nurl = http://127.0.0.1/\nsecret = s\n"
				"events = order.paid\nchannels = b\n");
	const struct webhook *all, *some;

	ck_assert_ptr_nonnull(c);
	all = &c->webhooks[0];
	some = &c->webhooks[1];
	ck_assert(webhook_matches(all, EVENT_PAID, "a"));
	ck_assert(webhook_matches(all, EVENT_STATUS, "b"));
	ck_assert(webhook_matches(all, EVENT_AMOUNT_MISMATCH, "a"));
	ck_assert(webhook_matches(some, EVENT_PAID, "b"));
	ck_assert(!webhook_matches(some, EVENT_PAID, "a"));
	ck_assert(!webhook_matches(some, EVENT_STATUS, "b"));
	ck_assert(!webhook_matches(some, EVENT_AMOUNT_MISMATCH, "b"));
	config_free(c);
}
END_TEST

START_TEST(test_names_and_misc)
{
	char name[70];

	ck_assert(config_name_valid("shop-epay_1.v2"));
	ck_assert(!config_name_valid(""));
	ck_assert(!config_name_valid("a b"));
	ck_assert(!config_name_valid("a/b"));
	memset(name, 'x', 64);
	name[64] = '\0';
	ck_assert(config_name_valid(name));
	name[64] = 'x';
	name[65] = '\0';
	ck_assert(!config_name_valid(name));
	config_free(NULL);
	config_errors_free(NULL);
	ck_assert_ptr_null(config_channel(NULL, "a"));

	ck_assert_ptr_null(config_load("/nonexistent/payrelayd.conf", &errs));
	ck_assert_error(0, "No such file");
}
END_TEST

/* ---- warnings and secrets (hardening) ----------------------------------- */

START_TEST(test_warn_writable_secret_files)
{
	char log[4096], path[256];
	struct config *c;

	write_file("shop.key", SECRET "\n");
	write_file("payrelayd.conf",
	    "[channel:shop]\nfamily = epay\nmerchant_id = 1001\n"
	    "key_file = shop.key\n");
	chmod(conf_path, 0600);
	snprintf(path, sizeof(path), "%s/shop.key", dir);

	chmod(path, 0600);
	ck_assert_ptr_nonnull(c = load_logged(NULL, log, sizeof(log)));
	config_free(c);
	ck_assert_msg(strstr(log, "writable") == NULL && strstr(log, "readable") == NULL,
	    "unexpected warning: %s", log);

	/* group-writable: a warning (payrelayd still starts) */
	chmod(path, 0620);
	ck_assert_ptr_nonnull(c = load_logged(NULL, log, sizeof(log)));
	config_free(c);
	ck_assert_msg(strstr(log, "secret file is writable by other users") != NULL, "%s", log);
	ck_assert_msg(strstr(log, "key=key_file") != NULL, "%s", log);
	ck_assert_ptr_null(strstr(log, SECRET));

	/* world-writable and world-readable: both said */
	chmod(path, 0606);
	ck_assert_ptr_nonnull(c = load_logged(NULL, log, sizeof(log)));
	config_free(c);
	ck_assert_msg(strstr(log, "secret file is writable by other users") != NULL, "%s", log);
	ck_assert_msg(strstr(log, "secret file is readable by every user") != NULL, "%s", log);

	/* the config file itself, writable by the group */
	chmod(path, 0600);
	chmod(conf_path, 0660);
	ck_assert_ptr_nonnull(c = load_logged(NULL, log, sizeof(log)));
	config_free(c);
	ck_assert_msg(strstr(log, "config file is writable by other users") != NULL, "%s", log);
	ck_assert_ptr_null(strstr(log, "secret file"));

	/* inline secrets in a world-writable config file */
	write_file("payrelayd.conf", minimal);
	chmod(conf_path, 0602);
	ck_assert_ptr_nonnull(c = load_logged(NULL, log, sizeof(log)));
	config_free(c);
	ck_assert_msg(strstr(log, "config file is writable by other users") != NULL, "%s", log);
	ck_assert_ptr_null(strstr(log, SECRET));

	/* a refused file warns about nothing: only its errors count */
	write_file("payrelayd.conf", "[channel:shop]\nfamily = epay\n");
	chmod(conf_path, 0666);
	ck_assert_ptr_null(load_logged(NULL, log, sizeof(log)));
	ck_assert_ptr_null(strstr(log, "writable"));
}
END_TEST

START_TEST(test_warn_epay_plain_http)
{
	char log[4096];
	struct config *c;

	write_file("payrelayd.conf",
	    "[channel:clear]\nfamily = epay\nmerchant_id = 1001\nkey = " SECRET "\n"
	    "api_base = HTTP://pay.example.com\n"
	    "[channel:tls]\nfamily = epay\nmerchant_id = 1001\nkey = " SECRET "\n"
	    "api_base = https://pay.example.com\n"
	    "[channel:gate]\nfamily = gatepay\nmerchant_id = 1001\nkey = " SECRET "\n"
	    "api_base = http://gate.example.com\n");
	chmod(conf_path, 0600);
	ck_assert_ptr_nonnull(c = load_logged(NULL, log, sizeof(log)));
	config_free(c);
	ck_assert_msg(strstr(log, "epay api_base is plain http") != NULL, "%s", log);
	ck_assert_msg(strstr(log, "channel=clear") != NULL, "%s", log);
	/* https, and a family whose queries do not carry the key: silent */
	ck_assert_ptr_null(strstr(log, "channel=tls"));
	ck_assert_ptr_null(strstr(log, "channel=gate"));
	ck_assert_ptr_null(strstr(log, SECRET));
}
END_TEST

START_TEST(test_mask_text)
{
	char b[64];
	size_t n;

	strcpy(b, "xKEYyKEYKEY");
	n = config_mask_text(b, strlen(b), "KEY", 3);
	ck_assert_str_eq(b, "x***y******");
	ck_assert_uint_eq(n, strlen(b));

	strcpy(b, "a-secret-value-at-the-end:SeCrEt1234");
	n = config_mask_text(b, strlen(b), "SeCrEt1234", 10);
	ck_assert_str_eq(b, "a-secret-value-at-the-end:***");
	ck_assert_uint_eq(n, strlen(b));

	/* short secrets keep the length; nothing to mask: untouched */
	strcpy(b, "abab");
	ck_assert_uint_eq(config_mask_text(b, 4, "b", 1), 4);
	ck_assert_str_eq(b, "a*a*");
	ck_assert_uint_eq(config_mask_text(b, 4, "zz", 2), 4);
	ck_assert_uint_eq(config_mask_text(b, 4, NULL, 0), 4);
	ck_assert_str_eq(b, "a*a*");
	/* "***" never rebuilds the secret */
	strcpy(b, "kkkk");
	config_mask_text(b, 4, "kk", 2);
	ck_assert_str_eq(b, "****");
}
END_TEST

START_TEST(test_mask_every_secret)
{
	static const char token[] = "admin-token-0123456789abcdef";
	static const char whsec[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
	static const char plain[] = "plain-webhook-secret-42";
	char text[1024];
	struct config *c;

	write_file("admin.token", "admin-token-0123456789abcdef\n");
	c = load("[admin]\ntoken_file = admin.token\n"
		 "[redis]\nurl = redis://user:redis-pass-xyz@127.0.0.1:6379/0\n"
		 "[channel:a]\nfamily = epay\nmerchant_id = 1\nkey = " SECRET "\n"
		 "[channel:b]\nfamily = payindex\nmerchant_id = 2\nkey = other-key-b\n"
		 "[webhook:w]\nurl = http://127.0.0.1/\n"
		 "secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw plain-webhook-secret-42\n");
	if (c == NULL)
		dump_errors();
	ck_assert_ptr_nonnull(c);
	snprintf(text, sizeof(text), "code 1: %s|%s|%s|%s|%s|%s|%s|%s", SECRET, "other-key-b",
	    token, whsec, whsec + 6, plain, "redis-pass-xyz", "ok");
	config_mask_secrets(c, text);
	ck_assert_str_eq(text, "code 1: ***|***|***|***|***|***|***|ok");
	/* longest first: the base64 part inside the whsec_ secret goes with it */
	ck_assert_uint_ge(c->nsecrets, 7);
	ck_assert_uint_ge(c->secrets[0].len, c->secrets[c->nsecrets - 1].len);
	config_mask_secrets(NULL, text);
	config_mask_secrets(c, NULL);

	/* the registry: cleared when its config is freed */
	config_set_masking(c);
	ck_assert_ptr_eq(config_masking(), c);
	config_free(c);
	ck_assert_ptr_null(config_masking());
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full_file);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_sentinels);
	tcase_add_test(tc, test_key_file);
	tcase_add_test(tc, test_forms);
	tcase_add_test(tc, test_rsa);
	tcase_add_test(tc, test_confirm);
	tcase_add_test(tc, test_line_errors);
	tcase_add_test(tc, test_delivery_retention);
	tcase_add_test(tc, test_syntax_errors);
	tcase_add_test(tc, test_many_errors);
	tcase_add_test(tc, test_no_secret_in_errors);
	tcase_add_test(tc, test_allow_from);
	tcase_add_test(tc, test_proxy_keys);
	tcase_add_test(tc, test_webhook_matches);
	tcase_add_test(tc, test_names_and_misc);
	tcase_add_test(tc, test_warn_writable_secret_files);
	tcase_add_test(tc, test_warn_epay_plain_http);
	tcase_add_test(tc, test_gateway_client_keys);
	tcase_add_test(tc, test_mask_text);
	tcase_add_test(tc, test_mask_every_secret);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(config_suite());
}
