/* stderr_capture: what a unit test's code logs to stderr, captured in a
 * temporary file between begin and end, so cmocka's own messages still reach
 * the terminal once a check fails. Static inline, as contract_check.h is;
 * include after cmocka.h. */
#ifndef SUNDYNIX_TEST_STDERR_CAPTURE_H
#define SUNDYNIX_TEST_STDERR_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

struct stderr_capture {
	char path[64];
	int fd, saved;
};

static inline void capture_begin(struct stderr_capture *c)
{
	strcpy(c->path, "/tmp/sundynix-stderr-XXXXXX");
	c->fd = mkstemp(c->path);
	assert_true(c->fd >= 0);
	fflush(stderr);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_int_equal(dup2(c->fd, STDERR_FILENO), STDERR_FILENO);
}

/* Restores stderr and returns what was logged (caller frees). */
static inline char *capture_end(struct stderr_capture *c)
{
	fflush(stderr);
	assert_int_equal(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
	close(c->saved);
	off_t n = lseek(c->fd, 0, SEEK_END);
	assert_true(n >= 0);
	char *text = xmalloc((size_t)n + 1);
	assert_int_equal(pread(c->fd, text, (size_t)n, 0), n);
	text[n] = '\0';
	close(c->fd);
	unlink(c->path);
	return text;
}

#endif
