/* JSON answers of the admin API: one place, so that every endpoint answers
 * with the same Content-Type and framing. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "reply.h"

void
reply_json(struct evhttp_request *req, int code, json_t *body)
{
	struct evbuffer *buf = evbuffer_new();
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	if (buf != NULL && text != NULL) {
		evbuffer_add(buf, text, strlen(text));
		evbuffer_add(buf, "\n", 1);
	}
	evhttp_send_reply(req, code, code < 300 ? "OK" : "Error", buf);
	if (buf != NULL)
		evbuffer_free(buf);
	free(text);
	json_decref(body);
}

void
reply_error(struct evhttp_request *req, int code, const char *msg)
{
	reply_json(req, code, json_pack("{s:s}", "error", msg));
}
