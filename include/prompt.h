/* prompt: builds the upstream messages array from the request's messages, the
 * configured system prompt and the user's memory rendered through the memory
 * template. Pure: no I/O. */
#ifndef SUNDYNIX_PROMPT_H
#define SUNDYNIX_PROMPT_H

#include <jansson.h>

/* The default memory template. "{profile}" is replaced by the profile text
 * verbatim and "{facts}" by the facts, one "- fact" per line. A template line
 * whose placeholder has no value (no profile, or no facts) is dropped; other
 * lines (headings) always stay. */
#define PROMPT_DEFAULT_MEMORY_TEMPLATE \
	"What you know about the user:\nProfile: {profile}\n{facts}"

/* Returns a new array (caller owns the reference): one system message with
 * system_prompt (may be NULL/""), then the rendered memory block (omitted when
 * neither profile nor facts is present), then the content of the request's
 * first system message if it has one, joined by blank lines; then the
 * request's other messages in order, each copied as {"role","content"} plus
 * "name"/"tool_call_id"/"tool_calls" when present (content null for an
 * assistant message that only calls tools; an array of content parts is
 * shared as it is). Later system messages stay in place. No system message
 * at all when every part is empty.
 * When the request's first system message has an array of content parts
 * (text parts only, as the contract allows), the system message's content
 * is an array too: {"type":"text","text":<system prompt and memory block,
 * joined as above>} first (left out when both are empty), then that
 * message's parts unchanged. profile may be
 * NULL; facts may be NULL or an array of strings. messages is assumed valid
 * (contract_decode_submit checked it). The result shares string values with
 * messages by reference, so it stays valid after the submit is freed. */
json_t *prompt_build(const char *system_prompt, const char *memory_template, json_t *messages,
		     const char *profile, json_t *facts);

/* Renders only the memory block (malloc'd, caller frees); NULL when there is
 * no memory or nothing is left of the template. The template is expanded in
 * one pass, so profile and facts appear verbatim and placeholder text inside
 * them is not expanded. A NULL or "" template means the default; a template
 * without placeholders is used as-is when memory exists. An empty profile and
 * empty facts count as absent. */
char *prompt_render_memory(const char *memory_template, const char *profile, json_t *facts);

#endif
