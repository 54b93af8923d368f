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
static enum log_format log__format = LOG_FORMAT_TEXT;

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

void log_set_format(enum log_format f)
{
	log__format = f;
}

int log_format_parse(const char *name)
{
	if (!strcmp(name, "text"))
		return LOG_FORMAT_TEXT;
	if (!strcmp(name, "json"))
		return LOG_FORMAT_JSON;
	return -1;
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

/* Control bytes and backslash (so a literal "\x0a" cannot pass for an
 * escape) become \xNN; so does '"' when quote is set. */
static void log__escape_q(struct buf *out, const char *s, bool quote)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || c == '\\' || (quote && c == '"'))
			buf_printf(out, "\\x%02x", c);
		else
			buf_append_char(out, (char)c);
	}
}

static void log__escape(struct buf *out, const char *s)
{
	log__escape_q(out, s, false);
}

/* Needs quotes in a text field: empty, blanks, quotes or '='. */
static bool log__needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (; *s; s++)
		if (*s == ' ' || *s == '"' || *s == '=' || (unsigned char)*s < 0x20)
			return true;
	return false;
}

/* Opens a line: the priority or timestamp, level and request id. */
static void log__open(struct buf *line, int level, const char *rid)
{
	char stamp[40];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	if (log__journal)
		buf_printf(line, "<%d>", level);
	if (log__format == LOG_FORMAT_JSON) {
		buf_printf(line, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\"", stamp, ts.tv_nsec / 1000000L,
			   log_level_name(level));
		if (rid) {
			buf_append_str(line, ",\"request_id\":");
			buf_append_json_str(line, rid, strlen(rid));
		}
		return;
	}
	if (!log__journal)
		buf_printf(line, "%s.%03ldZ %s ", stamp, ts.tv_nsec / 1000000L, log_level_name(level));
	if (rid) {
		buf_append_char(line, '[');
		log__escape(line, rid);
		buf_append_str(line, "] ");
	}
}

static void log__msg_part(struct buf *line, const char *msg)
{
	if (log__format == LOG_FORMAT_JSON) {
		buf_append_str(line, ",\"msg\":");
		buf_append_json_str(line, msg, strlen(msg));
	} else {
		log__escape(line, msg);
	}
}

/* One write per line so concurrent writers never interleave mid-line. */
static void log__close(struct buf *line)
{
	if (log__format == LOG_FORMAT_JSON)
		buf_append_char(line, '}');
	buf_append_char(line, '\n');
	fwrite(line->data, 1, line->len, stderr);
	fflush(stderr);
	buf_free(line);
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
	log__open(&line, level, rid);
	log__msg_part(&line, msg);
	log__close(&line);
	if (msg != stackbuf)
		free(msg);
}

void log_fields(int level, const char *rid, const char *msg, const struct log_field *f, size_t n)
{
	struct buf line;

	if (level > log__level)
		return;
	buf_init(&line);
	log__open(&line, level, rid);
	log__msg_part(&line, msg);
	for (size_t i = 0; i < n; i++) {
		const char *s = f[i].type == LOG_F_STR ? f[i].s : NULL;
		bool null = f[i].type == LOG_F_NULL || (f[i].type == LOG_F_STR && !s);
		if (log__format == LOG_FORMAT_JSON) {
			buf_append_char(&line, ',');
			buf_append_json_str(&line, f[i].key, strlen(f[i].key));
			buf_append_char(&line, ':');
			if (null)
				buf_append_str(&line, "null");
			else if (f[i].type == LOG_F_INT)
				buf_printf(&line, "%lld", f[i].i);
			else
				buf_append_json_str(&line, s, strlen(s));
			continue;
		}
		/* Text lines leave out what is not there; json keeps every key. */
		if (null)
			continue;
		buf_printf(&line, " %s=", f[i].key);
		if (f[i].type == LOG_F_INT) {
			buf_printf(&line, "%lld", f[i].i);
		} else if (log__needs_quotes(s)) {
			buf_append_char(&line, '"');
			log__escape_q(&line, s, true);
			buf_append_char(&line, '"');
		} else {
			log__escape(&line, s);
		}
	}
	log__close(&line);
}
