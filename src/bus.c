/* bus: see include/bus.h.
 *
 *   loop thread: uv_poll (bus_loop) -> natsConnection_ProcessReadEvent -> sync subscription queues
 *                uv_prepare (bus_loop, before the loop blocks) -> ProcessWriteEvent: one write
 *                uv_check (after every poll) -> bus__pull: NextMsg(timeout 0) -> cb(ud, ev, msg)
 *   nats.c threads: connection events -> queue (mutex) -> uv_async -> bus__drain -> cb
 *                   $SRV.> messages (one async subscription) -> the same queue
 *
 * Messages never leave the loop thread: with bus_loop nats.c reads
 * and parses on the loop, and synchronous subscriptions leave each message in
 * the subscription's queue, from which a check handle takes it in the same
 * iteration. (Asynchronous subscriptions would hand every message to a
 * delivery thread and back: two thread hops per submit.) Connection events
 * come from nats.c's own threads; they go through a mutex-guarded queue and
 * a uv_async, whose sends coalesce, so the loop drains the whole queue each
 * time.
 *
 * The one exception is $SRV.>: service discovery is rare, and a synchronous
 * subscription would cost every loop iteration one more empty NextMsg (about
 * 0.2 us here), tokens included. Its messages come on nats.c's delivery
 * thread and cross to the loop through the connection events' queue. */
#include "bus.h"

#include <nats/nats.h>
#include <stdlib.h>
#include <string.h>

#include "bus_loop.h"
#include "config.h"
#include "log.h"

#define BUS_CONNECT_RETRY_MAX_MS 30000
#define BUS_FLUSH_TIMEOUT_MS 5000
#define BUS_FLUSH_RETRY_MS 1000

/* Submit subscriptions draining at once after leaving for capacity; past
 * this, a leave waits for one to finish (the flapping is bounded anyway). */
#define BUS_GONE_MAX 8

/* Delivered messages destroyed together (bus__spent). */
#define BUS_SPENT_MAX 512
#define BUS_SPENT_BYTES (256 * 1024)

/* What a flush is for. */
#define BUS__FLUSH_CONNECTED 1u /* control subscriptions placed: report BUS_CONNECTED */
#define BUS__FLUSH_JOINED 2u    /* queue groups joined: report BUS_READY */
#define BUS__FLUSH_USER 4u      /* bus_flush: report BUS_FLUSHED */

struct bus_item {
	struct bus_item *next;
	enum bus_event ev;
	natsMsg *msg;
};

struct bus_sub {
	struct bus *bus;
	enum bus_event ev;
	natsSubscription *sub;
	bool draining; /* bus_leave_queue: pulled until nats.c closes it */
};

enum {
	BUS_SUB_UPDATE,
	BUS_SUB_CANCEL,
	BUS_SUB_REPLY,
	BUS_SUB_REPLAY,
	BUS_SUB_PROBE,
	BUS_SUB_SUBMIT,
	BUS_SUB_COUNT
};

/* NATS services discovery and stats (ADR-32): every verb, every service. */
#define BUS_SRV_SUBJECT "$SRV.>"

struct bus {
	uv_loop_t *loop;
	natsConnection *nc;
	natsOptions *opts;
	char *inbox; /* reply subject of the config request */
	char *replay; /* <prefix>.chat.replay.<instance>: replays of our streams */
	struct contract_subjects subj;
	char *queue_group;
	struct bus_sub subs[BUS_SUB_COUNT];
	natsSubscription *srv; /* $SRV.>, asynchronous (see the top of the file) */
	/* Submit subscriptions left for capacity, still draining: what the
	 * server routed to them before the UNSUB is delivered and answered. */
	struct bus_sub gone[BUS_GONE_MAX];
	bool admission_closed; /* bus_set_admission(false): out of the submit queue group */
	bool leaving;          /* bus_leave_queue: for good */
	/* Counted on the loop thread, for bus_get_stats. */
	unsigned long long reconnects, publish_errors, admission_leaves, admission_rejoins;

	bus_cb cb;
	void *ud;

	uv_async_t async;
	uv_mutex_t lock;
	struct bus_item *head, *tail; /* guarded by lock */

	/* Round trips to the server, one at a time on a worker thread. A
	 * confirmed round trip after subscribing proves the server has the
	 * subscriptions: BUS_CONNECTED (control subjects) and BUS_READY (the
	 * queue groups) are reported only then. */
	uv_work_t flush_work;
	bool flush_busy;
	unsigned flush_kind;    /* BUS__FLUSH_* of the one running */
	unsigned flush_pending; /* BUS__FLUSH_* bits still wanted */
	int user_timeout_ms;
	natsStatus flush_status;
	bool connected_sent;
	bool join_wanted; /* bus_join_queue was called */
	bool ready_sent;
	bool closing;      /* bus_close ran (set under lock: nats.c threads read it) */
	int open_handles;  /* loop handles not yet closed */

	uv_check_t check;  /* takes messages off the subscriptions */
	natsMsg *spent[BUS_SPENT_MAX]; /* delivered, not yet destroyed (bus__spent) */
	int nspent;
	size_t spent_bytes;
	struct bus_loop *adapter; /* the socket on the loop; when bytes go out */
	uv_timer_t retry;  /* the first connect, until it succeeds */
	uint64_t retry_ms;
	char *secrets[2];  /* password and token, redacted from error texts */
	char fatal[512];   /* why BUS_FATAL was reported */
};

static void bus__enqueue(struct bus *b, enum bus_event ev, natsMsg *msg)
{
	struct bus_item *it = xmalloc(sizeof(*it));

	it->next = NULL;
	it->ev = ev;
	it->msg = msg;
	uv_mutex_lock(&b->lock);
	if (b->closing) {
		/* bus_close ran: the async handle may be gone, nobody listens. */
		uv_mutex_unlock(&b->lock);
		if (msg)
			natsMsg_Destroy(msg);
		free(it);
		return;
	}
	if (b->tail)
		b->tail->next = it;
	else
		b->head = it;
	b->tail = it;
	uv_mutex_unlock(&b->lock);
	uv_async_send(&b->async);
}

static void bus__deliver(struct bus *b, enum bus_event ev, natsMsg *msg)
{
	struct bus_msg m;

	if (!msg) {
		b->cb(b->ud, ev, NULL);
		return;
	}
	m.subject = natsMsg_GetSubject(msg);
	m.data = natsMsg_GetData(msg);
	m.len = (size_t)natsMsg_GetDataLength(msg);
	m.reply = natsMsg_GetReply(msg);
	if (m.reply && !*m.reply)
		m.reply = NULL;
	b->cb(b->ud, ev, &m);
}

/* At most this many messages per subscription per loop iteration, so one
 * busy subject cannot starve the rest of the loop. */
#define BUS_PULL_BATCH 256

/* natsMsg_Destroy hands each message to nats.c's garbage-collector thread
 * and wakes it (a futex, a context switch and a free on another thread, per
 * submit). Spent messages are kept and given back in batches instead, so
 * the collector wakes once per batch; bounded in count and bytes (what is
 * kept when traffic stops is at most BUS_SPENT_BYTES, freed at exit or by
 * the next batch). Bench B, futex calls for 5,000 submits: 9,143-11,634
 * one by one, 3,286-6,554 in batches of 64, 444-581 in batches of 512. */
static void bus__spent_flush(struct bus *b)
{
	for (int i = 0; i < b->nspent; i++)
		natsMsg_Destroy(b->spent[i]);
	b->nspent = 0;
	b->spent_bytes = 0;
}

static void bus__spent(struct bus *b, natsMsg *msg)
{
	b->spent[b->nspent++] = msg;
	b->spent_bytes += (size_t)natsMsg_GetDataLength(msg);
	if (b->nspent == BUS_SPENT_MAX || b->spent_bytes >= BUS_SPENT_BYTES)
		bus__spent_flush(b);
}

/* Takes what nats.c queued on the subscriptions during this iteration. */
static void bus__pull(uv_check_t *h)
{
	struct bus *b = h->data;
	bool more = false;

	for (int i = 0; i < BUS_SUB_COUNT + BUS_GONE_MAX; i++) {
		struct bus_sub *s = i < BUS_SUB_COUNT ? &b->subs[i] : &b->gone[i - BUS_SUB_COUNT];
		for (int n = 0; s->sub && n < BUS_PULL_BATCH; n++) {
			natsMsg *msg = NULL;
			natsStatus st = natsSubscription_NextMsg(&msg, s->sub, 0);
			if (st == NATS_TIMEOUT)
				break;
			if (st == NATS_OK) {
				bus__deliver(b, s->ev, msg);
				bus__spent(b, msg);
				if (n == BUS_PULL_BATCH - 1)
					more = true;
			} else if (st == NATS_NO_RESPONDERS) {
				log_debug(NULL, "nats: no responders for the request on %s", natsSubscription_GetSubject(s->sub));
			} else if (st == NATS_SLOW_CONSUMER) {
				log_warn(NULL, "nats: messages dropped on %s: the loop fell behind",
					 natsSubscription_GetSubject(s->sub));
			} else {
				break; /* closed or invalid: the connection events tell */
			}
		}
		if (s->sub && s->draining && !natsSubscription_IsValid(s->sub)) {
			natsSubscription_Destroy(s->sub);
			s->sub = NULL;
		}
	}
	/* Messages left: run again without blocking in poll. */
	if (more)
		uv_async_send(&b->async);
}

/* On nats.c's delivery thread: hands the message (and its ownership) to the loop. */
static void bus__on_srv(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	bus__enqueue(closure, BUS_SRV, msg);
}

static void bus__on_disconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	bus__enqueue(closure, BUS_DISCONNECTED, NULL);
}

static void bus__on_reconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	bus__enqueue(closure, BUS_RECONNECTED, NULL);
}

static void bus__on_closed(natsConnection *nc, void *closure)
{
	(void)nc;
	bus__enqueue(closure, BUS_CLOSED, NULL);
}

static void bus__on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	/* Asynchronous errors (slow consumer, permissions) carry no secrets. */
	log_warn(NULL, "nats: asynchronous error: %s", natsStatus_GetText(err));
}

static void bus__free(struct bus *b)
{
	uv_mutex_destroy(&b->lock);
	for (int i = 0; i < 2; i++) {
		if (b->secrets[i]) {
			explicit_bzero(b->secrets[i], strlen(b->secrets[i]));
			free(b->secrets[i]);
		}
	}
	free(b);
}

static void bus__flush_work(uv_work_t *w)
{
	struct bus *b = w->data;
	int timeout = b->flush_kind == BUS__FLUSH_USER ? b->user_timeout_ms : BUS_FLUSH_TIMEOUT_MS;
	b->flush_status = natsConnection_FlushTimeout(b->nc, timeout);
}

static void bus__kick_flush(struct bus *b);

static void bus__flush_retry(uv_timer_t *t)
{
	bus__kick_flush(t->data);
}

static void bus__flush_done(uv_work_t *w, int status)
{
	struct bus *b = w->data;
	unsigned kind = b->flush_kind;
	bool ok = status == 0 && b->flush_status == NATS_OK;

	b->flush_busy = false;
	b->flush_kind = 0;
	if (b->closing)
		return;
	if (kind == BUS__FLUSH_USER) {
		b->cb(b->ud, BUS_FLUSHED, NULL);
	} else if (!ok) {
		/* Not confirmed (disconnected, slow server): try again soon; a
		 * reconnect also kicks it. */
		b->flush_pending |= kind;
		uv_timer_start(&b->retry, bus__flush_retry, BUS_FLUSH_RETRY_MS, 0);
	} else if (kind == BUS__FLUSH_CONNECTED && !b->connected_sent) {
		b->connected_sent = true;
		b->cb(b->ud, BUS_CONNECTED, NULL);
	} else if (kind == BUS__FLUSH_JOINED && !b->ready_sent) {
		b->ready_sent = true;
		b->cb(b->ud, BUS_READY, NULL);
	}
	bus__kick_flush(b);
}

/* Starts the most urgent wanted flush, if none runs. */
static void bus__kick_flush(struct bus *b)
{
	unsigned kind;

	if (b->flush_busy || !b->flush_pending || !b->nc || b->closing)
		return;
	kind = b->flush_pending & BUS__FLUSH_USER ? BUS__FLUSH_USER
	       : b->flush_pending & BUS__FLUSH_CONNECTED ? BUS__FLUSH_CONNECTED
							  : BUS__FLUSH_JOINED;
	b->flush_pending &= ~kind;
	b->flush_kind = kind;
	b->flush_busy = true;
	b->flush_work.data = b;
	if (uv_queue_work(b->loop, &b->flush_work, bus__flush_work, bus__flush_done) != 0) {
		b->flush_busy = false;
		log_error(NULL, "nats: cannot queue flush");
	}
}

static void bus__want_flush(struct bus *b, unsigned kind)
{
	b->flush_pending |= kind;
	bus__kick_flush(b);
}

static void bus__drain(uv_async_t *a)
{
	struct bus *b = a->data;
	struct bus_item *it;

	uv_mutex_lock(&b->lock);
	it = b->head;
	b->head = b->tail = NULL;
	uv_mutex_unlock(&b->lock);

	while (it) {
		struct bus_item *next = it->next;
		if (b->closing) {
			/* A callback closed the bus: the rest is moot. */
			if (it->msg)
				natsMsg_Destroy(it->msg);
			free(it);
			it = next;
			continue;
		}
		if (it->ev == BUS_RECONNECTED) {
			b->reconnects++;
			if (!b->connected_sent)
				bus__want_flush(b, BUS__FLUSH_CONNECTED);
			if (b->join_wanted && !b->ready_sent)
				bus__want_flush(b, BUS__FLUSH_JOINED);
		}
		bus__deliver(b, it->ev, it->msg);
		if (it->msg)
			natsMsg_Destroy(it->msg);
		free(it);
		it = next;
	}
}

static int bus__fail(char *err, size_t errlen, const char *what, natsStatus s)
{
	/* nats.c's texts name statuses and servers, never credentials. */
	snprintf(err, errlen, "nats: %s: %s", what, natsStatus_GetText(s));
	return -1;
}

static int bus__options(struct bus *b, const struct config *cfg, char *err, size_t errlen)
{
	natsOptions *o;
	natsStatus s;

	if ((s = natsOptions_Create(&o)) != NATS_OK)
		return bus__fail(err, errlen, "options", s);
	b->opts = o;
	s = natsOptions_SetServers(o, (const char **)cfg->nats_servers.v, (int)cfg->nats_servers.n);
	if (s != NATS_OK)
		return bus__fail(err, errlen, "nats.servers", s);
	char *name = xasprintf("sundynix-dispatcher %s", cfg->instance_id);
	s = natsOptions_SetName(o, name);
	free(name);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, cfg->nats_reconnect_wait_ms);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectJitter(o, 100, 1000);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, cfg->nats_connect_timeout_ms);
	/* Events published while disconnected wait here until the reconnect. */
	if (s == NATS_OK)
		s = natsOptions_SetReconnectBufSize(o, (int)cfg->nats_reconnect_buffer_bytes);
	/* Without this, every publish wakes nats.c's flusher thread, which asks
	 * the adapter for a write event from that thread: a thread hop and a
	 * uv_async round trip per flush, about a millisecond of latency on a
	 * busy machine. With it, publish asks the adapter on the loop thread,
	 * and bus_loop writes once per loop iteration (src/bus_loop.h). */
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(o, true);
	if (s == NATS_OK)
		s = bus_loop_options(b->adapter, o);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, bus__on_disconnected, b);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, bus__on_reconnected, b);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, bus__on_closed, b);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, bus__on_error, b);
	if (s != NATS_OK)
		return bus__fail(err, errlen, "options", s);

	if (*cfg->nats_user && (s = natsOptions_SetUserInfo(o, cfg->nats_user, cfg->nats_password)) != NATS_OK)
		return bus__fail(err, errlen, "nats.user", s);
	if (*cfg->nats_token && (s = natsOptions_SetToken(o, cfg->nats_token)) != NATS_OK)
		return bus__fail(err, errlen, "nats.token", s);
	if (*cfg->nats_credentials_file &&
	    (s = natsOptions_SetUserCredentialsFromFiles(o, cfg->nats_credentials_file, NULL)) != NATS_OK)
		return bus__fail(err, errlen, "nats.credentials_file", s);
	if (*cfg->nats_nkey_seed_file &&
	    (s = natsOptions_SetNKeyFromSeed(o, cfg->nats_nkey, cfg->nats_nkey_seed_file)) != NATS_OK)
		return bus__fail(err, errlen, "nats.nkey_seed_file", s);
	if (*cfg->nats_tls_ca_file || *cfg->nats_tls_cert_file) {
		if ((s = natsOptions_SetSecure(o, true)) != NATS_OK)
			return bus__fail(err, errlen, "nats.tls", s);
		if (*cfg->nats_tls_ca_file &&
		    (s = natsOptions_LoadCATrustedCertificates(o, cfg->nats_tls_ca_file)) != NATS_OK)
			return bus__fail(err, errlen, "nats.tls.ca_file", s);
		if (*cfg->nats_tls_cert_file &&
		    (s = natsOptions_LoadCertificatesChain(o, cfg->nats_tls_cert_file, cfg->nats_tls_key_file)) !=
			    NATS_OK)
			return bus__fail(err, errlen, "nats.tls.cert_file", s);
		if (*cfg->nats_tls_server_name &&
		    (s = natsOptions_SetExpectedHostname(o, cfg->nats_tls_server_name)) != NATS_OK)
			return bus__fail(err, errlen, "nats.tls.server_name", s);
	}
	return 0;
}

static int bus__subscribe(struct bus *b, int idx, const char *subject, const char *queue, enum bus_event ev,
			  char *err, size_t errlen)
{
	struct bus_sub *s = &b->subs[idx];
	natsStatus st;

	s->bus = b;
	s->ev = ev;
	if (queue)
		st = natsConnection_QueueSubscribeSync(&s->sub, b->nc, subject, queue);
	else
		st = natsConnection_SubscribeSync(&s->sub, b->nc, subject);
	if (st == NATS_OK)
		/* Bound what may pile up if the loop stalls; past this nats.c drops
		 * and reports a slow consumer instead of growing without bound. */
		st = natsSubscription_SetPendingLimits(s->sub, 65536, 256 * 1024 * 1024);
	if (st != NATS_OK) {
		snprintf(err, errlen, "nats: subscribe %s: %s", subject, natsStatus_GetText(st));
		return -1;
	}
	return 0;
}

/* The control subjects, at connect. The queue groups wait for
 * bus_join_queue: until the model is known, a submit would get the stub. */
static int bus__subscribe_control(struct bus *b, char *err, size_t errlen)
{
	/* Updates first: a broadcast racing the startup request is never missed. */
	if (bus__subscribe(b, BUS_SUB_UPDATE, b->subj.config_updated, NULL, BUS_CONFIG_UPDATE, err, errlen) < 0 ||
	    bus__subscribe(b, BUS_SUB_CANCEL, b->subj.cancel, NULL, BUS_CANCEL, err, errlen) < 0 ||
	    bus__subscribe(b, BUS_SUB_REPLY, b->inbox, NULL, BUS_CONFIG_REPLY, err, errlen) < 0 ||
	    bus__subscribe(b, BUS_SUB_REPLAY, b->replay, NULL, BUS_REPLAY, err, errlen) < 0)
		return -1;
	natsStatus st = natsConnection_Subscribe(&b->srv, b->nc, BUS_SRV_SUBJECT, bus__on_srv, b);
	if (st == NATS_OK)
		st = natsSubscription_SetPendingLimits(b->srv, 1024, 16 * 1024 * 1024);
	if (st != NATS_OK) {
		snprintf(err, errlen, "nats: subscribe %s: %s", BUS_SRV_SUBJECT, natsStatus_GetText(st));
		return -1;
	}
	return 0;
}

int bus_join_queue(struct bus *b)
{
	char err[256];

	if (b->join_wanted)
		return 0;
	b->join_wanted = true;
	if (bus__subscribe(b, BUS_SUB_PROBE, b->subj.probe, b->queue_group, BUS_PROBE, err, sizeof(err)) < 0 ||
	    bus__subscribe(b, BUS_SUB_SUBMIT, b->subj.submit, b->queue_group, BUS_SUBMIT, err, sizeof(err)) < 0) {
		log_error(NULL, "%s", err);
		return -1;
	}
	bus__want_flush(b, BUS__FLUSH_JOINED);
	return 0;
}

static void bus__fatal(struct bus *b, const char *what, natsStatus s)
{
	natsStatus ls;
	const char *detail = nats_GetLastError(&ls);

	/* nats.c's texts name statuses, servers and the server's own error
	 * ("Authorization Violation"); a URL may carry a password, so redact. */
	snprintf(b->fatal, sizeof(b->fatal), "nats: %s: %s%s%s", what, natsStatus_GetText(s),
		 detail && *detail ? ": " : "", detail ? detail : "");
	for (int i = 0; i < 2; i++)
		util_redact(b->fatal, b->secrets[i]);
	b->cb(b->ud, BUS_FATAL, NULL);
}

static void bus__try_connect(uv_timer_t *t);

/* The first connect runs on the loop thread (nats.c's stock libuv adapter
 * made its first attach only there; bus_loop would take it from any thread,
 * but a loop timer with backoff is simple and logs each try). A refused or
 * unreachable server is retried from a loop timer with backoff; once
 * connected, nats.c reconnects by itself, forever. An attempt blocks the loop
 * for at most nats.connect_timeout_ms, and only while there is no NATS, that
 * is, nothing else to serve. Authorization and TLS failures are final. */
static void bus__try_connect(uv_timer_t *t)
{
	struct bus *b = t->data;
	char err[256];
	natsStatus s = natsConnection_Connect(&b->nc, b->opts);

	switch (s) {
	case NATS_OK:
		if (bus__subscribe_control(b, err, sizeof(err)) < 0) {
			snprintf(b->fatal, sizeof(b->fatal), "%s", err);
			b->cb(b->ud, BUS_FATAL, NULL);
			return;
		}
		bus__want_flush(b, BUS__FLUSH_CONNECTED);
		return;
	case NATS_NO_SERVER:
	case NATS_IO_ERROR:
	case NATS_TIMEOUT:
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
		b->nc = NULL;
		log_warn(NULL, "nats: cannot connect (%s); retrying in %llu ms", natsStatus_GetText(s),
			 (unsigned long long)b->retry_ms);
		uv_timer_start(&b->retry, bus__try_connect, b->retry_ms, 0);
		b->retry_ms = b->retry_ms * 2 > BUS_CONNECT_RETRY_MAX_MS ? BUS_CONNECT_RETRY_MAX_MS : b->retry_ms * 2;
		return;
	default:
		b->nc = NULL;
		bus__fatal(b, "connect", s);
	}
}

struct bus *bus_open(uv_loop_t *loop, const struct config *cfg, bus_cb cb, void *ud, char *err, size_t errlen)
{
	struct bus *b = xcalloc(1, sizeof(*b));
	natsInbox *unique;
	natsStatus s;

	b->loop = loop;
	b->cb = cb;
	b->ud = ud;
	contract_subjects_init(&b->subj, cfg->subject_prefix);
	b->replay = contract_replay_subject(&b->subj, cfg->instance_id);
	b->queue_group = xstrdup(cfg->queue_group);
	if (*cfg->nats_password)
		b->secrets[0] = xstrdup(cfg->nats_password);
	if (*cfg->nats_token)
		b->secrets[1] = xstrdup(cfg->nats_token);
	uv_mutex_init(&b->lock);
	uv_async_init(loop, &b->async, bus__drain);
	b->async.data = b;
	uv_timer_init(loop, &b->retry);
	b->retry.data = b;
	uv_check_init(loop, &b->check);
	b->adapter = bus_loop_new(loop);
	b->open_handles = 4; /* async, retry, check, adapter */
	b->check.data = b;
	uv_check_start(&b->check, bus__pull);
	b->retry_ms = (uint64_t)cfg->nats_reconnect_wait_ms;

	if (bus__options(b, cfg, err, errlen) < 0)
		goto fail;
	/* Our own reply subject under the prefix, not _INBOX.>, so a NATS
	 * account can grant the dispatcher exactly <prefix>.dispatcher.reply.> */
	if ((s = natsInbox_Create(&unique)) != NATS_OK) {
		bus__fail(err, errlen, "inbox", s);
		goto fail;
	}
	b->inbox = xasprintf("%s%s", b->subj.reply_prefix, strrchr(unique, '.') + 1);
	natsInbox_Destroy(unique);
	/* From the loop, so the caller has its handle before any event. */
	uv_timer_start(&b->retry, bus__try_connect, 0, 0);
	return b;
fail:
	bus_close(b);
	b->cb = NULL; /* the caller never saw this bus: bus_free runs from the last close callback */
	return NULL;
}

const char *bus_fatal_reason(const struct bus *b)
{
	return b->fatal;
}

const struct contract_subjects *bus_subjects(const struct bus *b)
{
	return &b->subj;
}

int bus_publish(struct bus *b, const char *subject, const char *data, size_t len)
{
	natsStatus s = natsConnection_Publish(b->nc, subject, data, (int)len);
	if (s != NATS_OK) {
		b->publish_errors++;
		log_warn(NULL, "nats: publish on %s failed: %s", subject, natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

int bus_config_request(struct bus *b, const char *data, size_t len)
{
	natsStatus s = natsConnection_PublishRequest(b->nc, b->subj.config_get, b->inbox, data, (int)len);
	if (s != NATS_OK) {
		log_warn(NULL, "nats: config request failed: %s", natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

static void bus__drain_sub(struct bus_sub *s)
{
	if (s->sub && !s->draining) {
		s->draining = true;
		if (natsSubscription_DrainTimeout(s->sub, BUS_FLUSH_TIMEOUT_MS) != NATS_OK)
			natsSubscription_Unsubscribe(s->sub);
	}
}

void bus_set_admission(struct bus *b, bool open)
{
	char err[256];

	if (!b->join_wanted || b->leaving || open == !b->admission_closed)
		return;
	if (!open) {
		struct bus_sub *slot = NULL;
		for (int i = 0; i < BUS_GONE_MAX && !slot; i++)
			if (!b->gone[i].sub)
				slot = &b->gone[i];
		if (!slot) {
			log_warn(NULL, "nats: still draining %d earlier leaves; staying in the submit queue group", BUS_GONE_MAX);
			return;
		}
		*slot = b->subs[BUS_SUB_SUBMIT];
		memset(&b->subs[BUS_SUB_SUBMIT], 0, sizeof(b->subs[BUS_SUB_SUBMIT]));
		bus__drain_sub(slot);
		b->admission_closed = true;
		b->admission_leaves++;
		return;
	}
	if (bus__subscribe(b, BUS_SUB_SUBMIT, b->subj.submit, b->queue_group, BUS_SUBMIT, err, sizeof(err)) < 0) {
		log_error(NULL, "%s; staying out of the submit queue group", err);
		return;
	}
	b->admission_closed = false;
	b->admission_rejoins++;
}

bool bus_admission_open(const struct bus *b)
{
	return b->join_wanted && !b->admission_closed && !b->leaving;
}

void bus_get_stats(const struct bus *b, struct bus_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->connected = b->nc && !b->closing && natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
	out->joined = b->ready_sent && bus_admission_open(b);
	out->reconnects = b->reconnects;
	out->publish_errors = b->publish_errors;
	out->admission_leaves = b->admission_leaves;
	out->admission_rejoins = b->admission_rejoins;
	if (!b->nc || b->closing)
		return;
	int buffered = natsConnection_Buffered(b->nc);
	out->buffered = buffered > 0 ? buffered : 0;
	natsStatistics *st;
	if (natsStatistics_Create(&st) == NATS_OK) {
		uint64_t im = 0, ib = 0, om = 0, ob = 0, rc = 0;
		if (natsConnection_GetStats(b->nc, st) == NATS_OK &&
		    natsStatistics_GetCounts(st, &im, &ib, &om, &ob, &rc) == NATS_OK) {
			out->in_msgs = im;
			out->in_bytes = ib;
			out->out_msgs = om;
			out->out_bytes = ob;
		}
		natsStatistics_Destroy(st);
	}
}

void bus_leave_queue(struct bus *b)
{
	/* Drain, not unsubscribe: the server may already have routed submits
	 * to us alone; nats.c keeps delivering until the server confirmed the
	 * UNSUB, and the check handle answers them (busy: we are draining). */
	b->leaving = true;
	for (int i = BUS_SUB_PROBE; i <= BUS_SUB_SUBMIT; i++)
		bus__drain_sub(&b->subs[i]);
}

void bus_flush(struct bus *b, int timeout_ms)
{
	if (!b->nc) {
		/* Never connected: nothing to flush. */
		b->cb(b->ud, BUS_FLUSHED, NULL);
		return;
	}
	b->user_timeout_ms = timeout_ms;
	bus__want_flush(b, BUS__FLUSH_USER);
}

static void bus__closed(void *ud)
{
	struct bus *b = ud;

	if (--b->open_handles == 0 && !b->cb)
		bus_free(b);
}

static void bus__close_cb(uv_handle_t *h)
{
	bus__closed(h->data);
}

void bus_close(struct bus *b)
{
	if (!b || b->closing)
		return;
	uv_mutex_lock(&b->lock);
	b->closing = true;
	uv_mutex_unlock(&b->lock);
	/* A flush queued but not started would find the connection gone. */
	if (b->flush_busy)
		(void)uv_cancel((uv_req_t *)&b->flush_work); /* flush_done still runs */
	uv_timer_stop(&b->retry);
	uv_close((uv_handle_t *)&b->retry, bus__close_cb);
	uv_check_stop(&b->check);
	uv_close((uv_handle_t *)&b->check, bus__close_cb);
	uv_close((uv_handle_t *)&b->async, bus__close_cb);
	bus_loop_close(b->adapter, bus__closed, b);
	if (b->nc)
		natsConnection_Close(b->nc);
}

void bus_free(struct bus *b)
{
	struct bus_item *it;

	if (!b)
		return;
	bus__spent_flush(b);
	for (int i = 0; i < BUS_SUB_COUNT; i++)
		if (b->subs[i].sub)
			natsSubscription_Destroy(b->subs[i].sub);
	for (int i = 0; i < BUS_GONE_MAX; i++)
		if (b->gone[i].sub)
			natsSubscription_Destroy(b->gone[i].sub);
	natsSubscription_Destroy(b->srv);
	natsConnection_Destroy(b->nc);
	natsOptions_Destroy(b->opts);
	/* The loop is over, so waiting blocks nothing: nats.c's threads
	 * (reconnect, timers) end, and no connection callback can touch b
	 * after this. Bounded all the same. */
	natsStatus cs = nats_CloseAndWait(BUS_FLUSH_TIMEOUT_MS);
	if (cs != NATS_OK)
		log_warn(NULL, "nats: library did not shut down cleanly: %s", natsStatus_GetText(cs));
	bus_loop_free(b->adapter); /* no nats.c thread is left to call it */
	it = b->head;
	while (it) {
		struct bus_item *next = it->next;
		if (it->msg)
			natsMsg_Destroy(it->msg);
		free(it);
		it = next;
	}
	free(b->inbox);
	free(b->replay);
	contract_subjects_free(&b->subj);
	free(b->queue_group);
	bus__free(b);
}
