#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

static const unsigned char v2sig[12] = { '\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I',
	'T', '\n' };
static const char v1sig[] = "PROXY ";

static int
bad(const char **why, const char *s)
{
	*why = s;
	return -1;
}

/* Next space-separated field of [*p, end): at most `max` bytes. */
static bool
field(const char **p, const char *end, char *out, size_t max)
{
	const char *s = *p, *e = memchr(s, ' ', (size_t)(end - s));
	size_t n;

	if (e == NULL)
		e = end;
	n = (size_t)(e - s);
	if (n == 0 || n >= max)
		return false;
	memcpy(out, s, n);
	out[n] = '\0';
	*p = e < end ? e + 1 : e;
	return true;
}

/* 0 to 65535 in decimal, no sign, no leading zero. */
static bool
port_value(const char *s, uint16_t *out)
{
	unsigned long v = 0;
	size_t n = strlen(s), i;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

static int
parse_v1(const unsigned char *buf, size_t len, struct proxyproto *pp, const char **why)
{
	const char *s = (const char *)buf, *end, *p;
	const unsigned char *cr;
	size_t n = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX, line;
	char proto[8], src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], sport[8], dport[8];
	uint16_t sp, dp;
	int af;
	unsigned char a[16], b[16];

	cr = memchr(buf, '\r', n);
	/* What is wrong with the bytes so far is wrong with any longer read. */
	line = cr != NULL ? (size_t)(cr - buf) : n;
	if (memchr(buf, '\n', line) != NULL)
		return bad(why, "v1: line not ended by CRLF");
	if (memchr(buf, '\0', line) != NULL)
		return bad(why, "v1: malformed line");
	if (cr == NULL)
		return len >= PROXYPROTO_V1_MAX ? bad(why, "v1: longer than 107 bytes") : 0;
	if (line + 2 > PROXYPROTO_V1_MAX)
		return bad(why, "v1: longer than 107 bytes");
	if (line + 1 == len)
		return 0;
	if (cr[1] != '\n')
		return bad(why, "v1: line not ended by CRLF");
	end = (const char *)cr;
	p = s + sizeof(v1sig) - 1;
	memset(pp, 0, sizeof(*pp));
	pp->version = 1;
	if (!field(&p, end, proto, sizeof(proto)))
		return bad(why, "v1: no protocol");
	if (strcmp(proto, "UNKNOWN") == 0) {
		/* The rest of the line is to be ignored. */
		pp->local = true;
		return (int)(end - s) + 2;
	}
	if (strcmp(proto, "TCP4") == 0)
		af = AF_INET;
	else if (strcmp(proto, "TCP6") == 0)
		af = AF_INET6;
	else
		return bad(why, "v1: protocol not TCP4, TCP6 or UNKNOWN");
	if (!field(&p, end, src, sizeof(src)) || !field(&p, end, dst, sizeof(dst)) ||
	    !field(&p, end, sport, sizeof(sport)) || !field(&p, end, dport, sizeof(dport)) ||
	    p != end || end[-1] == ' ')
		return bad(why, "v1: not five fields");
	if (inet_pton(af, src, a) != 1 || inet_pton(af, dst, b) != 1)
		return bad(why, "v1: address not of the protocol's family");
	if (!port_value(sport, &sp) || !port_value(dport, &dp))
		return bad(why, "v1: bad port");
	if (af == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&pp->src;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, a, 4);
		sin->sin_port = htons(sp);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&pp->src;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, a, 16);
		sin6->sin6_port = htons(sp);
	}
	return (int)(end - s) + 2;
}

static int
parse_v2(const unsigned char *buf, size_t len, struct proxyproto *pp, const char **why)
{
	size_t blen, total;
	unsigned cmd, fam;

	if (len < 16)
		return 0;
	if ((buf[12] >> 4) != 2)
		return bad(why, "v2: version not 2");
	cmd = buf[12] & 0x0f;
	fam = buf[13];
	blen = (size_t)buf[14] << 8 | buf[15];
	total = 16 + blen;
	if (total > PROXYPROTO_V2_MAX)
		return bad(why, "v2: header too long");
	if (cmd > 1)
		return bad(why, "v2: command not LOCAL or PROXY");
	if (len < total)
		return 0;
	memset(pp, 0, sizeof(*pp));
	pp->version = 2;
	if (cmd == 0) {
		/* The proxy's own connection (a health check): the address
		 * block, whatever it holds, is to be ignored. */
		pp->local = true;
		return (int)total;
	}
	if (fam == 0x11) { /* TCP over IPv4 */
		struct sockaddr_in *sin = (struct sockaddr_in *)&pp->src;

		if (blen < 12)
			return bad(why, "v2: address block too short for TCP4");
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, buf + 16, 4);
		memcpy(&sin->sin_port, buf + 16 + 8, 2);
	} else if (fam == 0x21) { /* TCP over IPv6 */
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&pp->src;

		if (blen < 36)
			return bad(why, "v2: address block too short for TCP6");
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, buf + 16, 16);
		memcpy(&sin6->sin6_port, buf + 16 + 32, 2);
	} else {
		return bad(why, "v2: family not TCP4 or TCP6");
	}
	return (int)total;
}

int
proxyproto_parse(const unsigned char *buf, size_t len, struct proxyproto *pp, const char **why)
{
	size_t n;

	*why = NULL;
	if (len == 0)
		return 0;
	if (buf[0] == 'P') {
		n = len < sizeof(v1sig) - 1 ? len : sizeof(v1sig) - 1;
		if (memcmp(buf, v1sig, n) != 0)
			return bad(why, "no PROXY header");
		return n < sizeof(v1sig) - 1 ? 0 : parse_v1(buf, len, pp, why);
	}
	n = len < sizeof(v2sig) ? len : sizeof(v2sig);
	if (memcmp(buf, v2sig, n) != 0)
		return bad(why, "no PROXY header");
	return n < sizeof(v2sig) ? 0 : parse_v2(buf, len, pp, why);
}
