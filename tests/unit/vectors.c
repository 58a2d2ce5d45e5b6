#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "vectors.h"

json_t *
vectors_load(const char *filename)
{
	const char *dir = getenv("PAYRELAY_VECTORS");
	char path[4096];
	json_error_t err;
	json_t *root;
	int n;

	if (dir == NULL || *dir == '\0')
		ck_abort_msg("PAYRELAY_VECTORS is not set: point it at the shared/vectors "
			     "directory (meson test sets it)");
	n = snprintf(path, sizeof(path), "%s/%s", dir, filename);
	if (n < 0 || (size_t)n >= sizeof(path))
		ck_abort_msg("vector path too long: %s/%s", dir, filename);
	root = json_load_file(path, 0, &err);
	if (root == NULL)
		ck_abort_msg("cannot load test vectors %s: %s (line %d)", path, err.text, err.line);
	return root;
}

const char *
vectors_str(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v))
		ck_abort_msg("test vector has no string \"%s\"", key);
	return json_string_value(v);
}

json_t *
vectors_array(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_array(v) || json_array_size(v) == 0)
		ck_abort_msg("test vectors have no non-empty array \"%s\"", key);
	return v;
}

int
run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
