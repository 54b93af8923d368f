/* libFuzzer target: openai_decode's hand-written fast path must agree with
 * the jansson path (openai_decode_json) on every input: same return code,
 * same fields. Build and run as the other targets (see README.md); it links
 * src/openai.c and src/util.c. */
#include <stdint.h>
#include <stdlib.h>

#include "../openai_agree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input is also read as two chunks split at its first newline, the
 * second decoded after the first: the decoder reuses the previous chunk's
 * shape (see openai.c), and that path must agree too. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	const char *nl = memchr(s, '\n', size);

	if (openai_agree(s, size))
		abort();
	if (nl && openai_agree_after(s, (size_t)(nl - s), nl + 1, size - (size_t)(nl - s) - 1))
		abort();
	return 0;
}
