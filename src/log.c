/* log: see include/log.h. */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int log__level = LOG_LVL_INFO;
static bool log__journal;

static const struct {
	const char *name;
	int level;
} log__names[] = {
	{ "error", LOG_LVL_ERROR }, { "warn", LOG_LVL_WARN },   { "warning", LOG_LVL_WARN },
	{ "notice", LOG_LVL_NOTICE }, { "info", LOG_LVL_INFO }, { "debug", LOG_LVL_DEBUG },
};

void log_init(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	/* JOURNAL_STREAM is "device:inode" of the journal's stream; it is
	 * inherited, so trust it only if it is still our stderr. */
	log__journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
		       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_set_level(int level)
{
	log__level = level;
}

int log_get_level(void)
{
	return log__level;
}

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < UTIL_ARRAY_LEN(log__names); i++)
		if (!strcasecmp(name, log__names[i].name))
			return log__names[i].level;
	return -1;
}

const char *log_level_name(int level)
{
	for (size_t i = 0; i < UTIL_ARRAY_LEN(log__names); i++)
		if (log__names[i].level == level)
			return log__names[i].name;
	return "?";
}

static void log__escape(struct buf *out, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		/* Backslash too, so a literal "\x0a" cannot pass for an escape. */
		if (c < 0x20 || c == 0x7f || c == '\\')
			buf_printf(out, "\\x%02x", c);
		else
			buf_append_char(out, (char)c);
	}
}

void log_msg(int level, const char *rid, const char *fmt, ...)
{
	char stackbuf[1024];
	char *msg = stackbuf;
	struct buf line;
	va_list ap;

	if (level > log__level)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(stackbuf, sizeof(stackbuf), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(stackbuf)) {
		msg = xmalloc((size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(msg, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}

	buf_init(&line);
	if (log__journal) {
		buf_printf(&line, "<%d>", level);
	} else {
		struct timespec ts;
		struct tm tm;
		char stamp[40];
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		buf_printf(&line, "%s.%03ldZ %s ", stamp, ts.tv_nsec / 1000000L, log_level_name(level));
	}
	if (rid) {
		buf_append_char(&line, '[');
		log__escape(&line, rid);
		buf_append_str(&line, "] ");
	}
	log__escape(&line, msg);
	buf_append_char(&line, '\n');
	/* One write per line so concurrent writers never interleave mid-line. */
	fwrite(line.data, 1, line.len, stderr);
	fflush(stderr);
	buf_free(&line);
	if (msg != stackbuf)
		free(msg);
}
