/* Logging: one line per event on stderr, `level=... msg="..." key=value`,
 * built in a stack buffer. Never pass keys, secrets or tokens.
 *
 * Writing: by default each line is written with a single write(2), so lines
 * from concurrent writers never interleave. With log_defer on (payrelayd's
 * event loop), debug and info lines are appended to a buffer of LOG_LINE_MAX
 * bytes and written together by log_flush at the end of the loop turn, in as
 * few write(2)s as they fit in: every write holds whole lines only and is at
 * most LOG_LINE_MAX (PIPE_BUF) bytes, so it is still atomic on a pipe and
 * lines still never interleave. A line that does not fit in what is left of
 * the buffer first writes the buffer. A warn or error line (and fatalx) is
 * never held: it is written at once, after what is buffered (in the same
 * write when both fit), so the order of lines is kept. Not one byte of a
 * line changes. Lost on a crash (SIGKILL, SIGSEGV, abort) are at most the
 * debug and info lines of the current loop turn, never a warn or error line.
 * A normal exit must call log_defer(NULL, NULL) or log_flush first (fatalx
 * does).
 *
 * Escaping (SPEC §7): the text of `msg` and of the `kv` format is trusted
 * (string literals in the code), every %s argument is not, so that nothing
 * from the network can forge a level, a key=value pair or a new line.
 * - In `msg`, and for a %s inside a quoted region of `kv` (between two `"`
 *   of the format text): `"` becomes `\"`, `\` becomes `\\`, and every byte
 *   that is not printable UTF-8 becomes `\xNN`: control bytes, DEL, invalid,
 *   overlong or surrogate UTF-8, C1 controls, U+2028/U+2029 and the bidi
 *   controls (U+200E/F, U+202A-E, U+2066-9, U+FEFF). Valid printable UTF-8
 *   such as Chinese product names is kept as it is.
 * - A %s outside quotes is written as it is when it is empty or made only of
 *   `A-Z a-z 0-9 _ . : / - + @ , * [ ]`; any other value (a space, `=`,
 *   `"`, non-ASCII...) is written quoted and escaped as above, e.g.
 *   `peer=%s` with "1.2.3.4 x=y" gives `peer="1.2.3.4 x=y"`.
 * - Control bytes in the format text itself are written as `\xNN`.
 * `kv` supports exactly %s, %.Ns, %d, %u, %x (each also with l, ll or z)
 * and %%, which is what the code base uses. Anything else ends the kv
 * text with ` format_error=1` instead of guessing at the arguments;
 * test_log checks every call in src/ with log_format_supported().
 * A line longer than LOG_LINE_MAX is cut at a character (never inside an
 * escape or a UTF-8 sequence), an open quote is closed and ` truncated=1`
 * ends it. LOG_LINE_MAX is PIPE_BUF, so every write to a pipe (one line, or
 * the buffered lines) is atomic. */
#ifndef PAYRELAY_LOG_H
#define PAYRELAY_LOG_H

#include "util.h"

#define LOG_LINE_MAX 4096 /* with the '\n' */

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

extern enum log_level log_min_level;

void log_set_level(enum log_level lvl);
int log_parse_level(const char *s, enum log_level *out) WUR;
/* `msg` is a short fixed text; `kv` formats the key=value pairs (may be NULL). */
void log_emit(enum log_level lvl, const char *msg, const char *kv, ...) PRINTF_LIKE(3, 4);
/* Whether log_emit formats every conversion of `kv` (for the unit test). */
bool log_format_supported(const char *kv) WUR;

#define log_at(lvl, msg, ...) \
	do { \
		if ((lvl) >= log_min_level) \
			log_emit((lvl), (msg), __VA_ARGS__); \
	} while (0)
#define log_debug(msg, ...) log_at(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_at(LOG_INFO, msg, __VA_ARGS__)
#define log_warnx(msg, ...) log_at(LOG_WARN, msg, __VA_ARGS__)
#define log_errorx(msg, ...) log_at(LOG_ERROR, msg, __VA_ARGS__)
/* Deferral on (arm != NULL): lines below LOG_WARN are buffered, and when
 * the buffer goes from empty to not empty arm(arg) is called so that the
 * caller runs log_flush soon (payrelayd: at the end of the loop turn); it
 * is called once between two log_flush calls, not again when a warn line
 * or a full buffer wrote the buffer out before the log_flush asked for.
 * Off (arm == NULL, the default): what is buffered is written first, then
 * every line is written at once. Any call flushes first, so a line never
 * arms a function given before. */
void log_defer(void (*arm)(void *), void *arg);
/* Writes what is buffered, if anything; keeps errno. */
void log_flush(void);
/* Fatal: start-up only. Logs at error level and exits with status 1. */
void fatalx(const char *msg, const char *kv, ...) PRINTF_LIKE(2, 3) __attribute__((noreturn));

#endif
