/* http: libcurl's multi interface driven by the libuv loop (socket and timer
 * callbacks -> uv_poll_t / uv_timer_t -> curl_multi_socket_action). Owns the
 * multi handle and the poll handles; each transfer's easy handle belongs to
 * whoever started it. Knows nothing of OpenAI or NATS. */
#ifndef SUNDYNIX_HTTP_H
#define SUNDYNIX_HTTP_H

#include <curl/curl.h>
#include <uv.h>

#include "util.h"

struct http;
struct http_xfer;

/* Called on the loop, outside any curl callback, once the transfer is over;
 * the easy handle is already removed from the multi and may be cleaned up. */
typedef void (*http_done_cb)(struct http_xfer *x, CURLcode result);

/* Called from the sweep timer when now >= deadline_ms; the transfer has
 * already been removed from the multi (done will not be called). */
typedef void (*http_expired_cb)(struct http_xfer *x);

/* Embedded by the owner of a transfer. The owner moves deadline_ms as the
 * transfer makes progress; one sweep timer checks every active transfer, so
 * there is no timer per request. */
struct http_xfer {
	CURL *easy;
	http_done_cb done;
	http_expired_cb expired;
	unsigned long long deadline_ms; /* loop time (http_now); 0 = none */
	struct http *http;
	struct http_xfer *prev, *next; /* active list, owned by http */
	int active;
};

struct http *http_new(uv_loop_t *loop, long max_conns_per_host);
/* Removes every transfer still running and calls its expired callback (so
 * its owner can free it; done is not called), then closes the poll handles;
 * the loop must run once more to free them. */
void http_free(struct http *h);
/* A clean easy handle (as curl_easy_init makes one), reused when one is
 * idle. Give it back with http_release. */
CURL *http_easy(struct http *h);
/* Ends x's use of its easy handle: aborts the transfer if it runs, then
 * keeps the handle (reset) for a next transfer, or cleans it up. x->easy is
 * NULL after. Also for a handle whose transfer never started. */
void http_release(struct http_xfer *x);
/* x->easy and x->done must be set. Sets CURLOPT_PRIVATE to x, and curl's
 * open/close socket callbacks (http owns every connection's socket). */
int http_start(struct http *h, struct http_xfer *x) UTIL_WUR;
/* Aborts a running transfer without calling done. Never call it from inside
 * a curl callback (write/header); return an error from the callback instead. */
void http_abort(struct http_xfer *x);
/* The loop's cached time in ms, the clock of deadline_ms. */
unsigned long long http_now(const struct http *h);

#endif
