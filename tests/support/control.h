/* control: the test as the control plane. Publishes ModelConfig updates and
 * waits for the daemon to log that it applied them, and answers the daemon's
 * startup request for the active model. Only the messages: what the daemon
 * then does with the model is for the tests to check. */
#ifndef SUNDYNIX_TEST_CONTROL_H
#define SUNDYNIX_TEST_CONTROL_H

#include <jansson.h>

#include "util.h"

struct h_client;
struct h_daemon;
struct h_mock;
struct h_nats;

/* Publishes body on <prefix>.config.model.updated, without waiting. */
void h_publish_config(struct h_client *c, const char *body);
/* Publishes an OpenAI-compatible update for model at url (api_key NULL for
 * none; revision < 0 omits it) and waits until the daemon logs it applied
 * once more. */
void h_use_url(struct h_client *c, struct h_daemon *d, const char *url, const char *model, const char *api_key,
	       long long revision);
/* h_use_url with the mock's base URL. */
void h_use_mock(struct h_client *c, struct h_daemon *d, struct h_mock *m, const char *model,
		const char *api_key, long long revision);
/* h_daemon_start_client on n with overrides_json (may be NULL), then the mock
 * scripted for every request with script and the daemon pointed at it for
 * model (no API key; revision as for h_use_mock): the usual start of a test
 * that streams from the mock. */
struct h_daemon *h_daemon_start_on_mock(struct h_nats *n, const char *overrides_json, struct h_client **c,
					struct h_mock *m, const char *script, const char *model, long long revision);
/* Publishes a ModelConfig built by printf (checked to be JSON) for model and
 * waits until the daemon logs it applied once more. */
void h_apply_config(struct h_client *c, struct h_daemon *d, const char *model, const char *fmt, ...)
	UTIL_PRINTF(4, 5);

/* Asks a dispatcher to probe the ModelConfig body (<prefix>.dispatcher.probe,
 * 10 s at most) and returns its JSON answer (caller owns). */
json_t *h_probe(struct h_client *c, const char *body);

/* Answers <prefix>.config.model.get with body after delay_ms, and counts the
 * requests it saw. Stopped at teardown. */
struct h_responder;
struct h_responder *h_responder_start(struct h_client *c, const char *body, int delay_ms);
int h_responder_count(struct h_responder *r);
void h_responder_free(struct h_responder *r);

#endif
