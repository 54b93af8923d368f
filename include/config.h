/* config: the daemon's own configuration. One table declares every key once
 * (path, type, default, bounds, whether it can change on reload); loading
 * parses into a scratch struct, applies environment overrides, validates, and
 * only then hands the result over, so a bad file never half-applies. Secrets
 * may come from files (resolved against $CREDENTIALS_DIRECTORY when relative).
 * Knows nothing of NATS or curl. */
#ifndef SUNDYNIX_CONFIG_H
#define SUNDYNIX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* A list of strings: v is NULL-terminated and holds n >= 1 entries. */
struct config_list {
	char **v;
	size_t n;
};

struct config {
	/* nats.* (restart needed) */
	struct config_list nats_servers;
	char *nats_user;
	char *nats_password;    /* from nats.password or nats.password_file */
	char *nats_token;       /* from nats.token or nats.token_file */
	char *nats_credentials_file;
	char *nats_nkey_seed_file;
	char *nats_nkey; /* the public key of the seed */
	char *nats_tls_ca_file;
	char *nats_tls_cert_file;
	char *nats_tls_key_file;
	char *nats_tls_server_name;
	long long nats_reconnect_wait_ms;
	long long nats_connect_timeout_ms;
	long long nats_reconnect_buffer_bytes;

	char *subject_prefix; /* restart */
	char *queue_group;    /* restart */
	char *instance_id;    /* restart; default "<hostname>-<pid>" */
	char *metrics_listen; /* restart; "" = no HTTP listener; see config_listen_addr */

	/* live on reload from here down */
	long long limits_max_inflight;
	long long limits_max_request_bytes;
	long long limits_max_sse_line_bytes;
	long long limits_max_connections_per_endpoint; /* restart */
	long long limits_replay_bytes;
	long long limits_rejoin_below_pct;

	long long stream_keepalive_ms;
	long long stream_replay_linger_ms;
	long long stream_replay_linger_bytes;

	long long pool_max_attempts;
	long long pool_resume; /* boolean */
	long long pool_eject_after;
	long long pool_probe_interval_ms;
	long long pool_probe_timeout_ms;

	long long timeouts_connect_ms;
	long long timeouts_first_token_ms;
	long long timeouts_idle_ms;
	long long timeouts_total_ms;
	long long timeouts_config_request_ms;

	long long stub_ttft_ms;
	long long stub_inter_token_ms;

	char *prompt_system;
	char *prompt_memory_template;

	int log_level; /* LOG_LVL_* */
	char *log_format; /* "text" or "json" (checked) */

	long long shutdown_grace_ms;
};

/* Every string field is non-NULL after these ("" when unset). */
void config_defaults(struct config *c);
/* Loads path (NULL: defaults only), then the environment overrides
 * SUNDYNIX_NATS_URL (comma-separated), SUNDYNIX_SUBJECT_PREFIX,
 * SUNDYNIX_QUEUE_GROUP, SUNDYNIX_INSTANCE_ID, SUNDYNIX_STUB_TTFT_MS,
 * SUNDYNIX_STUB_INTER_TOKEN_MS, SUNDYNIX_LOG_LEVEL, SUNDYNIX_SYSTEM_PROMPT.
 * On error returns -1, leaves *out untouched and writes a message naming
 * the file, line and key ("FILE:LINE: key 'limits.max_inflight': expected an
 * integer"); the message never contains a secret's value. */
int config_load(const char *path, struct config *out, char *err, size_t errlen) UTIL_WUR;
void config_free(struct config *c);
/* Calls cb for every key whose value differs between a and b; live tells
 * whether the key takes effect without a restart. Secret values are never
 * passed, only key names. */
void config_diff(const struct config *a, const struct config *b,
		 void (*cb)(void *ud, const char *key, bool live), void *ud);
/* After a reload: gives next the running values of every key that needs a
 * restart (and cur the new ones, to be freed with it), so next can replace
 * cur. The table's live flags decide; nothing else lists those keys. */
void config_keep_restart_keys(struct config *next, struct config *cur);
/* Writes every key with its default and description as Markdown table rows
 * (used to keep docs/config.md true). */
void config_print_reference(void);

/* The default of metrics.listen: loopback only, port 9464 (the OpenTelemetry
 * Prometheus exporter defaults to it too: pick another where one runs on the
 * same host). */
#define CONFIG_METRICS_LISTEN_DEFAULT "127.0.0.1:9464"
struct sockaddr_storage;
/* Parses "IPv4:PORT" or "[IPv6]:PORT" (literals only, port 0-65535; 0 picks a
 * free one) into *addr and *len. Returns 0, or -1 when malformed. */
int config_listen_addr(const char *s, struct sockaddr_storage *addr, unsigned *len) UTIL_WUR;

#endif
