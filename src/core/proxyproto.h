/* The PROXY protocol header (HAProxy's proxy-protocol.txt, v1 and v2) that
 * a trusted proxy sends before the client's bytes (SPEC §3.1). Pure: the
 * bytes in, the client's address out; conns.c reads them off the socket. */
#ifndef PAYRELAY_PROXYPROTO_H
#define PAYRELAY_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "util.h"

/* v1 is one text line of at most 107 bytes, CRLF included. */
#define PROXYPROTO_V1_MAX 107
/* v2 is 16 bytes and an address block of the length they give: 12 (TCP4)
 * or 36 (TCP6) and TLVs. A proxy's TLVs (ALPN, authority, SSL details)
 * fit in far less than this; a longer header is refused. */
#define PROXYPROTO_V2_MAX (16 + 1024)
/* The most bytes a header can take. */
#define PROXYPROTO_MAX PROXYPROTO_V2_MAX

struct proxyproto {
	int version; /* 1 or 2 */
	bool local;  /* LOCAL (v2) or UNKNOWN (v1): the proxy's own connection, use the peer */
	struct sockaddr_storage src; /* the client (AF_INET or AF_INET6) unless local */
};

/* Parses the header at the start of the `len` bytes of `buf`. Returns its
 * length once whole (the bytes after it are the client's), 0 when the
 * bytes so far may still begin a header (read more, up to
 * PROXYPROTO_MAX), or -1 when they cannot be one: not a header, a
 * malformed one, or one of another family than TCP over IPv4 or IPv6. On
 * -1 `*why` says why (a static string). */
int proxyproto_parse(const unsigned char *buf, size_t len, struct proxyproto *pp,
    const char **why) WUR;

#endif
