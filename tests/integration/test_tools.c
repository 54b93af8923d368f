/* Integration: function calling, structured output and content parts end to
 * end (issue #12). The mock backend answers a request that carries tools
 * with two parallel calls whose arguments arrive in pieces (mode "tools");
 * the test plays the gateway, reassembles the calls by index from the
 * tool_call events and parses their arguments, and checks the backend got
 * tools, tool_choice, parallel_tool_calls, response_format and the content
 * parts unchanged. Also: a shape error is refused naming the field, and
 * sundynixctl's --tools and --json-schema. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#define KEY "sk-tools-SECRETabcdef0123456789XYZ"

#define TOOLS                                                                                                  \
	"[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather now in a city\","  \
	"\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}," \
	"\"strict\":true}},"                                                                                           \
	"{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\"}}}]"
#define RESPONSE_FORMAT                                                                                        \
	"{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"answer\",\"strict\":true,\"schema\":{\"type\":\"object\"," \
	"\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"],\"additionalProperties\":false}}}"
#define USER_PARTS                                                                                             \
	"[{\"type\":\"text\",\"text\":\"What is the weather where this photo was taken?\"},"                          \
	"{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\",\"detail\":\"low\"}}]"
#define SYSTEM_PARTS "[{\"type\":\"text\",\"text\":\"Answer briefly.\"}]"

static struct h_nats *nats;
static struct h_mock *mock;

static const struct h_bed bed = {
	.nats = &nats,
	.mocks = { { &mock, "mock-tools" } },
	.script = "{\"mode\":\"tools\",\"tokens\":3,\"ttft_ms\":0,\"inter_ms\":0}",
};

static struct h_daemon *start_on_mock(struct h_client **c)
{
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);

	*c = h_client_connect(nats, prefix);
	h_use_mock(*c, d, mock, "m-tools", KEY, 1);
	return d;
}

static void assert_json_equal(json_t *got, const char *want_text, const char *what)
{
	json_t *want = h_json_parse(want_text);
	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
		fail_msg("%s: got %s\nwant %s", what, g ? g : "(none)", want_text);
	}
	json_decref(want);
}

/* A call as a gateway reassembles it from tool_call events. */
struct call {
	long long index;
	char *id, *name;
	struct buf args;
};

/* Reassembles the stream's calls by index, in order of first appearance,
 * as docs/protocol.md tells a gateway to. Returns how many. */
static size_t reassemble(json_t *events, struct call *calls, size_t max)
{
	size_t n = 0, i;
	json_t *ev;

	json_array_foreach(events, i, ev) {
		if (strcmp(h_jstr(ev, "type"), "tool_call"))
			continue;
		json_t *ix = json_object_get(ev, "index");
		json_t *args = json_object_get(ev, "arguments");
		assert_true(json_is_integer(ix));
		assert_true(json_is_string(args)); /* always there, maybe "" */
		size_t k = 0;
		while (k < n && calls[k].index != json_integer_value(ix))
			k++;
		if (k == n) {
			assert_true(n < max);
			memset(&calls[n], 0, sizeof(calls[n]));
			calls[n].index = json_integer_value(ix);
			buf_append(&calls[n].args, "", 0);
			n++;
		}
		json_t *id = json_object_get(ev, "id"), *name = json_object_get(ev, "name");
		if (id) {
			assert_null(calls[k].id); /* the id comes once */
			calls[k].id = xstrdup(json_string_value(id));
		}
		if (name) {
			assert_null(calls[k].name);
			calls[k].name = xstrdup(json_string_value(name));
		}
		buf_append(&calls[k].args, json_string_value(args), json_string_length(args));
	}
	return n;
}

static void calls_free(struct call *calls, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(calls[i].id);
		free(calls[i].name);
		buf_free(&calls[i].args);
	}
}

/* The arguments the mock sends for call i (tests/mock_backend.c). */
static void assert_mock_arguments(const struct call *c, int i)
{
	char want[160];
	json_error_t jerr;
	json_t *got = json_loads(c->args.data, 0, &jerr);

	if (!got)
		fail_msg("call %d: arguments are not JSON (%s): %s", i, jerr.text, c->args.data);
	snprintf(want, sizeof(want), "{\"city\":\"杭州 \\\"West Lake\\\"\",\"call\":%d,\"sky\":\"\xf0\x9f\x8c\xa7\"}", i);
	assert_json_equal(got, want, "arguments");
	json_decref(got);
}

static void test_parallel_calls_end_to_end(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(&c);
	const char *body = "{\"request_id\":\"r-tools-1\",\"messages\":["
			   "{\"role\":\"system\",\"content\":" SYSTEM_PARTS "},"
			   "{\"role\":\"user\",\"content\":" USER_PARTS "}],"
			   "\"memory\":{\"profile\":\"name: Alice\"},"
			   "\"params\":{\"tools\":" TOOLS ",\"tool_choice\":\"auto\",\"parallel_tool_calls\":true,"
			   "\"response_format\":" RESPONSE_FORMAT ",\"temperature\":0.2}}";
	struct h_stream *s = h_stream_open(c, "r-tools-1");
	json_t *ack = h_submit_raw(c, body, strlen(body), 5000);
	assert_true(json_is_true(json_object_get(ack, "accepted")));
	json_decref(ack);

	/* Order, one terminal event, and finish_reason as the backend said. */
	json_t *t = h_stream_finish(s, 10000);
	assert_string_equal(h_jstr(t, "type"), "done");
	assert_string_equal(h_jstr(t, "finish_reason"), "tool_calls");
	assert_int_equal(h_jint(t, "usage.completion_tokens"), 20);
	h_stream_expect_text(s, "Checking.");

	json_t *events = h_stream_events(s);
	/* The text comes first, then calls only. */
	assert_string_equal(h_jstr(json_array_get(events, 0), "type"), "token");
	struct call calls[4];
	size_t n = reassemble(events, calls, 4);
	assert_int_equal(n, 2);
	static const char *const names[] = { "get_weather", "get_time" };
	for (int i = 0; i < 2; i++) {
		char id[32];
		snprintf(id, sizeof(id), "call_mock_%d", i);
		assert_int_equal(calls[i].index, i);
		assert_non_null(calls[i].id);
		assert_string_equal(calls[i].id, id);
		assert_non_null(calls[i].name);
		assert_string_equal(calls[i].name, names[i]);
		assert_mock_arguments(&calls[i], i);
	}
	calls_free(calls, n);
	h_log("%zu events, 2 calls reassembled", json_array_size(events));
	char *all = json_dumps(events, JSON_COMPACT);
	H_ASSERT_NOT_CONTAINS(all, "SECRETabcdef");
	free(all);
	json_decref(events);

	/* What the backend got: the new params and the parts unchanged. */
	json_t *req = h_mock_last_body(mock);
	assert_json_equal(json_object_get(req, "tools"), TOOLS, "tools");
	assert_json_equal(json_object_get(req, "tool_choice"), "\"auto\"", "tool_choice");
	assert_json_equal(json_object_get(req, "parallel_tool_calls"), "true", "parallel_tool_calls");
	assert_json_equal(json_object_get(req, "response_format"), RESPONSE_FORMAT, "response_format");
	assert_true(json_real_value(json_object_get(req, "temperature")) == 0.2);
	json_t *msgs = json_object_get(req, "messages");
	assert_int_equal(json_array_size(msgs), 2);
	assert_json_equal(json_object_get(json_array_get(msgs, 1), "content"), USER_PARTS, "user content");
	/* The system message keeps its parts, after ours with the memory. */
	json_t *sys = json_object_get(json_array_get(msgs, 0), "content");
	assert_int_equal(json_array_size(sys), 2);
	assert_string_equal(h_jstr(json_array_get(sys, 0), "type"), "text");
	H_ASSERT_CONTAINS(h_jstr(json_array_get(sys, 0), "text"), "Profile: name: Alice");
	assert_json_equal(json_array_get(sys, 1), "{\"type\":\"text\",\"text\":\"Answer briefly.\"}", "system part");
	json_decref(req);
	h_daemon_stop_ok(d);
}

/* A conversation that continues after the calls: the assistant's tool_calls
 * and the tool results reach the backend as they were sent. */
static void test_tool_results_forwarded(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(&c);
	const char *calls = "[{\"id\":\"call_mock_0\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
			    "\"arguments\":\"{\\\"city\\\":\\\"杭州\\\"}\"}}]";
	char *body = xasprintf("{\"request_id\":\"r-tools-2\",\"messages\":["
			       "{\"role\":\"user\",\"content\":\"weather in Hangzhou?\"},"
			       "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":%s},"
			       "{\"role\":\"tool\",\"tool_call_id\":\"call_mock_0\",\"content\":\"light rain, 12 C\"}],"
			       "\"params\":{\"tools\":" TOOLS ",\"tool_choice\":\"none\"}}",
			       calls);
	struct h_stream *s = h_stream_open(c, "r-tools-2");
	json_t *ack = h_submit_raw(c, body, strlen(body), 5000);
	assert_true(json_is_true(json_object_get(ack, "accepted")));
	json_decref(ack);
	free(body);
	assert_string_equal(h_jstr(h_stream_finish(s, 10000), "type"), "done");

	json_t *req = h_mock_last_body(mock);
	json_t *msgs = json_object_get(req, "messages");
	assert_int_equal(json_array_size(msgs), 3);
	assert_json_equal(json_object_get(json_array_get(msgs, 1), "tool_calls"), calls, "tool_calls");
	assert_true(json_is_null(json_object_get(json_array_get(msgs, 1), "content")));
	assert_string_equal(h_jstr(json_array_get(msgs, 2), "role"), "tool");
	assert_string_equal(h_jstr(json_array_get(msgs, 2), "tool_call_id"), "call_mock_0");
	assert_string_equal(h_jstr(json_array_get(msgs, 2), "content"), "light rain, 12 C");
	assert_json_equal(json_object_get(req, "tool_choice"), "\"none\"", "tool_choice");
	json_decref(req);
	h_daemon_stop_ok(d);
}

/* Without tools the same mock streams text: the plain path is unchanged. */
static void test_no_tools_plain_text(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(&c);
	struct h_stream *s = h_stream_open(c, "r-plain");
	h_submit_simple(c, "r-plain", "hi");
	json_t *t = h_stream_finish(s, 10000);
	assert_string_equal(h_jstr(t, "type"), "done");
	assert_string_equal(h_jstr(t, "finish_reason"), "stop");
	h_stream_expect_text(s, "tok0 tok1 tok2 ");
	json_t *req = h_mock_last_body(mock);
	assert_null(json_object_get(req, "tools"));
	json_decref(req);
	h_daemon_stop_ok(d);
}

/* A shape error is refused before any backend call, naming the field. */
static void test_bad_tools_refused(void **state)
{
	(void)state;
	struct h_client *c;
	struct h_daemon *d = start_on_mock(&c);
	const char *body = "{\"request_id\":\"r-bad-tools\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
			   "\"params\":{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},"
			   "{\"type\":\"function\",\"function\":{\"name\":\"\"}}]}}";
	struct h_stream *s = h_stream_open(c, "r-bad-tools");
	json_t *ack = h_submit_raw(c, body, strlen(body), 5000);
	assert_false(json_is_true(json_object_get(ack, "accepted")));
	assert_string_equal(h_jstr(ack, "error.code"), "bad_request");
	assert_string_equal(h_jstr(ack, "error.message"), "params.tools[1].function.name: must be a non-empty string");
	json_decref(ack);
	h_stream_expect_error(s, "bad_request", 5000);
	assert_int_equal(h_mock_stat(mock, "requests"), 0);
	h_daemon_stop_ok(d);
}

/* sundynixctl chat --tools --json-schema: the calls on stderr as they
 * stream, the schema sent as response_format json_schema. */
static void test_ctl_tools(void **state)
{
	(void)state;
	struct h_client *c;
	const char *prefix = h_prefix();
	struct h_daemon *d = h_daemon_start(nats, prefix, NULL);
	c = h_client_connect(nats, prefix);
	h_use_mock(c, d, mock, "m-tools", KEY, 1);

	char *tools_path = xasprintf("%s/tools.json", h_tmpdir());
	char *schema_path = xasprintf("%s/schema.json", h_tmpdir());
	const char *schema = "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}}}";
	h_write_file(tools_path, TOOLS, strlen(TOOLS));
	h_write_file(schema_path, schema, strlen(schema));
	char *bin = xasprintf("%s/sundynixctl", h_build());
	char *const argv[] = { bin, "--nats", nats->url, "--prefix", (char *)prefix, "chat", "--tools", tools_path,
			       "--json-schema", schema_path, "--request-id", "r-ctl-tools", "Weather?", NULL };
	struct h_cmd *cmd = h_cmd_run("ctl-tools", 30000, argv);
	h_cmd_expect(cmd, 0);
	assert_string_equal(cmd->out, "Checking.\n");
	/* Each call's first piece opens a line with its name and id; as the
	 * calls interleave, a switch opens a "[tool_call N] " line. */
	H_ASSERT_CONTAINS(cmd->err, "[tool_call 0 get_weather id=call_mock_0] \n");
	H_ASSERT_CONTAINS(cmd->err, "[tool_call 1 get_time id=call_mock_1] \n");
	H_ASSERT_CONTAINS(cmd->err, "[done: finish=tool_calls model=m-tools");
	/* The lines of each call, joined, are its arguments. */
	for (int i = 0; i < 2; i++) {
		struct call call = { .index = i };
		char head[32];
		int hl = snprintf(head, sizeof(head), "[tool_call %d", i);
		buf_append(&call.args, "", 0);
		for (const char *l = cmd->err; l && *l;) {
			const char *nl = strchr(l, '\n'), *close;
			size_t len = nl ? (size_t)(nl - l) : strlen(l);
			if (!strncmp(l, head, (size_t)hl) && (l[hl] == ']' || l[hl] == ' ') && (close = memchr(l, ']', len)))
				buf_append(&call.args, close + 2, len - (size_t)(close + 2 - l));
			l = nl ? nl + 1 : NULL;
		}
		assert_mock_arguments(&call, i);
		buf_free(&call.args);
	}

	json_t *req = h_mock_last_body(mock);
	assert_json_equal(json_object_get(req, "tools"), TOOLS, "tools");
	char *rf = xasprintf("{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"response\",\"schema\":%s}}", schema);
	assert_json_equal(json_object_get(req, "response_format"), rf, "response_format");
	free(rf);
	json_decref(req);

	/* A tools file that is not an array is refused before anything is sent. */
	h_write_file(tools_path, "{}", 2);
	cmd = h_cmd_run("ctl-tools-bad", 30000, argv);
	h_cmd_expect(cmd, 2);
	H_ASSERT_CONTAINS(cmd->err, "must hold a JSON array of tools");
	free(bin);
	free(tools_path);
	free(schema_path);
	h_daemon_stop_ok(d);
}

H_MAIN("integ_tools", &bed, H_TEST(test_parallel_calls_end_to_end), H_TEST(test_tool_results_forwarded),
       H_TEST(test_no_tools_plain_text), H_TEST(test_bad_tools_refused), H_TEST(test_ctl_tools))
