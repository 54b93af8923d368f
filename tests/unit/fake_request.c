/* fake_request: see fake_request.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_request.h"
#include "pool.h"

static uint64_t fake_now(void *ud)
{
	return ((struct fake *)ud)->now;
}

static void fake_publish(void *ud, const char *subject, const char *data, size_t len)
{
	struct fake *f = ud;

	assert_true(f->npub < MAX_EVENTS);
	assert_true(len < sizeof(f->pub[0].data));
	snprintf(f->pub[f->npub].subject, sizeof(f->pub[0].subject), "%s", subject);
	memcpy(f->pub[f->npub].data, data, len);
	f->pub[f->npub].data[len] = '\0';
	f->npub++;
}

struct fake_source *fake_add(struct fake *f, const struct upstream_cbs *cbs, void *cb_ud)
{
	assert_true(f->nsrc < MAX_ATTEMPTS);
	struct fake_source *s = &f->src[f->nsrc++];
	memset(s, 0, sizeof(*s));
	s->cbs = cbs;
	s->cb_ud = cb_ud;
	return s;
}

static struct upstream *fake_upstream_start(void *ud, struct upstream_params *p, const struct upstream_cbs *cbs,
					    void *cb_ud)
{
	struct fake *f = ud;

	if (f->refuse_start)
		return NULL;
	struct fake_source *s = fake_add(f, cbs, cb_ud);
	snprintf(s->base_url, sizeof(s->base_url), "%s", p->base_url);
	s->total_ms = p->total_ms;
	assert_non_null(p->body);
	assert_true(p->body->len < sizeof(s->body));
	memcpy(s->body, p->body->data, p->body->len + 1);
	s->continuation = p->continuation;
	return (struct upstream *)s;
}

static void fake_upstream_cancel(void *ud, struct upstream *u)
{
	(void)ud;
	((struct fake_source *)u)->cancelled = true;
}

static struct stub *fake_stub_start(void *ud, char *text, long long ttft_ms, long long inter_ms,
				    const struct upstream_cbs *cbs, void *cb_ud)
{
	(void)ttft_ms;
	(void)inter_ms;
	free(text);
	struct fake_source *s = fake_add(ud, cbs, cb_ud);
	s->stub = true;
	return (struct stub *)s;
}

static void fake_stub_cancel(void *ud, struct stub *st)
{
	(void)ud;
	((struct fake_source *)st)->cancelled = true;
}

void fake_admission(void *ud, bool open)
{
	struct fake *f = ud;

	f->admission_calls++;
	f->admission_open = open;
}

void fake_on_idle(void *ud)
{
	((struct fake *)ud)->idle_calls++;
}

const char TWO_REPLICAS[] =
	"{\"model\":\"m\",\"endpoints\":[{\"base_url\":\"http://a/v1\"},{\"base_url\":\"http://b/v1\"}]}";

/* model: a ModelConfig, or NULL for the stub. */
struct fake *fake_new(const char *model)
{
	struct fake *f = calloc(1, sizeof(*f));
	char err[128];

	assert_non_null(f);
	config_defaults(&f->cfg);
	f->cfg.pool_max_attempts = 3;
	f->cfg.timeouts_total_ms = 10000;
	f->cfg.stream_keepalive_ms = 0; /* the keepalive tests turn them on */
	free(f->cfg.instance_id);
	f->cfg.instance_id = strdup("inst-1");
	contract_subjects_init(&f->subj, "t");
	modelcfg_store_init(&f->models);
	if (model) {
		struct modelcfg *m = modelcfg_parse(model, strlen(model), err, sizeof(err));
		assert_non_null(m);
		assert_int_equal(modelcfg_store_apply(&f->models, m), MODELCFG_APPLIED);
	}
	f->pool = pool_new(3);
	f->now = 1000;
	f->ops = (struct request_ops){ fake_now,	    fake_publish,     fake_upstream_start, fake_upstream_cancel,
				       fake_stub_start, fake_stub_cancel, fake_admission,  f };
	f->rq = requests_new(&f->ops, &f->subj, &f->models, f->pool, &f->cfg, NULL);
	return f;
}

/* Every request must have ended: one terminal event each, checked here. */
void fake_free(struct fake *f)
{
	assert_int_equal(requests_inflight(f->rq), 0);
	requests_free(f->rq);
	pool_free(f->pool);
	modelcfg_store_free(&f->models);
	contract_subjects_free(&f->subj);
	config_free(&f->cfg);
	free(f);
}

void submit(struct fake *f, const char *rid)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"request_id\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
		 rid);
	requests_submit(f->rq, body, strlen(body), "reply.1");
}

void delta(struct fake_source *s, const char *text)
{
	s->cbs->delta(s->cb_ud, CONTRACT_TOKEN, text, strlen(text));
}

void end_ok(struct fake_source *s)
{
	struct upstream_result r = { .code = CONTRACT_OK, .finish_reason = "stop", .got_token = true };
	s->cbs->end(s->cb_ud, &r);
}

void end_err(struct fake_source *s, enum contract_code code, bool retryable, bool got_token)
{
	struct upstream_result r = { .code = code, .retryable = retryable, .got_token = got_token,
				     .message = "it broke" };
	s->cbs->end(s->cb_ud, &r);
}

/* The replica dies mid-stream (reset, drop, idle). */
void end_broken(struct fake_source *s)
{
	struct upstream_result r = { .code = CONTRACT_UPSTREAM_PROTOCOL, .got_token = true, .broken = true,
				     .message = "stream from the backend broke off" };
	s->cbs->end(s->cb_ud, &r);
}

void end_ok_usage(struct fake_source *s, long long completion)
{
	struct upstream_result r = { .code = CONTRACT_OK, .finish_reason = "stop", .got_token = true,
				     .has_usage = true, .usage = { 10, completion, 10 + completion } };
	s->cbs->end(s->cb_ud, &r);
}

/* The events published on rid's stream, decoded; checks seq is contiguous
 * from 0 and that exactly one terminal event ends them. Returns the count. */
int stream_of(struct fake *f, const char *rid, struct contract_event *ev, int max)
{
	char subject[160], err[128];
	int n = 0, terminal = 0;

	snprintf(subject, sizeof(subject), "t.chat.stream.%s", rid);
	for (int i = 0; i < f->npub; i++) {
		if (strcmp(f->pub[i].subject, subject))
			continue;
		assert_true(n < max);
		assert_int_equal(contract_decode_event(f->pub[i].data, strlen(f->pub[i].data), &ev[n], err, sizeof(err)),
				 0);
		assert_string_equal(ev[n].request_id, rid);
		assert_int_equal(ev[n].seq, n);
		assert_int_equal(terminal, 0); /* nothing after the terminal event */
		if (ev[n].type == CONTRACT_EV_DONE || ev[n].type == CONTRACT_EV_ERROR)
			terminal++;
		n++;
	}
	assert_int_equal(terminal, 1);
	return n;
}

void events_free(struct contract_event *ev, int n)
{
	for (int i = 0; i < n; i++)
		contract_event_free(&ev[i]);
}

/* The ack on the reply subject for the i-th publish. */
void assert_ack(struct fake *f, int i, bool accepted, const char *code)
{
	struct contract_ack ack;

	assert_string_equal(f->pub[i].subject, "reply.1");
	assert_int_equal(contract_decode_ack(f->pub[i].data, strlen(f->pub[i].data), &ack), 0);
	assert_int_equal(ack.accepted, accepted);
	assert_string_equal(ack.code, code);
}

long long int_field(const struct contract_event *ev, const char *key)
{
	return json_integer_value(json_object_get(ev->root, key));
}
