/* stub: the reply served when no model is ready. Builds a canned text from the
 * request (greets the profile's name, echoes the last user message, says that
 * no model is configured) and streams it one UTF-8 character at a time on a
 * loop timer, through the same callbacks as an upstream call, so requests
 * treat both alike. Knows nothing of curl or NATS. */
#ifndef SUNDYNIX_STUB_H
#define SUNDYNIX_STUB_H

#include <stddef.h>
#include <uv.h>

#include "upstream.h"

struct stub;

/* The reply text (malloc'd, caller frees). profile and last_user may be NULL. */
char *stub_reply(const char *profile, const char *last_user);
/* Writes the name found in a profile such as "姓名: 老王; 爱好: 钓鱼" or
 * "name: Alice, ..." into out; returns 0, or -1 if there is none. */
int stub_profile_name(const char *profile, char *out, size_t outlen);

/* Takes ownership of text. The first token comes after ttft_ms, then one
 * character every inter_ms; end reports model "stub" and usage counted in
 * characters. */
struct stub *stub_start(uv_loop_t *loop, char *text, long long ttft_ms, long long inter_ms,
			const struct upstream_cbs *cbs, void *ud);
/* Stops the stream; no callback follows. Only before end. */
void stub_cancel(struct stub *s);

#endif
