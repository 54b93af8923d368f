/* config: see include/config.h.
 *
 * config_load runs fixed stages over a scratch struct and hands it over only
 * when every stage passed:
 *
 *   defaults -> file (jansson, plus a scanner for key lines) -> environment
 *     -> secrets read from files -> paths resolved -> cross-field checks -> *out
 *
 * Every message names where the offending value came from: "FILE:LINE: key
 * 'k'" for the file, "environment NAME" for an override. Secret values are
 * never formatted into a message; key names and file paths are. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "contract.h"
#include "log.h"
#include "prompt.h"

enum config__type {
	CONFIG__STRING,
	CONFIG__LIST,
	CONFIG__INT,
	CONFIG__BOOL, /* a long long field, 0 or 1 */
	CONFIG__LEVEL,
	CONFIG__SECRET,
	CONFIG__SECRET_FILE, /* names a file holding the secret at off */
	CONFIG__FILE,        /* a path, made absolute and checked readable */
};

static const char *const config__type_names[] = {
	[CONFIG__STRING] = "string",
	[CONFIG__LIST] = "string list",
	[CONFIG__INT] = "integer",
	[CONFIG__BOOL] = "boolean",
	[CONFIG__LEVEL] = "log level",
	[CONFIG__SECRET] = "secret string",
	[CONFIG__SECRET_FILE] = "secret file",
	[CONFIG__FILE] = "file path",
};

struct config__key {
	const char *path;
	enum config__type type;
	size_t off;
	const char *def; /* default of every type but integers */
	long long idef, min, max;
	bool live;
	const char *env; /* overriding environment variable, or NULL */
	const char *desc;
};

#define OFF(f) offsetof(struct config, f)
#define K_STR(p, f, d, live, env, desc) { p, CONFIG__STRING, OFF(f), d, 0, 0, 0, live, env, desc }
#define K_LIST(p, f, d, live, env, desc) { p, CONFIG__LIST, OFF(f), d, 0, 0, 0, live, env, desc }
#define K_INT(p, f, d, lo, hi, live, env, desc) { p, CONFIG__INT, OFF(f), NULL, d, lo, hi, live, env, desc }
#define K_BOOL(p, f, d, live, env, desc) { p, CONFIG__BOOL, OFF(f), NULL, d, 0, 1, live, env, desc }
#define K_LEVEL(p, f, d, live, env, desc) { p, CONFIG__LEVEL, OFF(f), d, 0, 0, 0, live, env, desc }
#define K_SECRET(p, f, desc) { p, CONFIG__SECRET, OFF(f), "", 0, 0, 0, false, NULL, desc }
#define K_SECRET_FILE(p, f, desc) { p, CONFIG__SECRET_FILE, OFF(f), "", 0, 0, 0, false, NULL, desc }
#define K_FILE(p, f, desc) { p, CONFIG__FILE, OFF(f), "", 0, 0, 0, false, NULL, desc }

static const struct config__key config__keys[] = {
	K_LIST("nats.servers", nats_servers, "nats://127.0.0.1:4222", false, "SUNDYNIX_NATS_URL",
	       "NATS server URLs: an array of strings, or one string with comma-separated URLs."),
	K_STR("nats.user", nats_user, "", false, NULL,
	      "User name for NATS; needs a password (nats.password or nats.password_file)."),
	K_SECRET("nats.password", nats_password, "Password for nats.user; prefer nats.password_file."),
	K_SECRET_FILE("nats.password_file", nats_password,
		      "File whose content (one trailing newline stripped) is the NATS password."),
	K_SECRET("nats.token", nats_token, "NATS authentication token; prefer nats.token_file."),
	K_SECRET_FILE("nats.token_file", nats_token,
		      "File whose content (one trailing newline stripped) is the NATS token."),
	K_FILE("nats.credentials_file", nats_credentials_file,
	       "NATS user credentials file (.creds: JWT and NKey seed)."),
	K_FILE("nats.nkey_seed_file", nats_nkey_seed_file, "File holding an NKey seed to sign the NATS nonce."),
	K_STR("nats.nkey", nats_nkey, "", false, NULL,
	      "Public NKey (U...) of the seed in nats.nkey_seed_file; needed with it."),
	K_FILE("nats.tls.ca_file", nats_tls_ca_file, "CA certificates (PEM) that verify the NATS server."),
	K_FILE("nats.tls.cert_file", nats_tls_cert_file,
	       "Client certificate (PEM) for NATS; needs nats.tls.key_file."),
	K_FILE("nats.tls.key_file", nats_tls_key_file, "Private key (PEM) of nats.tls.cert_file."),
	K_STR("nats.tls.server_name", nats_tls_server_name, "", false, NULL,
	      "Expected server name in the NATS server's certificate (`\"\"`: the URL's host)."),
	K_INT("nats.reconnect_wait_ms", nats_reconnect_wait_ms, 1000, 10, 600000, false, NULL,
	      "Pause between NATS reconnect attempts."),
	K_INT("nats.reconnect_buffer_bytes", nats_reconnect_buffer_bytes, 67108864, 0, 1073741824, false, NULL,
	      "Events buffered while NATS is unreachable; past it publishes fail and a replay must repair the gap."),
	K_INT("nats.connect_timeout_ms", nats_connect_timeout_ms, 2000, 100, 600000, false, NULL,
	      "Timeout of one NATS connect attempt."),
	K_STR("subject_prefix", subject_prefix, "sundynix", false, "SUNDYNIX_SUBJECT_PREFIX",
	      "First tokens of every NATS subject used (tokens of A-Z a-z 0-9 _ -, joined by dots)."),
	K_STR("queue_group", queue_group, "sundynix-dispatcher", false, "SUNDYNIX_QUEUE_GROUP",
	      "NATS queue group the dispatchers share, so each request goes to one of them."),
	K_STR("instance_id", instance_id, "", false, "SUNDYNIX_INSTANCE_ID",
	      "Name of this instance: config request, acks, replay subject, logs; a subject token (`\"\"`: `<hostname>-<pid>`)."),
	K_STR("metrics.listen", metrics_listen, CONFIG_METRICS_LISTEN_DEFAULT, false, "SUNDYNIX_METRICS_LISTEN",
	      "Address of the HTTP listener for `/metrics` (Prometheus), `/healthz` and `/readyz`: `IPv4:PORT` or "
	      "`[IPv6]:PORT` (port 0: any free one, logged); `\"\"` turns it off. See docs/observability.md."),
	K_INT("limits.max_inflight", limits_max_inflight, 1024, 1, 1000000, true, NULL,
	      "Requests streaming at once; more are refused with \"busy\"."),
	K_INT("limits.max_request_bytes", limits_max_request_bytes, 1048576, 1024, 1073741824, true, NULL,
	      "Largest accepted submit message, in bytes."),
	K_INT("limits.max_sse_line_bytes", limits_max_sse_line_bytes, 1048576, 1024, 1073741824, true, NULL,
	      "Longest line accepted from the upstream's event stream, in bytes."),
	K_INT("limits.max_connections_per_endpoint", limits_max_connections_per_endpoint, 0, 0, 1000000, false,
	      NULL, "Sockets to one backend host at most (0: no limit); further requests wait for a free one."),
	K_INT("pool.max_attempts", pool_max_attempts, 2, 1, 10, true, NULL,
	      "Attempts per request, on different replicas, while no token has been sent yet."),
	K_BOOL("pool.resume", pool_resume, 1, true, NULL,
	       "Continue a stream on another replica when its replica fails after the first token, where the provider can continue."),
	K_INT("pool.eject_after", pool_eject_after, 3, 1, 1000, true, NULL,
	      "Consecutive failures (connect, 5xx, 429, no first token) that take a replica out of rotation."),
	K_INT("pool.probe_interval_ms", pool_probe_interval_ms, 0, 0, 3600000, true, NULL,
	      "Active health probe (GET {base_url}/models) of every replica this often (0: off)."),
	K_INT("pool.probe_timeout_ms", pool_probe_timeout_ms, 10000, 100, 600000, true, NULL,
	      "Timeout of one probe request (active probe and the probe subject)."),
	K_INT("timeouts.connect_ms", timeouts_connect_ms, 5000, 1, 600000, true, NULL,
	      "Connecting to the upstream (TCP and TLS)."),
	K_INT("timeouts.first_token_ms", timeouts_first_token_ms, 60000, 1, 86400000, true, NULL,
	      "From sending the upstream request to its first token."),
	K_INT("timeouts.idle_ms", timeouts_idle_ms, 30000, 1, 86400000, true, NULL,
	      "Longest silence of the upstream between two chunks once streaming."),
	K_INT("timeouts.total_ms", timeouts_total_ms, 600000, 1, 86400000, true, NULL,
	      "Whole lifetime of one request."),
	K_INT("limits.rejoin_below_pct", limits_rejoin_below_pct, 90, 1, 100, true, NULL,
	      "A full dispatcher leaves the submit queue group and rejoins at or below this percent of its capacity."),
	K_INT("limits.replay_bytes", limits_replay_bytes, 65536, 0, 67108864, true, NULL,
	      "Bytes of each stream's record kept for replay (gap repair); past it the oldest events are dropped (0: no replay)."),
	K_INT("stream.keepalive_ms", stream_keepalive_ms, 5000, 0, 3600000, true, NULL,
	      "A keepalive event on a stream that sent nothing for this long (0: none); gateways take 2x as a dead dispatcher."),
	K_INT("stream.replay_linger_ms", stream_replay_linger_ms, 30000, 0, 3600000, true, NULL,
	      "How long a finished stream can still be replayed after its terminal event."),
	K_INT("stream.replay_linger_bytes", stream_replay_linger_bytes, 67108864, 0, 17179869184LL, true, NULL,
	      "Finished streams' records kept for replay, together, at most; past it the oldest go first."),
	K_INT("timeouts.config_request_ms", timeouts_config_request_ms, 2000, 1, 600000, true, NULL,
	      "Waiting for the reply to the model config request."),
	K_INT("stub.ttft_ms", stub_ttft_ms, 700, 0, 600000, true, "SUNDYNIX_STUB_TTFT_MS",
	      "Stub stream (no model ready): delay before its first token."),
	K_INT("stub.inter_token_ms", stub_inter_token_ms, 60, 0, 60000, true, "SUNDYNIX_STUB_INTER_TOKEN_MS",
	      "Stub stream: delay between tokens."),
	K_STR("prompt.system", prompt_system, "", true, "SUNDYNIX_SYSTEM_PROMPT",
	      "System prompt put first in every upstream request (`\"\"`: none)."),
	K_STR("prompt.memory_template", prompt_memory_template,
	      PROMPT_DEFAULT_MEMORY_TEMPLATE, true, NULL,
	      "How the user's memory is rendered: `{profile}` and `{facts}` are replaced."),
	K_LEVEL("log.level", log_level, "info", true, "SUNDYNIX_LOG_LEVEL",
		"One of error, warn, notice, info, debug."),
	K_STR("log.format", log_format, "text", true, "SUNDYNIX_LOG_FORMAT",
	      "`text`, or `json`: one JSON object per line (also under journald), for log shippers."),
	K_INT("shutdown.grace_ms", shutdown_grace_ms, 30000, 0, 3600000, true, NULL,
	      "On SIGTERM, how long in-flight requests may finish before they are cut."),
};

#define CONFIG__NKEYS UTIL_ARRAY_LEN(config__keys)
#define CONFIG__MAX_FILE (16u << 20)
#define CONFIG__MAX_SECRET (64u << 10)

/* Where a key was seen in the file. */
struct config__keyline {
	char *path;
	int line;
};

/* State of one config_load, beside the scratch struct. */
struct config__load {
	const char *file; /* NULL when loading defaults only */
	struct config__keyline *lines;
	size_t nlines;
	const char *env[CONFIG__NKEYS];   /* variable that set the key, if any */
	char *secret_path[CONFIG__NKEYS]; /* values of CONFIG__SECRET_FILE keys */
	char *err;
	size_t errlen;
};

static char **config__str(struct config *c, const struct config__key *k)
{
	return (char **)((char *)c + k->off);
}

static char *const *config__cstr(const struct config *c, const struct config__key *k)
{
	return (char *const *)((const char *)c + k->off);
}

static const struct config__key *config__find(const char *path)
{
	for (size_t i = 0; i < CONFIG__NKEYS; i++)
		if (!strcmp(config__keys[i].path, path))
			return &config__keys[i];
	return NULL;
}

static size_t config__idx(const struct config__key *k)
{
	return (size_t)(k - config__keys);
}

/* The other key of a secret pair (nats.password <-> nats.password_file). */
static const struct config__key *config__pair(const struct config__key *k)
{
	enum config__type want = k->type == CONFIG__SECRET ? CONFIG__SECRET_FILE : CONFIG__SECRET;

	for (size_t i = 0; i < CONFIG__NKEYS; i++)
		if (config__keys[i].type == want && config__keys[i].off == k->off)
			return &config__keys[i];
	abort(); /* the table lists secrets in pairs */
}

/* ---- errors ---- */

static int config__line(const struct config__load *st, const char *path)
{
	for (size_t i = 0; i < st->nlines; i++)
		if (!strcmp(st->lines[i].path, path))
			return st->lines[i].line;
	return 0;
}

/* Writes "<where>: <message>" for key k; where is the environment variable
 * that set it, or the file and line it was read from. */
static int UTIL_PRINTF(3, 4) config__fail(struct config__load *st, const struct config__key *k, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	const char *env = st->env[config__idx(k)];
	int line = config__line(st, k->path);
	if (env)
		snprintf(st->err, st->errlen, "environment %s: %s", env, msg);
	else if (st->file && line)
		snprintf(st->err, st->errlen, "%s:%d: key '%s': %s", st->file, line, k->path, msg);
	else if (st->file)
		snprintf(st->err, st->errlen, "%s: key '%s': %s", st->file, k->path, msg);
	else
		snprintf(st->err, st->errlen, "key '%s': %s", k->path, msg);
	return -1;
}

/* ---- values ---- */

static struct config_list *config__list(struct config *c, const struct config__key *k)
{
	return (struct config_list *)((char *)c + k->off);
}

static const struct config_list *config__clist(const struct config *c, const struct config__key *k)
{
	return (const struct config_list *)((const char *)c + k->off);
}

static void config__list_free(char **list)
{
	if (!list)
		return;
	for (char **p = list; *p; p++)
		free(*p);
	free(list);
}

static void config__list_push(char ***list, size_t *n, const char *s, size_t len)
{
	*list = xrealloc(*list, (*n + 2) * sizeof(**list));
	(*list)[(*n)++] = xstrndup(s, len);
	(*list)[*n] = NULL;
}

static bool config__has_space(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Splits a comma-separated list, trimming blanks around each entry. Returns
 * -1 on an empty entry. */
static int config__split(const char *s, char ***out, size_t *n)
{
	for (;;) {
		size_t len = strcspn(s, ",");
		const char *b = s, *e = s + len;
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (b == e)
			return -1;
		config__list_push(out, n, b, (size_t)(e - b));
		if (!s[len])
			return 0;
		s += len + 1;
	}
}

static int config__set_list(struct config__load *st, struct config *c, const struct config__key *k,
			    json_t *jv, const char *sv)
{
	char **list = NULL;
	size_t n = 0;

	if (sv) {
		if (config__split(sv, &list, &n) < 0)
			goto empty;
	} else if (json_is_string(jv)) {
		if (config__split(json_string_value(jv), &list, &n) < 0)
			goto empty;
	} else if (json_is_array(jv)) {
		size_t i;
		json_t *el;
		json_array_foreach(jv, i, el) {
			if (!json_is_string(el)) {
				config__list_free(list);
				return config__fail(st, k, "element %zu: expected a string", i);
			}
			const char *s = json_string_value(el);
			if (!*s)
				goto empty;
			config__list_push(&list, &n, s, strlen(s));
		}
		if (!n) {
			config__list_free(list);
			return config__fail(st, k, "must name at least one server");
		}
	} else {
		return config__fail(st, k, "expected a string or an array of strings");
	}
	for (size_t i = 0; i < n; i++) {
		if (config__has_space(list[i])) {
			config__list_free(list);
			/* The URL may carry a password, so it is not quoted. */
			return config__fail(st, k, "entry %zu contains blanks or control characters", i + 1);
		}
	}
	struct config_list *l = config__list(c, k);
	config__list_free(l->v);
	l->v = list;
	l->n = n;
	return 0;
empty:
	config__list_free(list);
	return config__fail(st, k, "empty entry");
}

static int config__set_int(struct config__load *st, struct config *c, const struct config__key *k, json_t *jv,
			   const char *sv)
{
	long long v;

	if (sv) {
		char *end;
		errno = 0;
		v = strtoll(sv, &end, 10);
		if (end == sv || *end || (*sv != '-' && (*sv < '0' || *sv > '9')))
			return config__fail(st, k, "expected an integer");
		if (errno == ERANGE)
			goto range;
	} else {
		if (!json_is_integer(jv))
			return config__fail(st, k, "expected an integer");
		v = json_integer_value(jv);
	}
	if (v < k->min || v > k->max)
		goto range;
	*(long long *)((char *)c + k->off) = v;
	return 0;
range:
	return config__fail(st, k, "must be between %lld and %lld", k->min, k->max);
}

static int config__set_bool(struct config__load *st, struct config *c, const struct config__key *k, json_t *jv,
			    const char *sv)
{
	long long v;

	if (sv && (!strcmp(sv, "true") || !strcmp(sv, "1")))
		v = 1;
	else if (sv && (!strcmp(sv, "false") || !strcmp(sv, "0")))
		v = 0;
	else if (!sv && json_is_boolean(jv))
		v = json_is_true(jv);
	else
		return config__fail(st, k, "expected true or false");
	*(long long *)((char *)c + k->off) = v;
	return 0;
}

/* Sets key k from a JSON value (jv) or an environment string (sv). */
static int config__set(struct config__load *st, struct config *c, const struct config__key *k, json_t *jv,
		       const char *sv)
{
	const char *s = sv;

	switch (k->type) {
	case CONFIG__LIST:
		return config__set_list(st, c, k, jv, sv);
	case CONFIG__INT:
		return config__set_int(st, c, k, jv, sv);
	case CONFIG__BOOL:
		return config__set_bool(st, c, k, jv, sv);
	default:
		break;
	}
	if (!s) {
		if (!json_is_string(jv))
			return config__fail(st, k, k->type == CONFIG__LEVEL ?
					    "expected a string (one of error, warn, notice, info, debug)" :
					    "expected a string");
		s = json_string_value(jv);
	}
	switch (k->type) {
	case CONFIG__LEVEL: {
		int lvl = log_level_parse(s);
		if (lvl < 0)
			return config__fail(st, k, "must be one of error, warn, notice, info, debug");
		*(int *)((char *)c + k->off) = lvl;
		return 0;
	}
	case CONFIG__SECRET_FILE: {
		char **p = &st->secret_path[config__idx(k)];
		free(*p);
		*p = xstrdup(s);
		return 0;
	}
	default: {
		char **p = config__str(c, k);
		free(*p);
		*p = xstrdup(s);
		return 0;
	}
	}
}

/* ---- the line scanner ---- */

/* jansson reports no positions for a valid document, so this walks the raw
 * text once more and records the line of every key path. It runs only on
 * text jansson accepted, so it need not diagnose anything. */
static void config__scan_lines(struct config__load *st, const char *text, size_t len)
{
	struct frame {
		size_t base; /* path length of the container */
		bool object;
		bool want_key;
	} stack[64];
	int depth = -1;
	int line = 1;
	size_t cap = 0;
	struct buf path;

	buf_init(&path);
	buf_append(&path, "", 0);
	for (size_t i = 0; i < len; i++) {
		char ch = text[i];
		if (ch == '\n') {
			line++;
		} else if (ch == '"') {
			size_t start = i++;
			bool escaped = false;
			for (; i < len && text[i] != '"'; i++) {
				if (text[i] == '\\') {
					escaped = true;
					i++;
				}
			}
			if (depth < 0 || !stack[depth].object || !stack[depth].want_key)
				continue;
			stack[depth].want_key = false;
			path.len = stack[depth].base;
			if (path.len)
				buf_append_char(&path, '.');
			if (escaped) {
				json_t *k = json_loadb(text + start, i + 1 - start, JSON_DECODE_ANY, NULL);
				buf_append_str(&path, json_is_string(k) ? json_string_value(k) : "");
				json_decref(k);
			} else {
				buf_append(&path, text + start + 1, i - start - 1);
			}
			if (st->nlines == cap) {
				cap = cap ? cap * 2 : 32;
				st->lines = xrealloc(st->lines, cap * sizeof(*st->lines));
			}
			st->lines[st->nlines].path = xstrdup(path.data);
			st->lines[st->nlines].line = line;
			st->nlines++;
		} else if (ch == '{' || ch == '[') {
			if (depth + 1 >= (int)UTIL_ARRAY_LEN(stack))
				break;
			depth++;
			stack[depth].base = path.len;
			stack[depth].object = ch == '{';
			stack[depth].want_key = ch == '{';
		} else if (ch == '}' || ch == ']') {
			if (depth >= 0)
				path.len = stack[depth--].base;
		} else if (ch == ',' && depth >= 0 && stack[depth].object) {
			stack[depth].want_key = true;
		}
	}
	buf_free(&path);
}

/* ---- the file ---- */

/* Reads at most max bytes, so a path like /dev/zero cannot hang a load. */
static int config__read_file(const char *path, struct buf *out, size_t max)
{
	char chunk[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		if (out->len + (size_t)n > max) {
			close(fd);
			errno = EFBIG;
			return -1;
		}
		buf_append(out, chunk, (size_t)n);
	}
	close(fd);
	buf_append(out, "", 0);
	return 0;
}

/* Smallest edit distance, for "did you mean" on unknown keys. */
static size_t config__distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[65];

	if (lb >= UTIL_ARRAY_LEN(row))
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static bool config__is_section(const char *path)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < CONFIG__NKEYS; i++)
		if (!strncmp(config__keys[i].path, path, n) && config__keys[i].path[n] == '.')
			return true;
	return false;
}

static int config__unknown(struct config__load *st, const char *path)
{
	const char *best = NULL;
	size_t bestd = 3; /* suggest only close misspellings */

	for (size_t i = 0; i < CONFIG__NKEYS; i++) {
		size_t d = config__distance(path, config__keys[i].path);
		if (d < bestd) {
			bestd = d;
			best = config__keys[i].path;
		}
	}
	snprintf(st->err, st->errlen, "%s:%d: unknown key '%s'%s%s%s", st->file, config__line(st, path), path,
		 best ? " (did you mean '" : "", best ? best : "", best ? "'?)" : "");
	return -1;
}

static int config__walk(struct config__load *st, struct config *c, json_t *obj, const char *prefix)
{
	const char *key;
	json_t *val;

	json_object_foreach(obj, key, val) {
		char *path = *prefix ? xasprintf("%s.%s", prefix, key) : xstrdup(key);
		const struct config__key *k = strchr(key, '.') ? NULL : config__find(path);
		int rc = 0;

		if (k) {
			rc = config__set(st, c, k, val, NULL);
		} else if (!strchr(key, '.') && config__is_section(path)) {
			if (json_is_object(val)) {
				rc = config__walk(st, c, val, path);
			} else {
				snprintf(st->err, st->errlen, "%s:%d: key '%s': expected an object", st->file,
					 config__line(st, path), path);
				rc = -1;
			}
		} else if (strchr(key, '.')) {
			snprintf(st->err, st->errlen, "%s:%d: key '%s': dots are not allowed in key names; nest objects",
				 st->file, config__line(st, path), path);
			rc = -1;
		} else {
			rc = config__unknown(st, path);
		}
		free(path);
		if (rc)
			return rc;
	}
	return 0;
}

/* jansson quotes the text near a syntax error, which may be part of a
 * password; keep only its description, the position is given separately. */
static void config__json_error(struct config__load *st, const json_error_t *je)
{
	char text[JSON_ERROR_TEXT_LENGTH];
	char *near;

	snprintf(text, sizeof(text), "%s", je->text);
	near = strstr(text, " near '");
	if (near)
		*near = '\0';
	snprintf(st->err, st->errlen, "%s:%d:%d: invalid JSON: %s", st->file, je->line, je->column, text);
}

static int config__load_file(struct config__load *st, struct config *c)
{
	struct buf text;
	json_error_t je;
	json_t *root;
	int rc = -1;

	buf_init(&text);
	if (config__read_file(st->file, &text, CONFIG__MAX_FILE) < 0) {
		snprintf(st->err, st->errlen, "%s: cannot read: %s", st->file, strerror(errno));
		goto out;
	}
	root = json_loadb(text.data, text.len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		config__json_error(st, &je);
		goto out;
	}
	if (!json_is_object(root)) {
		snprintf(st->err, st->errlen, "%s:1: expected a JSON object at the top level", st->file);
	} else {
		config__scan_lines(st, text.data, text.len);
		rc = config__walk(st, c, root, "");
	}
	json_decref(root);
out:
	buf_free(&text);
	return rc;
}

/* ---- environment, secrets, paths ---- */

static int config__apply_env(struct config__load *st, struct config *c)
{
	for (size_t i = 0; i < CONFIG__NKEYS; i++) {
		const struct config__key *k = &config__keys[i];
		const char *v = k->env ? getenv(k->env) : NULL;
		/* An empty variable counts as unset, so "Environment=NAME=" in
		 * a unit cannot blank a key by accident. */
		if (!v || !*v)
			continue;
		st->env[i] = k->env;
		if (config__set(st, c, k, NULL, v) < 0)
			return -1;
	}
	return 0;
}

/* Makes path absolute: relative ones resolve against $CREDENTIALS_DIRECTORY
 * (systemd LoadCredential=) when set, else against the current directory. */
static char *config__resolve(const char *path)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char cwd[PATH_MAX];

	if (path[0] == '/')
		return xstrdup(path);
	if (!dir || !*dir) {
		dir = getcwd(cwd, sizeof(cwd));
		if (!dir)
			dir = ".";
	}
	return xasprintf("%s/%s", dir, path);
}

static int config__read_secret(struct config__load *st, struct config *c, const struct config__key *kf)
{
	const char *rel = st->secret_path[config__idx(kf)];
	char **dst = config__str(c, kf);
	struct buf data;
	char *path;
	int rc = -1;

	if (!rel || !*rel)
		return 0;
	if (**dst)
		return config__fail(st, kf, "%s is set as well; use only one of them", config__pair(kf)->path);
	path = config__resolve(rel);
	buf_init(&data);
	if (config__read_file(path, &data, CONFIG__MAX_SECRET) < 0) {
		config__fail(st, kf, "cannot read '%s': %s", path, strerror(errno));
		goto out;
	}
	if (data.len && data.data[data.len - 1] == '\n')
		data.len--;
	if (data.len && data.data[data.len - 1] == '\r')
		data.len--;
	data.data[data.len] = '\0';
	if (strlen(data.data) != data.len) {
		config__fail(st, kf, "'%s' contains a NUL byte", path);
		goto out;
	}
	if (!data.len) {
		config__fail(st, kf, "'%s' is empty", path);
		goto out;
	}
	free(*dst);
	*dst = xstrndup(data.data, data.len);
	rc = 0;
out:
	/* The buffer held the secret; do not leave it in freed memory. */
	if (data.data)
		memset(data.data, 0, data.cap);
	buf_free(&data);
	free(path);
	return rc;
}

static int config__resolve_file(struct config__load *st, struct config *c, const struct config__key *k)
{
	char **p = config__str(c, k);
	char *abs;
	int fd;

	if (!**p)
		return 0;
	abs = config__resolve(*p);
	fd = open(abs, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int rc = config__fail(st, k, "cannot read '%s': %s", abs, strerror(errno));
		free(abs);
		return rc;
	}
	close(fd);
	free(*p);
	*p = abs;
	return 0;
}

/* ---- cross-field checks ---- */

static bool config__valid_subject_prefix(const char *s)
{
	bool token_empty = true;

	for (; *s; s++) {
		char ch = *s;
		if (ch == '.') {
			if (token_empty)
				return false;
			token_empty = true;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			   ch == '_' || ch == '-') {
			token_empty = false;
		} else {
			return false;
		}
	}
	return !token_empty;
}

static const struct config__key *config__key(const char *path)
{
	const struct config__key *k = config__find(path);

	if (!k)
		abort(); /* a misspelt path in this file */
	return k;
}

/* The key that set a secret, for messages: its file key when one was used. */
static const struct config__key *config__secret_source(const struct config__load *st, const char *path)
{
	const struct config__key *k = config__key(path);
	const char *file = st->secret_path[config__idx(config__pair(k))];

	return file && *file ? config__pair(k) : k;
}

static void config__default_instance(struct config *c)
{
	char host[256] = "";

	if (gethostname(host, sizeof(host) - 1) < 0 || !*host)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	/* A subject token: a dotted host name keeps its first label. */
	host[strcspn(host, ".")] = '\0';
	for (char *p = host; *p; p++)
		if (!contract_valid_request_id(p, 1))
			*p = '_';
	if (strlen(host) > 40)
		host[40] = '\0';
	free(c->instance_id);
	c->instance_id = xasprintf("%s-%ld", *host ? host : "localhost", (long)getpid());
}

static int config__validate(struct config__load *st, struct config *c)
{
	if (*c->nats_user && !*c->nats_password)
		return config__fail(st, config__key("nats.user"),
				    "is set but neither nats.password nor nats.password_file is");
	if (*c->nats_password && !*c->nats_user)
		return config__fail(st, config__secret_source(st, "nats.password"), "is set but nats.user is not");
	if (*c->nats_credentials_file && *c->nats_nkey_seed_file)
		return config__fail(st, config__key("nats.nkey_seed_file"),
				    "nats.credentials_file is set as well; use only one of them");
	if (!*c->nats_nkey != !*c->nats_nkey_seed_file)
		return config__fail(st, config__key(*c->nats_nkey ? "nats.nkey" : "nats.nkey_seed_file"),
				    "nats.nkey and nats.nkey_seed_file must be set together");
	if (!*c->nats_tls_cert_file != !*c->nats_tls_key_file)
		return config__fail(st, config__key(*c->nats_tls_cert_file ? "nats.tls.cert_file" : "nats.tls.key_file"),
				    "nats.tls.cert_file and nats.tls.key_file must be set together");
	if (!config__valid_subject_prefix(c->subject_prefix))
		return config__fail(st, config__key("subject_prefix"),
				    "'%s' is not a valid subject prefix (tokens of A-Z a-z 0-9 _ - joined by dots, "
				    "no wildcards)", c->subject_prefix);
	if (!*c->queue_group || config__has_space(c->queue_group))
		return config__fail(st, config__key("queue_group"), "must be non-empty and without blanks");
	if (log_format_parse(c->log_format) < 0)
		return config__fail(st, config__key("log.format"), "must be text or json");
	struct sockaddr_storage ss;
	unsigned sslen;
	if (*c->metrics_listen && config_listen_addr(c->metrics_listen, &ss, &sslen) < 0)
		return config__fail(st, config__key("metrics.listen"),
				    "'%s' is not IPv4:PORT or [IPv6]:PORT (\"\" turns the listener off)", c->metrics_listen);
	if (!*c->instance_id)
		config__default_instance(c);
	if (!contract_valid_request_id(c->instance_id, strlen(c->instance_id)) || strlen(c->instance_id) > 64)
		return config__fail(st, config__key("instance_id"),
				    "must be 1-64 characters of A-Z a-z 0-9 _ - (it is a NATS subject token)");
	return 0;
}

/* ---- public ---- */

/* Fills every key with its table default; instance_id stays "". */
static void config__fill_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < CONFIG__NKEYS; i++) {
		const struct config__key *k = &config__keys[i];
		switch (k->type) {
		case CONFIG__LIST:
			if (config__split(k->def, &config__list(c, k)->v, &config__list(c, k)->n) < 0)
				abort();
			break;
		case CONFIG__INT:
		case CONFIG__BOOL:
			*(long long *)((char *)c + k->off) = k->idef;
			break;
		case CONFIG__LEVEL:
			*(int *)((char *)c + k->off) = log_level_parse(k->def);
			break;
		case CONFIG__SECRET_FILE:
			break; /* shares the field of its inline key */
		default:
			*config__str(c, k) = xstrdup(k->def);
		}
	}
}

void config_defaults(struct config *c)
{
	config__fill_defaults(c);
	config__default_instance(c);
}

int config_load(const char *path, struct config *out, char *err, size_t errlen)
{
	struct config__load st;
	struct config c;
	int rc = -1;

	memset(&st, 0, sizeof(st));
	st.file = path;
	st.err = err;
	st.errlen = errlen;
	if (errlen)
		err[0] = '\0';
	/* instance_id "" means the computed default, so that is filled in
	 * only after the file and the environment (config__validate). */
	config__fill_defaults(&c);

	if (path && config__load_file(&st, &c) < 0)
		goto out;
	if (config__apply_env(&st, &c) < 0)
		goto out;
	for (size_t i = 0; i < CONFIG__NKEYS; i++) {
		const struct config__key *k = &config__keys[i];
		if (k->type == CONFIG__SECRET_FILE && config__read_secret(&st, &c, k) < 0)
			goto out;
		if (k->type == CONFIG__FILE && config__resolve_file(&st, &c, k) < 0)
			goto out;
	}
	if (config__validate(&st, &c) < 0)
		goto out;
	*out = c;
	rc = 0;
out:
	if (rc)
		config_free(&c);
	for (size_t i = 0; i < st.nlines; i++)
		free(st.lines[i].path);
	free(st.lines);
	for (size_t i = 0; i < CONFIG__NKEYS; i++)
		free(st.secret_path[i]);
	return rc;
}

void config_free(struct config *c)
{
	for (size_t i = 0; i < CONFIG__NKEYS; i++) {
		const struct config__key *k = &config__keys[i];
		if (k->type == CONFIG__LIST) {
			config__list_free(config__list(c, k)->v);
		} else if (k->type == CONFIG__SECRET) {
			char *s = *config__str(c, k);
			if (s)
				memset(s, 0, strlen(s));
			free(s);
		} else if (k->type == CONFIG__STRING || k->type == CONFIG__FILE) {
			free(*config__str(c, k));
		}
	}
	memset(c, 0, sizeof(*c));
}

static bool config__equal(const struct config *a, const struct config *b, const struct config__key *k)
{
	switch (k->type) {
	case CONFIG__LIST: {
		const struct config_list *la = config__clist(a, k), *lb = config__clist(b, k);
		if (la->n != lb->n)
			return false;
		for (size_t i = 0; i < la->n; i++)
			if (strcmp(la->v[i], lb->v[i]))
				return false;
		return true;
	}
	case CONFIG__INT:
	case CONFIG__BOOL:
		return *(const long long *)((const char *)a + k->off) == *(const long long *)((const char *)b + k->off);
	case CONFIG__LEVEL:
		return *(const int *)((const char *)a + k->off) == *(const int *)((const char *)b + k->off);
	default:
		return !strcmp(*config__cstr(a, k), *config__cstr(b, k));
	}
}

void config_diff(const struct config *a, const struct config *b,
		 void (*cb)(void *ud, const char *key, bool live), void *ud)
{
	for (size_t i = 0; i < CONFIG__NKEYS; i++) {
		const struct config__key *k = &config__keys[i];
		/* A secret read from a file is reported under its inline key. */
		if (k->type == CONFIG__SECRET_FILE)
			continue;
		if (!config__equal(a, b, k))
			cb(ud, k->path, k->live);
	}
}

void config_keep_restart_keys(struct config *next, struct config *cur)
{
	for (size_t i = 0; i < CONFIG__NKEYS; i++) {
		const struct config__key *k = &config__keys[i];
		/* A *_file secret shares its field with the inline key: swap once. */
		if (k->live || k->type == CONFIG__SECRET_FILE)
			continue;
		char *a = (char *)next + k->off, *b = (char *)cur + k->off;
		switch (k->type) {
		case CONFIG__INT:
		case CONFIG__BOOL: {
			long long t = *(long long *)a;
			*(long long *)a = *(long long *)b;
			*(long long *)b = t;
			break;
		}
		case CONFIG__LEVEL: {
			int t = *(int *)a;
			*(int *)a = *(int *)b;
			*(int *)b = t;
			break;
		}
		case CONFIG__LIST: {
			struct config_list t = *(struct config_list *)a;
			*(struct config_list *)a = *(struct config_list *)b;
			*(struct config_list *)b = t;
			break;
		}
		default: {
			char *t = *(char **)a;
			*(char **)a = *(char **)b;
			*(char **)b = t;
		}
		}
	}
}

/* Appends s for a Markdown table cell: a JSON literal, '|' escaped. */
static void config__md_default(struct buf *out, const struct config__key *k)
{
	struct buf j;

	if (k->type == CONFIG__INT) {
		buf_printf(out, "`%lld`", k->idef);
		return;
	}
	if (k->type == CONFIG__BOOL) {
		buf_append_str(out, k->idef ? "`true`" : "`false`");
		return;
	}
	buf_init(&j);
	if (k->type == CONFIG__LIST) {
		buf_append_char(&j, '[');
		buf_append_json_str(&j, k->def, strlen(k->def));
		buf_append_char(&j, ']');
	} else {
		buf_append_json_str(&j, k->def, strlen(k->def));
	}
	buf_append_char(out, '`');
	for (size_t i = 0; i < j.len; i++) {
		if (j.data[i] == '|')
			buf_append_char(out, '\\');
		buf_append_char(out, j.data[i]);
	}
	buf_append_char(out, '`');
	buf_free(&j);
}

void config_print_reference(void)
{
	struct buf out;

	buf_init(&out);
	buf_append_str(&out, "| key | type | default | live | description |\n"
			     "|---|---|---|---|---|\n");
	for (size_t i = 0; i < CONFIG__NKEYS; i++) {
		const struct config__key *k = &config__keys[i];
		buf_printf(&out, "| `%s` | %s", k->path, config__type_names[k->type]);
		if (k->type == CONFIG__INT)
			buf_printf(&out, " (%lld..%lld)", k->min, k->max);
		buf_append_str(&out, " | ");
		config__md_default(&out, k);
		buf_printf(&out, " | %s | ", k->live ? "yes" : "no");
		for (const char *d = k->desc; *d; d++) {
			if (*d == '|')
				buf_append_char(&out, '\\');
			buf_append_char(&out, *d);
		}
		if (k->env)
			buf_printf(&out, " Environment: `%s`.", k->env);
		buf_append_str(&out, " |\n");
	}
	fwrite(out.data, 1, out.len, stdout);
	fflush(stdout);
	buf_free(&out);
}

int config_listen_addr(const char *s, struct sockaddr_storage *addr, unsigned *len)
{
	char host[64];
	const char *colon = strrchr(s, ':'), *port;
	char *end;
	size_t hl;

	if (!colon)
		return -1;
	port = colon + 1;
	if (*port < '0' || *port > '9')
		return -1;
	errno = 0;
	unsigned long p = strtoul(port, &end, 10);
	if (errno || *end || p > 65535)
		return -1;
	hl = (size_t)(colon - s);
	memset(addr, 0, sizeof(*addr));
	if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
		if (hl - 2 >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hl - 2);
		host[hl - 2] = '\0';
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			return -1;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*a6);
		return 0;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
	if (hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
		return -1;
	a4->sin_family = AF_INET;
	a4->sin_port = htons((uint16_t)p);
	*len = sizeof(*a4);
	return 0;
}
