/* The logger (src/core/log.c): one write(2) per line, the line format, escaping
 * of everything that comes from the network, truncation, and that every
 * log call in src/ uses only conversions log_emit formats.
 *
 * fd 2 is captured with an AF_UNIX datagram socket: every write(2) is one
 * datagram, so counting datagrams counts the logger's system calls, and
 * each datagram shows where a write of lines buffered by log_defer ends. */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"
#include "vectors.h"

static const char *src_dir; /* argv[1]: the source tree's src/ */

static int cap_fd = -1, saved_fd = -1;
static char got[8 * LOG_LINE_MAX];
static size_t got_len;
static int got_writes;
static size_t got_sizes[64]; /* of each write */

static void
capture_start(void)
{
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
	saved_fd = dup(STDERR_FILENO);
	ck_assert_int_ne(saved_fd, -1);
	ck_assert_int_eq(dup2(sv[1], STDERR_FILENO), STDERR_FILENO);
	close(sv[1]);
	cap_fd = sv[0];
	log_set_level(LOG_INFO);
}

static void
capture_stop(void)
{
	log_defer(NULL, NULL);
	dup2(saved_fd, STDERR_FILENO);
	close(saved_fd);
	close(cap_fd);
}

/* Reads every datagram (write) made since the last call into `got`. */
static void
collect(void)
{
	char buf[2 * LOG_LINE_MAX];
	ssize_t n;

	got_len = 0;
	got_writes = 0;
	while ((n = recv(cap_fd, buf, sizeof(buf), MSG_DONTWAIT)) >= 0) {
		ck_assert_uint_le(got_len + (size_t)n, sizeof(got) - 1);
		ck_assert_int_lt(got_writes, (int)(sizeof(got_sizes) / sizeof(got_sizes[0])));
		memcpy(got + got_len, buf, (size_t)n);
		got_len += (size_t)n;
		got_sizes[got_writes++] = (size_t)n;
	}
	ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s", strerror(errno));
	got[got_len] = '\0';
}

/* Exactly one write since the last call, one line ending in its only '\n'. */
static void
expect_one_line(void)
{
	collect();
	ck_assert_int_eq(got_writes, 1);
	ck_assert_uint_ge(got_len, 1);
	ck_assert_uint_le(got_len, LOG_LINE_MAX);
	ck_assert_int_eq(got[got_len - 1], '\n');
	ck_assert_ptr_eq(memchr(got, '\n', got_len), got + got_len - 1);
	ck_assert_uint_eq(strlen(got), got_len);
}

static void
expect_line(const char *want)
{
	expect_one_line();
	ck_assert_str_eq(got, want);
}

/* The old logger was vsnprintf: for ordinary values the line is what
 * printf makes of the same format. */
#define expect_as_printf(lvl, lname, msg, kv, ...) \
	do { \
		char want_[LOG_LINE_MAX]; \
		snprintf(want_, sizeof(want_), "level=" lname " msg=\"" msg "\" " kv "\n", \
		    __VA_ARGS__); \
		log_emit((lvl), (msg), kv, __VA_ARGS__); \
		expect_line(want_); \
	} while (0)

/* Whether `kv` occurs as a pair of its own: at the line's top level
 * (outside quotes, honouring \" inside them) at the start of a field. */
static bool
top_level_pair(const char *line, const char *kv)
{
	bool quoted = false;
	const char *p;

	for (p = line; *p != '\0'; p++) {
		if (quoted) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				quoted = false;
			continue;
		}
		if ((p == line || p[-1] == ' ') && strncmp(p, kv, strlen(kv)) == 0)
			return true;
		if (*p == '"')
			quoted = true;
	}
	return false;
}

START_TEST(test_ordinary_lines_are_unchanged)
{
	log_emit(LOG_INFO, "ready", "channels=%zu webhooks=%zu instance=%s", (size_t)3, (size_t)1,
	    "host-1:4242");
	expect_line("level=info msg=\"ready\" channels=3 webhooks=1 instance=host-1:4242\n");

	log_emit(LOG_WARN, "callback refused",
	    "channel=%.64s reason=\"%s\" peer=%s trade_no=\"%.64s\"", "shop-epay", "bad signature",
	    "127.0.0.1", "20160806151343349021");
	expect_line(
	    "level=warn msg=\"callback refused\" channel=shop-epay reason=\"bad signature\" "
	    "peer=127.0.0.1 trade_no=\"20160806151343349021\"\n");

	log_emit(LOG_INFO, "callback recorded",
	    "channel=%s event=%s type=%s trade_no=\"%.64s\" out_trade_no=\"%.64s\" "
	    "amount_fen=%lld",
	    "shop-epay", "ev_0123abcd", "order.paid", "T1", "VIP会员-20160806", (long long)100);
	expect_line("level=info msg=\"callback recorded\" channel=shop-epay event=ev_0123abcd "
		    "type=order.paid trade_no=\"T1\" out_trade_no=\"VIP会员-20160806\" "
		    "amount_fen=100\n");

	log_emit(LOG_ERROR, "redis connected", "");
	expect_line("level=error msg=\"redis connected\"\n");

	log_emit(LOG_DEBUG, "connection closed, no whole request in time", "fd=%d", 7);
	expect_line("level=debug msg=\"connection closed, no whole request in time\" fd=7\n");

	log_emit(LOG_INFO, "listening", "addr=%s port=%u peer=%s", "[::1]", 8787u, "");
	expect_line("level=info msg=\"listening\" addr=[::1] port=8787 peer=\n");
}
END_TEST

START_TEST(test_numbers_as_printf)
{
	expect_as_printf(LOG_INFO, "info", "n", "a=%d b=%d c=%d d=%d", 0, -1, INT_MIN, INT_MAX);
	expect_as_printf(LOG_WARN, "warn", "n", "a=%u b=%u c=%x d=%x", 0u, UINT_MAX, 0xdeadbeefu,
	    0u);
	expect_as_printf(LOG_INFO, "info", "n", "a=%ld b=%ld c=%lu d=%lx", LONG_MIN, LONG_MAX,
	    ULONG_MAX, 255ul);
	expect_as_printf(LOG_INFO, "info", "n", "a=%lld b=%lld c=%llu d=%llx", LLONG_MIN, LLONG_MAX,
	    ULLONG_MAX, 0x1234567890abcdefull);
	expect_as_printf(LOG_ERROR, "error", "n", "a=%zu b=%zx c=%zd d=%zd", SIZE_MAX, (size_t)4096,
	    (ssize_t)-5, (ssize_t)12);
	expect_as_printf(LOG_INFO, "info", "n", "pct=%d%% s=%.3s t=\"%.2s\" u=%s", 50, "abcdef",
	    "xyz", "a.b:c/d-e+f@g,h*i[j]k_l");
}
END_TEST

START_TEST(test_precision_reads_no_further)
{
	char buf[4] = { 'a', 'b', 'c', 'd' }; /* not NUL-terminated */

	log_emit(LOG_INFO, "m", "v=%.4s w=\"%.2s\"", buf, buf);
	expect_line("level=info msg=\"m\" v=abcd w=\"ab\"\n");
	/* The precision counts bytes, as printf's: a cut character is escaped. */
	log_emit(LOG_INFO, "m", "v=\"%.4s\"", "VIP会员");
	expect_line("level=info msg=\"m\" v=\"VIP\\xe4\"\n");
}
END_TEST

START_TEST(test_quoted_values_are_escaped)
{
	log_emit(LOG_INFO, "m", "v=\"%s\"", "a\"b\\c");
	expect_line("level=info msg=\"m\" v=\"a\\\"b\\\\c\"\n");
	/* A trailing backslash cannot escape the closing quote. */
	log_emit(LOG_INFO, "m", "v=\"%s\" w=1", "x\\");
	expect_line("level=info msg=\"m\" v=\"x\\\\\" w=1\n");
	log_emit(LOG_INFO, "m", "v=\"%s\"", "\n\r\t\x1b\x7f\x01 end");
	expect_line("level=info msg=\"m\" v=\"\\x0a\\x0d\\x09\\x1b\\x7f\\x01 end\"\n");
}
END_TEST

START_TEST(test_utf8)
{
	/* valid and printable: kept */
	log_emit(LOG_INFO, "m", "v=\"%s\"", "VIP会员 café 😀");
	expect_line("level=info msg=\"m\" v=\"VIP会员 café 😀\"\n");
	/* lone continuation, 0xff, overlong '/', surrogate, above U+10FFFF,
	 * overlong 3-byte, a sequence cut by the end of the value */
	log_emit(LOG_INFO, "m", "v=\"%s\"",
	    "\x80|\xff|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe0\x80\xaf|\xe4\xbc");
	expect_line("level=info msg=\"m\" v=\"\\x80|\\xff|\\xc0\\xaf|\\xed\\xa0\\x80|"
		    "\\xf4\\x90\\x80\\x80|\\xe0\\x80\\xaf|\\xe4\\xbc\"\n");
	/* a sequence broken by an ASCII byte: the ASCII byte stays */
	log_emit(LOG_INFO, "m", "v=\"%s\"", "\xe4\xbc\"x");
	expect_line("level=info msg=\"m\" v=\"\\xe4\\xbc\\\"x\"\n");
	/* C1 NEL, U+2028 line separator, U+202E right-to-left override, BOM */
	log_emit(LOG_INFO, "m", "v=\"%s\"", "\xc2\x85|\xe2\x80\xa8|\xe2\x80\xae|\xef\xbb\xbf");
	expect_line("level=info msg=\"m\" v=\"\\xc2\\x85|\\xe2\\x80\\xa8|\\xe2\\x80\\xae|"
		    "\\xef\\xbb\\xbf\"\n");
}
END_TEST

START_TEST(test_quoted_value_cannot_forge_a_pair)
{
	/* ingest_log_refusal's format, with trade_no from the network */
	log_emit(LOG_WARN, "callback refused",
	    "channel=%.64s reason=\"%s\" peer=%s trade_no=\"%.64s\"", "shop-epay", "bad signature",
	    "127.0.0.1", "x\" reason=\"ok");
	expect_line(
	    "level=warn msg=\"callback refused\" channel=shop-epay reason=\"bad signature\" "
	    "peer=127.0.0.1 trade_no=\"x\\\" reason=\\\"ok\"\n");
	ck_assert_ptr_null(strstr(got, "reason=\"ok\""));
	ck_assert(!top_level_pair(got, "reason=\"ok"));
	ck_assert(top_level_pair(got, "reason=\"bad signature\""));
	ck_assert(top_level_pair(got, "trade_no="));

	log_emit(LOG_WARN, "callback refused", "trade_no=\"%.64s\" reason=\"%s\"",
	    "x\nlevel=error msg=\"forged\" reason=\"ok", "bad signature");
	expect_one_line();
	ck_assert(!top_level_pair(got, "reason=\"ok"));
	ck_assert(!top_level_pair(got, "level=error"));
	ck_assert(!top_level_pair(got, "msg=\"forged"));
}
END_TEST

START_TEST(test_unquoted_value_cannot_forge_a_pair)
{
	log_emit(LOG_WARN, "m", "peer=%s n=%d", "1.2.3.4 reason=ok", 1);
	expect_line("level=warn msg=\"m\" peer=\"1.2.3.4 reason=ok\" n=1\n");
	ck_assert(!top_level_pair(got, "reason=ok"));

	log_emit(LOG_WARN, "m", "channel=%.64s n=%d", "a=b", 2);
	expect_line("level=warn msg=\"m\" channel=\"a=b\" n=2\n");
	log_emit(LOG_WARN, "m", "channel=%s", "x\" reason=\"ok");
	expect_line("level=warn msg=\"m\" channel=\"x\\\" reason=\\\"ok\"\n");
	ck_assert(!top_level_pair(got, "reason=\"ok"));
	log_emit(LOG_WARN, "m", "channel=%s", "a\nlevel=error");
	expect_line("level=warn msg=\"m\" channel=\"a\\x0alevel=error\"\n");
	log_emit(LOG_WARN, "m", "channel=%s", "会员");
	expect_line("level=warn msg=\"m\" channel=\"会员\"\n");
	/* what the code logs unquoted today */
	log_emit(LOG_WARN, "callback not recorded, answered 503", "reason=%s", "redis timeout");
	expect_line("level=warn msg=\"callback not recorded, answered 503\" "
		    "reason=\"redis timeout\"\n");
}
END_TEST

START_TEST(test_msg_and_format_text_are_escaped)
{
	log_emit(LOG_INFO, "say \"hi\" \\ now\n", "a=%d", 1);
	expect_line("level=info msg=\"say \\\"hi\\\" \\\\ now\\x0a\" a=1\n");
	log_emit(LOG_INFO, "m", "a=%d\tb=%d\n", 1, 2);
	expect_line("level=info msg=\"m\" a=1\\x09b=2\\x0a\n");
}
END_TEST

START_TEST(test_one_write_per_line)
{
	int i;

	errno = EACCES;
	for (i = 0; i < 3; i++)
		log_emit(LOG_INFO, "callback recorded",
		    "channel=%s event=%s trade_no=\"%.64s\" amount_fen=%lld", "shop-epay", "ev_1",
		    "T\"1\n", (long long)i);
	ck_assert_int_eq(errno, EACCES); /* the caller's errno survives */
	collect();
	ck_assert_int_eq(got_writes, 3);
	ck_assert_str_eq(got,
	    "level=info msg=\"callback recorded\" channel=shop-epay event=ev_1 "
	    "trade_no=\"T\\\"1\\x0a\" amount_fen=0\n"
	    "level=info msg=\"callback recorded\" channel=shop-epay event=ev_1 "
	    "trade_no=\"T\\\"1\\x0a\" amount_fen=1\n"
	    "level=info msg=\"callback recorded\" channel=shop-epay event=ev_1 "
	    "trade_no=\"T\\\"1\\x0a\" amount_fen=2\n");

	/* Below the level: nothing written, the arguments not even read. */
	log_debug("nothing", "a=%s", "b");
	collect();
	ck_assert_int_eq(got_writes, 0);
}
END_TEST

/* The text between `prefix` at the start of `got` and `suffix` at its end. */
static const char *
between(const char *prefix, const char *suffix, size_t *n)
{
	size_t pl = strlen(prefix), sl = strlen(suffix);

	ck_assert_uint_ge(got_len, pl + sl);
	ck_assert_msg(strncmp(got, prefix, pl) == 0, "line starts %.60s", got);
	ck_assert_msg(strcmp(got + got_len - sl, suffix) == 0, "line ends %s",
	    got + got_len - (sl + 40 < got_len ? sl + 40 : got_len));
	*n = got_len - pl - sl;
	return got + pl;
}

/* log_defer: the arm function counts its calls and clobbers errno, as a
 * real one (event_active) may. */
static int armed_calls;
static void *armed_arg;

static void
count_arm(void *arg)
{
	armed_calls++;
	armed_arg = arg;
	errno = ENOSPC;
}

/* Lines from the network, escaped, quoted, marked and cut: each call's
 * bytes must be the same whether the line is deferred or not. */
static void
emit_hostile(int round)
{
	static char big[2 * LOG_LINE_MAX];

	log_emit(LOG_INFO, "callback recorded",
	    "channel=%s event=%s trade_no=\"%.64s\" out_trade_no=\"%.64s\" amount_fen=%lld",
	    "shop-epay", "ev_1", "x\" reason=\"ok\nlevel=error", "VIP会员\xe2\x80\xae\xff",
	    (long long)round);
	log_emit(LOG_DEBUG, "m", "peer=%s n=%d", "1.2.3.4 reason=ok", round);
	log_emit(LOG_INFO, "say \"hi\" \\ now\n", "a=%d\tb=%d c=%f", 1, 2, 3.0);
	log_emit(LOG_INFO, "m", "pct=%d%% z=%zu x=%x", -7, (size_t)round, 255u);
	if (round == 0)
		return;
	/* a line cut short of LOG_LINE_MAX */
	memset(big, '\x01', sizeof(big) - 1);
	log_emit(LOG_INFO, "m", "v=\"%s\" after=1", big);
}

/* Each write since the last collect() holds whole lines of at most
 * LOG_LINE_MAX bytes. */
static void
expect_whole_writes(void)
{
	size_t off = 0;
	int i;

	for (i = 0; i < got_writes; i++) {
		ck_assert_uint_ge(got_sizes[i], 1);
		ck_assert_uint_le(got_sizes[i], LOG_LINE_MAX);
		off += got_sizes[i];
		ck_assert_int_eq(got[off - 1], '\n');
	}
	ck_assert_uint_eq(off, got_len);
}

START_TEST(test_deferred_lines_are_the_same_bytes)
{
	static char want[sizeof(got)];
	size_t want_len, cut_len;
	int round;

	log_set_level(LOG_DEBUG);
	for (round = 0; round < 2; round++) {
		emit_hostile(round);
		collect();
		ck_assert_int_eq(got_writes, round == 0 ? 4 : 5);
		memcpy(want, got, got_len + 1);
		want_len = got_len;
		cut_len = round == 1 ? got_sizes[4] : 0;
		if (round == 1) {
			ck_assert_uint_gt(cut_len, LOG_LINE_MAX - 64);
			ck_assert_str_eq(got + got_len - 13, " truncated=1\n");
		}

		log_defer(count_arm, &round);
		emit_hostile(round);
		if (round == 1) {
			/* the cut line fills a buffer of its own */
			collect();
			ck_assert_int_eq(got_writes, 1);
			ck_assert_uint_eq(got_len, want_len - cut_len);
		} else {
			collect();
			ck_assert_int_eq(got_writes, 0); /* nothing before log_flush */
		}
		errno = EACCES;
		log_flush();
		ck_assert_int_eq(errno, EACCES);
		log_flush(); /* nothing left: no write */
		if (round == 1) {
			size_t first = want_len - cut_len;
			char rest[LOG_LINE_MAX + 1];

			memcpy(rest, got, first);
			collect();
			ck_assert_int_eq(got_writes, 1);
			ck_assert_uint_eq(got_len, cut_len);
			memmove(got + first, got, got_len + 1);
			memcpy(got, rest, first);
			got_len += first;
		} else {
			collect();
			ck_assert_int_eq(got_writes, 1);
		}
		ck_assert_uint_eq(got_len, want_len);
		ck_assert_int_eq(memcmp(got, want, want_len), 0);
		log_defer(NULL, NULL);
	}
}
END_TEST

START_TEST(test_defer_arms_once_per_flush)
{
	int token;

	armed_calls = 0;
	log_defer(count_arm, &token);
	ck_assert_int_eq(armed_calls, 0);
	errno = EACCES;
	log_info("one", "n=%d", 1);
	ck_assert_int_eq(errno, EACCES); /* not even arm's errno leaks */
	ck_assert_int_eq(armed_calls, 1);
	ck_assert_ptr_eq(armed_arg, &token);
	log_info("two", "n=%d", 2);
	log_debug("below the level", "n=%d", 3);
	ck_assert_int_eq(armed_calls, 1);
	log_flush();
	collect();
	ck_assert_int_eq(got_writes, 1);
	ck_assert_str_eq(got, "level=info msg=\"one\" n=1\nlevel=info msg=\"two\" n=2\n");

	/* empty again: the next line arms again, once */
	log_info("three", "");
	log_info("four", "");
	ck_assert_int_eq(armed_calls, 2);
	log_flush();
	collect();
	ck_assert_int_eq(got_writes, 1);

	/* a warn line empties the buffer, but the flush asked for has not
	 * come: no second call */
	log_info("five", "");
	ck_assert_int_eq(armed_calls, 3);
	log_warnx("six", "");
	log_info("seven", "");
	ck_assert_int_eq(armed_calls, 3);
	log_flush();
	collect();
	ck_assert_int_eq(got_writes, 2);
	ck_assert_str_eq(got,
	    "level=info msg=\"five\"\nlevel=warn msg=\"six\"\n"
	    "level=info msg=\"seven\"\n");

	/* a warn line alone, and log_flush with nothing buffered: no call */
	log_warnx("eight", "");
	log_flush();
	ck_assert_int_eq(armed_calls, 3);
	collect();
	ck_assert_int_eq(got_writes, 1);
}
END_TEST

START_TEST(test_warn_writes_buffered_lines_first)
{
	static char filler[LOG_LINE_MAX];
	const char *body;
	size_t n;
	int token;

	armed_calls = 0;
	log_defer(count_arm, &token);
	log_info("a", "");
	log_debug("b", ""); /* below the level */
	log_info("c", "");
	log_warnx("d", "trade_no=\"%s\"", "x\ny");
	/* no log_flush: the warn line took the info lines with it, in order,
	 * in one write since they all fit */
	collect();
	ck_assert_int_eq(got_writes, 1);
	ck_assert_str_eq(got,
	    "level=info msg=\"a\"\nlevel=info msg=\"c\"\n"
	    "level=warn msg=\"d\" trade_no=\"x\\x0ay\"\n");
	log_info("e", "");
	log_errorx("f", "");
	collect();
	ck_assert_int_eq(got_writes, 1);
	ck_assert_str_eq(got, "level=info msg=\"e\"\nlevel=error msg=\"f\"\n");

	/* they do not fit together: the buffer, then the warn line */
	memset(filler, 'a', 3000);
	log_info("g", "v=%s", filler);
	log_warnx("h", "v=%s", filler);
	collect();
	ck_assert_int_eq(got_writes, 2);
	ck_assert_uint_eq(got_sizes[0], strlen("level=info msg=\"g\" v=\n") + 3000);
	ck_assert_uint_eq(got_sizes[1], strlen("level=warn msg=\"h\" v=\n") + 3000);
	got[got_sizes[0]] = '\0';
	got_len = got_sizes[0];
	body = between("level=info msg=\"g\" v=", "\n", &n);
	ck_assert_uint_eq(n, 3000);
	ck_assert_int_eq(body[0], 'a');
	log_flush();
	collect();
	ck_assert_int_eq(got_writes, 0);
}
END_TEST

START_TEST(test_deferred_writes_are_whole_lines_up_to_pipe_buf)
{
	static char want[sizeof(got)], v[LOG_LINE_MAX];
	size_t want_len = 0, off, next;
	int defer, i, token;

	/* 60 lines of growing length, a cut one in the middle: > 4096 bytes */
	for (defer = 0; defer < 2; defer++) {
		if (defer)
			log_defer(count_arm, &token);
		for (i = 0; i < 60; i++) {
			if (i == 30) {
				memset(v, 'c', sizeof(v) - 1);
				log_info("cut", "v=%s", v);
			}
			memset(v, 'a' + i % 26, (size_t)i * 7);
			v[i * 7] = '\0';
			log_info("line", "i=%d v=%s", i, v);
			if (!defer) {
				/* one datagram per line: read them as they come */
				collect();
				ck_assert_int_eq(got_writes, i == 30 ? 2 : 1);
				ck_assert_uint_le(want_len + got_len, sizeof(want) - 1);
				memcpy(want + want_len, got, got_len);
				want_len += got_len;
			}
		}
		if (!defer) {
			want[want_len] = '\0';
			ck_assert_uint_gt(want_len, 3 * LOG_LINE_MAX);
			continue;
		}
		log_flush();
		collect();
		expect_whole_writes();
		/* as few writes as whole lines allow: each but the last one
		 * was written because the next line did not fit */
		for (i = 0, off = 0; i + 1 < got_writes; i++) {
			off += got_sizes[i];
			next = (size_t)((const char *)memchr(want + off, '\n', want_len - off) -
				   (want + off)) +
			    1;
			ck_assert_uint_gt(got_sizes[i] + next, LOG_LINE_MAX);
		}
		ck_assert_int_ge(got_writes, 4);
		ck_assert_uint_eq(got_len, want_len);
		ck_assert_int_eq(memcmp(got, want, want_len), 0);
	}
}
END_TEST

START_TEST(test_defer_off_is_unchanged)
{
	int token;

	armed_calls = 0;
	/* off, and what was buffered is written when it goes off */
	log_defer(count_arm, &token);
	log_info("a", "");
	log_info("b", "");
	collect();
	ck_assert_int_eq(got_writes, 0);
	log_defer(NULL, NULL);
	collect();
	ck_assert_int_eq(got_writes, 1);
	ck_assert_str_eq(got, "level=info msg=\"a\"\nlevel=info msg=\"b\"\n");

	log_info("c", "");
	log_debug("below", "");
	log_info("d", "");
	collect();
	ck_assert_int_eq(got_writes, 2);
	ck_assert_int_eq(armed_calls, 1);
	log_flush(); /* nothing buffered: nothing written */
	collect();
	ck_assert_int_eq(got_writes, 0);

	/* a new arm function: the old one is never called again */
	log_defer(count_arm, &token);
	log_info("e", "");
	log_defer(count_arm, NULL);
	collect();
	ck_assert_int_eq(got_writes, 1);
	log_info("f", "");
	ck_assert_int_eq(armed_calls, 3);
	ck_assert_ptr_null(armed_arg);
}
END_TEST

START_TEST(test_long_lines_are_cut_not_split)
{
	static char big[3 * LOG_LINE_MAX];
	const char *body;
	size_t n, i;

	/* quoted: the quote is closed, the pairs after are left out */
	memset(big, 'a', sizeof(big) - 1);
	log_emit(LOG_INFO, "m", "v=\"%s\" after=1", big);
	expect_one_line();
	body = between("level=info msg=\"m\" v=\"", "\" truncated=1\n", &n);
	ck_assert_uint_gt(n, LOG_LINE_MAX - 64);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(body[i], 'a');

	/* unquoted */
	log_emit(LOG_INFO, "m", "v=%s", big);
	expect_one_line();
	between("level=info msg=\"m\" v=", "a truncated=1\n", &n);

	/* never inside a UTF-8 character */
	for (i = 0; i + 3 < sizeof(big); i += 3)
		memcpy(big + i, "会", 3);
	big[i] = '\0';
	log_emit(LOG_INFO, "m", "v=\"%s\"", big);
	expect_one_line();
	body = between("level=info msg=\"m\" v=\"", "\" truncated=1\n", &n);
	ck_assert_uint_eq(n % 3, 0);
	for (i = 0; i < n; i += 3)
		ck_assert_int_eq(memcmp(body + i, "会", 3), 0);

	/* never inside an escape */
	memset(big, '\x01', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_emit(LOG_INFO, "m", "v=\"%s\"", big);
	expect_one_line();
	body = between("level=info msg=\"m\" v=\"", "\" truncated=1\n", &n);
	ck_assert_uint_eq(n % 4, 0);
	for (i = 0; i < n; i += 4)
		ck_assert_int_eq(memcmp(body + i, "\\x01", 4), 0);

	/* an auto-quoted value is closed too */
	memset(big, ' ', sizeof(big) - 1);
	log_emit(LOG_INFO, "m", "peer=%s", big);
	expect_one_line();
	between("level=info msg=\"m\" peer=\"", " \" truncated=1\n", &n);

	/* a number is left out whole rather than shortened */
	for (i = 1000, n = 0; i < 1100; i++) {
		memset(big, 'a', i);
		big[i] = '\0';
		log_emit(LOG_INFO, "m", "v=%s %s %s %s n=%llu", big, big, big, big, ULLONG_MAX);
		expect_one_line();
		if (strstr(got, " n=") == NULL)
			continue;
		if (strcmp(got + got_len - 16, " n= truncated=1\n") == 0)
			n++;
		else
			ck_assert_str_eq(got + got_len - 24, " n=18446744073709551615\n");
	}
	ck_assert_uint_gt(n, 0);
}
END_TEST

START_TEST(test_unsupported_conversion_is_marked)
{
	log_emit(LOG_INFO, "m", "a=%d b=%f c=%s", 1, 2.0, "x");
	expect_line("level=info msg=\"m\" a=1 b= format_error=1\n");
	log_emit(LOG_INFO, "m", "a=\"%5s\" c=%s", "x", "y");
	expect_line("level=info msg=\"m\" a=\"\" format_error=1\n");

	ck_assert(log_format_supported("a=%s b=%.64s c=\"%s\" d=%d e=%u f=%x g=%%"));
	ck_assert(log_format_supported("a=%ld b=%lld c=%llu d=%zu e=%zx f=%lu"));
	ck_assert(log_format_supported(""));
	ck_assert(!log_format_supported("a=%f"));
	ck_assert(!log_format_supported("a=%5d"));
	ck_assert(!log_format_supported("a=%-s"));
	ck_assert(!log_format_supported("a=%.*s"));
	ck_assert(!log_format_supported("a=%.3d"));
	ck_assert(!log_format_supported("a=%ls"));
	ck_assert(!log_format_supported("a=%p"));
	ck_assert(!log_format_supported("a=%c"));
	ck_assert(!log_format_supported("a=%hd"));
	ck_assert(!log_format_supported("a=%"));
	ck_assert(!log_format_supported("a=\"%s")); /* an unclosed quote */
}
END_TEST

/* --- every log call in src/ -------------------------------------------- */

static const char *
skip_space(const char *p)
{
	for (;;) {
		if (isspace((unsigned char)*p))
			p++;
		else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");

			p = e != NULL ? e + 2 : p + strlen(p);
		} else if (p[0] == '/' && p[1] == '/')
			p += strcspn(p, "\n");
		else
			return p;
	}
}

/* Past the string or character literal at p[0] (a quote). */
static const char *
skip_literal(const char *p)
{
	char q = *p++;

	while (*p != '\0' && *p != q) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		p++;
	}
	return *p == q ? p + 1 : p;
}

/* Concatenates the adjacent string literals at p into out; NULL when p
 * is not at a string literal. Knows the escapes that matter here. */
static const char *
read_literals(const char *p, char *out, size_t n)
{
	size_t len = 0;

	p = skip_space(p);
	if (*p != '"')
		return NULL;
	while (*p == '"') {
		for (p++; *p != '\0' && *p != '"'; p++) {
			char c = *p;

			if (c == '\\') {
				c = *++p;
				c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
			}
			ck_assert_uint_lt(len, n - 1);
			out[len++] = c;
		}
		ck_assert_int_eq(*p, '"');
		p = skip_space(p + 1);
	}
	out[len] = '\0';
	return p;
}

/* Past one argument: at the ',' or ')' that ends it. */
static const char *
skip_arg(const char *p)
{
	int depth = 0;

	for (;;) {
		p = skip_space(p);
		if (*p == '\0' || (depth == 0 && (*p == ',' || *p == ')')))
			return p;
		if (*p == '"' || *p == '\'')
			p = skip_literal(p);
		else {
			if (*p == '(' || *p == '[' || *p == '{')
				depth++;
			else if (*p == ')' || *p == ']' || *p == '}')
				depth--;
			p++;
		}
	}
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s;
	long n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	s = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
	s[n] = '\0';
	fclose(f);
	return s;
}

/* Checks every log call of one file; returns how many there are. */
static size_t
check_calls(const char *path)
{
	static const char *const names[] = { "log_debug", "log_info", "log_warnx", "log_errorx",
		"fatalx", "log_emit", "log_at" };
	char *src = slurp(path), msg[1024], kv[1024];
	const char *p = src, *id;
	size_t calls = 0, i, idlen;
	int line;

	while (*p != '\0') {
		const char *q = skip_space(p);

		if (q != p) {
			p = q;
			continue;
		}
		if (*p == '"' || *p == '\'') {
			p = skip_literal(p);
			continue;
		}
		if (!(isalpha((unsigned char)*p) || *p == '_')) {
			p++;
			continue;
		}
		for (id = p; isalnum((unsigned char)*p) || *p == '_'; p++)
			;
		idlen = (size_t)(p - id);
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strlen(names[i]) == idlen && strncmp(id, names[i], idlen) == 0)
				break;
		if (i == sizeof(names) / sizeof(names[0]) || *(q = skip_space(p)) != '(')
			continue;
		for (line = 1, q = src; q < id; q++)
			line += *q == '\n';
		p = skip_space(p) + 1;
		if (strcmp(names[i], "log_emit") == 0 || strcmp(names[i], "log_at") == 0) {
			p = skip_arg(p); /* the level */
			ck_assert_msg(*p == ',', "%s:%d: no level", path, line);
			p++;
		}
		p = read_literals(p, msg, sizeof(msg));
		ck_assert_msg(p != NULL && *p == ',', "%s:%d: msg is not a string literal", path,
		    line);
		p = read_literals(p + 1, kv, sizeof(kv));
		ck_assert_msg(p != NULL && (*p == ',' || *p == ')'),
		    "%s:%d: kv is not a string literal", path, line);
		ck_assert_msg(log_format_supported(kv), "%s:%d: log_emit cannot format \"%s\"",
		    path, line, kv);
		calls++;
	}
	free(src);
	return calls;
}

/* Checks the log calls of every .c and .h in `dir` and its subdirectories
 * (src/ is grouped by program, docs/architecture.md); counts files and
 * calls. */
static void
check_tree(const char *dir, size_t *files, size_t *calls)
{
	DIR *d;
	struct dirent *e;
	struct stat st;
	char path[PATH_MAX];
	size_t n;

	d = opendir(dir);
	ck_assert_msg(d != NULL, "%s: %s", dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ck_assert_msg(stat(path, &st) == 0, "%s: %s", path, strerror(errno));
		if (S_ISDIR(st.st_mode)) {
			check_tree(path, files, calls);
			continue;
		}
		n = strlen(e->d_name);
		if (n < 3 ||
		    (strcmp(e->d_name + n - 2, ".c") != 0 && strcmp(e->d_name + n - 2, ".h") != 0))
			continue;
		/* the logger itself: its declarations and macros are no calls */
		if (strcmp(e->d_name, "log.c") == 0 || strcmp(e->d_name, "log.h") == 0)
			continue;
		*calls += check_calls(path);
		(*files)++;
	}
	closedir(d);
}

START_TEST(test_every_call_site_format_is_supported)
{
	size_t calls = 0, files = 0;

	ck_assert_msg(src_dir != NULL, "usage: test_log SRC_DIR");
	check_tree(src_dir, &files, &calls);
	ck_assert_uint_gt(files, 10);
	/* the scanner found the calls (about 80 when this was written) */
	ck_assert_uint_gt(calls, 60);
}
END_TEST

int
main(int argc, char **argv)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	src_dir = argc > 1 ? argv[1] : NULL;
	tcase_add_checked_fixture(tc, capture_start, capture_stop);
	tcase_add_test(tc, test_ordinary_lines_are_unchanged);
	tcase_add_test(tc, test_numbers_as_printf);
	tcase_add_test(tc, test_precision_reads_no_further);
	tcase_add_test(tc, test_quoted_values_are_escaped);
	tcase_add_test(tc, test_utf8);
	tcase_add_test(tc, test_quoted_value_cannot_forge_a_pair);
	tcase_add_test(tc, test_unquoted_value_cannot_forge_a_pair);
	tcase_add_test(tc, test_msg_and_format_text_are_escaped);
	tcase_add_test(tc, test_one_write_per_line);
	tcase_add_test(tc, test_long_lines_are_cut_not_split);
	tcase_add_test(tc, test_unsupported_conversion_is_marked);
	tcase_add_test(tc, test_deferred_lines_are_the_same_bytes);
	tcase_add_test(tc, test_defer_arms_once_per_flush);
	tcase_add_test(tc, test_warn_writes_buffered_lines_first);
	tcase_add_test(tc, test_deferred_writes_are_whole_lines_up_to_pipe_buf);
	tcase_add_test(tc, test_defer_off_is_unchanged);
	tcase_add_test(tc, test_every_call_site_format_is_supported);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
