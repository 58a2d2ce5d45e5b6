/* The PROXY protocol header parser (SPEC §3.1): v1 and v2, whole, cut
 * short at every byte, garbage, families other than TCP4/TCP6, LOCAL. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>

#include "proxyproto.h"
#include "vectors.h"

static const unsigned char sig[12] = { '\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T',
	'\n' };

static int
parse(const void *b, size_t n, struct proxyproto *pp, const char **why)
{
	return proxyproto_parse(b, n, pp, why);
}

static void
check_v4(const struct proxyproto *pp, const char *addr, unsigned port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&pp->src;
	char s[INET_ADDRSTRLEN];

	ck_assert(!pp->local);
	ck_assert_int_eq(sin->sin_family, AF_INET);
	ck_assert_ptr_nonnull(inet_ntop(AF_INET, &sin->sin_addr, s, sizeof(s)));
	ck_assert_str_eq(s, addr);
	ck_assert_uint_eq(ntohs(sin->sin_port), port);
}

static void
check_v6(const struct proxyproto *pp, const char *addr, unsigned port)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&pp->src;
	char s[INET6_ADDRSTRLEN];

	ck_assert(!pp->local);
	ck_assert_int_eq(sin6->sin6_family, AF_INET6);
	ck_assert_ptr_nonnull(inet_ntop(AF_INET6, &sin6->sin6_addr, s, sizeof(s)));
	ck_assert_str_eq(s, addr);
	ck_assert_uint_eq(ntohs(sin6->sin6_port), port);
}

/* Every proper prefix of a good header asks for more. */
static void
check_prefixes(const unsigned char *b, size_t n)
{
	struct proxyproto pp;
	const char *why;
	size_t i;

	for (i = 0; i < n; i++)
		ck_assert_msg(parse(b, i, &pp, &why) == 0, "prefix of %zu bytes: %s", i,
		    why != NULL ? why : "complete");
}

START_TEST(test_v1_tcp4)
{
	const char h[] = "PROXY TCP4 192.0.2.7 127.0.0.1 56324 8787\r\nGET / HTTP/1.1\r\n";
	size_t hl = strlen("PROXY TCP4 192.0.2.7 127.0.0.1 56324 8787\r\n");
	struct proxyproto pp;
	const char *why;

	ck_assert_int_eq(parse(h, strlen(h), &pp, &why), (int)hl);
	ck_assert_int_eq(pp.version, 1);
	check_v4(&pp, "192.0.2.7", 56324);
	/* Exactly the header, nothing after it. */
	ck_assert_int_eq(parse(h, hl, &pp, &why), (int)hl);
	check_prefixes((const unsigned char *)h, hl);
}
END_TEST

START_TEST(test_v1_tcp6_and_unknown)
{
	const char h6[] = "PROXY TCP6 2001:db8::1 ::1 65535 443\r\n";
	const char hu[] = "PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\n";
	const char hu2[] = "PROXY UNKNOWN\r\n";
	struct proxyproto pp;
	const char *why;

	ck_assert_int_eq(parse(h6, strlen(h6), &pp, &why), (int)strlen(h6));
	check_v6(&pp, "2001:db8::1", 65535);
	check_prefixes((const unsigned char *)h6, strlen(h6));
	ck_assert_int_eq(parse(hu, strlen(hu), &pp, &why), (int)strlen(hu));
	ck_assert(pp.local);
	ck_assert_int_eq(parse(hu2, strlen(hu2), &pp, &why), (int)strlen(hu2));
	ck_assert(pp.local);
}
END_TEST

START_TEST(test_v1_bad)
{
	static const char *const bad[] = {
		"PROXY TCP4 192.0.2.7 127.0.0.1 56324 8787\n",  /* LF only */
		"PROXY TCP4 192.0.2.7 127.0.0.1 56324 8787\rX", /* CR then not LF */
		"PROXY UNK\nWN\r",                              /* LF, then CR last */
		"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n",     /* wrong family */
		"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",             /* wrong family */
		"PROXY UDP4 192.0.2.7 127.0.0.1 1 2\r\n",       /* not TCP */
		"PROXY TCP4 192.0.2.7 127.0.0.1 1\r\n",         /* four fields */
		"PROXY TCP4 192.0.2.7 127.0.0.1 1 2 3\r\n",     /* six fields */
		"PROXY TCP4 192.0.2.7  127.0.0.1 1 2\r\n",      /* two spaces */
		"PROXY TCP4 192.0.2.7 127.0.0.1 1 2 \r\n",      /* trailing space */
		"PROXY TCP4 192.0.2.7 127.0.0.1 65536 2\r\n",   /* port too big */
		"PROXY TCP4 192.0.2.7 127.0.0.1 080 2\r\n",     /* leading zero */
		"PROXY TCP4 192.0.2.7 127.0.0.1 -1 2\r\n",      /* sign */
		"PROXY TCP4 192.0.2.300 127.0.0.1 1 2\r\n",     /* not an address */
		"PROXY \r\n",                                   /* no protocol */
		"PROXYTCP4 192.0.2.7 127.0.0.1 1 2\r\n",        /* no space */
		"proxy TCP4 192.0.2.7 127.0.0.1 1 2\r\n",       /* lower case */
		"GET /notify/x HTTP/1.1\r\n",                   /* no header at all */
		"POST /",                                       /* ... already seen at 'O' */
		"\r\n\r\n\0\r\nQUIX\n",                         /* not the v2 signature */
		"X",
	};
	struct proxyproto pp;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = i == 19 ? 12 : strlen(bad[i]);

		ck_assert_msg(parse(bad[i], n, &pp, &why) == -1, "accepted: %s", bad[i]);
		ck_assert_ptr_nonnull(why);
	}
}
END_TEST

START_TEST(test_v1_length)
{
	char h[PROXYPROTO_V1_MAX + 8];
	struct proxyproto pp;
	const char *why;

	/* 107 bytes with the CRLF: the longest allowed (UNKNOWN may pad). */
	memset(h, 'a', sizeof(h));
	memcpy(h, "PROXY UNKNOWN ", 14);
	memcpy(h + PROXYPROTO_V1_MAX - 2, "\r\n", 2);
	ck_assert_int_eq(parse(h, PROXYPROTO_V1_MAX, &pp, &why), PROXYPROTO_V1_MAX);
	/* One more byte before the CRLF: too long, and so is a line that has
	 * no CRLF within 107 bytes (reading more would not help). */
	memset(h, 'a', sizeof(h));
	memcpy(h, "PROXY UNKNOWN ", 14);
	memcpy(h + PROXYPROTO_V1_MAX - 1, "\r\n", 2);
	ck_assert_int_eq(parse(h, PROXYPROTO_V1_MAX + 1, &pp, &why), -1);
	ck_assert_int_eq(parse(h, PROXYPROTO_V1_MAX, &pp, &why), -1);
	ck_assert_int_eq(parse(h, PROXYPROTO_V1_MAX - 1, &pp, &why), 0);
}
END_TEST

/* A v2 header: `cmd` (0 LOCAL, 1 PROXY), `fam`, the address block `blk`. */
static size_t
v2(unsigned char *out, unsigned cmd, unsigned fam, const unsigned char *blk, size_t blen)
{
	memcpy(out, sig, 12);
	out[12] = (unsigned char)(0x20 | cmd);
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(blen >> 8);
	out[15] = (unsigned char)blen;
	memcpy(out + 16, blk, blen);
	return 16 + blen;
}

START_TEST(test_v2_tcp4_tcp6)
{
	unsigned char b[256], blk[64] = { 0 };
	struct proxyproto pp;
	const char *why;
	size_t n;

	/* 198.51.100.9:40000 -> 127.0.0.1:8787 */
	memcpy(blk, "\xc6\x33\x64\x09\x7f\x00\x00\x01\x9c\x40\x22\x53", 12);
	n = v2(b, 1, 0x11, blk, 12);
	memcpy(b + n, "GET", 3);
	ck_assert_int_eq(parse(b, n + 3, &pp, &why), (int)n);
	ck_assert_int_eq(pp.version, 2);
	check_v4(&pp, "198.51.100.9", 40000);
	check_prefixes(b, n);
	/* TLVs after the addresses are skipped. */
	memcpy(blk + 12, "\x01\x00\x02h2", 5);
	n = v2(b, 1, 0x11, blk, 17);
	ck_assert_int_eq(parse(b, n, &pp, &why), (int)n);
	check_v4(&pp, "198.51.100.9", 40000);

	memset(blk, 0, sizeof(blk));
	memcpy(blk, "\x20\x01\x0d\xb8", 4);
	blk[15] = 5;
	blk[31] = 1;
	blk[32] = 0x01, blk[33] = 0xbb; /* 443 */
	blk[34] = 0x22, blk[35] = 0x53;
	n = v2(b, 1, 0x21, blk, 36);
	ck_assert_int_eq(parse(b, n, &pp, &why), (int)n);
	check_v6(&pp, "2001:db8::5", 443);
	check_prefixes(b, n);
}
END_TEST

START_TEST(test_v2_local)
{
	unsigned char b[64], blk[12] = { 0 };
	struct proxyproto pp;
	const char *why;
	size_t n;

	n = v2(b, 0, 0x00, blk, 0);
	ck_assert_int_eq(parse(b, n, &pp, &why), 16);
	ck_assert(pp.local);
	/* LOCAL ignores whatever address block comes with it. */
	n = v2(b, 0, 0x11, blk, 12);
	ck_assert_int_eq(parse(b, n, &pp, &why), 28);
	ck_assert(pp.local);
}
END_TEST

START_TEST(test_v2_bad)
{
	unsigned char b[PROXYPROTO_V2_MAX + 64], blk[64] = { 0 };
	struct proxyproto pp;
	const char *why;
	size_t n;

	n = v2(b, 1, 0x12, blk, 12); /* UDP over IPv4 */
	ck_assert_int_eq(parse(b, n, &pp, &why), -1);
	n = v2(b, 1, 0x31, blk, 64); /* unix */
	ck_assert_int_eq(parse(b, n, &pp, &why), -1);
	n = v2(b, 1, 0x00, blk, 0); /* UNSPEC with PROXY */
	ck_assert_int_eq(parse(b, n, &pp, &why), -1);
	n = v2(b, 1, 0x11, blk, 8); /* too short for TCP4 */
	ck_assert_int_eq(parse(b, n, &pp, &why), -1);
	n = v2(b, 1, 0x21, blk, 12); /* too short for TCP6 */
	ck_assert_int_eq(parse(b, n, &pp, &why), -1);
	n = v2(b, 2, 0x11, blk, 12); /* command 2 */
	ck_assert_int_eq(parse(b, 16, &pp, &why), -1);
	n = v2(b, 1, 0x11, blk, 12);
	b[12] = 0x11; /* version 1 in binary */
	ck_assert_int_eq(parse(b, n, &pp, &why), -1);
	/* A length beyond the bound is refused as soon as it is read. */
	n = v2(b, 1, 0x11, blk, 12);
	b[14] = 0xff;
	b[15] = 0xff;
	ck_assert_int_eq(parse(b, 16, &pp, &why), -1);
	ck_assert_str_eq(why, "v2: header too long");
	/* The longest allowed one is whole at PROXYPROTO_V2_MAX bytes. */
	memset(b, 0, sizeof(b));
	v2(b, 1, 0x11, blk, 12);
	b[14] = (unsigned char)((PROXYPROTO_V2_MAX - 16) >> 8);
	b[15] = (unsigned char)(PROXYPROTO_V2_MAX - 16);
	ck_assert_int_eq(parse(b, PROXYPROTO_V2_MAX - 1, &pp, &why), 0);
	ck_assert_int_eq(parse(b, PROXYPROTO_V2_MAX, &pp, &why), PROXYPROTO_V2_MAX);
}
END_TEST

START_TEST(test_empty)
{
	struct proxyproto pp;
	const char *why;

	ck_assert_int_eq(parse("", 0, &pp, &why), 0);
	ck_assert_int_eq(parse("P", 1, &pp, &why), 0);
	ck_assert_int_eq(parse("\r", 1, &pp, &why), 0);
	ck_assert_int_eq(parse("G", 1, &pp, &why), -1);
	ck_assert_int_eq(parse("\x16\x03\x01", 3, &pp, &why), -1); /* a TLS hello */
}
END_TEST

static Suite *
proxyproto_suite(void)
{
	Suite *s = suite_create("proxyproto");
	TCase *tc = tcase_create("v1");

	tcase_add_test(tc, test_v1_tcp4);
	tcase_add_test(tc, test_v1_tcp6_and_unknown);
	tcase_add_test(tc, test_v1_bad);
	tcase_add_test(tc, test_v1_length);
	suite_add_tcase(s, tc);
	tc = tcase_create("v2");
	tcase_add_test(tc, test_v2_tcp4_tcp6);
	tcase_add_test(tc, test_v2_local);
	tcase_add_test(tc, test_v2_bad);
	tcase_add_test(tc, test_empty);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(proxyproto_suite());
}
