/* nats_server: a real nats-server on a free loopback port, optionally with a
 * config file (authorization, TLS), that can be restarted, or halted and
 * resumed, on the same port. Stopped at teardown (or exit, when started by a
 * group setup). Clients are gateway.h's business. */
#ifndef SUNDYNIX_TEST_NATS_SERVER_H
#define SUNDYNIX_TEST_NATS_SERVER_H

struct h_nats {
	struct h_proc *proc; /* NULL while halted */
	int port;
	char url[64];
	char *conf_path; /* NULL without a config file */
};

/* conf: optional nats-server config text (may be NULL). Returns once the
 * server accepts connections. */
struct h_nats *h_nats_start(const char *conf);
void h_nats_stop(struct h_nats *n);
/* Stops and starts again on the same port. */
void h_nats_restart(struct h_nats *n);
/* Stops nats-server but keeps its port, so it can come back with
 * h_nats_resume (which does nothing while it runs). */
void h_nats_halt(struct h_nats *n);
/* SIGKILL (no goodbye to its clients), keeping the port for h_nats_resume. */
void h_nats_kill(struct h_nats *n);
void h_nats_resume(struct h_nats *n);

#endif
