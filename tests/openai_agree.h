/* Shared by the unit test and the fuzzer: do the fast path and jansson agree
 * on one payload (after another one, for the decoder's state)? Returns NULL
 * if they do, else which field differs. */
#ifndef SUNDYNIX_OPENAI_AGREE_H
#define SUNDYNIX_OPENAI_AGREE_H

#include <string.h>

#include "openai.h"

static int agree__str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static int agree__mem(const char *a, size_t an, const char *b, size_t bn)
{
	return (!a && !b) || (a && b && an == bn && !memcmp(a, b, an));
}

static int agree__calls(const struct openai_chunk *a, const struct openai_chunk *b)
{
	if (a->ntool_calls != b->ntool_calls || (a->ntool_calls && (!a->tool_calls || !b->tool_calls)))
		return 0;
	for (size_t i = 0; i < a->ntool_calls; i++) {
		const struct contract_tool_call *x = &a->tool_calls[i], *y = &b->tool_calls[i];
		if (x->index != y->index || !agree__mem(x->id, x->id_len, y->id, y->id_len) ||
		    !agree__mem(x->name, x->name_len, y->name, y->name_len) ||
		    !agree__mem(x->arguments, x->arguments_len, y->arguments, y->arguments_len))
			return 0;
	}
	return 1;
}

/* Does the fast path, having read prev first (the decoder keeps state from
 * one chunk to the next: the previous chunk's shape), agree with jansson on
 * data? prev NULL: a fresh decoder. */
static inline const char *openai_agree_after(const char *prev, size_t prevlen, const char *data, size_t len)
{
	struct openai_decoder fast, slow;
	struct openai_chunk a, b;
	char ea[128], eb[128];
	const char *why = NULL;

	openai_decoder_init(&fast);
	openai_decoder_init(&slow);
	if (prev && openai_decode(&fast, prev, prevlen, &a, ea, sizeof(ea)) < 0)
		(void)0; /* only its effect on the decoder matters */
	int ra = openai_decode(&fast, data, len, &a, ea, sizeof(ea));
	int rb = openai_decode_json(&slow, data, len, &b, eb, sizeof(eb));
	if (ra != rb)
		why = "return code";
	else if (ra == 0) {
		if (a.done != b.done)
			why = "done";
		else if (!agree__mem(a.content, a.content_len, b.content, b.content_len))
			why = "content";
		else if (!agree__mem(a.reasoning, a.reasoning_len, b.reasoning, b.reasoning_len))
			why = "reasoning";
		else if (!agree__calls(&a, &b))
			why = "tool_calls";
		else if (!agree__str(a.finish_reason, b.finish_reason))
			why = "finish_reason";
		else if (!agree__str(a.model, b.model))
			why = "model";
		else if (a.has_usage != b.has_usage ||
			 (a.has_usage && (a.usage.prompt_tokens != b.usage.prompt_tokens ||
					  a.usage.completion_tokens != b.usage.completion_tokens ||
					  a.usage.total_tokens != b.usage.total_tokens)))
			why = "usage";
		else if (a.is_error != b.is_error || !agree__str(a.error_message, b.error_message))
			why = "error";
	}
	openai_decoder_free(&fast);
	openai_decoder_free(&slow);
	return why;
}

static inline const char *openai_agree(const char *data, size_t len)
{
	return openai_agree_after(NULL, 0, data, len);
}

#endif
