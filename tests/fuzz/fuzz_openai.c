/* libFuzzer target for openai: the input is one chunk payload for
 * openai_decode and one HTTP error body for openai_error_message. Every
 * pointer in the decoded chunk (tool-call pieces included) is read in full
 * so ASan checks it lies in live memory, and the error message must be one
 * clean, bounded line. See README.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

static void touch(const char *s, size_t n)
{
	unsigned x = 0;

	for (size_t i = 0; i <= n; i++)
		x += (unsigned char)s[i]; /* includes the NUL */
	sink += x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct openai_decoder d;
	struct openai_chunk c;
	char err[96], msg[80];

	openai_decoder_init(&d);
	for (int round = 0; round < 2; round++) {
		err[0] = '\0';
		if (openai_decode(&d, s, size, &c, err, sizeof(err))) {
			if (!err[0] || c.content || c.is_error || c.done || c.ntool_calls || c.tool_calls)
				abort();
			continue;
		}
		if (c.content) {
			if (!c.content_len)
				abort();
			touch(c.content, c.content_len);
		}
		if (c.reasoning) {
			if (!c.reasoning_len)
				abort();
			touch(c.reasoning, c.reasoning_len);
		}
		if (c.finish_reason)
			touch(c.finish_reason, strlen(c.finish_reason));
		if (c.model)
			touch(c.model, strlen(c.model));
		if (c.is_error != (c.error_message != NULL))
			abort();
		if (c.error_message)
			touch(c.error_message, strlen(c.error_message));
		if (c.has_usage && (c.usage.prompt_tokens < 0 || c.usage.completion_tokens < 0 || c.usage.total_tokens < 0))
			abort();
		/* Tool-call pieces: bounded, each carrying something, no empty
		 * strings, a non-negative index. */
		if (c.ntool_calls > OPENAI_MAX_TOOL_CALLS || (c.ntool_calls != 0) != (c.tool_calls != NULL))
			abort();
		for (size_t i = 0; i < c.ntool_calls; i++) {
			const struct contract_tool_call *tc = &c.tool_calls[i];
			if (tc->index < 0 || (!tc->id && !tc->name && !tc->arguments) || (tc->id && !tc->id_len) ||
			    (tc->name && !tc->name_len) || (tc->arguments && !tc->arguments_len))
				abort();
			if (tc->id)
				touch(tc->id, tc->id_len);
			if (tc->name)
				touch(tc->name, tc->name_len);
			if (tc->arguments)
				touch(tc->arguments, tc->arguments_len);
		}
	}
	openai_decoder_free(&d);

	openai_error_message(s, size, msg, sizeof(msg));
	size_t n = strlen(msg);
	if (n >= sizeof(msg))
		abort();
	for (size_t i = 0; i < n;) {
		size_t l = util_utf8_seqlen(msg + i, n - i);
		if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f || ((unsigned char)msg[i] >= 0x80 && l == 1))
			abort();
		i += l;
	}
	return 0;
}
