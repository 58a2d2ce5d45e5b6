#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum log_level log_min_level = LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void
log_set_level(enum log_level lvl)
{
	log_min_level = lvl;
}

int
log_parse_level(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* Escapes control bytes so that nothing from the network can end the line. */
static void
log_write_escaped(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

static void
log_vemit(enum log_level lvl, const char *msg, const char *kv, va_list ap)
{
	char line[2048];

	/* No time stamp: journald (or the test harness) adds its own. */
	flockfile(stderr);
	fprintf(stderr, "level=%s msg=\"", level_names[lvl]);
	log_write_escaped(stderr, msg);
	fputc('"', stderr);
	if (kv != NULL && *kv != '\0') {
		vsnprintf(line, sizeof(line), kv, ap);
		fputc(' ', stderr);
		log_write_escaped(stderr, line);
	}
	fputc('\n', stderr);
	funlockfile(stderr);
}

void
log_emit(enum log_level lvl, const char *msg, const char *kv, ...)
{
	va_list ap;

	va_start(ap, kv);
	log_vemit(lvl, msg, kv, ap);
	va_end(ap);
}

void
fatalx(const char *msg, const char *kv, ...)
{
	va_list ap;

	va_start(ap, kv);
	log_vemit(LOG_ERROR, msg, kv, ap);
	va_end(ap);
	exit(1);
}
