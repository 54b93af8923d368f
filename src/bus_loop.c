/* bus_loop: see src/bus_loop.h. */
#include "bus_loop.h"

#include <stdlib.h>

#include "util.h"

struct bus_loop {
	uv_loop_t *loop;
	uv_thread_t loop_thread;
	uv_async_t async;   /* applies what other threads asked for */
	uv_prepare_t flush; /* writes nats.c's buffer before the loop blocks */
	uv_poll_t *poll;    /* the socket of the current attach */

	uv_mutex_t lock;
	/* Under lock: what nats.c asked for. */
	natsConnection *nc;
	natsSock sock;  /* the socket of the latest attach */
	bool attach;    /* sock is new: watch it instead */
	bool detach;    /* the connection is closed: stop watching */
	bool read;      /* nats.c wants read events */
	bool write;     /* nats.c has bytes to send */
	bool closed;    /* bus_loop_close ran: nats.c's calls do nothing */

	/* Loop thread only. */
	bool blocked;   /* a write left bytes behind: watch for writability */
	int events;     /* what poll watches */
	int open;       /* handles not yet closed */
	void (*done)(void *ud);
	void *done_ud;
};

static void bl__closed(uv_handle_t *h)
{
	struct bus_loop *bl = h->data;

	if (h->type == UV_POLL)
		free(h);
	if (--bl->open == 0 && bl->done)
		bl->done(bl->done_ud);
}

static void bl__drop_poll(struct bus_loop *bl)
{
	if (!bl->poll)
		return;
	uv_close((uv_handle_t *)bl->poll, bl__closed);
	bl->poll = NULL;
	bl->events = 0;
	bl->blocked = false;
}

static void bl__apply(struct bus_loop *bl);

static void bl__on_poll(uv_poll_t *p, int status, int events)
{
	struct bus_loop *bl = p->data;
	natsConnection *nc = bl->nc; /* set before the poll existed; stays until bus_free */

	if (status < 0) {
		/* libuv stopped the handle. What the server sent before the
		 * error may be unread: nats.c reads it, meets the error itself
		 * (and reconnects); until then the socket stays watched. */
		natsConnection_ProcessReadEvent(nc);
		if (p == bl->poll) {
			bl->events = 0;
			bl__apply(bl);
		}
		return;
	}
	if (events & UV_READABLE)
		natsConnection_ProcessReadEvent(nc);
	if ((events & UV_WRITABLE) && p == bl->poll)
		natsConnection_ProcessWriteEvent(nc);
}

static void bl__on_flush(uv_prepare_t *h);

/* Makes the handles match what nats.c asked for. Loop thread. */
static void bl__apply(struct bus_loop *bl)
{
	bool attach, detach, read, write;
	natsSock sock;

	uv_mutex_lock(&bl->lock);
	attach = bl->attach;
	detach = bl->detach;
	read = bl->read;
	write = bl->write;
	sock = bl->sock;
	bl->attach = bl->detach = false;
	uv_mutex_unlock(&bl->lock);

	if (detach || attach)
		bl__drop_poll(bl);
	if (attach && !detach) {
		bl->poll = xmalloc(sizeof(*bl->poll));
		if (uv_poll_init_socket(bl->loop, bl->poll, sock) != 0) {
			/* Not ours to fix: nats.c finds the socket dead on its
			 * next read or ping and reconnects. */
			free(bl->poll);
			bl->poll = NULL;
		} else {
			bl->poll->data = bl;
			bl->open++;
		}
	}
	if (!bl->poll)
		return;
	if (!write)
		bl->blocked = false;
	int want = (read ? UV_READABLE : 0) | (bl->blocked ? UV_WRITABLE : 0);
	if (want != bl->events) {
		if (want)
			uv_poll_start(bl->poll, want, bl__on_poll);
		else
			uv_poll_stop(bl->poll);
		bl->events = want;
	}
	if (write && !bl->blocked)
		uv_prepare_start(&bl->flush, bl__on_flush);
}

static void bl__on_flush(uv_prepare_t *h)
{
	struct bus_loop *bl = h->data;
	bool left;

	uv_prepare_stop(h);
	if (!bl->poll || bl->blocked)
		return;
	natsConnection_ProcessWriteEvent(bl->nc);
	/* A large write takes a while, and the loop is about to compute how
	 * long it may block from the time it read before the timers ran: read
	 * it again, or every timer due next fires late by the write's length. */
	uv_update_time(bl->loop);
	/* All written: nats.c said write(false) from inside, and that is all.
	 * Bytes left: the kernel's buffer is full; epoll says when it drains. */
	uv_mutex_lock(&bl->lock);
	left = bl->write;
	uv_mutex_unlock(&bl->lock);
	if (left && bl->poll) {
		bl->blocked = true;
		bl__apply(bl);
	}
}

static void bl__on_async(uv_async_t *h)
{
	bl__apply(h->data);
}

/* Records what nats.c asked for; applies it now on the loop thread, or
 * wakes the loop to apply it. */
static natsStatus bl__ask(struct bus_loop *bl)
{
	uv_thread_t self = uv_thread_self();

	if (uv_thread_equal(&self, &bl->loop_thread)) {
		uv_mutex_lock(&bl->lock);
		bool closed = bl->closed;
		uv_mutex_unlock(&bl->lock);
		if (!closed)
			bl__apply(bl);
		return NATS_OK;
	}
	uv_mutex_lock(&bl->lock);
	if (!bl->closed)
		uv_async_send(&bl->async);
	uv_mutex_unlock(&bl->lock);
	return NATS_OK;
}

static natsStatus bl__attach(void **userData, void *loop, natsConnection *nc, natsSock socket)
{
	struct bus_loop *bl = loop;

	*userData = bl;
	uv_mutex_lock(&bl->lock);
	if (!bl->nc) /* the first attach, on the loop thread; the same nc ever after */
		bl->nc = nc;
	bl->sock = socket;
	bl->attach = true;
	bl->detach = false;
	bl->read = true;
	uv_mutex_unlock(&bl->lock);
	return bl__ask(bl);
}

static natsStatus bl__read(void *userData, bool add)
{
	struct bus_loop *bl = userData;

	uv_mutex_lock(&bl->lock);
	bl->read = add;
	uv_mutex_unlock(&bl->lock);
	return bl__ask(bl);
}

static natsStatus bl__write(void *userData, bool add)
{
	struct bus_loop *bl = userData;

	uv_mutex_lock(&bl->lock);
	bool was = bl->write;
	bl->write = add;
	uv_mutex_unlock(&bl->lock);
	/* The flush itself says write(false): nothing to change on the loop
	 * unless the socket was being watched for writability. */
	if (!add && !was)
		return NATS_OK;
	return bl__ask(bl);
}

static natsStatus bl__detach(void *userData)
{
	struct bus_loop *bl = userData;

	uv_mutex_lock(&bl->lock);
	bl->detach = true;
	bl->attach = false;
	bl->read = bl->write = false;
	uv_mutex_unlock(&bl->lock);
	return bl__ask(bl);
}

struct bus_loop *bus_loop_new(uv_loop_t *loop)
{
	struct bus_loop *bl = xcalloc(1, sizeof(*bl));

	bl->loop = loop;
	bl->loop_thread = uv_thread_self();
	uv_mutex_init(&bl->lock);
	uv_async_init(loop, &bl->async, bl__on_async);
	bl->async.data = bl;
	uv_prepare_init(loop, &bl->flush);
	bl->flush.data = bl;
	bl->open = 2;
	return bl;
}

natsStatus bus_loop_options(struct bus_loop *bl, natsOptions *o)
{
	return natsOptions_SetEventLoop(o, bl, bl__attach, bl__read, bl__write, bl__detach);
}

void bus_loop_close(struct bus_loop *bl, void (*done)(void *ud), void *ud)
{
	uv_mutex_lock(&bl->lock);
	bl->closed = true;
	uv_mutex_unlock(&bl->lock);
	bl->done = done;
	bl->done_ud = ud;
	bl__drop_poll(bl);
	uv_close((uv_handle_t *)&bl->async, bl__closed);
	uv_close((uv_handle_t *)&bl->flush, bl__closed);
}

void bus_loop_free(struct bus_loop *bl)
{
	if (!bl)
		return;
	uv_mutex_destroy(&bl->lock);
	free(bl);
}
