/* file: see file.h. */
#include "file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixture.h"
#include "util.h"

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

char *h_file_line(const char *path, const char *needle)
{
	char *text = h_read_file(path, NULL);
	char *p = text ? strstr(text, needle) : NULL;
	char *line = NULL;

	if (p) {
		while (p > text && p[-1] != '\n')
			p--;
		line = xstrndup(p, strcspn(p, "\n"));
	}
	free(text);
	return line;
}
