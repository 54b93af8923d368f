/* sundynixctl: a command-line client of wire contract v1 (docs/protocol.md).
 * It plays the gateway (chat, cancel) and a minimal control plane (config
 * serve/set/clear) against a running dispatcher. Unlike the daemon it uses
 * nats.c's blocking API: one command, one connection, then exit.
 *
 * SIGINT and SIGTERM are blocked before the connection is made, so nats.c's
 * threads inherit the mask and no handler ever runs; commands that care poll
 * them with sigtimedwait (chat) or sigwait (config serve). */
#include <errno.h>
#include <jansson.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "contract.h"
#include "modelcfg.h"
#include "util.h"

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_INTERRUPTED 130

#define CTL_DEFAULT_NATS "nats://127.0.0.1:4222"
#define CTL_DEFAULT_PREFIX "sundynix"
#define CTL_CONNECT_TIMEOUT_MS 3000
#define CTL_FLUSH_TIMEOUT_MS 5000
#define CTL_UNSUB_FLUSH_MS 1000 /* ctl__sub_destroy: bounded, the server may be gone */
#define CTL_ACK_TIMEOUT_MS 5000
/* How long chat polls NATS before looking at signals and its deadline. */
#define CTL_POLL_MS 100
/* After Ctrl-C, how long chat waits for the cancelled terminal event. */
#define CTL_CANCEL_WAIT_MS 3000
/* How long a replay request may go unanswered before its gap is given up. */
#define CTL_REPLAY_WAIT_MS 2000
/* Resubmits (with resume) after a lost dispatcher, at most. */
#define CTL_MAX_RESUMES 3
/* ctl__chat_replay_over: the stream's dispatcher is gone. */
#define CTL_LOST (-2)
/* Events held while an earlier one is missing, at most. */
#define CTL_PENDING_MAX 1024
/* The dispatcher's stream.keepalive_ms unless --keepalive-ms says otherwise. */
#define CTL_KEEPALIVE_MS 5000
/* How long stats and ping gather answers unless --wait-ms says otherwise. */
#define CTL_SRV_WAIT_MS 500

enum ctl_opt_id {
	CTL_O_NATS,
	CTL_O_PREFIX,
	CTL_O_HELP,
	CTL_O_VERSION,
	CTL_O_PROFILE,
	CTL_O_FACT,
	CTL_O_SESSION,
	CTL_O_USER,
	CTL_O_SYSTEM,
	CTL_O_TIMEOUT,
	CTL_O_REQUEST_ID,
	CTL_O_BASE_URL,
	CTL_O_MODEL,
	CTL_O_API_KEY,
	CTL_O_PROVIDER,
	CTL_O_KEEPALIVE,
	CTL_O_NO_RESUME,
	CTL_O_REVISION,
	CTL_O_TOOLS,
	CTL_O_JSON_SCHEMA,
	CTL_O_WAIT_MS,
	CTL_O_JSON,
	CTL_O_COUNT
};

enum ctl_cmd {
	CTL_CMD_CHAT = 1u << 0,
	CTL_CMD_SERVE = 1u << 1,
	CTL_CMD_SET = 1u << 2,
	CTL_CMD_CLEAR = 1u << 3,
	CTL_CMD_CANCEL = 1u << 4,
	CTL_CMD_STATS = 1u << 5,
	CTL_CMD_PING = 1u << 6,
};

#define CTL_CMD_ALL (CTL_CMD_CHAT | CTL_CMD_SERVE | CTL_CMD_SET | CTL_CMD_CLEAR | CTL_CMD_CANCEL | CTL_CMD_STATS | CTL_CMD_PING)

struct ctl_opt {
	const char *name; /* long name without "--" */
	enum ctl_opt_id id;
	bool has_arg;
	unsigned cmds; /* the commands that accept it */
};

static const struct ctl_opt ctl__opts[] = {
	{ "nats", CTL_O_NATS, true, CTL_CMD_ALL },
	{ "prefix", CTL_O_PREFIX, true, CTL_CMD_ALL },
	{ "help", CTL_O_HELP, false, CTL_CMD_ALL },
	{ "version", CTL_O_VERSION, false, CTL_CMD_ALL },
	{ "profile", CTL_O_PROFILE, true, CTL_CMD_CHAT },
	{ "fact", CTL_O_FACT, true, CTL_CMD_CHAT },
	{ "session", CTL_O_SESSION, true, CTL_CMD_CHAT },
	{ "user", CTL_O_USER, true, CTL_CMD_CHAT },
	{ "system", CTL_O_SYSTEM, true, CTL_CMD_CHAT },
	{ "timeout", CTL_O_TIMEOUT, true, CTL_CMD_CHAT },
	{ "request-id", CTL_O_REQUEST_ID, true, CTL_CMD_CHAT },
	{ "keepalive-ms", CTL_O_KEEPALIVE, true, CTL_CMD_CHAT },
	{ "no-resume", CTL_O_NO_RESUME, false, CTL_CMD_CHAT },
	{ "base-url", CTL_O_BASE_URL, true, CTL_CMD_SET },
	{ "model", CTL_O_MODEL, true, CTL_CMD_SET },
	{ "api-key", CTL_O_API_KEY, true, CTL_CMD_SET },
	{ "provider", CTL_O_PROVIDER, true, CTL_CMD_SET },
	{ "revision", CTL_O_REVISION, true, CTL_CMD_SET | CTL_CMD_CLEAR },
	{ "tools", CTL_O_TOOLS, true, CTL_CMD_CHAT },
	{ "json-schema", CTL_O_JSON_SCHEMA, true, CTL_CMD_CHAT },
	{ "wait-ms", CTL_O_WAIT_MS, true, CTL_CMD_STATS | CTL_CMD_PING },
	{ "json", CTL_O_JSON, false, CTL_CMD_STATS | CTL_CMD_PING },
};

#define CTL_MAX_POS 8

/* The parsed command line. Strings borrow from argv, except facts (an array
 * this struct owns, of borrowed strings); tools and response_format are
 * loaded from their files and owned. */
struct ctl_args {
	const char *nats_url;
	const char *prefix;
	const char *profile;
	const char **facts;
	size_t nfacts;
	const char *session;
	const char *user;
	const char *system;
	double timeout_s;
	long long keepalive_ms;
	bool no_resume;
	const char *request_id;
	const char *base_url;
	const char *model;
	const char *api_key;
	const char *provider;
	bool has_revision;
	long long revision;
	const char *tools_file;
	const char *schema_file;
	json_t *tools;           /* params.tools, from tools_file */
	json_t *response_format; /* params.response_format, from schema_file */
	bool help;
	bool version;
	long long wait_ms;
	bool json;
	unsigned used; /* bit per enum ctl_opt_id seen */
	const char *used_name[CTL_O_COUNT];
	const char *pos[CTL_MAX_POS];
	size_t npos;
};

static const char ctl__usage[] =
	"Usage: sundynixctl [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]\n"
	"\n"
	"A command-line client of the sundynix wire contract v1 (docs/protocol.md).\n"
	"\n"
	"Commands:\n"
	"  chat [OPTIONS] MESSAGE     Submit a chat request as a gateway would and print the\n"
	"                             streamed reply (tokens on stdout, reasoning on stderr).\n"
	"      --profile TEXT         memory.profile\n"
	"      --fact TEXT            one memory.facts entry (repeatable)\n"
	"      --session ID           session_id\n"
	"      --user ID              user_id\n"
	"      --system TEXT          a system message sent before MESSAGE\n"
	"      --request-id ID        use ID instead of a generated \"ctl-<hex>\"\n"
	"      --timeout SEC          give up after SEC seconds (default 120)\n"
	"      --keepalive-ms MS      the dispatcher's stream.keepalive_ms (default 5000): silent for\n"
	"                             2 x MS and no answer to a replay: the dispatcher is lost; chat\n"
	"                             resubmits with resume so another one continues the answer\n"
	"      --no-resume            when the dispatcher is lost, end with error: dispatcher_lost\n"
	"      --tools FILE           params.tools: FILE holds a JSON array of tools; tool calls\n"
	"                             stream on stderr as \"[tool_call INDEX NAME id=ID] ARGS\"\n"
	"      --json-schema FILE     ask for structured output: response_format json_schema\n"
	"                             with the JSON Schema in FILE (named \"response\"), or\n"
	"                             FILE's {\"name\":..,\"schema\":..} object as it is\n"
	"  config serve FILE          Answer <prefix>.config.model.get with the ModelConfig in\n"
	"                             FILE and broadcast it once; runs until SIGINT/SIGTERM.\n"
	"  config set --base-url URL --model NAME [--api-key KEY] [--provider P] [--revision N]\n"
	"                             Broadcast a ModelConfig on <prefix>.config.model.updated\n"
	"                             (provider defaults to \"openai\").\n"
	"  config clear [--revision N]\n"
	"                             Broadcast \"no model\" (null, or {\"revision\":N}).\n"
	"  cancel REQUEST_ID          Ask the dispatcher owning REQUEST_ID to cancel it.\n"
	"  stats [--wait-ms MS] [--json]\n"
	"                             Ask every dispatcher ($SRV.STATS.sundynix-dispatcher) and print\n"
	"                             one row per instance that answers within MS (default 500):\n"
	"                             id, version, uptime, state, in flight, requests, errors,\n"
	"                             model, revision; --json prints the raw answers, one a line.\n"
	"  ping [--wait-ms MS] [--json]\n"
	"                             List the dispatchers that answer $SRV.PING and their\n"
	"                             round-trip time.\n"
	"\n"
	"Global options (accepted anywhere on the line; \"--\" ends options):\n"
	"  --nats URL     NATS server(s), comma-separated (default $SUNDYNIX_NATS_URL,\n"
	"                 then " CTL_DEFAULT_NATS ")\n"
	"  --prefix P     subject prefix (default $SUNDYNIX_SUBJECT_PREFIX, then \"" CTL_DEFAULT_PREFIX "\")\n"
	"  -h, --help     show this help\n"
	"  --version      print the version\n"
	"\n"
	"Exit status: 0 success; 1 failure (error event, rejected request, timeout, NATS\n"
	"unreachable); 2 usage error; 130 chat interrupted by Ctrl-C.\n";

static void UTIL_PRINTF(1, 2) ctl__usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("sundynixctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'sundynixctl --help'.\n", stderr);
}

/* Writes peer-supplied text to f with control bytes replaced, so an error
 * message from the network cannot drive the terminal. */
static void ctl__put_clean_n(FILE *f, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fputc((unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i], f);
}

static void ctl__put_clean(FILE *f, const char *s)
{
	ctl__put_clean_n(f, s, strlen(s));
}

static const struct ctl_opt *ctl__find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < UTIL_ARRAY_LEN(ctl__opts); i++)
		if (strlen(ctl__opts[i].name) == len && !strncmp(ctl__opts[i].name, name, len))
			return &ctl__opts[i];
	return NULL;
}

static int ctl__parse_ll(const char *s, long long min, long long *out)
{
	char *end;

	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min)
		return -1;
	*out = v;
	return 0;
}

/* An option in milliseconds within [min, max]; a usage error otherwise. */
static int ctl__ms_option(const struct ctl_opt *o, const char *val, long long min, long long max, long long *out)
{
	if (ctl__parse_ll(val, min, out) || *out > max) {
		ctl__usage_error("--%s: expected milliseconds in [%lld, %lld], got '%s'", o->name, min, max, val);
		return -1;
	}
	return 0;
}

static int ctl__set_opt(struct ctl_args *a, const struct ctl_opt *o, const char *val)
{
	a->used |= 1u << o->id;
	a->used_name[o->id] = o->name;
	switch (o->id) {
	case CTL_O_NATS: a->nats_url = val; break;
	case CTL_O_PREFIX: a->prefix = val; break;
	case CTL_O_HELP: a->help = true; break;
	case CTL_O_VERSION: a->version = true; break;
	case CTL_O_PROFILE: a->profile = val; break;
	case CTL_O_FACT:
		a->facts = xrealloc(a->facts, (a->nfacts + 1) * sizeof(*a->facts));
		a->facts[a->nfacts++] = val;
		break;
	case CTL_O_SESSION: a->session = val; break;
	case CTL_O_USER: a->user = val; break;
	case CTL_O_SYSTEM: a->system = val; break;
	case CTL_O_TIMEOUT: {
		char *end;
		errno = 0;
		a->timeout_s = strtod(val, &end);
		if (errno || end == val || *end || !(a->timeout_s > 0 && a->timeout_s <= 86400)) {
			ctl__usage_error("--timeout: expected seconds in (0, 86400], got '%s'", val);
			return -1;
		}
		break;
	}
	case CTL_O_REQUEST_ID: a->request_id = val; break;
	case CTL_O_NO_RESUME: a->no_resume = true; break;
	case CTL_O_KEEPALIVE: return ctl__ms_option(o, val, 0, 3600000, &a->keepalive_ms);
	case CTL_O_BASE_URL: a->base_url = val; break;
	case CTL_O_MODEL: a->model = val; break;
	case CTL_O_API_KEY: a->api_key = val; break;
	case CTL_O_PROVIDER: a->provider = val; break;
	case CTL_O_WAIT_MS: return ctl__ms_option(o, val, 1, 60000, &a->wait_ms);
	case CTL_O_JSON: a->json = true; break;
	case CTL_O_COUNT: break;
	case CTL_O_REVISION:
		if (ctl__parse_ll(val, 0, &a->revision)) {
			ctl__usage_error("--revision: expected a non-negative integer, got '%s'", val);
			return -1;
		}
		a->has_revision = true;
		break;
	case CTL_O_TOOLS: a->tools_file = val; break;
	case CTL_O_JSON_SCHEMA: a->schema_file = val; break;
	}
	return 0;
}

/* Options may come before or after the command; "--" ends them. */
static int ctl__parse_args(int argc, char **argv, struct ctl_args *a)
{
	bool opts_done = false;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (opts_done || arg[0] != '-' || !strcmp(arg, "-")) {
			if (a->npos == CTL_MAX_POS) {
				ctl__usage_error("too many arguments");
				return -1;
			}
			a->pos[a->npos++] = arg;
			continue;
		}
		if (!strcmp(arg, "--")) {
			opts_done = true;
			continue;
		}
		if (!strcmp(arg, "-h")) {
			a->help = true;
			continue;
		}
		if (arg[1] != '-') {
			ctl__usage_error("unknown option '%s'", arg);
			return -1;
		}
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const struct ctl_opt *o = ctl__find_opt(name, len);
		if (!o) {
			ctl__usage_error("unknown option '--%.*s'", (int)len, name);
			return -1;
		}
		const char *val = NULL;
		if (o->has_arg) {
			if (eq) {
				val = eq + 1;
			} else if (i + 1 < argc) {
				val = argv[++i];
			} else {
				ctl__usage_error("option '--%s' needs a value", o->name);
				return -1;
			}
		} else if (eq) {
			ctl__usage_error("option '--%s' takes no value", o->name);
			return -1;
		}
		if (ctl__set_opt(a, o, val))
			return -1;
	}
	return 0;
}

static const char *ctl__cmd_name(unsigned cmd)
{
	switch (cmd) {
	case CTL_CMD_CHAT: return "chat";
	case CTL_CMD_SERVE: return "config serve";
	case CTL_CMD_SET: return "config set";
	case CTL_CMD_CLEAR: return "config clear";
	case CTL_CMD_STATS: return "stats";
	case CTL_CMD_PING: return "ping";
	default: return "cancel";
	}
}

/* Maps the positional words to a command, leaving its arguments in *args. */
static int ctl__pick_command(const struct ctl_args *a, unsigned *cmd, const char *const **args, size_t *nargs)
{
	if (a->npos == 0) {
		ctl__usage_error("missing command (chat, config, cancel, stats, ping)");
		return -1;
	}
	const char *w = a->pos[0];
	size_t skip = 1;
	if (!strcmp(w, "chat")) {
		*cmd = CTL_CMD_CHAT;
	} else if (!strcmp(w, "cancel")) {
		*cmd = CTL_CMD_CANCEL;
	} else if (!strcmp(w, "stats")) {
		*cmd = CTL_CMD_STATS;
	} else if (!strcmp(w, "ping")) {
		*cmd = CTL_CMD_PING;
	} else if (!strcmp(w, "config")) {
		const char *sub = a->npos > 1 ? a->pos[1] : NULL;
		skip = 2;
		if (!sub) {
			ctl__usage_error("config: missing action (serve, set, clear)");
			return -1;
		} else if (!strcmp(sub, "serve")) {
			*cmd = CTL_CMD_SERVE;
		} else if (!strcmp(sub, "set")) {
			*cmd = CTL_CMD_SET;
		} else if (!strcmp(sub, "clear")) {
			*cmd = CTL_CMD_CLEAR;
		} else {
			ctl__usage_error("config: unknown action '%s' (serve, set, clear)", sub);
			return -1;
		}
	} else {
		ctl__usage_error("unknown command '%s' (chat, config, cancel, stats, ping)", w);
		return -1;
	}
	for (size_t i = 0; i < UTIL_ARRAY_LEN(ctl__opts); i++) {
		const struct ctl_opt *o = &ctl__opts[i];
		if ((a->used & (1u << o->id)) && !(o->cmds & *cmd)) {
			ctl__usage_error("option '--%s' does not apply to '%s'", o->name, ctl__cmd_name(*cmd));
			return -1;
		}
	}
	*args = a->pos + skip;
	*nargs = a->npos - skip;
	return 0;
}

static void ctl__on_reconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	__atomic_store_n((int *)closure, 1, __ATOMIC_RELEASE);
}

/* reconnected is set (from a nats.c thread) after every reconnect. */
static natsConnection *ctl__connect(const struct ctl_args *a, int *reconnected)
{
	natsOptions *opts = NULL;
	natsConnection *nc = NULL;
	natsStatus s;

	s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetURL(opts, a->nats_url);
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, "sundynixctl");
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, CTL_CONNECT_TIMEOUT_MS);
	/* A chat outlives a nats-server restart: the subscription comes back
	 * after reconnect, and the deadline bounds the wait. */
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(opts, 250);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(opts, ctl__on_reconnected, reconnected);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, opts);
	natsOptions_Destroy(opts);
	if (s != NATS_OK) {
		fprintf(stderr, "sundynixctl: cannot connect to NATS at %s: %s\n", a->nats_url, natsStatus_GetText(s));
		return NULL;
	}
	return nc;
}

static int ctl__flush(natsConnection *nc)
{
	natsStatus s = natsConnection_FlushTimeout(nc, CTL_FLUSH_TIMEOUT_MS);
	if (s != NATS_OK) {
		fprintf(stderr, "sundynixctl: NATS flush failed: %s\n", natsStatus_GetText(s));
		return -1;
	}
	return 0;
}

/* libnats before 3.6 can crash its reader thread when a subscription is
 * destroyed while a message for it is being delivered (nats.c issue 637;
 * Debian 12 ships 3.4.1). So the interest goes first, then one round trip
 * (the reader handles everything that came before the PONG), then the
 * destroy. sub may be NULL. */
static void ctl__sub_destroy(natsConnection *nc, natsSubscription *sub)
{
	if (!sub)
		return;
	if (natsSubscription_Unsubscribe(sub) == NATS_OK)
		(void)natsConnection_FlushTimeout(nc, CTL_UNSUB_FLUSH_MS);
	natsSubscription_Destroy(sub);
}

static int ctl__publish(natsConnection *nc, const char *subject, const char *data, size_t len)
{
	natsStatus s = natsConnection_Publish(nc, subject, data, (int)len);
	if (s != NATS_OK) {
		fprintf(stderr, "sundynixctl: publish on %s failed: %s\n", subject, natsStatus_GetText(s));
		return -1;
	}
	return ctl__flush(nc);
}

/* Returns the signal if SIGINT or SIGTERM is pending, else 0. */
static int ctl__pending_signal(void)
{
	sigset_t set;
	struct timespec zero = { 0, 0 };

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	int sig = sigtimedwait(&set, NULL, &zero);
	return sig > 0 ? sig : 0;
}

/* ---- chat ---- */

/* What chat is printing on stderr right now: a run of reasoning deltas, or
 * the arguments of one tool call. */
enum ctl_run { CTL_RUN_NONE, CTL_RUN_REASONING, CTL_RUN_TOOL };

/* An event that came before an earlier one: held until the gap is filled. */
struct ctl_pending {
	unsigned long long seq;
	char *data; /* NULL: the slot is free */
	size_t len;
};

/* One chat as the reference gateway follows it (docs/protocol.md): events in
 * seq order, a gap repaired by a replay request to the stream's owner, a
 * stream silent for 2 x keepalive checked the same way and, when its owner
 * does not answer, resubmitted with resume or reported as dispatcher_lost. */
struct ctl_chat {
	const char *rid;
	char *replay_subject;          /* <prefix>.chat.replay.<owner>; NULL before the ack */
	natsSubscription *replay_sub;  /* answers to our replay requests */
	char replay_inbox[64];
	unsigned long long next_seq;
	struct ctl_pending pending[CTL_PENDING_MAX]; /* by seq % CTL_PENDING_MAX */
	size_t npending;
	bool asking;                   /* a replay request is out */
	bool asked_for_silence;        /* ... because the stream went silent */
	unsigned long long asked_at;
	unsigned long long last_event_ms;
	long long keepalive_ms;
	int *reconnected;              /* set by nats.c's reconnect callback */
	struct buf text, reasoning;    /* the answer so far, for a resume */
	const char *message;           /* what the user asked, for a resubmit */
	int resumes;                   /* resubmits after a lost dispatcher */
	unsigned anomalies; /* unrepaired gaps, duplicates, malformed events */
	bool line_open;     /* tokens were printed on stdout since its last newline */
	enum ctl_run run;
	int tool_index;     /* CTL_RUN_TOOL: the call being printed */
	unsigned tool_calls; /* tool-call pieces printed */
	bool dim; /* stderr is a terminal */
};

static void ctl__gen_rid(char *out, size_t outlen)
{
	unsigned char r[8];

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		unsigned long long x = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32) ^ util_now_ms();
		memcpy(r, &x, sizeof(r));
	}
	snprintf(out, outlen, "ctl-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
}

static void ctl__chat_body(struct buf *out, const struct ctl_args *a, const char *rid, const char *message)
{
	const struct contract_chat chat = {
		.request_id = rid,
		.session_id = a->session,
		.user_id = a->user,
		.system = a->system,
		.message = message,
		.profile = a->profile,
		.facts = (const char *const *)a->facts,
		.nfacts = a->nfacts,
		.tools = a->tools,
		.response_format = a->response_format,
	};
	contract_encode_chat(out, &chat);
}

/* Ends the run of reasoning or tool-call text on stderr, if one is open. */
static void ctl__end_run(struct ctl_chat *c)
{
	if (c->run == CTL_RUN_REASONING)
		fputs(c->dim ? "\033[0m\n" : "\n", stderr);
	else if (c->run == CTL_RUN_TOOL)
		fputc('\n', stderr);
	c->run = CTL_RUN_NONE;
}

/* A tool-call piece: a call's first piece (it has the id or name), or one
 * of another call than the one being printed, opens a line
 * "[tool_call INDEX NAME id=ID] "; the arguments follow as they stream. */
static void ctl__print_tool_call(struct ctl_chat *c, const struct contract_tool_call *tc)
{
	if (c->run != CTL_RUN_TOOL || tc->index != c->tool_index || tc->id || tc->name) {
		ctl__end_run(c);
		if (c->line_open) {
			fputc('\n', stdout);
			fflush(stdout);
			c->line_open = false;
		}
		fprintf(stderr, "[tool_call %d", tc->index);
		if (tc->name) {
			fputc(' ', stderr);
			ctl__put_clean_n(stderr, tc->name, tc->name_len);
		}
		if (tc->id) {
			fputs(" id=", stderr);
			ctl__put_clean_n(stderr, tc->id, tc->id_len);
		}
		fputs("] ", stderr);
		c->run = CTL_RUN_TOOL;
		c->tool_index = tc->index;
	}
	fwrite(tc->arguments, 1, tc->arguments_len, stderr);
	fflush(stderr);
	c->tool_calls++;
}

static void ctl__print_error(const char *code, const char *msg)
{
	fputs("error: ", stderr);
	ctl__put_clean(stderr, code ? code : "(no code)");
	fputs(": ", stderr);
	ctl__put_clean(stderr, msg ? msg : "");
	fputc('\n', stderr);
}

/* Shows one event that is next in seq order. Returns -1 while the stream
 * goes on, else the exit status. */
static int ctl__chat_show(struct ctl_chat *c, const struct contract_event *ev)
{
	c->next_seq = ev->seq + 1;
	switch (ev->type) {
	case CONTRACT_EV_TOKEN:
		ctl__end_run(c);
		buf_append(&c->text, ev->delta, ev->delta_len);
		fwrite(ev->delta, 1, ev->delta_len, stdout);
		fflush(stdout);
		c->line_open = true;
		return -1;
	case CONTRACT_EV_REASONING:
		if (c->run != CTL_RUN_REASONING) {
			ctl__end_run(c);
			fputs(c->dim ? "\033[2m[reasoning] " : "[reasoning] ", stderr);
		}
		c->run = CTL_RUN_REASONING;
		buf_append(&c->reasoning, ev->delta, ev->delta_len);
		fwrite(ev->delta, 1, ev->delta_len, stderr);
		fflush(stderr);
		return -1;
	case CONTRACT_EV_TOOL_CALL:
		ctl__print_tool_call(c, &ev->tool_call);
		return -1;
	case CONTRACT_EV_DONE:
		ctl__end_run(c);
		/* The answer's line ends on stdout (an empty one when there was
		 * no text), unless a tool call ended it already. */
		if (c->line_open || !c->tool_calls)
			fputc('\n', stdout);
		fflush(stdout);
		fputs("[done: finish=", stderr);
		ctl__put_clean(stderr, ev->finish_reason ? ev->finish_reason : "?");
		fputs(" model=", stderr);
		ctl__put_clean(stderr, ev->model ? ev->model : "?");
		if (ev->has_usage)
			fprintf(stderr, " prompt=%lld completion=%lld total=%lld", ev->usage.prompt_tokens,
				ev->usage.completion_tokens, ev->usage.total_tokens);
		fputs("]\n", stderr);
		return CTL_EXIT_OK;
	case CONTRACT_EV_ERROR:
		ctl__end_run(c);
		if (c->line_open) {
			fputc('\n', stdout);
			fflush(stdout);
		}
		ctl__print_error(ev->error_code ? ev->error_code : "(no code)", ev->error_message ? ev->error_message : "");
		return CTL_EXIT_FAIL;
	case CONTRACT_EV_KEEPALIVE:
	case CONTRACT_EV_OTHER:
		return -1; /* unknown event types are skipped (the contract may grow), but counted */
	}
	return -1;
}

static void ctl__chat_ask_replay(natsConnection *nc, struct ctl_chat *c, bool for_silence)
{
	struct buf b;

	if (c->asking || !c->replay_subject)
		return;
	buf_init(&b);
	contract_encode_replay(&b, c->rid, c->next_seq);
	natsStatus s = natsConnection_PublishRequest(nc, c->replay_subject, c->replay_inbox, b.data, (int)b.len);
	buf_free(&b);
	if (s == NATS_OK)
		s = natsConnection_Flush(nc);
	if (s != NATS_OK)
		return; /* not connected: the reconnect (or the next gap) asks again */
	c->asking = true;
	c->asked_for_silence = for_silence;
	c->asked_at = util_now_ms();
}

/* Shows the held events that are next in order. */
static int ctl__chat_drain_pending(struct ctl_chat *c)
{
	int rc = -1;

	while (rc < 0 && c->npending) {
		struct ctl_pending *p = &c->pending[c->next_seq % CTL_PENDING_MAX];
		struct contract_event ev;
		char err[128];
		if (!p->data || p->seq != c->next_seq)
			break;
		if (contract_decode_event(p->data, p->len, &ev, err, sizeof(err)) == 0) {
			rc = ctl__chat_show(c, &ev);
			contract_event_free(&ev);
		}
		free(p->data);
		p->data = NULL;
		c->npending--;
	}
	return rc;
}

/* The gap before the held events cannot be repaired: say so, go on. */
static int ctl__chat_skip_gap(struct ctl_chat *c)
{
	unsigned long long lowest = 0;
	bool found = false;

	for (size_t i = 0; i < CTL_PENDING_MAX; i++)
		if (c->pending[i].data && (!found || c->pending[i].seq < lowest)) {
			lowest = c->pending[i].seq;
			found = true;
		}
	if (!found)
		return -1;
	fprintf(stderr, "sundynixctl: warning: events lost: expected seq %llu, got %llu (could not be replayed)\n",
		c->next_seq, lowest);
	c->anomalies++;
	c->next_seq = lowest;
	return ctl__chat_drain_pending(c);
}

/* One message on the stream subject. Returns -1 while the stream goes on,
 * else the exit status. */
static int ctl__chat_event(natsConnection *nc, struct ctl_chat *c, const char *data, int len)
{
	struct contract_event ev;
	char err[128];
	int rc = -1;

	if (contract_decode_event(data, (size_t)len, &ev, err, sizeof(err)) < 0) {
		fprintf(stderr, "sundynixctl: warning: ignoring a malformed event: %s\n", err);
		c->anomalies++;
		return -1;
	}
	c->last_event_ms = util_now_ms();
	if (strcmp(ev.request_id, c->rid)) {
		fprintf(stderr, "sundynixctl: warning: ignoring an event for another request_id\n");
		c->anomalies++;
	} else if (ev.seq < c->next_seq) {
		/* A replay repeats what we may have: only an unasked repeat is odd. */
		if (!ev.replay) {
			fprintf(stderr,
				"sundynixctl: warning: duplicate or reordered event seq %llu (expected %llu), ignored\n",
				ev.seq, c->next_seq);
			c->anomalies++;
		}
	} else if (ev.seq > c->next_seq) {
		struct ctl_pending *p = &c->pending[ev.seq % CTL_PENDING_MAX];
		if (ev.seq - c->next_seq >= CTL_PENDING_MAX) {
			fprintf(stderr, "sundynixctl: warning: event seq %llu is too far ahead (expected %llu), ignored\n",
				ev.seq, c->next_seq);
			c->anomalies++;
		} else if (!p->data) {
			p->seq = ev.seq;
			p->data = xstrndup(data, (size_t)len);
			p->len = (size_t)len;
			c->npending++;
		}
		ctl__chat_ask_replay(nc, c, false);
	} else {
		rc = ctl__chat_show(c, &ev);
		if (rc < 0)
			rc = ctl__chat_drain_pending(c);
	}
	contract_event_free(&ev);
	return rc;
}

/* The answer to a replay request, or its absence. Returns -1 while the
 * stream goes on, else the exit status. */
static int ctl__chat_replay_over(struct ctl_chat *c, natsStatus st, const char *data, int len)
{
	struct contract_replay_answer ans;
	bool answered = st == NATS_OK && contract_decode_replay_answer(data, (size_t)len, &ans) == 0;
	bool silence = c->asked_for_silence;

	c->asking = false;
	if (answered)
		c->last_event_ms = util_now_ms(); /* the owner is alive */
	if (!answered && silence && !c->npending)
		return CTL_LOST;
	/* Everything the owner still had came before its answer. */
	return ctl__chat_skip_gap(c);
}

/* Submits with a reply subject and checks the ack. Returns 0 when accepted. */
static int ctl__chat_submit(natsConnection *nc, const char *subject, const struct buf *body, const char *rid,
			    long long timeout_ms, struct contract_ack *ack_out)
{
	natsMsg *reply = NULL;
	struct contract_ack ack;
	int rc = -1;

	natsStatus s = natsConnection_Request(&reply, nc, subject, body->data, (int)body->len, timeout_ms);
	if (s == NATS_NO_RESPONDERS) {
		fprintf(stderr, "sundynixctl: no dispatcher is listening on %s\n", subject);
		return -1;
	}
	if (s == NATS_TIMEOUT) {
		fprintf(stderr, "sundynixctl: no acknowledgement from a dispatcher within %lld ms (request_id %s)\n",
			timeout_ms, rid);
		return -1;
	}
	if (s != NATS_OK) {
		fprintf(stderr, "sundynixctl: submit failed: %s\n", natsStatus_GetText(s));
		return -1;
	}
	if (contract_decode_ack(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), &ack) < 0)
		fprintf(stderr, "sundynixctl: malformed acknowledgement from the dispatcher\n");
	else if (ack.accepted) {
		rc = 0;
		*ack_out = ack;
	}
	else
		ctl__print_error(ack.code[0] ? ack.code : "(no code)", ack.message);
	natsMsg_Destroy(reply);
	return rc;
}

static int ctl__send_cancel(natsConnection *nc, const struct contract_subjects *subj, const char *rid)
{
	struct buf b;

	buf_init(&b);
	contract_encode_cancel(&b, rid);
	int rc = ctl__publish(nc, subj->cancel, b.data, b.len);
	buf_free(&b);
	return rc;
}

/* The stream's dispatcher is gone: resubmit with what we have so another one
 * continues the answer (docs/protocol.md), or report the loss. Returns -1
 * while the stream goes on, else the exit status. */
static int ctl__chat_lost(natsConnection *nc, struct ctl_chat *c, const struct ctl_args *a,
			  const struct contract_subjects *subj)
{
	struct contract_ack ack;
	struct buf body;

	ctl__end_run(c);
	if (!a->no_resume && c->resumes < CTL_MAX_RESUMES) {
		fprintf(stderr, "\nsundynixctl: no event for %lld ms and no answer from the stream's dispatcher; resubmitting "
				"to continue the answer\n",
			2 * c->keepalive_ms);
		c->resumes++;
		buf_init(&body);
		ctl__chat_body(&body, a, c->rid, c->message);
		/* The body ends with "}": the resume goes in front of it. */
		body.len--;
		buf_append_str(&body, ",\"resume\":{\"text\":");
		buf_append_json_str(&body, c->text.data ? c->text.data : "", c->text.len);
		buf_append_str(&body, ",\"reasoning\":");
		buf_append_json_str(&body, c->reasoning.data ? c->reasoning.data : "", c->reasoning.len);
		buf_printf(&body, ",\"next_seq\":%llu}}", c->next_seq);
		int refused = ctl__chat_submit(nc, subj->submit, &body, c->rid, CTL_ACK_TIMEOUT_MS, &ack);
		buf_free(&body);
		if (!refused) {
			free(c->replay_subject);
			c->replay_subject = ack.instance[0] ? contract_replay_subject(subj, ack.instance) : NULL;
			c->last_event_ms = util_now_ms();
			return -1;
		}
	}
	if (c->line_open)
		fputc('\n', stdout);
	fflush(stdout);
	fprintf(stderr, "error: dispatcher_lost: no event for %lld ms and no answer from the stream's dispatcher\n",
		2 * c->keepalive_ms);
	return CTL_EXIT_FAIL;
}

static int ctl__chat_loop(natsConnection *nc, natsSubscription *sub, struct ctl_chat *c, const struct ctl_args *a,
			  const struct contract_subjects *subj, unsigned long long deadline)
{
	unsigned long long cancel_deadline = 0;

	for (;;) {
		int rc = -1;
		int sig = ctl__pending_signal();
		if (sig && cancel_deadline) {
			fprintf(stderr, "\nsundynixctl: interrupted again, not waiting\n");
			return CTL_EXIT_INTERRUPTED;
		}
		if (sig) {
			ctl__end_run(c);
			fprintf(stderr, "\nsundynixctl: interrupted, cancelling %s\n", c->rid);
			ctl__send_cancel(nc, subj, c->rid);
			cancel_deadline = util_now_ms() + CTL_CANCEL_WAIT_MS;
		}
		unsigned long long now = util_now_ms();
		if (cancel_deadline && now >= cancel_deadline) {
			fprintf(stderr, "sundynixctl: no terminal event %d ms after the cancel\n", CTL_CANCEL_WAIT_MS);
			return CTL_EXIT_INTERRUPTED;
		}
		if (!cancel_deadline && now >= deadline) {
			ctl__end_run(c);
			if (c->line_open)
				fputc('\n', stdout);
			fprintf(stderr, "sundynixctl: timed out after %g s waiting for the stream of %s; cancelling it\n",
				a->timeout_s, c->rid);
			ctl__send_cancel(nc, subj, c->rid);
			return CTL_EXIT_FAIL;
		}
		/* Our own reconnect may have lost events with nothing after
		 * them to show the gap: ask from the next one. */
		if (__atomic_exchange_n(c->reconnected, 0, __ATOMIC_ACQ_REL))
			ctl__chat_ask_replay(nc, c, false);
		if (c->keepalive_ms && now - c->last_event_ms >= 2ull * (unsigned long long)c->keepalive_ms)
			ctl__chat_ask_replay(nc, c, true);

		natsMsg *msg = NULL;
		natsStatus s = natsSubscription_NextMsg(&msg, sub, CTL_POLL_MS);
		if (s == NATS_OK) {
			rc = ctl__chat_event(nc, c, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
			natsMsg_Destroy(msg);
		} else if (s != NATS_TIMEOUT) {
			fprintf(stderr, "sundynixctl: stream subscription failed: %s\n", natsStatus_GetText(s));
			return CTL_EXIT_FAIL;
		}
		if (rc < 0 && c->asking) {
			msg = NULL;
			s = natsSubscription_NextMsg(&msg, c->replay_sub, 0);
			if (s == NATS_OK || s == NATS_NO_RESPONDERS) {
				/* The replayed events came before the answer: take
				 * them all before judging what is still missing. */
				natsMsg *ev = NULL;
				while (rc < 0 && natsSubscription_NextMsg(&ev, sub, 0) == NATS_OK) {
					rc = ctl__chat_event(nc, c, natsMsg_GetData(ev), natsMsg_GetDataLength(ev));
					natsMsg_Destroy(ev);
					ev = NULL;
				}
				if (rc < 0)
					rc = ctl__chat_replay_over(c, s, msg ? natsMsg_GetData(msg) : NULL,
								   msg ? natsMsg_GetDataLength(msg) : 0);
				else
					c->asking = false;
			}
			else if (util_now_ms() - c->asked_at >= CTL_REPLAY_WAIT_MS)
				rc = ctl__chat_replay_over(c, NATS_TIMEOUT, NULL, 0);
			natsMsg_Destroy(msg);
		}
		if (rc == CTL_LOST)
			rc = ctl__chat_lost(nc, c, a, subj);
		if (rc < 0)
			continue;
		if (cancel_deadline && rc == CTL_EXIT_FAIL)
			return CTL_EXIT_INTERRUPTED;
		if (rc == CTL_EXIT_OK && c->anomalies) {
			fprintf(stderr, "sundynixctl: the stream had %u sequence anomalies\n", c->anomalies);
			return CTL_EXIT_FAIL;
		}
		return rc;
	}
}

static int ctl__cmd_chat(natsConnection *nc, const struct ctl_args *a, const struct contract_subjects *subj,
			 int *reconnected, const char *message)
{
	char gen[32];
	struct ctl_chat *c = xcalloc(1, sizeof(*c)); /* the pending ring is large */
	struct contract_ack ack;
	natsInbox *inbox = NULL;
	unsigned long long start = util_now_ms();
	unsigned long long deadline = start + (unsigned long long)(a->timeout_s * 1000.0);
	natsSubscription *sub = NULL;
	int rc = CTL_EXIT_FAIL;

	if (a->request_id) {
		c->rid = a->request_id;
	} else {
		ctl__gen_rid(gen, sizeof(gen));
		c->rid = gen;
	}
	c->dim = isatty(STDERR_FILENO);
	c->keepalive_ms = a->keepalive_ms;
	c->reconnected = reconnected;
	c->message = message;
	buf_init(&c->text);
	buf_init(&c->reasoning);

	char *stream_subj = contract_stream_subject(subj, c->rid);
	struct buf body;
	buf_init(&body);
	ctl__chat_body(&body, a, c->rid, message);

	/* Subscribe (and make sure the server has the interest) before
	 * submitting: the first event may follow the ack immediately. */
	natsStatus s = natsConnection_SubscribeSync(&sub, nc, stream_subj);
	if (s == NATS_OK)
		s = natsInbox_Create(&inbox);
	if (s == NATS_OK) {
		snprintf(c->replay_inbox, sizeof(c->replay_inbox), "%s", inbox);
		s = natsConnection_SubscribeSync(&c->replay_sub, nc, c->replay_inbox);
	}
	if (s != NATS_OK) {
		fprintf(stderr, "sundynixctl: subscribe to %s failed: %s\n", stream_subj, natsStatus_GetText(s));
		goto out;
	}
	if (ctl__flush(nc))
		goto out;
	long long ack_ms = (long long)(a->timeout_s * 1000.0);
	if (ack_ms > CTL_ACK_TIMEOUT_MS)
		ack_ms = CTL_ACK_TIMEOUT_MS;
	if (ack_ms < 1)
		ack_ms = 1;
	if (ctl__chat_submit(nc, subj->submit, &body, c->rid, ack_ms, &ack))
		goto out;
	/* An older dispatcher names no owner: no replays then. */
	if (ack.instance[0])
		c->replay_subject = contract_replay_subject(subj, ack.instance);
	c->last_event_ms = util_now_ms();
	rc = ctl__chat_loop(nc, sub, c, a, subj, deadline);
out:
	for (size_t i = 0; i < CTL_PENDING_MAX; i++)
		free(c->pending[i].data);
	free(c->replay_subject);
	ctl__sub_destroy(nc, c->replay_sub);
	natsInbox_Destroy(inbox);
	ctl__sub_destroy(nc, sub);
	buf_free(&c->text);
	buf_free(&c->reasoning);
	free(c);
	buf_free(&body);
	free(stream_subj);
	return rc;
}

/* Loads --tools and --json-schema. The dispatcher checks their shape and
 * names the field at fault; here only a file that cannot serve is refused. */
static int ctl__load_chat_files(struct ctl_args *a)
{
	json_error_t jerr;
	json_t *schema;

	if (a->tools_file) {
		a->tools = json_load_file(a->tools_file, JSON_REJECT_DUPLICATES, &jerr);
		if (!a->tools) {
			fprintf(stderr, "sundynixctl: %s: invalid JSON at line %d: %s\n", a->tools_file, jerr.line,
				jerr.text);
			return -1;
		}
		if (!json_is_array(a->tools)) {
			fprintf(stderr, "sundynixctl: %s: must hold a JSON array of tools\n", a->tools_file);
			return -1;
		}
	}
	if (a->schema_file) {
		schema = json_load_file(a->schema_file, JSON_REJECT_DUPLICATES, &jerr);
		if (!schema) {
			fprintf(stderr, "sundynixctl: %s: invalid JSON at line %d: %s\n", a->schema_file, jerr.line,
				jerr.text);
			return -1;
		}
		if (!json_is_object(schema)) {
			json_decref(schema);
			fprintf(stderr, "sundynixctl: %s: must hold a JSON Schema (an object)\n", a->schema_file);
			return -1;
		}
		/* A whole json_schema object ({"name","schema",...}) goes as it
		 * is; a bare schema gets a name. */
		if (!json_is_string(json_object_get(schema, "name")) || !json_is_object(json_object_get(schema, "schema")))
			schema = json_pack("{s:s, s:o}", "name", "response", "schema", schema);
		a->response_format = json_pack("{s:s, s:o}", "type", "json_schema", "json_schema", schema);
	}
	return 0;
}

/* ---- config ---- */

/* One line describing a ModelConfig for the operator, by the daemon's own
 * reading of it (modelcfg); never mentions the api key. */
static void ctl__describe_modelcfg(FILE *f, const struct modelcfg *m)
{
	char clean[1024];

	if (!m->ready) {
		fputs("no model (stub)", f);
	} else {
		util_url_strip_userinfo(m->base_url, clean, sizeof(clean));
		fputs("model=", f);
		ctl__put_clean(f, m->model);
		fputs(" base_url=", f);
		ctl__put_clean(f, clean);
		if (m->nendpoints > 1)
			fprintf(f, " (+%zu more endpoints)", m->nendpoints - 1);
	}
	if (m->has_revision)
		fprintf(f, " revision=%lld", m->revision);
	else
		fputs(" revision=none", f);
}

/* The whole file (malloc'd, NUL-terminated), or NULL after saying why. */
static char *ctl__read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[4096];
	size_t n;

	if (!f) {
		fprintf(stderr, "sundynixctl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	if (ferror(f)) {
		fprintf(stderr, "sundynixctl: %s: read error\n", path);
		fclose(f);
		buf_free(&b);
		return NULL;
	}
	fclose(f);
	buf_append(&b, "", 0);
	*len = b.len;
	return b.data;
}

/* A ModelConfig to send: its text, and the daemon's reading of it. */
struct ctl_modelcfg {
	char *text;
	size_t len;
	struct modelcfg *m;
};

/* Checks text with the daemon's own parser, so a config the daemon would
 * refuse is refused here too, and one it would serve is served. */
static int ctl__modelcfg_take(struct ctl_modelcfg *out, char *text, const char *what)
{
	char err[256];

	out->text = text;
	out->len = strlen(text);
	out->m = modelcfg_parse(text, out->len, err, sizeof(err));
	if (!out->m) {
		fprintf(stderr, "sundynixctl: %s: %s\n", what, err);
		return -1;
	}
	return 0;
}

static void ctl__modelcfg_free(struct ctl_modelcfg *c)
{
	if (c->text)
		explicit_bzero(c->text, c->len);
	free(c->text);
	modelcfg_unref(c->m);
}

struct ctl_serve {
	char *body;
	size_t len;
};

static void ctl__serve_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct ctl_serve *sv = closure;
	const char *reply = natsMsg_GetReply(msg);

	(void)sub;
	if (reply && *reply) {
		natsStatus s = natsConnection_Publish(nc, reply, sv->body, (int)sv->len);
		if (s == NATS_OK)
			s = natsConnection_Flush(nc);
		if (s == NATS_OK)
			fputs("sundynixctl: answered a config request\n", stderr);
		else
			fprintf(stderr, "sundynixctl: answering a config request failed: %s\n", natsStatus_GetText(s));
	}
	natsMsg_Destroy(msg);
}

static int ctl__cmd_serve(natsConnection *nc, const struct contract_subjects *subj, const char *path,
			  const struct ctl_modelcfg *cfg)
{
	struct ctl_serve sv = { cfg->text, cfg->len };
	natsSubscription *sub = NULL;
	const char *get_subj = subj->config_get, *upd_subj = subj->config_updated;
	int rc = CTL_EXIT_FAIL;

	natsStatus s = natsConnection_Subscribe(&sub, nc, get_subj, ctl__serve_cb, &sv);
	if (s != NATS_OK) {
		fprintf(stderr, "sundynixctl: subscribe to %s failed: %s\n", get_subj, natsStatus_GetText(s));
		goto out;
	}
	if (ctl__publish(nc, upd_subj, cfg->text, cfg->len))
		goto out;
	fprintf(stderr, "sundynixctl: serving %s on %s (", path, get_subj);
	ctl__describe_modelcfg(stderr, cfg->m);
	fprintf(stderr, "); broadcast once on %s; Ctrl-C to stop\n", upd_subj);

	sigset_t set;
	int sig;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigwait(&set, &sig) == 0)
		rc = CTL_EXIT_OK;
out:
	/* Unsubscribing first waits out a callback that may still use sv. */
	ctl__sub_destroy(nc, sub);
	return rc;
}

static int ctl__cmd_broadcast(natsConnection *nc, const struct contract_subjects *subj,
			      const struct ctl_modelcfg *cfg)
{
	int rc = ctl__publish(nc, subj->config_updated, cfg->text, cfg->len) ? CTL_EXIT_FAIL : CTL_EXIT_OK;

	if (rc == CTL_EXIT_OK) {
		fprintf(stdout, "broadcast on %s: ", subj->config_updated);
		ctl__describe_modelcfg(stdout, cfg->m);
		fputc('\n', stdout);
	}
	return rc;
}

/* Builds the body a config command sends (serve reads it from a file). */
static char *ctl__config_body(unsigned cmd, const struct ctl_args *a)
{
	json_t *cfg;

	if (cmd == CTL_CMD_CLEAR)
		cfg = a->has_revision ? json_pack("{s:I}", "revision", (json_int_t)a->revision) : json_null();
	else
		cfg = json_object();
	if (cmd == CTL_CMD_CLEAR)
		goto dump;
	json_object_set_new(cfg, "provider", json_string(a->provider ? a->provider : "openai"));
	json_object_set_new(cfg, "base_url", json_string(a->base_url));
	json_object_set_new(cfg, "api_key", json_string(a->api_key ? a->api_key : ""));
	json_object_set_new(cfg, "model", json_string(a->model));
	if (a->has_revision)
		json_object_set_new(cfg, "revision", json_integer((json_int_t)a->revision));
dump:;
	char *text = json_dumps(cfg, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(cfg);
	if (!text)
		util_oom();
	return text;
}

/* ---- stats, ping: the NATS services protocol ($SRV, docs/observability.md) ---- */

/* One instance's answer, as received. */
struct ctl_answer {
	json_t *body;
	char *text;
	double rtt_ms;
};

static int ctl__answer_cmp(const void *a, const void *b)
{
	const struct ctl_answer *x = a, *y = b;
	const char *ix = json_string_value(json_object_get(x->body, "id"));
	const char *iy = json_string_value(json_object_get(y->body, "id"));
	return strcmp(ix ? ix : "", iy ? iy : "");
}

static double ctl__mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Asks $SRV.<verb>.sundynix-dispatcher and gathers the answers for wait_ms.
 * Only the dispatchers of this subject prefix are kept (metadata
 * subject_prefix); the others are counted in *other. Returns the count. */
static size_t ctl__srv_gather(natsConnection *nc, const char *verb, const struct ctl_args *a,
			      struct ctl_answer **out, size_t *other)
{
	natsSubscription *sub = NULL;
	natsInbox *inbox = NULL;
	size_t n = 0, cap = 0;
	char subject[64];

	*out = NULL;
	*other = 0;
	snprintf(subject, sizeof(subject), "$SRV.%s.sundynix-dispatcher", verb);
	natsStatus s = natsInbox_Create(&inbox);
	if (s == NATS_OK)
		s = natsConnection_SubscribeSync(&sub, nc, inbox);
	double t0 = ctl__mono_ms();
	if (s == NATS_OK)
		s = natsConnection_PublishRequest(nc, subject, inbox, "", 0);
	if (s == NATS_OK)
		s = natsConnection_Flush(nc);
	if (s != NATS_OK) {
		fprintf(stderr, "sundynixctl: request on %s failed: %s\n", subject, natsStatus_GetText(s));
		goto out;
	}
	for (;;) {
		double left = (double)a->wait_ms - (ctl__mono_ms() - t0);
		natsMsg *msg = NULL;
		if (left <= 0)
			break;
		if (natsSubscription_NextMsg(&msg, sub, (int64_t)left + 1) != NATS_OK)
			break;
		double rtt = ctl__mono_ms() - t0;
		json_t *body = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
		const char *prefix = json_string_value(json_object_get(json_object_get(body, "metadata"), "subject_prefix"));
		if (!json_is_object(body) || !prefix || strcmp(prefix, a->prefix)) {
			(*other)++;
			json_decref(body);
		} else {
			if (n == cap) {
				cap = cap ? cap * 2 : 8;
				*out = xrealloc(*out, cap * sizeof(**out));
			}
			(*out)[n].body = body;
			(*out)[n].text = xstrndup(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
			(*out)[n].rtt_ms = rtt;
			n++;
		}
		natsMsg_Destroy(msg);
	}
	if (n)
		qsort(*out, n, sizeof(**out), ctl__answer_cmp);
out:
	ctl__sub_destroy(nc, sub);
	natsInbox_Destroy(inbox);
	return n;
}

static void ctl__answers_free(struct ctl_answer *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_decref(v[i].body);
		free(v[i].text);
	}
	free(v);
}

/* A peer-supplied string for a table cell: control bytes replaced. */
static const char *ctl__cell(json_t *obj, const char *key, char *out, size_t outlen)
{
	const char *s = json_string_value(json_object_get(obj, key));
	snprintf(out, outlen, "%s", s && *s ? s : "-");
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return out;
}

static void ctl__nothing_answered(size_t other, const struct ctl_args *a)
{
	fprintf(stderr, "sundynixctl: no dispatcher with subject prefix \"%s\" answered within %lld ms", a->prefix,
		a->wait_ms);
	if (other)
		fprintf(stderr, " (%zu of other prefixes did: try --prefix)", other);
	fputc('\n', stderr);
}

static void ctl__ping_table(const struct ctl_answer *v, size_t n)
{
	char id[80], ver[40];

	printf("%-32s %-10s %10s\n", "INSTANCE", "VERSION", "RTT");
	for (size_t i = 0; i < n; i++)
		printf("%-32s %-10s %7.2f ms\n", ctl__cell(v[i].body, "id", id, sizeof(id)),
		       ctl__cell(v[i].body, "version", ver, sizeof(ver)), v[i].rtt_ms);
}

/* "3d04h", "2h05m", "4m07s", "12s". */
static void ctl__uptime(const char *started, char *out, size_t outlen)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!started || !strptime(started, "%Y-%m-%dT%H:%M:%S", &tm)) {
		snprintf(out, outlen, "-");
		return;
	}
	long long s = (long long)(time(NULL) - timegm(&tm));
	if (s < 0)
		s = 0;
	if (s >= 86400)
		snprintf(out, outlen, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(out, outlen, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(out, outlen, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(out, outlen, "%llds", s);
}

static void ctl__stats_table(const struct ctl_answer *v, size_t n)
{
	char id[80], ver[40], up[32], state[16], model[64], rev[24];

	printf("%-24s %-8s %-8s %-8s %9s %9s %7s  %-24s %s\n", "INSTANCE", "VERSION", "UPTIME", "STATE", "IN_FLIGHT",
	       "REQUESTS", "ERRORS", "MODEL", "REVISION");
	for (size_t i = 0; i < n; i++) {
		json_t *b = v[i].body, *submit = NULL, *ep;
		size_t k;
		json_array_foreach(json_object_get(b, "endpoints"), k, ep)
			if (json_is_string(json_object_get(ep, "name")) &&
			    !strcmp(json_string_value(json_object_get(ep, "name")), "submit"))
				submit = ep;
		json_t *data = json_object_get(submit, "data");
		json_t *jrev = json_object_get(data, "revision");
		if (json_is_integer(jrev))
			snprintf(rev, sizeof(rev), "%lld", (long long)json_integer_value(jrev));
		else
			snprintf(rev, sizeof(rev), "-");
		ctl__uptime(json_string_value(json_object_get(b, "started")), up, sizeof(up));
		const char *m = ctl__cell(data, "model", model, sizeof(model));
		printf("%-24s %-8s %-8s %-8s %9lld %9lld %7lld  %-24s %s\n", ctl__cell(b, "id", id, sizeof(id)),
		       ctl__cell(b, "version", ver, sizeof(ver)), up, ctl__cell(data, "state", state, sizeof(state)),
		       (long long)json_integer_value(json_object_get(data, "in_flight")),
		       (long long)json_integer_value(json_object_get(submit, "num_requests")),
		       (long long)json_integer_value(json_object_get(submit, "num_errors")), strcmp(m, "-") ? m : "(stub)",
		       rev);
	}
}

/* ping and stats: the answers of every dispatcher of the prefix, as JSON
 * lines with --json, else as a table. */
static int ctl__cmd_srv(natsConnection *nc, const struct ctl_args *a, const char *verb,
			void (*table)(const struct ctl_answer *, size_t))
{
	struct ctl_answer *v;
	size_t other, n = ctl__srv_gather(nc, verb, a, &v, &other);

	if (!n) {
		ctl__nothing_answered(other, a);
		return CTL_EXIT_FAIL;
	}
	if (a->json) {
		for (size_t i = 0; i < n; i++)
			puts(v[i].text);
	} else {
		table(v, n);
	}
	ctl__answers_free(v, n);
	return CTL_EXIT_OK;
}

/* ---- main ---- */

static int ctl__check_rid(const char *what, const char *rid)
{
	if (contract_valid_request_id(rid, strlen(rid)))
		return 0;
	ctl__usage_error("%s: must be 1-%d characters of [A-Za-z0-9_-]", what, CONTRACT_RID_MAX);
	return -1;
}

/* Checks the arguments of cmd before anything touches the network. */
static int ctl__check_cmd_args(unsigned cmd, const struct ctl_args *a, const char *const *args, size_t nargs)
{
	const char *one = NULL; /* the one positional argument cmd takes, if any */

	switch (cmd) {
	case CTL_CMD_CHAT: one = "MESSAGE argument (quote it)"; break;
	case CTL_CMD_CANCEL: one = "REQUEST_ID argument"; break;
	case CTL_CMD_SERVE: one = "FILE argument"; break;
	default: break;
	}
	if (one && nargs != 1) {
		ctl__usage_error("%s: expected one %s, got %zu", ctl__cmd_name(cmd), one, nargs);
		return -1;
	}
	if (!one && nargs) {
		ctl__usage_error("%s: unexpected argument '%s'", ctl__cmd_name(cmd), args[0]);
		return -1;
	}
	switch (cmd) {
	case CTL_CMD_CHAT:
		return a->request_id ? ctl__check_rid("--request-id", a->request_id) : 0;
	case CTL_CMD_CANCEL:
		return ctl__check_rid("cancel: REQUEST_ID", args[0]);
	case CTL_CMD_SET:
		if (!a->base_url || !*a->base_url || !a->model || !*a->model) {
			ctl__usage_error("config set: --base-url and --model are required and non-empty");
			return -1;
		}
		return 0;
	default:
		return 0;
	}
}

static int ctl__run(int argc, char **argv)
{
	struct ctl_args a = { .timeout_s = 120.0, .keepalive_ms = CTL_KEEPALIVE_MS, .wait_ms = CTL_SRV_WAIT_MS };
	const char *const *args = NULL;
	size_t nargs = 0;
	unsigned cmd = 0;
	struct ctl_modelcfg cfg = { 0 };
	struct contract_subjects subj = { 0 };
	natsConnection *nc = NULL;
	static int reconnected; /* outlives nc: nats.c's threads may still run */
	int rc = CTL_EXIT_USAGE;

	if (ctl__parse_args(argc, argv, &a))
		goto out;
	if (a.help) {
		fputs(ctl__usage, stdout);
		rc = CTL_EXIT_OK;
		goto out;
	}
	if (a.version) {
		printf("sundynixctl %s (wire contract v1)\n", SUNDYNIX_VERSION);
		rc = CTL_EXIT_OK;
		goto out;
	}
	if (ctl__pick_command(&a, &cmd, &args, &nargs) || ctl__check_cmd_args(cmd, &a, args, nargs))
		goto out;
	if (!a.nats_url)
		a.nats_url = getenv("SUNDYNIX_NATS_URL");
	if (!a.nats_url || !*a.nats_url)
		a.nats_url = CTL_DEFAULT_NATS;
	if (!a.prefix)
		a.prefix = getenv("SUNDYNIX_SUBJECT_PREFIX");
	if (!a.prefix || !*a.prefix)
		a.prefix = CTL_DEFAULT_PREFIX;

	contract_subjects_init(&subj, a.prefix);
	if (cmd == CTL_CMD_CHAT && ctl__load_chat_files(&a))
		goto out;
	if (cmd == CTL_CMD_SERVE) {
		size_t len;
		char *text = ctl__read_file(args[0], &len);
		if (!text)
			goto out;
		if (ctl__modelcfg_take(&cfg, text, args[0]))
			goto out;
	} else if (cmd == CTL_CMD_SET || cmd == CTL_CMD_CLEAR) {
		if (ctl__modelcfg_take(&cfg, ctl__config_body(cmd, &a), "config"))
			goto out;
	}

	/* Blocked before connecting so nats.c's threads inherit the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	rc = CTL_EXIT_FAIL;
	nc = ctl__connect(&a, &reconnected);
	if (!nc)
		goto out;
	switch (cmd) {
	case CTL_CMD_CHAT: rc = ctl__cmd_chat(nc, &a, &subj, &reconnected, args[0]); break;
	case CTL_CMD_SERVE: rc = ctl__cmd_serve(nc, &subj, args[0], &cfg); break;
	case CTL_CMD_SET:
	case CTL_CMD_CLEAR: rc = ctl__cmd_broadcast(nc, &subj, &cfg); break;
	case CTL_CMD_CANCEL: rc = ctl__send_cancel(nc, &subj, args[0]) ? CTL_EXIT_FAIL : CTL_EXIT_OK; break;
	case CTL_CMD_STATS: rc = ctl__cmd_srv(nc, &a, "STATS", ctl__stats_table); break;
	case CTL_CMD_PING: rc = ctl__cmd_srv(nc, &a, "PING", ctl__ping_table); break;
	}
out:
	if (nc) {
		natsConnection_Close(nc);
		natsConnection_Destroy(nc);
	}
	ctl__modelcfg_free(&cfg);
	contract_subjects_free(&subj);
	free(a.facts);
	json_decref(a.tools);
	json_decref(a.response_format);
	return rc;
}

int main(int argc, char **argv)
{
	int rc = ctl__run(argc, argv);

	/* Lets nats.c's threads finish so the sanitizers see a clean exit. */
	nats_CloseAndWait(2000);
	return rc;
}
