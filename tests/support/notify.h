/* notify: an AF_UNIX datagram socket in the temporary directory standing in
 * for systemd's notify socket. Every datagram received is kept, with its
 * arrival time, for failure messages. It only receives: what the daemon
 * ought to send is for the tests. Closed at teardown. */
#ifndef SUNDYNIX_TEST_NOTIFY_H
#define SUNDYNIX_TEST_NOTIFY_H

#include <stddef.h>

struct h_daemon;
struct h_notify;

struct h_notify *h_notify_open(const char *name);
const char *h_notify_path(struct h_notify *nf);
/* "NOTIFY_SOCKET=<path>", for a daemon's environment; owned by nf. */
const char *h_notify_env(struct h_notify *nf);
/* Reads datagrams until one has a line starting with line_prefix; returns a
 * copy of that datagram (caller frees) or NULL after timeout_ms. The
 * datagrams read before it are consumed. */
char *h_notify_wait(struct h_notify *nf, const char *line_prefix, int timeout_ms);
/* h_notify_wait that fails the test, with d's log and everything received,
 * when no such datagram comes. */
char *h_notify_expect(struct h_notify *nf, struct h_daemon *d, const char *line_prefix, int timeout_ms);
/* Reads for window_ms and counts the datagrams having a line starting with
 * line_prefix. */
size_t h_notify_count_for(struct h_notify *nf, const char *line_prefix, int window_ms);
/* Everything received so far, one "[ms] text" line per datagram (newlines in
 * a datagram shown as '|'). Owned by nf. */
const char *h_notify_seen(struct h_notify *nf);
void h_notify_close(struct h_notify *nf);

#endif
