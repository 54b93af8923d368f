/* nats_server: a real nats-server on a free loopback port, optionally with a
 * config file (authorization, TLS), that can be restarted, or halted and
 * resumed, on the same port; and a cluster of them (routes between every
 * node, each node's monitoring endpoint on loopback, a node killed and
 * resumed while the others carry on). Stopped at teardown (or exit, when
 * started by a group setup). Clients are gateway.h's business. */
#ifndef SUNDYNIX_TEST_NATS_SERVER_H
#define SUNDYNIX_TEST_NATS_SERVER_H

struct h_nats {
	struct h_proc *proc; /* NULL while halted */
	int port;
	char url[64];
	char *conf_path; /* NULL without a config file */
	int mon_port;    /* the monitoring endpoint (/routez, /connz); 0: none */
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

/* A NATS cluster of n nodes on loopback: each node a struct h_nats (so
 * h_nats_kill, h_nats_halt and h_nats_resume work on one node) with a config
 * file naming it (server_name), its monitoring port, and a cluster block
 * whose routes list every node. */
struct h_nats_cluster {
	int n;
	struct h_nats **nodes;
	char *name;  /* the cluster's name */
	char *urls;  /* "nats://127.0.0.1:P1,nats://127.0.0.1:P2,...": every node's client URL,
		      * as the dispatcher's nats.servers takes them in one string */
};

/* Starts the n nodes and returns once every node has a route to every other
 * (h_nats_cluster_wait_routes). */
struct h_nats_cluster *h_nats_cluster_start(int n);
void h_nats_cluster_stop(struct h_nats_cluster *c);
/* Waits until every running node reports a route to every other running
 * node (/routez); fails the test after timeout_ms. */
void h_nats_cluster_wait_routes(struct h_nats_cluster *c, int timeout_ms);
/* SIGKILL node i (its clients get no goodbye); its port is kept. */
void h_nats_cluster_kill(struct h_nats_cluster *c, int i);
/* Starts every halted or killed node again and waits for the routes. */
void h_nats_cluster_resume(struct h_nats_cluster *c);
/* The index of the node a client is connected to, found by the name the
 * client gave in its CONNECT (/connz), or -1 when no running node has it
 * within timeout_ms. */
int h_nats_cluster_node_of(struct h_nats_cluster *c, const char *client_name, int timeout_ms);

/* config/nats-permissions.conf (tests run from the repository root) with
 * its three CHANGE-ME passwords replaced, for h_nats_start (caller frees).
 * Fails the test unless each placeholder is there exactly once. */
char *h_nats_permissions_conf(const char *disp_pw, const char *gw_pw, const char *ctl_pw);

#endif
