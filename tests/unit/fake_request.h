/* fake_request: fakes for the request module's ops (struct request_ops): the
 * bus (every publish kept), the upstream and the stub (each start kept as a
 * fake source a test drives), the clock and admission; plus helpers that
 * submit, drive sources, and decode and check what a stream published. Used
 * by tests/unit/test_request*.c only. */
#ifndef SUNDYNIX_FAKE_REQUEST_H
#define SUNDYNIX_FAKE_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "contract.h"
#include "modelcfg.h"
#include "request.h"

#define MAX_EVENTS 128
#define MAX_ATTEMPTS 32

/* One upstream attempt or stub run the request started. */
struct fake_source {
	bool stub;
	char base_url[128];
	long long total_ms;
	char body[2048];
	bool continuation;
	const struct upstream_cbs *cbs;
	void *cb_ud;
	bool cancelled;
};

struct fake {
	uint64_t now;
	struct {
		char subject[160];
		char data[1024];
	} pub[MAX_EVENTS];
	int npub;
	struct fake_source src[MAX_ATTEMPTS];
	int nsrc;
	bool refuse_start; /* upstream_start returns NULL */
	int idle_calls;
	int admission_calls;
	bool admission_open;

	struct config cfg;
	struct contract_subjects subj;
	struct modelcfg_store models;
	struct pool *pool;
	struct request_ops ops;
	struct requests *rq;
};

/* A ModelConfig of two OpenAI replicas (no continuation). */
extern const char TWO_REPLICAS[];

struct fake_source *fake_add(struct fake *f, const struct upstream_cbs *cbs, void *cb_ud);
void fake_admission(void *ud, bool open);
void fake_on_idle(void *ud);
struct fake *fake_new(const char *model);
void fake_free(struct fake *f);
void submit(struct fake *f, const char *rid);
void delta(struct fake_source *s, const char *text);
void end_ok(struct fake_source *s);
void end_err(struct fake_source *s, enum contract_code code, bool retryable, bool got_token);
void end_broken(struct fake_source *s);
void end_ok_usage(struct fake_source *s, long long completion);
int stream_of(struct fake *f, const char *rid, struct contract_event *ev, int max);
void events_free(struct contract_event *ev, int n);
void assert_ack(struct fake *f, int i, bool accepted, const char *code);
long long int_field(const struct contract_event *ev, const char *key);

#endif
