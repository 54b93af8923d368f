/* log: leveled lines on stderr. Under journald (JOURNAL_STREAM naming stderr) lines carry
 * "<N>" syslog priorities and no timestamp; otherwise an ISO-8601 timestamp.
 * Every formatted message is escaped (control bytes become \xNN), so text a
 * peer sent can never forge a log line. Knows nothing of secrets: callers
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

/* rid may be NULL; when set, the line carries "[rid]". */
void log_msg(int level, const char *rid, const char *fmt, ...) UTIL_PRINTF(3, 4);

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
