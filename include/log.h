/* log: leveled lines on stderr. Under journald (JOURNAL_STREAM naming stderr) lines carry
 * "<N>" syslog priorities and no timestamp; otherwise an ISO-8601 timestamp.
 * Two formats: text (escaped: control bytes become \xNN, so text a peer sent
 * can never forge a log line) and json (one object per line, for log
 * shippers; strings JSON-escaped, so the same holds). Knows nothing of secrets: callers
 * mask them (util_mask_secret) before they reach a log call. */
#ifndef SUNDYNIX_LOG_H
#define SUNDYNIX_LOG_H

#include "util.h"

enum log_level {
	LOG_LVL_ERROR = 3,
	LOG_LVL_WARN = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

void log_init(void);
void log_set_level(int level);
int log_get_level(void);
/* "error", "warn", "notice", "info", "debug" -> level; -1 if unknown. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
void log_set_format(enum log_format f);
/* "text" or "json" -> format; -1 if unknown. */
int log_format_parse(const char *name);

/* rid may be NULL; when set, the line carries "[rid]" (text) or
 * "request_id" (json). A json line: {"ts","level","request_id","msg"}. */
void log_msg(int level, const char *rid, const char *fmt, ...) UTIL_PRINTF(3, 4);

/* A line with named fields: text "msg key=value ..." (values with blanks or
 * quotes quoted), json {"ts","level","request_id","msg",key:value,...}. A
 * LOG_F_STR field whose value is NULL (and LOG_F_NULL) is null in json and
 * left out in text. */
enum log_field_type { LOG_F_STR, LOG_F_INT, LOG_F_NULL };
struct log_field {
	const char *key;
	enum log_field_type type;
	const char *s;
	long long i;
};
#define LOG_FSTR(k, v) { (k), LOG_F_STR, (v), 0 }
#define LOG_FINT(k, v) { (k), LOG_F_INT, NULL, (long long)(v) }
#define LOG_FNULL(k) { (k), LOG_F_NULL, NULL, 0 }
void log_fields(int level, const char *rid, const char *msg, const struct log_field *f, size_t n);

#define log_error(rid, ...) log_msg(LOG_LVL_ERROR, rid, __VA_ARGS__)
#define log_warn(rid, ...) log_msg(LOG_LVL_WARN, rid, __VA_ARGS__)
#define log_notice(rid, ...) log_msg(LOG_LVL_NOTICE, rid, __VA_ARGS__)
#define log_info(rid, ...) log_msg(LOG_LVL_INFO, rid, __VA_ARGS__)
#define log_debug(rid, ...)                                                \
	do {                                                               \
		if (log_get_level() >= LOG_LVL_DEBUG)                       \
			log_msg(LOG_LVL_DEBUG, rid, __VA_ARGS__);           \
	} while (0)

#endif
