/* fixture: what runs around every integration test. A per-program temporary
 * directory, a unique subject prefix per daemon, timestamped narration, and a
 * cleanup stack: whatever a test starts registers its undo here, and
 * h_test_teardown unwinds it even when an assertion failed half way. At exit,
 * or on SIGTERM/SIGINT/SIGHUP, every child still tracked is killed.
 * It starts no process and speaks no protocol: the other support modules do,
 * and register their objects here. */
#ifndef SUNDYNIX_TEST_FIXTURE_H
#define SUNDYNIX_TEST_FIXTURE_H

#include <sys/types.h>

#include "util.h"

/* Per-program init: temporary directory, signal and atexit cleanup, the curl
 * and nats.c libraries. h_main calls it; a program without h_main calls it
 * first. */
void h_init(void);
const char *h_tmpdir(void);
/* $BUILD or "build". */
const char *h_build(void);
/* A unique subject prefix "t<pid>x<n>", valid until the test's teardown. */
const char *h_prefix(void);
/* Prints a line to stderr prefixed with the elapsed time, for test narration. */
void h_log(const char *fmt, ...) UTIL_PRINTF(1, 2);
void h_sleep_ms(int ms);
/* The directory of the SSE corpus ($SSE_CORPUS or ../shared/sse-corpus), or
 * NULL when there is none. */
const char *h_corpus_dir(void);

/* cmocka fixtures: objects created between setup and teardown are destroyed by
 * the teardown (in reverse order), whatever the test did. Objects created
 * outside a test (group setup) live until the program exits. */
int h_test_setup(void **state);
int h_test_teardown(void **state);

/* Cleans up as at exit (objects, children, temporary directory) and _exits
 * with rc, skipping nats_Close and the atexit handlers: libnats 3.4 frees
 * OpenSSL's compression methods in nats_Close without clearing them, so
 * OpenSSL's own atexit cleanup then crashes in any process that used TLS
 * (nats-io/nats.c#904). */
void h_exit(int rc) __attribute__((noreturn));

/* ---- for the other support modules ---- */

/* Registers fn(p) to run at teardown (or exit). fn must call h__forget(p)
 * first, since it also runs when the owner destroys p early. */
void h__push(void (*fn)(void *), void *p);
/* Drops the entry for p, if any. */
void h__forget(void *p);
/* Children killed on a fatal signal or at exit if still tracked. */
void h__track_pid(pid_t pid);
void h__untrack_pid(pid_t pid);
/* Milliseconds since h_init. */
unsigned long long h__elapsed_ms(void);

#endif
