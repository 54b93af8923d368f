/* harness: see harness.h. Blocking style throughout; the only threads are
 * nats.c's delivery threads, which touch nothing but the collectors they
 * were handed (under their mutex). */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* ---- bookkeeping: pids for the signal handler, a cleanup stack ---- */

#define H_MAX_PIDS 256
static volatile pid_t h__pids[H_MAX_PIDS];
static char h__tmpdir[256];
static unsigned long long h__t0;
static int h__prefix_n;
static int h__level; /* 0: program/group scope, 1: inside a test */

struct h__cleanup {
	void (*fn)(void *);
	void *p;
	int level;
};
static struct h__cleanup *h__stack;
static size_t h__stack_len, h__stack_cap;

static void h__push(void (*fn)(void *), void *p)
{
	if (h__stack_len == h__stack_cap) {
		h__stack_cap = h__stack_cap ? h__stack_cap * 2 : 32;
		h__stack = xrealloc(h__stack, h__stack_cap * sizeof(*h__stack));
	}
	h__stack[h__stack_len++] = (struct h__cleanup){ fn, p, h__level };
}

static void h__forget(void *p)
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

static void h__track_pid(pid_t pid)
{
	for (int i = 0; i < H_MAX_PIDS; i++) {
		if (h__pids[i] == 0) {
			h__pids[i] = pid;
			return;
		}
	}
}

static void h__untrack_pid(pid_t pid)
{
	for (int i = 0; i < H_MAX_PIDS; i++)
		if (h__pids[i] == pid)
			h__pids[i] = 0;
}

static void h__on_signal(int sig)
{
	for (int i = 0; i < H_MAX_PIDS; i++)
		if (h__pids[i] > 0)
			kill(h__pids[i], SIGKILL);
	_exit(128 + sig);
}

static void h__atexit(void)
{
	h__unwind(0);
	/* Anything unwinding missed (it should be nothing). */
	for (int i = 0; i < H_MAX_PIDS; i++) {
		if (h__pids[i] > 0) {
			kill(h__pids[i], SIGKILL);
			waitpid(h__pids[i], NULL, 0);
		}
	}
	free(h__stack);
	h__stack = NULL;
	h__stack_len = h__stack_cap = 0;
	nats_Close();
	curl_global_cleanup();
	if (h__tmpdir[0] && !getenv("H_KEEP_TMP")) {
		char *cmd = xasprintf("rm -rf '%s'", h__tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "harness: could not remove %s\n", h__tmpdir);
		free(cmd);
	}
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
	fprintf(stderr, "[%7.3f] %s\n", (double)(util_now_ms() - h__t0) / 1000.0, line);
}

void h_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
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

/* ---- assertions ---- */

void h_assert_contains(const char *hay, const char *needle, const char *file, int line)
{
	if (!hay || !strstr(hay, needle))
		fail_msg("%s:%d: expected \"%s\" to contain \"%s\"", file, line, hay ? hay : "(null)", needle);
}

void h_assert_not_contains(const char *hay, const char *needle, const char *file, int line)
{
	if (hay && strstr(hay, needle))
		fail_msg("%s:%d: expected \"%s\" NOT to contain \"%s\"", file, line, hay, needle);
}

json_t *h_jpath(json_t *obj, const char *path)
{
	char *copy = xstrdup(path), *save = NULL;
	json_t *cur = obj;
	for (char *tok = strtok_r(copy, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
		cur = json_is_object(cur) ? json_object_get(cur, tok) : NULL;
	free(copy);
	return cur;
}

const char *h_jstr(json_t *obj, const char *key)
{
	json_t *v = h_jpath(obj, key);
	if (!json_is_string(v)) {
		char *dump = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
		fail_msg("expected string at \"%s\" in %s", key, dump ? dump : "(null)");
	}
	return json_string_value(v);
}

long long h_jint(json_t *obj, const char *key)
{
	json_t *v = h_jpath(obj, key);
	if (!json_is_integer(v)) {
		char *dump = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
		fail_msg("expected integer at \"%s\" in %s", key, dump ? dump : "(null)");
	}
	return json_integer_value(v);
}

json_t *h_json_parse(const char *text)
{
	json_error_t err;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
	if (!j)
		fail_msg("bad JSON (%s at %d:%d): %s", err.text, err.line, err.column, text);
	return j;
}

const char *h_corpus_dir(void)
{
	const char *d = getenv("SSE_CORPUS");
	if (!d || !*d)
		d = "../shared/sse-corpus";
	struct stat st;
	return stat(d, &st) == 0 && S_ISDIR(st.st_mode) ? d : NULL;
}

/* ---- files ---- */

char *h_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct buf b;
	char chunk[65536];
	size_t n;
	buf_init(&b);
	buf_reserve(&b, 0);
	b.data[0] = '\0';
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	if (len)
		*len = b.len;
	return b.data;
}

void h_write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		fail_msg("cannot write %s: %s", path, strerror(errno));
	if (fwrite(data, 1, len, f) != len)
		fail_msg("short write to %s", path);
	fclose(f);
}

size_t h_file_count(const char *path, const char *needle)
{
	char *s = h_read_file(path, NULL);
	size_t n = 0, nl = strlen(needle);
	if (!s)
		return 0;
	for (const char *p = s; (p = strstr(p, needle)); p += nl)
		n++;
	free(s);
	return n;
}

bool h_file_contains(const char *path, const char *needle)
{
	return h_file_count(path, needle) > 0;
}

bool h_wait_file_count(const char *path, const char *needle, size_t n, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (;;) {
		if (h_file_count(path, needle) >= n)
			return true;
		if (util_now_ms() >= end)
			return false;
		h_sleep_ms(10);
	}
}

bool h_wait_file(const char *path, const char *needle, int timeout_ms)
{
	return h_wait_file_count(path, needle, 1, timeout_ms);
}

/* ---- sockets ---- */

int h_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static int h__connect_once(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc;
}

bool h_wait_port(int port, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (;;) {
		if (h__connect_once(port) == 0)
			return true;
		if (util_now_ms() >= end)
			return false;
		h_sleep_ms(10);
	}
}

static void h__close_fd(void *p)
{
	int *fd = p;
	close(*fd);
	h__forget(p);
	free(fd);
}

static void h__keep_fd(int fd)
{
	int *p = xmalloc(sizeof(*p));
	*p = fd;
	h__push(h__close_fd, p);
}

int h_blackhole_port(void)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	/* Backlog 0 holds one established connection; once it is full the
	 * kernel drops further SYNs, so a client's connect hangs. */
	assert_int_equal(listen(lfd, 0), 0);
	h__keep_fd(lfd);
	for (int i = 0; i < 3; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS)
			fail_msg("filler connect: %s", strerror(errno));
		h__keep_fd(fd);
	}
	h_sleep_ms(50);
	return ntohs(sa.sin_port);
}

/* ---- processes ---- */

static void h__proc_cleanup(void *p)
{
	h_proc_stop(p, 5000);
	h_proc_free(p);
}

/* Forks and execs argv: stdin from /dev/null, stdout to out_fd, stderr to
 * err_fd, signals back to default, every other descriptor closed, and the
 * child killed if the test dies. envp NULL keeps the environment; pidvar (may
 * be NULL, e.g. "WATCHDOG_PID=") gets the child's own pid appended in the
 * child. Only async-signal-safe calls between fork and exec: the parent has
 * threads. */
static pid_t h__fork_exec(char *const argv[], int out_fd, int err_fd, char *const envp[], char *pidvar)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (pidvar) {
			char digits[16];
			int nd = 0;
			for (unsigned long v = (unsigned long)getpid(); v; v /= 10)
				digits[nd++] = (char)('0' + v % 10);
			size_t at = strlen(pidvar);
			while (nd > 0)
				pidvar[at++] = digits[--nd];
			pidvar[at] = '\0';
		}
		int in = open("/dev/null", O_RDONLY);
		dup2(in, 0);
		dup2(out_fd, 1);
		dup2(err_fd, 2);
		for (int i = 3; i < 1024; i++)
			close(i);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		if (envp)
			execvpe(argv[0], argv, envp);
		else
			execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Objects that own a process (nats, mock, daemon) stop it themselves, so only
 * h_spawn's callers get a cleanup entry of their own. */
static struct h_proc *h__spawn(const char *name, char *const argv[])
{
	struct h_proc *p = xcalloc(1, sizeof(*p));
	p->name = xstrdup(name);
	p->log_path = xasprintf("%s/%s.log", h__tmpdir, name);
	int fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		fail_msg("open %s: %s", p->log_path, strerror(errno));
	pid_t pid = h__fork_exec(argv, fd, fd, NULL, NULL);
	close(fd);
	p->pid = pid;
	h__track_pid(pid);
	return p;
}

struct h_proc *h_spawn(const char *name, char *const argv[])
{
	struct h_proc *p = h__spawn(name, argv);
	h__push(h__proc_cleanup, p);
	return p;
}

static bool h__reap(struct h_proc *p, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	if (p->reaped)
		return true;
	for (;;) {
		int st;
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == p->pid) {
			p->status = st;
			p->reaped = true;
			h__untrack_pid(p->pid);
			return true;
		}
		if (r < 0 && errno != EINTR) {
			p->reaped = true;
			p->status = 0xff00; /* unknown: report exit 255 */
			h__untrack_pid(p->pid);
			return true;
		}
		if (util_now_ms() >= end)
			return false;
		h_sleep_ms(5);
	}
}

static int h__exit_code(struct h_proc *p)
{
	if (WIFEXITED(p->status))
		return WEXITSTATUS(p->status);
	if (WIFSIGNALED(p->status))
		return 128 + WTERMSIG(p->status);
	return 255;
}

int h_proc_stop(struct h_proc *p, int timeout_ms)
{
	if (!p->reaped) {
		kill(p->pid, SIGTERM);
		if (!h__reap(p, timeout_ms)) {
			h_log("%s (pid %d) did not exit within %d ms of SIGTERM; SIGKILL", p->name, (int)p->pid,
			      timeout_ms);
			kill(p->pid, SIGKILL);
			h__reap(p, 10000);
		}
	}
	return h__exit_code(p);
}

void h_proc_kill(struct h_proc *p)
{
	if (!p->reaped) {
		kill(p->pid, SIGKILL);
		h__reap(p, 10000);
	}
}

bool h_proc_alive(struct h_proc *p)
{
	return !h__reap(p, 0);
}

void h_proc_free(struct h_proc *p)
{
	if (!p)
		return;
	h__forget(p);
	if (!p->reaped)
		h_proc_kill(p);
	free(p->name);
	free(p->log_path);
	free(p);
}

/* ---- nats-server ---- */

static void h__nats_spawn(struct h_nats *n)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", n->port);
	char *argv[] = { "nats-server", "-a", "127.0.0.1", "-p", port, NULL, NULL, NULL };
	if (n->conf_path) {
		argv[5] = "-c";
		argv[6] = n->conf_path;
	}
	char name[64];
	snprintf(name, sizeof(name), "nats-%d", n->port);
	n->proc = h__spawn(name, argv);
	if (!h_wait_port(n->port, 10000)) {
		char *log = h_read_file(n->proc->log_path, NULL);
		fail_msg("nats-server did not listen on %d: %s", n->port, log ? log : "");
	}
}

static void h__nats_cleanup(void *p)
{
	struct h_nats *n = p;
	h__forget(n);
	if (n->proc) {
		h_proc_stop(n->proc, 5000);
		h_proc_free(n->proc);
	}
	free(n->conf_path);
	free(n);
}

struct h_nats *h_nats_start(const char *conf)
{
	struct h_nats *n = xcalloc(1, sizeof(*n));
	h__push(h__nats_cleanup, n);
	n->port = h_free_port();
	snprintf(n->url, sizeof(n->url), "nats://127.0.0.1:%d", n->port);
	if (conf) {
		n->conf_path = xasprintf("%s/nats-%d.conf", h__tmpdir, n->port);
		h_write_file(n->conf_path, conf, strlen(conf));
	}
	h__nats_spawn(n);
	return n;
}

void h_nats_stop(struct h_nats *n)
{
	h__nats_cleanup(n);
}

void h_nats_restart(struct h_nats *n)
{
	h_proc_stop(n->proc, 5000);
	h_proc_free(n->proc);
	n->proc = NULL;
	h__nats_spawn(n);
}

/* ---- mock backend ---- */

static void h__mock_cleanup(void *p)
{
	struct h_mock *m = p;
	h__forget(m);
	if (m->proc) {
		h_proc_stop(m->proc, 5000);
		h_proc_free(m->proc);
	}
	free(m->name);
	free(m->port_file);
	free(m);
}

struct h_mock *h_mock_start(const char *name, const char *const *extra_args)
{
	struct h_mock *m = xcalloc(1, sizeof(*m));
	h__push(h__mock_cleanup, m);
	m->name = xstrdup(name);
	m->port_file = xasprintf("%s/%s.port", h__tmpdir, name);
	unlink(m->port_file);
	char *bin = xasprintf("%s/tests/mock-backend", h_build());
	const char *argv[32];
	size_t n = 0;
	argv[n++] = bin;
	argv[n++] = "--port-file";
	argv[n++] = m->port_file;
	argv[n++] = "--quiet";
	for (size_t i = 0; extra_args && extra_args[i] && n < UTIL_ARRAY_LEN(argv) - 1; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;
	if (access(bin, X_OK) != 0)
		fail_msg("%s is missing (make %s)", bin, bin);
	m->proc = h__spawn(name, (char *const *)argv);
	free(bin);
	unsigned long long end = util_now_ms() + 10000;
	for (;;) {
		char *s = h_read_file(m->port_file, NULL);
		if (s && strchr(s, '\n')) {
			m->port = atoi(s);
			free(s);
			break;
		}
		free(s);
		if (util_now_ms() >= end || !h_proc_alive(m->proc)) {
			char *log = h_read_file(m->proc->log_path, NULL);
			fail_msg("mock %s did not write its port file: %s", name, log ? log : "");
		}
		h_sleep_ms(10);
	}
	snprintf(m->base_url, sizeof(m->base_url), "http://127.0.0.1:%d/v1", m->port);
	return m;
}

void h_mock_stop(struct h_mock *m)
{
	int code = h_proc_stop(m->proc, 5000);
	h_assert_no_sanitizer_report(m->proc->log_path);
	assert_int_equal(code, 0);
}

void h_mock_kill(struct h_mock *m)
{
	h_proc_kill(m->proc);
}

static size_t h__curl_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	buf_append(ud, ptr, size * nmemb);
	return size * nmemb;
}

static json_t *h__mock_http(struct h_mock *m, const char *path, const char *body)
{
	CURL *e = curl_easy_init();
	struct buf out;
	struct curl_slist *hdrs = NULL;
	char url[256];
	long status = 0;

	buf_init(&out);
	buf_reserve(&out, 0);
	out.data[0] = '\0';
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", m->port, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, h__curl_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	CURLcode rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(e);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK) {
		buf_free(&out);
		fail_msg("mock %s %s: %s", body ? "POST" : "GET", url, curl_easy_strerror(rc));
	}
	if (status < 200 || status > 299) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", out.data);
		buf_free(&out);
		fail_msg("mock %s %s: HTTP %ld: %s", body ? "POST" : "GET", url, status, msg);
	}
	json_error_t err;
	json_t *j = json_loads(out.data, JSON_DECODE_ANY, &err);
	if (!j) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", out.data);
		buf_free(&out);
		fail_msg("mock %s: answer is not JSON: %s", url, msg);
	}
	buf_free(&out);
	return j;
}

json_t *h_mock_get(struct h_mock *m, const char *path)
{
	return h__mock_http(m, path, NULL);
}

json_t *h_mock_post(struct h_mock *m, const char *path, const char *body)
{
	return h__mock_http(m, path, body);
}

static void __attribute__((format(printf, 3, 0)))
h__mock_postv(struct h_mock *m, const char *path, const char *fmt, va_list ap)
{
	struct buf b;
	va_list ap2;
	buf_init(&b);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	assert_true(n >= 0);
	buf_reserve(&b, (size_t)n);
	vsnprintf(b.data, (size_t)n + 1, fmt, ap);
	b.len = (size_t)n;
	json_t *body = h_json_parse(b.data); /* catches typos in test scripts early */
	json_decref(body);
	json_t *ans = h_mock_post(m, path, b.data);
	buf_free(&b);
	if (!json_is_true(json_object_get(ans, "ok"))) {
		char *d = json_dumps(ans, JSON_COMPACT | JSON_ENCODE_ANY);
		fail_msg("mock %s refused the script: %s", path, d);
	}
	json_decref(ans);
}

void h_mock_script(struct h_mock *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	h__mock_postv(m, "/_mock/script", fmt, ap);
	va_end(ap);
}

void h_mock_next(struct h_mock *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	h__mock_postv(m, "/_mock/next", fmt, ap);
	va_end(ap);
}

void h_mock_reset(struct h_mock *m)
{
	json_decref(h_mock_post(m, "/_mock/reset", "{}"));
}

json_t *h_mock_requests(struct h_mock *m)
{
	json_t *j = h_mock_get(m, "/_mock/requests");
	if (!json_is_array(j))
		fail_msg("/_mock/requests did not answer an array");
	return j;
}

long long h_mock_stat(struct h_mock *m, const char *key)
{
	json_t *j = h_mock_get(m, "/_mock/stats");
	long long v = h_jint(j, key);
	json_decref(j);
	return v;
}

long long h_mock_wait_stat(struct h_mock *m, const char *key, long long want, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (;;) {
		long long v = h_mock_stat(m, key);
		if (v >= want || util_now_ms() >= end)
			return v;
		h_sleep_ms(20);
	}
}

/* ---- daemon ---- */

static void h__json_merge(json_t *dst, json_t *src)
{
	const char *k;
	json_t *v;
	json_object_foreach(src, k, v) {
		json_t *d = json_object_get(dst, k);
		if (json_is_object(d) && json_is_object(v))
			h__json_merge(d, v);
		else
			json_object_set(dst, k, v);
	}
}

static void h__daemon_cleanup(void *p)
{
	struct h_daemon *d = p;
	h__forget(d);
	if (d->proc) {
		h_proc_stop(d->proc, 10000);
		h_proc_free(d->proc);
	}
	free(d->cfg_path);
	free(d->prefix);
	free(d->log_path);
	free(d->name);
	free(d);
}

struct h_daemon *h_daemon_start(struct h_nats *n, const char *prefix, json_t *overrides)
{
	struct h_daemon *d = h_daemon_spawn(n, prefix, overrides, NULL);

	if (!h_daemon_wait_ready(d, 15000))
		fail_msg("daemon %s did not log \"dispatcher ready\" (%s)", d->name,
			 h_proc_alive(d->proc) ? "timeout" : "it exited");
	return d;
}

struct h_daemon *h_daemon_startf(struct h_nats *n, const char *prefix, const char *overrides_json)
{
	json_t *o = overrides_json ? h_json_parse(overrides_json) : NULL;
	struct h_daemon *d = h_daemon_start(n, prefix, o);
	json_decref(o);
	return d;
}

void h_assert_no_sanitizer_report(const char *log_path)
{
	static const char *const marks[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(marks); i++) {
		if (h_file_contains(log_path, marks[i])) {
			char *log = h_read_file(log_path, NULL);
			fprintf(stderr, "---- %s ----\n%s\n---- end ----\n", log_path, log ? log : "");
			free(log);
			fail_msg("%s contains a sanitizer report (\"%s\")", log_path, marks[i]);
		}
	}
}

int h_daemon_stop(struct h_daemon *d)
{
	int code = h_proc_stop(d->proc, 10000);
	h_assert_no_sanitizer_report(d->log_path);
	if (code != 0)
		h_daemon_dump_log(d);
	return code;
}

void h_daemon_stop_ok(struct h_daemon *d)
{
	assert_int_equal(h_daemon_stop(d), 0);
}

bool h_daemon_wait_log(struct h_daemon *d, const char *needle, int timeout_ms)
{
	return h_wait_file(d->log_path, needle, timeout_ms);
}

bool h_daemon_log_contains(struct h_daemon *d, const char *needle)
{
	return h_file_contains(d->log_path, needle);
}

size_t h_daemon_log_count(struct h_daemon *d, const char *needle)
{
	return h_file_count(d->log_path, needle);
}

void h_daemon_dump_log(struct h_daemon *d)
{
	size_t len = 0;
	char *log = h_read_file(d->log_path, &len);
	/* The tail is what matters; keep failure output readable. */
	const char *start = log ? log : "";
	if (len > 12000)
		start = log + len - 12000;
	fprintf(stderr, "---- %s (tail) ----\n%s---- end ----\n", d->log_path, start);
	free(log);
}

/* ---- NATS client ---- */

static void h__client_cleanup(void *p)
{
	struct h_client *c = p;
	h__forget(c);
	natsConnection_Destroy(c->nc);
	free(c->prefix);
	free(c);
}

struct h_client *h_client_connect(struct h_nats *n, const char *prefix)
{
	natsOptions *o = NULL;
	struct h_client *c = xcalloc(1, sizeof(*c));
	c->prefix = xstrdup(prefix);
	assert_int_equal(natsOptions_Create(&o), NATS_OK);
	assert_int_equal(natsOptions_SetURL(o, n->url), NATS_OK);
	assert_int_equal(natsOptions_SetAllowReconnect(o, true), NATS_OK);
	assert_int_equal(natsOptions_SetMaxReconnect(o, -1), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectWait(o, 50), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectJitter(o, 0, 0), NATS_OK);
	assert_int_equal(natsOptions_SetTimeout(o, 2000), NATS_OK);
	natsStatus s = natsConnection_Connect(&c->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		free(c->prefix);
		free(c);
		fail_msg("connect to %s: %s", n->url, natsStatus_GetText(s));
	}
	h__push(h__client_cleanup, c);
	return c;
}

void h_client_close(struct h_client *c)
{
	h__client_cleanup(c);
}

void h_flush(struct h_client *c)
{
	natsStatus s = natsConnection_FlushTimeout(c->nc, 5000);
	if (s != NATS_OK)
		fail_msg("flush: %s", natsStatus_GetText(s));
}

json_t *h_submit_raw(struct h_client *c, const char *body, size_t len, int timeout_ms)
{
	natsMsg *reply = NULL;
	char subj[256];
	snprintf(subj, sizeof(subj), "%s.chat.submit", c->prefix);
	natsStatus s = natsConnection_Request(&reply, c->nc, subj, body, (int)len, timeout_ms);
	if (s != NATS_OK)
		fail_msg("submit on %s: %s (no ack within %d ms)", subj, natsStatus_GetText(s), timeout_ms);
	char *text = xstrndup(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
	natsMsg_Destroy(reply);
	json_error_t err;
	json_t *j = json_loads(text, 0, &err);
	if (!j)
		fail_msg("ack is not JSON: %s", text);
	free(text);
	return j;
}

json_t *h_submit(struct h_client *c, json_t *req, int timeout_ms)
{
	char *body = json_dumps(req, JSON_COMPACT);
	json_t *ack = h_submit_raw(c, body, strlen(body), timeout_ms);
	free(body);
	return ack;
}

void h_submit_simple(struct h_client *c, const char *rid, const char *text)
{
	json_t *req = json_pack("{s:s,s:[{s:s,s:s}]}", "request_id", rid, "messages", "role", "user", "content", text);
	json_t *ack = h_submit(c, req, 5000);
	json_decref(req);
	if (!json_is_true(json_object_get(ack, "accepted"))) {
		char *d = json_dumps(ack, JSON_COMPACT);
		fail_msg("request %s not accepted: %s", rid, d);
	}
	assert_string_equal(h_jstr(ack, "request_id"), rid);
	json_decref(ack);
}

void h_publish(struct h_client *c, const char *subject_suffix, const char *body)
{
	char subj[256];
	snprintf(subj, sizeof(subj), "%s.%s", c->prefix, subject_suffix);
	natsStatus s = natsConnection_PublishString(c->nc, subj, body);
	if (s != NATS_OK)
		fail_msg("publish %s: %s", subj, natsStatus_GetText(s));
	h_flush(c);
}

void h_publish_config(struct h_client *c, const char *body)
{
	h_publish(c, "config.model.updated", body);
}

void h_use_mock(struct h_client *c, struct h_daemon *d, struct h_mock *m, const char *model,
		const char *api_key, long long revision)
{
	char needle[256], rev[32] = "";
	snprintf(needle, sizeof(needle), "model config applied: model=%s base_url=%s", model, m->base_url);
	size_t before = h_daemon_log_count(d, needle);
	if (revision >= 0)
		snprintf(rev, sizeof(rev), ",\"revision\":%lld", revision);
	char *body = xasprintf("{\"provider\":\"openai\",\"base_url\":\"%s\",\"api_key\":\"%s\",\"model\":\"%s\"%s}",
			       m->base_url, api_key ? api_key : "", model, rev);
	h_publish_config(c, body);
	free(body);
	if (!h_wait_file_count(d->log_path, needle, before + 1, 5000)) {
		h_daemon_dump_log(d);
		fail_msg("daemon did not log \"%s\"", needle);
	}
}

void h_cancel(struct h_client *c, const char *rid)
{
	char *body = xasprintf("{\"request_id\":\"%s\"}", rid);
	h_publish(c, "chat.cancel", body);
	free(body);
}

/* ---- config responder ---- */

struct h_responder {
	struct h_client *c;
	natsSubscription *sub;
	char *body;
	int delay_ms;
	pthread_mutex_t mu;
	int count;
};

static void h__responder_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
	struct h_responder *r = ud;
	(void)sub;
	if (r->delay_ms > 0)
		h_sleep_ms(r->delay_ms);
	if (natsMsg_GetReply(msg))
		natsConnection_PublishString(nc, natsMsg_GetReply(msg), r->body);
	pthread_mutex_lock(&r->mu);
	r->count++;
	pthread_mutex_unlock(&r->mu);
	natsMsg_Destroy(msg);
}

static void h__sub_stop(natsSubscription *sub)
{
	/* Drain waits until the callbacks in progress returned, so the
	 * collector can be freed afterwards. */
	if (natsSubscription_Drain(sub) == NATS_OK)
		natsSubscription_WaitForDrainCompletion(sub, 3000);
	else
		natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
}

static void h__responder_cleanup(void *p)
{
	struct h_responder *r = p;
	h__forget(r);
	h__sub_stop(r->sub);
	pthread_mutex_destroy(&r->mu);
	free(r->body);
	free(r);
}

struct h_responder *h_responder_start(struct h_client *c, const char *body, int delay_ms)
{
	struct h_responder *r = xcalloc(1, sizeof(*r));
	char subj[256];
	r->c = c;
	r->body = xstrdup(body);
	r->delay_ms = delay_ms;
	pthread_mutex_init(&r->mu, NULL);
	snprintf(subj, sizeof(subj), "%s.config.model.get", c->prefix);
	natsStatus s = natsConnection_Subscribe(&r->sub, c->nc, subj, h__responder_cb, r);
	if (s != NATS_OK)
		fail_msg("subscribe %s: %s", subj, natsStatus_GetText(s));
	h__push(h__responder_cleanup, r);
	h_flush(c);
	return r;
}

int h_responder_count(struct h_responder *r)
{
	pthread_mutex_lock(&r->mu);
	int n = r->count;
	pthread_mutex_unlock(&r->mu);
	return n;
}

void h_responder_free(struct h_responder *r)
{
	h__responder_cleanup(r);
}

/* ---- stream collector ---- */

struct h_stream {
	natsSubscription *sub;
	char *rid;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	json_t *events;   /* array, guarded by mu */
	size_t terminals; /* guarded by mu */
	size_t bad_json;  /* guarded by mu */
};

static bool h__is_terminal(json_t *ev)
{
	const char *t = json_string_value(json_object_get(ev, "type"));
	return t && (!strcmp(t, "done") || !strcmp(t, "error"));
}

static void h__stream_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
	struct h_stream *s = ud;
	(void)nc;
	(void)sub;
	json_t *ev = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
	pthread_mutex_lock(&s->mu);
	if (!ev) {
		s->bad_json++;
		ev = json_stringn(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
		if (!ev)
			ev = json_string("(invalid UTF-8)");
	}
	if (h__is_terminal(ev))
		s->terminals++;
	json_array_append_new(s->events, ev);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	natsMsg_Destroy(msg);
}

static void h__stream_cleanup(void *p)
{
	struct h_stream *s = p;
	h__forget(s);
	h__sub_stop(s->sub);
	json_decref(s->events);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->rid);
	free(s);
}

struct h_stream *h_stream_open(struct h_client *c, const char *rid)
{
	struct h_stream *s = xcalloc(1, sizeof(*s));
	char subj[512];
	s->rid = xstrdup(rid);
	s->events = json_array();
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	snprintf(subj, sizeof(subj), "%s.chat.stream.%s", c->prefix, rid);
	natsStatus st = natsConnection_Subscribe(&s->sub, c->nc, subj, h__stream_cb, s);
	if (st != NATS_OK)
		fail_msg("subscribe %s: %s", subj, natsStatus_GetText(st));
	/* Unlimited pending: a long stream must never be dropped by the client. */
	natsSubscription_SetPendingLimits(s->sub, -1, -1);
	h__push(h__stream_cleanup, s);
	h_flush(c);
	return s;
}

/* Waits (mu held) until pred holds or the deadline passes. */
static bool h__stream_wait(struct h_stream *s, bool (*pred)(struct h_stream *, size_t), size_t arg, int timeout_ms)
{
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mu);
	bool ok;
	while (!(ok = pred(s, arg)))
		if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) {
			ok = pred(s, arg);
			break;
		}
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static bool h__has_terminal(struct h_stream *s, size_t arg)
{
	(void)arg;
	return s->terminals > 0;
}

static bool h__has_count(struct h_stream *s, size_t n)
{
	return json_array_size(s->events) >= n;
}

bool h_stream_wait_terminal(struct h_stream *s, int timeout_ms)
{
	return h__stream_wait(s, h__has_terminal, 0, timeout_ms);
}

bool h_stream_wait_count(struct h_stream *s, size_t n, int timeout_ms)
{
	return h__stream_wait(s, h__has_count, n, timeout_ms);
}

size_t h_stream_count(struct h_stream *s)
{
	pthread_mutex_lock(&s->mu);
	size_t n = json_array_size(s->events);
	pthread_mutex_unlock(&s->mu);
	return n;
}

json_t *h_stream_events(struct h_stream *s)
{
	pthread_mutex_lock(&s->mu);
	json_t *copy = json_deep_copy(s->events);
	pthread_mutex_unlock(&s->mu);
	return copy;
}

static void h__stream_summary(struct h_stream *s, char *out, size_t outlen)
{
	json_t *ev = h_stream_events(s);
	size_t n = json_array_size(ev), off = 0;
	off += (size_t)snprintf(out, outlen, "%zu events", n);
	/* The first few and the last few are enough to see what went wrong. */
	for (size_t i = 0; i < n && off < outlen; i++) {
		if (i >= 5 && i + 5 < n) {
			if (i == 5)
				off += (size_t)snprintf(out + off, outlen - off, "\n  ...");
			continue;
		}
		char *d = json_dumps(json_array_get(ev, i), JSON_COMPACT | JSON_ENCODE_ANY);
		off += (size_t)snprintf(out + off, outlen - off, "\n  %s", d);
		free(d);
	}
	json_decref(ev);
}

json_t *h_stream_finish(struct h_stream *s, int timeout_ms)
{
	char summary[8192];
	if (!h_stream_wait_terminal(s, timeout_ms)) {
		h__stream_summary(s, summary, sizeof(summary));
		fail_msg("stream %s: no terminal event within %d ms; got %s", s->rid, timeout_ms, summary);
	}
	/* Anything sent after the terminal event would arrive right behind it. */
	h_sleep_ms(200);
	pthread_mutex_lock(&s->mu);
	size_t n = json_array_size(s->events), terminals = s->terminals, bad = s->bad_json;
	pthread_mutex_unlock(&s->mu);
	if (bad) {
		h__stream_summary(s, summary, sizeof(summary));
		fail_msg("stream %s: %zu events were not JSON: %s", s->rid, bad, summary);
	}
	if (terminals != 1) {
		h__stream_summary(s, summary, sizeof(summary));
		fail_msg("stream %s: expected exactly 1 terminal event, got %zu: %s", s->rid, terminals, summary);
	}
	json_t *ev = h_stream_events(s);
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(ev, i);
		json_t *seq = json_object_get(e, "seq");
		const char *rid = json_string_value(json_object_get(e, "request_id"));
		const char *type = json_string_value(json_object_get(e, "type"));
		if (!json_is_integer(seq) || (size_t)json_integer_value(seq) != i || !rid || strcmp(rid, s->rid) ||
		    !type || (strcmp(type, "token") && strcmp(type, "reasoning") && strcmp(type, "tool_call") &&
			      !h__is_terminal(e)) ||
		    (h__is_terminal(e) != (i == n - 1))) {
			char *d = json_dumps(e, JSON_COMPACT);
			json_decref(ev);
			h__stream_summary(s, summary, sizeof(summary));
			fail_msg("stream %s: event %zu is wrong (expected seq %zu, request_id %s, terminal only last): "
				 "%s\nall: %s",
				 s->rid, i, i, s->rid, d, summary);
		}
	}
	json_decref(ev);
	pthread_mutex_lock(&s->mu);
	json_t *last = json_array_get(s->events, n - 1);
	pthread_mutex_unlock(&s->mu);
	return last;
}

char *h_stream_text(struct h_stream *s, const char *type)
{
	struct buf b;
	buf_init(&b);
	buf_reserve(&b, 0);
	b.data[0] = '\0';
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < json_array_size(s->events); i++) {
		json_t *e = json_array_get(s->events, i);
		const char *t = json_string_value(json_object_get(e, "type"));
		json_t *d = json_object_get(e, "delta");
		if (t && !strcmp(t, type) && json_is_string(d))
			buf_append(&b, json_string_value(d), json_string_length(d));
	}
	pthread_mutex_unlock(&s->mu);
	return b.data;
}

void h_stream_expect_error(struct h_stream *s, const char *code, int timeout_ms)
{
	json_t *t = h_stream_finish(s, timeout_ms);
	char *d = json_dumps(t, JSON_COMPACT);
	if (strcmp(h_jstr(t, "type"), "error") || !json_is_string(h_jpath(t, "error.code")) ||
	    strcmp(h_jstr(t, "error.code"), code))
		fail_msg("stream %s: expected an error event with code \"%s\", got %s", s->rid, code, d);
	free(d);
}

void h_stream_close(struct h_stream *s)
{
	h__stream_cleanup(s);
}

/* ==== appended for test_pool / test_providers (issue 4) ==== */

#include <poll.h>

#define H__RAWSRV_MAX 256

struct h_rawsrv {
	int lfd;
	int port;
	char *response;
	pthread_t thread;
	pthread_mutex_t mu;
	bool stop;               /* guarded by mu */
	char *heads[H__RAWSRV_MAX]; /* guarded by mu */
	int nheads;              /* guarded by mu */
};

static bool h__rawsrv_stopping(struct h_rawsrv *s)
{
	pthread_mutex_lock(&s->mu);
	bool stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/* Reads one request (head, then Content-Length bytes of body), each read
 * bounded by 2 s; records the head and answers. */
static void h__rawsrv_serve(struct h_rawsrv *s, int fd)
{
	struct buf in;
	char tmp[4096];
	size_t head_len = 0, need = 0;

	buf_init(&in);
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 2000) <= 0)
			break;
		ssize_t n = read(fd, tmp, sizeof(tmp));
		if (n <= 0)
			break;
		buf_append(&in, tmp, (size_t)n);
		if (!head_len) {
			buf_append(&in, "", 1); /* NUL for strstr, dropped below */
			in.len--;
			char *end = strstr(in.data, "\r\n\r\n");
			if (!end)
				continue;
			head_len = (size_t)(end - in.data) + 4;
			const char *cl = strcasestr(in.data, "\r\ncontent-length:");
			need = head_len + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
		}
		if (in.len >= need)
			break;
	}
	if (head_len) {
		pthread_mutex_lock(&s->mu);
		if (s->nheads < H__RAWSRV_MAX)
			s->heads[s->nheads++] = xstrndup(in.data, head_len);
		pthread_mutex_unlock(&s->mu);
		size_t off = 0, len = strlen(s->response);
		while (off < len) {
			ssize_t w = write(fd, s->response + off, len - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		shutdown(fd, SHUT_WR);
		/* Let the client read the answer before the socket goes. */
		struct pollfd pfd = { fd, POLLIN, 0 };
		while (poll(&pfd, 1, 500) > 0 && read(fd, tmp, sizeof(tmp)) > 0)
			;
	}
	buf_free(&in);
	close(fd);
}

static void *h__rawsrv_main(void *ud)
{
	struct h_rawsrv *s = ud;

	while (!h__rawsrv_stopping(s)) {
		struct pollfd pfd = { s->lfd, POLLIN, 0 };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			h__rawsrv_serve(s, fd);
	}
	return NULL;
}

static void h__rawsrv_cleanup(void *p)
{
	struct h_rawsrv *s = p;
	h__forget(s);
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	for (int i = 0; i < s->nheads; i++)
		free(s->heads[i]);
	pthread_mutex_destroy(&s->mu);
	free(s->response);
	free(s);
}

struct h_rawsrv *h_rawsrv_start(const char *response)
{
	struct h_rawsrv *s = xcalloc(1, sizeof(*s));
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	s->response = xstrdup(response);
	pthread_mutex_init(&s->mu, NULL);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->lfd, 64), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &len), 0);
	s->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, h__rawsrv_main, s), 0);
	h__push(h__rawsrv_cleanup, s);
	return s;
}

int h_rawsrv_port(struct h_rawsrv *s)
{
	return s->port;
}

int h_rawsrv_count(struct h_rawsrv *s)
{
	pthread_mutex_lock(&s->mu);
	int n = s->nheads;
	pthread_mutex_unlock(&s->mu);
	return n;
}

char *h_rawsrv_head(struct h_rawsrv *s, int i)
{
	char *h = NULL;
	pthread_mutex_lock(&s->mu);
	if (i >= 0 && i < s->nheads)
		h = xstrdup(s->heads[i]);
	pthread_mutex_unlock(&s->mu);
	return h;
}

char *h_http_response(int status, const char *extra_headers, const char *ctype, const char *body)
{
	return xasprintf("HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n%s",
			 status, ctype, strlen(body), extra_headers, body);
}

/* ==== end of the issue 4 block ==== */

/* ==== service and NATS auth (test_service.c, test_natsauth.c) ==== */

#include <poll.h>
#include <sys/un.h>

extern char **environ;

static bool h__env_inherited(const char *entry)
{
	static const char *const drop[] = { "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=",
					    "CREDENTIALS_DIRECTORY=", "JOURNAL_STREAM=" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(drop); i++)
		if (!strncmp(entry, drop[i], strlen(drop[i])))
			return false;
	return true;
}

/* h__spawn with an environment. The WATCHDOG_PID entry, when asked for, is
 * filled in by the child itself (by hand: only async-signal-safe code runs
 * between fork and exec). */
static struct h_proc *h__spawn_env(const char *name, char *const argv[], const char *const *extra, bool pid_self)
{
	struct h_proc *p = xcalloc(1, sizeof(*p));
	size_t n = 0, cap = 8;
	char pidvar[40] = "WATCHDOG_PID=";

	for (char **e = environ; *e; e++)
		cap++;
	for (size_t i = 0; extra && extra[i]; i++)
		cap++;
	char **envp = xcalloc(cap, sizeof(*envp));
	for (char **e = environ; *e; e++)
		if (h__env_inherited(*e))
			envp[n++] = *e;
	for (size_t i = 0; extra && extra[i]; i++)
		envp[n++] = (char *)extra[i];
	if (pid_self)
		envp[n++] = pidvar;
	envp[n] = NULL;

	p->name = xstrdup(name);
	p->log_path = xasprintf("%s/%s.log", h__tmpdir, name);
	int fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		fail_msg("open %s: %s", p->log_path, strerror(errno));
	pid_t pid = h__fork_exec(argv, fd, fd, envp, pid_self ? pidvar : NULL);
	close(fd);
	free(envp);
	p->pid = pid;
	h__track_pid(pid);
	return p;
}

struct h_daemon *h_daemon_spawn(struct h_nats *n, const char *prefix, json_t *overrides,
				const struct h_daemon_opts *o)
{
	static int seq;
	static const struct h_daemon_opts none;
	struct h_daemon *d = xcalloc(1, sizeof(*d));

	if (!o)
		o = &none;
	h__push(h__daemon_cleanup, d);
	d->prefix = xstrdup(prefix);
	d->name = xasprintf("daemon-%s-s%d", prefix, ++seq);
	d->cfg_path = xasprintf("%s/%s.json", h__tmpdir, d->name);

	json_error_t err;
	json_t *cfg = json_load_file("config/dispatcher.json", 0, &err);
	if (!cfg)
		fail_msg("config/dispatcher.json: %s (tests run from the repository root)", err.text);
	json_t *defs = json_pack("{s:{s:i,s:i},s:s,s:s,s:{s:i},s:{s:i,s:i},s:{s:i}}", "nats", "reconnect_wait_ms",
				 1000, "connect_timeout_ms", 2000, "subject_prefix", prefix, "instance_id", d->name,
				 "timeouts", "config_request_ms", 300, "stub", "ttft_ms", 50, "inter_token_ms", 5,
				 "shutdown", "grace_ms", 3000);
	assert_non_null(defs);
	if (n)
		json_object_set_new(json_object_get(defs, "nats"), "servers", json_pack("[s]", n->url));
	h__json_merge(cfg, defs);
	json_decref(defs);
	if (overrides)
		h__json_merge(cfg, overrides);
	if (json_dump_file(cfg, d->cfg_path, JSON_INDENT(2)) != 0)
		fail_msg("cannot write %s", d->cfg_path);
	json_decref(cfg);

	char *bin = xasprintf("%s/sundynix-dispatcher", h_build());
	if (access(bin, X_OK) != 0) {
		free(bin);
		fail_msg("%s/sundynix-dispatcher is missing (make all)", h_build());
	}
	char *argv[] = { bin, "-c", d->cfg_path, o->quiet ? NULL : "-v", NULL };
	d->proc = h__spawn_env(d->name, argv, o->env, o->watchdog_pid_self);
	free(bin);
	d->log_path = xstrdup(d->proc->log_path);
	return d;
}

bool h_daemon_wait_ready(struct h_daemon *d, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	while (!h_file_contains(d->log_path, "dispatcher ready")) {
		if (util_now_ms() >= end || !h_proc_alive(d->proc)) {
			h_daemon_dump_log(d);
			return false;
		}
		h_sleep_ms(10);
	}
	return true;
}

void h_daemon_signal(struct h_daemon *d, int sig)
{
	if (d->proc->reaped)
		fail_msg("daemon %s already exited; cannot send signal %d", d->name, sig);
	kill(d->proc->pid, sig);
}

int h_daemon_wait_exit(struct h_daemon *d, int timeout_ms)
{
	if (!h__reap(d->proc, timeout_ms))
		return -1;
	h_assert_no_sanitizer_report(d->log_path);
	return h__exit_code(d->proc);
}

void h_daemon_rewrite_config(struct h_daemon *d, json_t *overrides)
{
	json_error_t err;
	json_t *cfg = json_load_file(d->cfg_path, 0, &err);
	if (!cfg)
		fail_msg("%s: %s", d->cfg_path, err.text);
	h__json_merge(cfg, overrides);
	/* Write aside and rename, as an editor would: the daemon never reads a
	 * half-written file. */
	char *tmp = xasprintf("%s.new", d->cfg_path);
	if (json_dump_file(cfg, tmp, JSON_INDENT(2)) != 0 || rename(tmp, d->cfg_path) != 0)
		fail_msg("cannot rewrite %s", d->cfg_path);
	free(tmp);
	json_decref(cfg);
}

void h_nats_halt(struct h_nats *n)
{
	if (!n->proc)
		return;
	h_proc_stop(n->proc, 5000);
	h_proc_free(n->proc);
	n->proc = NULL;
}

void h_nats_resume(struct h_nats *n)
{
	if (!n->proc)
		h__nats_spawn(n);
}

struct h_client *h_client_connect_auth(struct h_nats *n, const char *prefix, const struct h_client_auth *a)
{
	natsOptions *o = NULL;
	struct h_client *c = xcalloc(1, sizeof(*c));
	c->prefix = xstrdup(prefix);
	assert_int_equal(natsOptions_Create(&o), NATS_OK);
	assert_int_equal(natsOptions_SetURL(o, n->url), NATS_OK);
	assert_int_equal(natsOptions_SetAllowReconnect(o, true), NATS_OK);
	assert_int_equal(natsOptions_SetMaxReconnect(o, -1), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectWait(o, 50), NATS_OK);
	assert_int_equal(natsOptions_SetReconnectJitter(o, 0, 0), NATS_OK);
	assert_int_equal(natsOptions_SetTimeout(o, 2000), NATS_OK);
	if (a && a->user)
		assert_int_equal(natsOptions_SetUserInfo(o, a->user, a->password), NATS_OK);
	if (a && a->token)
		assert_int_equal(natsOptions_SetToken(o, a->token), NATS_OK);
	if (a && a->ca_file) {
		assert_int_equal(natsOptions_SetSecure(o, true), NATS_OK);
		assert_int_equal(natsOptions_LoadCATrustedCertificates(o, a->ca_file), NATS_OK);
	}
	if (a && a->cert_file)
		assert_int_equal(natsOptions_LoadCertificatesChain(o, a->cert_file, a->key_file), NATS_OK);
	natsStatus s = natsConnection_Connect(&c->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		free(c->prefix);
		free(c);
		fail_msg("connect to %s%s%s: %s", n->url, a && a->user ? " as " : "", a && a->user ? a->user : "",
			 natsStatus_GetText(s));
	}
	h__push(h__client_cleanup, c);
	return c;
}

natsStatus h_request(struct h_client *c, const char *subject_suffix, const char *body, int timeout_ms,
		     char **reply)
{
	natsMsg *msg = NULL;
	char subj[256];
	snprintf(subj, sizeof(subj), "%s.%s", c->prefix, subject_suffix);
	*reply = NULL;
	natsStatus s = natsConnection_RequestString(&msg, c->nc, subj, body, timeout_ms);
	if (s == NATS_OK) {
		*reply = xstrndup(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
		natsMsg_Destroy(msg);
	}
	return s;
}

struct h_notify {
	int fd;
	char *path;
	struct buf seen;
};

static void h__notify_cleanup(void *p)
{
	struct h_notify *nf = p;
	h__forget(nf);
	close(nf->fd);
	unlink(nf->path);
	free(nf->path);
	buf_free(&nf->seen);
	free(nf);
}

struct h_notify *h_notify_open(const char *name)
{
	struct h_notify *nf = xcalloc(1, sizeof(*nf));
	struct sockaddr_un sa;

	nf->path = xasprintf("%s/%s.sock", h__tmpdir, name);
	if (strlen(nf->path) >= sizeof(sa.sun_path))
		fail_msg("notify socket path too long: %s", nf->path);
	buf_init(&nf->seen);
	buf_reserve(&nf->seen, 0);
	nf->seen.data[0] = '\0';
	nf->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(nf->fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", nf->path);
	unlink(nf->path);
	if (bind(nf->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail_msg("bind %s: %s", nf->path, strerror(errno));
	h__push(h__notify_cleanup, nf);
	return nf;
}

const char *h_notify_path(struct h_notify *nf)
{
	return nf->path;
}

/* One datagram within timeout_ms (malloc'ed text), or NULL. */
static char *h__notify_recv(struct h_notify *nf, int timeout_ms)
{
	struct pollfd pfd = { .fd = nf->fd, .events = POLLIN };
	char data[4096];

	if (timeout_ms < 0)
		timeout_ms = 0;
	int r = poll(&pfd, 1, timeout_ms);
	if (r <= 0)
		return NULL;
	ssize_t n = recv(nf->fd, data, sizeof(data) - 1, 0);
	if (n < 0)
		return NULL;
	data[n] = '\0';
	buf_printf(&nf->seen, "[%llu] ", util_now_ms() - h__t0);
	for (ssize_t i = 0; i < n; i++)
		buf_append_char(&nf->seen, data[i] == '\n' ? '|' : data[i]);
	buf_append_char(&nf->seen, '\n');
	return xstrndup(data, (size_t)n);
}

static bool h__has_line(const char *text, const char *prefix)
{
	size_t pl = strlen(prefix);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, prefix, pl))
			return true;
	return false;
}

char *h_notify_wait(struct h_notify *nf, const char *line_prefix, int timeout_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)timeout_ms;
	for (;;) {
		unsigned long long now = util_now_ms();
		if (now >= end)
			return NULL;
		char *dg = h__notify_recv(nf, (int)(end - now));
		if (dg && h__has_line(dg, line_prefix))
			return dg;
		free(dg);
	}
}

size_t h_notify_count_for(struct h_notify *nf, const char *line_prefix, int window_ms)
{
	unsigned long long end = util_now_ms() + (unsigned long long)window_ms;
	size_t n = 0;
	for (;;) {
		unsigned long long now = util_now_ms();
		if (now >= end)
			return n;
		char *dg = h__notify_recv(nf, (int)(end - now));
		if (dg && h__has_line(dg, line_prefix))
			n++;
		free(dg);
	}
}

const char *h_notify_seen(struct h_notify *nf)
{
	return nf->seen.data;
}

void h_notify_close(struct h_notify *nf)
{
	h__notify_cleanup(nf);
}

void h_sh(const char *log_name, const char *fmt, ...)
{
	va_list ap;
	char cmd[4096];

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	char *log = xasprintf("%s/%s.log", h__tmpdir, log_name);
	char *full = xasprintf("(%s) >>'%s' 2>&1", cmd, log);
	int rc = system(full);
	free(full);
	if (rc != 0) {
		char *out = h_read_file(log, NULL);
		fprintf(stderr, "---- %s ----\n%s---- end ----\n", log, out ? out : "");
		free(out);
		free(log);
		fail_msg("command failed (status %d): %s", rc, cmd);
	}
	free(log);
}

void h_exit(int rc)
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
	fflush(stdout);
	fflush(stderr);
	_exit(rc);
}

/* ==== end of service and NATS auth ==== */

/* ==== command runs (test_ctl.c, test_limits.c) ==== */

static void h__cmd_cleanup(void *p)
{
	struct h_cmd *c = p;
	h__forget(c);
	h_proc_free(c->proc); /* SIGKILL and reap when still running */
	free(c->cmdline);
	free(c->out_path);
	free(c->err_path);
	free(c->out);
	free(c->err);
	free(c);
}

struct h_cmd *h_cmd_start(const char *name, char *const argv[])
{
	static int seq;
	struct h_cmd *c = xcalloc(1, sizeof(*c));
	struct buf line;

	buf_init(&line);
	for (size_t i = 0; argv[i]; i++)
		buf_printf(&line, "%s'%s'", i ? " " : "", argv[i]);
	c->cmdline = line.data;
	c->code = -1;
	seq++;
	c->out_path = xasprintf("%s/%s-%d.out", h__tmpdir, name, seq);
	c->err_path = xasprintf("%s/%s-%d.err", h__tmpdir, name, seq);
	c->proc = xcalloc(1, sizeof(*c->proc));
	c->proc->name = xasprintf("%s-%d", name, seq);
	c->proc->log_path = xstrdup(c->err_path);
	int out = open(c->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int err = open(c->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0 || err < 0)
		fail_msg("open %s: %s", c->out_path, strerror(errno));
	pid_t pid = h__fork_exec(argv, out, err, NULL, NULL);
	close(out);
	close(err);
	c->proc->pid = pid;
	h__track_pid(pid);
	h__push(h__cmd_cleanup, c);
	return c;
}

static int h__cmd_collect(struct h_cmd *c)
{
	free(c->out);
	free(c->err);
	c->out = h_read_file(c->out_path, NULL);
	c->err = h_read_file(c->err_path, NULL);
	if (!c->out)
		c->out = xstrdup("");
	if (!c->err)
		c->err = xstrdup("");
	h_assert_no_sanitizer_report(c->err_path);
	return c->code;
}

int h_cmd_wait(struct h_cmd *c, int timeout_ms)
{
	if (!h__reap(c->proc, timeout_ms)) {
		h_log("%s (pid %d) still running after %d ms; SIGKILL", c->proc->name, (int)c->proc->pid,
		      timeout_ms);
		h_proc_kill(c->proc);
		c->code = -1;
	} else {
		c->code = h__exit_code(c->proc);
	}
	return h__cmd_collect(c);
}

int h_cmd_stop(struct h_cmd *c, int timeout_ms)
{
	if (!c->proc->reaped)
		kill(c->proc->pid, SIGTERM);
	return h_cmd_wait(c, timeout_ms);
}

struct h_cmd *h_cmd_run(const char *name, int timeout_ms, char *const argv[])
{
	struct h_cmd *c = h_cmd_start(name, argv);
	h_cmd_wait(c, timeout_ms);
	return c;
}

void h_cmd_expect(struct h_cmd *c, int want)
{
	if (c->code != want)
		fail_msg("%s: exit status %d, expected %d\n---- stdout ----\n%s---- stderr ----\n%s---- end ----",
			 c->cmdline, c->code, want, c->out ? c->out : "", c->err ? c->err : "");
}

void h_cmd_free(struct h_cmd *c)
{
	h__cmd_cleanup(c);
}

/* ==== end of command runs ==== */
