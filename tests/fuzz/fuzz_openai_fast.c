/* libFuzzer target: openai_decode's hand-written fast path must agree with
 * the jansson path (openai_decode_json) on every input: same return code,
 * same fields. Build and run as the other targets (see README.md); it links
 * src/openai.c and src/util.c. */
#include <stdint.h>
#include <stdlib.h>

#include "../openai_agree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (openai_agree((const char *)data, size))
		abort();
	return 0;
}
