/* fixture: see fixture.h. The cleanup stack and the pid table are the only
 * state, and only the test's thread touches them (the signal handler reads
 * the pid table, which is why it is volatile). */
#include "fixture.h"

#include <curl/curl.h>
#include <errno.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H_MAX_PIDS 256

struct h__cleanup {
	void (*fn)(void *);
	void *p;
	int level;
};

static volatile pid_t h__pids[H_MAX_PIDS];
static char h__tmpdir[256];
static unsigned long long h__t0;
static int h__prefix_n;
static int h__level; /* 0: program/group scope, 1: inside a test */
static struct h__cleanup *h__stack;
static size_t h__stack_len, h__stack_cap;

void h__push(void (*fn)(void *), void *p)
{
	if (h__stack_len == h__stack_cap) {
		h__stack_cap = h__stack_cap ? h__stack_cap * 2 : 32;
		h__stack = xrealloc(h__stack, h__stack_cap * sizeof(*h__stack));
	}
	h__stack[h__stack_len++] = (struct h__cleanup){ fn, p, h__level };
}

void h__forget(void *p)
{
	for (size_t i = h__stack_len; i-- > 0;) {
		if (h__stack[i].p == p) {
			memmove(&h__stack[i], &h__stack[i + 1], (h__stack_len - i - 1) * sizeof(*h__stack));
			h__stack_len--;
			return;
		}
	}
}

static void h__unwind(int level)
{
	while (h__stack_len > 0 && h__stack[h__stack_len - 1].level >= level) {
		struct h__cleanup c = h__stack[h__stack_len - 1];
		c.fn(c.p); /* each cleanup function calls h__forget itself */
		if (h__stack_len > 0 && h__stack[h__stack_len - 1].p == c.p)
			h__stack_len--;
	}
}

void h__track_pid(pid_t pid)
{
	for (int i = 0; i < H_MAX_PIDS; i++) {
		if (h__pids[i] == 0) {
			h__pids[i] = pid;
			return;
		}
	}
}

void h__untrack_pid(pid_t pid)
{
	for (int i = 0; i < H_MAX_PIDS; i++)
		if (h__pids[i] == pid)
			h__pids[i] = 0;
}

unsigned long long h__elapsed_ms(void)
{
	return util_now_ms() - h__t0;
}

static void h__on_signal(int sig)
{
	for (int i = 0; i < H_MAX_PIDS; i++)
		if (h__pids[i] > 0)
			kill(h__pids[i], SIGKILL);
	_exit(128 + sig);
}

/* What both exits do: every object, every child unwinding missed (it should
 * be none), the temporary directory. */
static void h__final_cleanup(void)
{
	h__unwind(0);
	for (int i = 0; i < H_MAX_PIDS; i++) {
		if (h__pids[i] > 0) {
			kill(h__pids[i], SIGKILL);
			waitpid(h__pids[i], NULL, 0);
		}
	}
	if (h__tmpdir[0] && !getenv("H_KEEP_TMP")) {
		char *cmd = xasprintf("rm -rf '%s'", h__tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "harness: could not remove %s\n", h__tmpdir);
		free(cmd);
	}
}

static void h__atexit(void)
{
	h__final_cleanup();
	free(h__stack);
	h__stack = NULL;
	h__stack_len = h__stack_cap = 0;
	nats_Close();
	curl_global_cleanup();
}

void h_init(void)
{
	h__t0 = util_now_ms();
	snprintf(h__tmpdir, sizeof(h__tmpdir), "/tmp/sundynix-integ.XXXXXX");
	if (!mkdtemp(h__tmpdir)) {
		perror("mkdtemp");
		exit(1);
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h__on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (nats_Open(-1) != NATS_OK) {
		fprintf(stderr, "nats_Open failed\n");
		exit(1);
	}
	atexit(h__atexit);
	h_log("temporary directory %s (set H_KEEP_TMP=1 to keep it)", h__tmpdir);
}

void h_exit(int rc)
{
	h__final_cleanup();
	fflush(stdout);
	fflush(stderr);
	_exit(rc);
}

const char *h_tmpdir(void)
{
	return h__tmpdir;
}

const char *h_build(void)
{
	const char *b = getenv("BUILD");
	return b && *b ? b : "build";
}

const char *h_prefix(void)
{
	char *p = xasprintf("t%dx%d", (int)getpid(), ++h__prefix_n);
	h__push(free, p);
	return p;
}

void h_log(const char *fmt, ...)
{
	va_list ap;
	char line[1024];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[%7.3f] %s\n", (double)h__elapsed_ms() / 1000.0, line);
}

void h_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

const char *h_corpus_dir(void)
{
	const char *d = getenv("SSE_CORPUS");
	if (!d || !*d)
		d = "../shared/sse-corpus";
	struct stat st;
	return stat(d, &st) == 0 && S_ISDIR(st.st_mode) ? d : NULL;
}

int h_test_setup(void **state)
{
	(void)state;
	h__level = 1;
	return 0;
}

int h_test_teardown(void **state)
{
	(void)state;
	h__unwind(1);
	h__level = 0;
	return 0;
}
