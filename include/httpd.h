/* httpd: the operator's HTTP listener on the loop: GET /metrics, /healthz and
 * /readyz, served by libmicrohttpd without threads of its own (epoll mode:
 * its one epoll fd is watched by a uv_poll_t, MHD_run is called on
 * readiness, and a uv_timer_t keeps MHD_get_timeout). The answers come from
 * callbacks the owner (main) gives; httpd knows nothing of what they hold.
 * A listener that cannot bind is retried every HTTPD_RETRY_MS and never
 * stops the dispatcher. Loop thread only. */
#ifndef SUNDYNIX_HTTPD_H
#define SUNDYNIX_HTTPD_H

#include <stdbool.h>
#include <uv.h>

#include "util.h"

#define HTTPD_RETRY_MS 10000

struct httpd;

struct httpd_hooks {
	/* The Prometheus text (format 0.0.4), appended to out. */
	void (*metrics)(void *ud, struct buf *out);
	/* Whether the dispatcher is ready; when not, why (one line) in out. */
	bool (*ready)(void *ud, struct buf *out);
	void *ud;
};

/* Starts listening on listen ("IPv4:PORT" or "[IPv6]:PORT", already
 * validated by config); the address, with the port picked when it was 0,
 * is logged. */
struct httpd *httpd_start(uv_loop_t *loop, const char *listen, const struct httpd_hooks *hooks);
/* The port listened on, 0 while not listening. */
int httpd_port(const struct httpd *h);
/* Stops listening, closes every connection and the loop handles; frees
 * itself once they are closed (the loop must run once more). NULL is fine. */
void httpd_close(struct httpd *h);

#endif
