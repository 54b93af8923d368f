/* proc: see proc.h. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "file.h"
#include "fixture.h"
#include "util.h"

/* Forks and execs argv: stdin from /dev/null, stdout to out_fd, stderr to
 * err_fd, signals back to default, every other descriptor closed, and the
 * child killed if the test dies. Only async-signal-safe calls between fork
 * and exec: the parent has threads. Signals stay blocked across the fork
 * until the child has default handlers again, so a SIGTERM sent at once
 * reaches the program exec'ed rather than a handler inherited from the test
 * (or ThreadSanitizer's wrapper of it, which would defer it past exec). */
static pid_t h__fork_exec(char *const argv[], int out_fd, int err_fd, char *const envp[], char *pidvar)
{
	pid_t parent = getpid();
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid_t pid = fork();
	if (pid != 0)
		pthread_sigmask(SIG_SETMASK, &old, NULL);
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
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (envp)
			execvpe(argv[0], argv, envp);
		else
			execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static struct h_proc *h__proc_exec(const char *name, const char *log_path, char *const argv[], int out_fd,
				   int err_fd, char *const envp[], char *pidvar)
{
	struct h_proc *p = xcalloc(1, sizeof(*p));
	p->name = xstrdup(name);
	p->log_path = xstrdup(log_path);
	p->pid = h__fork_exec(argv, out_fd, err_fd, envp, pidvar);
	h__track_pid(p->pid);
	return p;
}

struct h_proc *h__proc_spawn_fds(const char *name, const char *log_path, char *const argv[], int out_fd, int err_fd)
{
	return h__proc_exec(name, log_path, argv, out_fd, err_fd, NULL, NULL);
}

struct h_proc *h__proc_spawn(const char *name, char *const argv[], char *const envp[], char *pidvar)
{
	char *log_path = xasprintf("%s/%s.log", h_tmpdir(), name);
	int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		fail_msg("open %s: %s", log_path, strerror(errno));
	struct h_proc *p = h__proc_exec(name, log_path, argv, fd, fd, envp, pidvar);
	close(fd);
	free(log_path);
	return p;
}

void h__proc_end(struct h_proc **p, int timeout_ms)
{
	if (!*p)
		return;
	h_proc_stop(*p, timeout_ms);
	h_proc_free(*p);
	*p = NULL;
}

static void h__proc_cleanup(void *p)
{
	struct h_proc *proc = p;
	h__proc_end(&proc, 5000);
}

struct h_proc *h_spawn(const char *name, char *const argv[])
{
	struct h_proc *p = h__proc_spawn(name, argv, NULL, NULL);
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

int h_proc_wait(struct h_proc *p, int timeout_ms)
{
	return h__reap(p, timeout_ms) ? h__exit_code(p) : -1;
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

void h_assert_no_sanitizer_report(const char *log_path)
{
	static const char *const marks[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
					     "WARNING: ThreadSanitizer", "runtime error:" };
	for (size_t i = 0; i < UTIL_ARRAY_LEN(marks); i++) {
		if (h_file_contains(log_path, marks[i])) {
			char *log = h_read_file(log_path, NULL);
			fprintf(stderr, "---- %s ----\n%s\n---- end ----\n", log_path, log ? log : "");
			free(log);
			fail_msg("%s contains a sanitizer report (\"%s\")", log_path, marks[i]);
		}
	}
}
