/* http: one blocking HTTP request to a loopback port (the daemon's metrics
 * listener, the mock's control endpoints, nats-server's monitor), bounded by
 * a timeout: the body and the status back. It fails no test itself: what an
 * answer means is the caller's. */
#ifndef SUNDYNIX_TEST_HTTP_H
#define SUNDYNIX_TEST_HTTP_H

/* GET http://127.0.0.1:port<path>, or POST json_body there when it is not
 * NULL. Returns the body, NUL-terminated and possibly empty (caller frees);
 * *status is the HTTP status, 0 when no answer came; error (may be NULL) is
 * set to what went wrong in the transport, NULL when nothing did. */
char *h_http(int port, const char *path, const char *json_body, int timeout_ms, long *status, const char **error);
/* h_http GET with a 5 s timeout. */
char *h_http_get(int port, const char *path, long *status);

#endif
