/* tcp: loopback TCP for tests. Free ports, waiting for a listener, a port
 * that never completes a handshake (connect timeouts), and a raw HTTP server
 * that answers every request with fixed bytes and records the request heads
 * (headers the mock backend does not record). Everything binds 127.0.0.1 and
 * is closed at teardown. No HTTP parsing beyond finding the end of a request. */
#ifndef SUNDYNIX_TEST_TCP_H
#define SUNDYNIX_TEST_TCP_H

#include <stdbool.h>

/* A free loopback port (bind :0, getsockname, close; a small race accepted). */
int h_free_port(void);
/* Waits until something accepts connections on the port. */
bool h_wait_port(int port, int timeout_ms);
/* A loopback listener whose backlog is full, so a connect to it hangs.
 * Returns the port. */
int h_blackhole_port(void);

/* A loopback HTTP server on its own thread that answers every request with
 * `response` verbatim (status line, headers and body, so any header can be
 * sent, e.g. Retry-After or Connection: close) and then closes the
 * connection. */
struct h_rawsrv;
struct h_rawsrv *h_rawsrv_start(const char *response);
int h_rawsrv_port(struct h_rawsrv *s);
/* Requests whose head was read so far. */
int h_rawsrv_count(struct h_rawsrv *s);
/* A copy of request i's head (request line and headers; caller frees), or
 * NULL. */
char *h_rawsrv_head(struct h_rawsrv *s, int i);
/* An HTTP/1.1 response with the given status, extra header lines (each
 * ending in \r\n, may be ""), content type and body, with Content-Length
 * and Connection: close. Caller frees. */
char *h_http_response(int status, const char *extra_headers, const char *ctype, const char *body);

#endif
