/* bus_loop: nats.c's event-loop adapter, private to bus.c.
 *
 * Owns: the poll handle on the NATS socket, and when nats.c's buffered bytes
 * are written. Ignores: everything about messages, subjects and connection
 * state (bus.c).
 *
 * Why not nats.c's stock libuv adapter: it asks epoll for a write event for
 * every flush (uv_poll_start, which deletes and re-adds the fd: two
 * epoll_ctl), wakes up once more to write, and takes the event away again
 * (two more): four syscalls and a loop wake-up per flush, a quarter of a
 * syscall per token in the bench. Here a flush is a flag: the bytes go out
 * once per loop iteration, from a prepare handle, just before the loop would
 * block, so every publish of an iteration shares one write and none waits.
 * The socket is watched for writing only while the kernel's buffer is full.
 *
 * Threads: nats.c calls the adapter from the loop thread (publishes, reads)
 * and from its own (the reconnect thread attaches, the timer thread flushes
 * PINGs). The state lives under a mutex; a call from another thread is
 * applied on the loop through a uv_async. */
#ifndef SUNDYNIX_BUS_LOOP_H
#define SUNDYNIX_BUS_LOOP_H

#include <nats/nats.h>
#include <uv.h>

struct bus_loop;

/* Handles are initialised here; bus_loop_close closes them. */
struct bus_loop *bus_loop_new(uv_loop_t *loop);

/* Gives the adapter to nats.c (natsOptions_SetEventLoop). */
natsStatus bus_loop_options(struct bus_loop *bl, natsOptions *o);

/* Closes the loop handles; done(ud) runs once they are all closed, after
 * which nats.c's calls into the adapter do nothing. */
void bus_loop_close(struct bus_loop *bl, void (*done)(void *ud), void *ud);

/* After the loop is over. */
void bus_loop_free(struct bus_loop *bl);

#endif
