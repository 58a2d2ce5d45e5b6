/* Unit-test support: run_suite, and the test vectors of ../shared/vectors,
 * found through $PAYRELAY_VECTORS (set by meson). The vectors_* calls are
 * only for use inside a check test: a missing directory, file or field
 * aborts the running test with a message saying what is missing. */
#ifndef PAYRELAY_TEST_VECTORS_H
#define PAYRELAY_TEST_VECTORS_H

#include <check.h>
#include <jansson.h>

/* Runs every test of `s` and frees it: the exit status of a test program. */
int run_suite(Suite *s);

/* Parses $PAYRELAY_VECTORS/filename. The caller json_decref()s the result. */
json_t *vectors_load(const char *filename);

/* The string member `key` of `obj`; aborts the test when absent or not a
 * string. Borrowed from `obj`. */
const char *vectors_str(const json_t *obj, const char *key);

/* The array member `key` of `obj`; aborts the test when absent. Borrowed. */
json_t *vectors_array(const json_t *obj, const char *key);

#endif
