/* Logging: one line per event on stderr, `level=... msg="..." key=value`.
 * Control bytes in the line are escaped, so a value from the network can
 * never start a forged line. Never pass keys, secrets or tokens. */
#ifndef PAYRELAY_LOG_H
#define PAYRELAY_LOG_H

#include "util.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

extern enum log_level log_min_level;

void log_set_level(enum log_level lvl);
int log_parse_level(const char *s, enum log_level *out) WUR;
/* `msg` is a short fixed text; `kv` formats the key=value pairs (may be NULL). */
void log_emit(enum log_level lvl, const char *msg, const char *kv, ...) PRINTF_LIKE(3, 4);

#define log_at(lvl, msg, ...) \
	do { \
		if ((lvl) >= log_min_level) \
			log_emit((lvl), (msg), __VA_ARGS__); \
	} while (0)
#define log_debug(msg, ...) log_at(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_at(LOG_INFO, msg, __VA_ARGS__)
#define log_warnx(msg, ...) log_at(LOG_WARN, msg, __VA_ARGS__)
#define log_errorx(msg, ...) log_at(LOG_ERROR, msg, __VA_ARGS__)
/* Fatal: start-up only. Logs at error level and exits with status 1. */
void fatalx(const char *msg, const char *kv, ...) PRINTF_LIKE(2, 3) __attribute__((noreturn));

#endif
