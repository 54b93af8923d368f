/* bus: the nats.c connection attached to the libuv loop, the dispatcher's
 * subscriptions, and the hand-off of everything nats.c reports on its own
 * threads (messages, connection events) to the loop thread. Callers only ever
 * see bus callbacks on the loop thread. Knows nothing of HTTP or requests. */
#ifndef SUNDYNIX_BUS_H
#define SUNDYNIX_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "contract.h"
#include "util.h"

struct config;
struct bus;

enum bus_event {
	BUS_SUBMIT,         /* msg: a chat submit (queue group) */
	BUS_CANCEL,         /* msg: a cancel broadcast */
	BUS_REPLAY,         /* msg: a replay request for one of our streams (<prefix>.chat.replay.<instance>) */
	BUS_CONFIG_UPDATE,  /* msg: a model config broadcast */
	BUS_CONFIG_REPLY,   /* msg: an answer to bus_config_request (may be no-responders) */
	BUS_PROBE,          /* msg: a probe request (queue group) to answer on its reply subject */
	BUS_CONNECTED,      /* connected; the control subscriptions are confirmed by the server */
	BUS_READY,          /* after bus_join_queue: the queue groups are confirmed too */
	BUS_DISCONNECTED,
	BUS_RECONNECTED,
	BUS_CLOSED,         /* the connection is closed for good (auth failure, or bus_close) */
	BUS_FATAL,          /* connecting cannot succeed (authorization, TLS); see bus_fatal_reason */
	BUS_FLUSHED,        /* a bus_flush finished */
	BUS_SRV,            /* msg: a NATS services request ($SRV.>, see srv.h); may be for another service */
};

/* A message as the bus hands it over: valid only during the callback. */
struct bus_msg {
	const char *subject;
	const char *data;
	size_t len;
	const char *reply; /* NULL when the sender wants no answer */
};

/* msg is NULL for connection events. */
typedef void (*bus_cb)(void *ud, enum bus_event ev, const struct bus_msg *msg);

/* Starts connecting from the loop (retrying while no server answers) and,
 * once connected, subscribes to the control subjects: config updates first,
 * then cancel, the reply subject, our replay subject and $SRV.> (plain, so
 * every instance answers service discovery; delivered through nats.c's
 * thread and the event queue, so it costs the loop nothing per iteration);
 * BUS_CONNECTED follows when the server
 * confirmed them. Returns NULL with a message in err when the options are
 * unusable (a bad TLS file, say). */
struct bus *bus_open(uv_loop_t *loop, const struct config *cfg, bus_cb cb, void *ud, char *err, size_t errlen);
/* Why BUS_FATAL was reported; never contains a secret. */
const char *bus_fatal_reason(const struct bus *b);
const struct contract_subjects *bus_subjects(const struct bus *b);
/* Publishes on the loop thread; nats.c buffers while disconnected. */
int bus_publish(struct bus *b, const char *subject, const char *data, size_t len) UTIL_WUR;
/* Sends the startup model config request; the answer arrives as BUS_CONFIG_REPLY. */
int bus_config_request(struct bus *b, const char *data, size_t len) UTIL_WUR;
/* Joins the submit and probe queue groups (once the model is known);
 * BUS_READY follows when the server confirmed them. */
int bus_join_queue(struct bus *b) UTIL_WUR;
/* Leaves the queue groups for good (shutdown) so new requests go to other
 * dispatchers; what the server had already routed to us is still delivered
 * (and answered). */
void bus_leave_queue(struct bus *b);
/* Admission: leaves (false) or rejoins (true) the submit queue group only,
 * so NATS routes submits to dispatchers with room; submits already routed
 * here are still delivered. No effect before bus_join_queue or after
 * bus_leave_queue. */
void bus_set_admission(struct bus *b, bool open);
/* In the submit queue group now (joined, not left for capacity or shutdown). */
bool bus_admission_open(const struct bus *b);

/* What the bus counts, for metrics; read on the loop thread. */
struct bus_stats {
	bool connected;       /* the connection is up now */
	bool joined;          /* in the submit queue group, and the server confirmed it (BUS_READY) */
	unsigned long long reconnects;
	unsigned long long publish_errors;
	unsigned long long admission_leaves, admission_rejoins;
	long long buffered;   /* bytes in nats.c's reconnect buffer (0 when connected) */
	unsigned long long in_msgs, out_msgs, in_bytes, out_bytes;
};
void bus_get_stats(const struct bus *b, struct bus_stats *out);
/* Round trip to the server on a worker thread (the loop keeps running);
 * BUS_FLUSHED arrives on the loop when done or after timeout_ms. */
void bus_flush(struct bus *b, int timeout_ms);
/* Closes the connection and the bus's loop handles; from then on nothing is
 * reported. Run the loop to its end after it, then call bus_free. */
void bus_close(struct bus *b);
/* After the loop has ended: waits (bounded) for nats.c's own threads, so
 * no connection callback can touch the bus any more, and frees it. */
void bus_free(struct bus *b);

#endif
