/* Unit tests for util (buffer, JSON escaping, secret helpers, UTF-8) and log
 * (level names, escaping of control bytes in emitted lines). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "stderr_capture.h"
#include "util.h"

/* ---- buf ---- */

static void test_buf_basics(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	buf_append(&b, "", 0);
	assert_non_null(b.data);
	assert_string_equal(b.data, "");
	buf_append_str(&b, "abc");
	buf_append_char(&b, 'd');
	buf_append(&b, "ef\0gh", 5);
	assert_int_equal(b.len, 9);
	assert_memory_equal(b.data, "abcdef\0gh", 10); /* NUL-terminated too */
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	buf_printf(&b, "%d-%s", 42, "x");
	assert_string_equal(b.data, "42-x");
	assert_int_equal(b.len, 4);
	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.cap, 0);
}

static void test_buf_growth(void **state)
{
	struct buf b;
	char big[5000];

	(void)state;
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	buf_init(&b);
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%04d,", i);
	assert_int_equal(b.len, 5000);
	assert_int_equal(strlen(b.data), 5000);
	assert_memory_equal(b.data + 4995, "0999,", 5);
	assert_true(b.cap > b.len);
	buf_printf(&b, "%s", big);
	assert_int_equal(b.len, 5000 + sizeof(big) - 1);
	assert_int_equal(b.data[b.len], '\0');
	size_t cap = b.cap;
	buf_reset(&b);
	assert_int_equal(b.cap, cap); /* keeps the allocation */
	buf_reserve(&b, 3 * cap);
	assert_true(b.cap >= 3 * cap + 1);
	buf_free(&b);
}

static void test_xalloc(void **state)
{
	(void)state;
	char *s = xstrndup("hello world", 5);
	assert_string_equal(s, "hello");
	free(s);
	s = xasprintf("%s=%d", "n", 7);
	assert_string_equal(s, "n=7");
	free(s);
	s = xasprintf("%s", "");
	assert_string_equal(s, "");
	free(s);
	s = xstrdup("");
	assert_string_equal(s, "");
	free(s);
	int *z = xcalloc(4, sizeof(int));
	assert_int_equal(z[0] | z[1] | z[2] | z[3], 0);
	z = xrealloc(z, 100 * sizeof(int));
	free(z);
}

/* ---- JSON string escaping ---- */

static void expect_json(const char *in, size_t n, const char *want)
{
	struct buf b;

	buf_init(&b);
	buf_append_json_str(&b, in, n);
	assert_string_equal(b.data, want);
	assert_int_equal(b.len, strlen(want));
	/* Whatever went in, jansson must accept what came out. */
	json_error_t je;
	json_t *v = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!v)
		fail_msg("output %s is not valid JSON: %s", b.data, je.text);
	assert_true(json_is_string(v));
	json_decref(v);
	buf_free(&b);
}

#define EXPECT_JSON(lit, want) expect_json(lit, sizeof(lit) - 1, want)

static void test_json_escape_ascii(void **state)
{
	(void)state;
	EXPECT_JSON("", "\"\"");
	EXPECT_JSON("plain text", "\"plain text\"");
	EXPECT_JSON("q\"b\\s/", "\"q\\\"b\\\\s/\"");
	EXPECT_JSON("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"");
	EXPECT_JSON("\x01\x1f\x1b[0m", "\"\\u0001\\u001f\\u001b[0m\"");
	EXPECT_JSON("a\0b", "\"a\\u0000b\""); /* explicit length: NUL is data */
	EXPECT_JSON("\x7f", "\"\x7f\"");       /* DEL is valid in JSON */
}

static void test_json_escape_utf8(void **state)
{
	(void)state;
	/* Valid sequences of every length pass through. */
	EXPECT_JSON("\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
		    "\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"");
	/* Each invalid byte becomes U+FFFD. */
	EXPECT_JSON("a\x80z", "\"a\xef\xbf\xbdz\"");                       /* lone continuation */
	EXPECT_JSON("\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\"");           /* overlong '/' */
	EXPECT_JSON("\xe0\x80\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); /* overlong 3-byte */
	EXPECT_JSON("\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); /* surrogate */
	EXPECT_JSON("\xf4\x90\x80\x80",
		    "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); /* above U+10FFFF */
	EXPECT_JSON("\xf5", "\"\xef\xbf\xbd\"");
	EXPECT_JSON("\xff\xfe", "\"\xef\xbf\xbd\xef\xbf\xbd\"");
	EXPECT_JSON("x\xe2\x82", "\"x\xef\xbf\xbd\xef\xbf\xbd\""); /* truncated at the end */
	EXPECT_JSON("\xe2\x82z", "\"\xef\xbf\xbd\xef\xbf\xbdz\"");  /* truncated mid-string */
	EXPECT_JSON("\xc3\n", "\"\xef\xbf\xbd\\n\"");
	/* A sequence cut by n is invalid even if the bytes continue. */
	expect_json("\xc3\xa9", 1, "\"\xef\xbf\xbd\"");
}

static void test_utf8_seqlen(void **state)
{
	(void)state;
	assert_int_equal(util_utf8_seqlen("a", 1), 1);
	assert_int_equal(util_utf8_seqlen("\xc3\xa9", 2), 2);
	assert_int_equal(util_utf8_seqlen("\xe2\x82\xac", 3), 3);
	assert_int_equal(util_utf8_seqlen("\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(util_utf8_seqlen("\xf0\x9f\x98\x80", 3), 1);
	assert_int_equal(util_utf8_seqlen("\x80", 1), 1);
	assert_int_equal(util_utf8_seqlen("\xed\xa0\x80", 3), 1);
}

/* ---- secrets ---- */

static void test_mask_secret(void **state)
{
	char out[64];

	(void)state;
	util_mask_secret("sk-proj-abcdefghijklmnopWXYZ", out, sizeof(out));
	assert_string_equal(out, "sk-...WXYZ");
	util_mask_secret("0123456789ABCDEF", out, sizeof(out)); /* 16: shown masked */
	assert_string_equal(out, "012...CDEF");
	util_mask_secret("0123456789ABCDE", out, sizeof(out)); /* 15: hidden */
	assert_string_equal(out, "***");
	util_mask_secret("a", out, sizeof(out));
	assert_string_equal(out, "***");
	util_mask_secret("", out, sizeof(out));
	assert_string_equal(out, "(none)");
	util_mask_secret(NULL, out, sizeof(out));
	assert_string_equal(out, "(none)");
	/* A small buffer truncates and stays terminated. */
	util_mask_secret("sk-proj-abcdefghijklmnopWXYZ", out, 5);
	assert_string_equal(out, "sk-.");
	out[0] = 'x';
	util_mask_secret("sk-proj-abcdefghijklmnopWXYZ", out, 0);
	assert_int_equal(out[0], 'x');
}

/* util_url_strip_userinfo of in, into a buffer with room to spare, is want. */
static void expect_strip(const char *in, const char *want)
{
	char out[128];

	util_url_strip_userinfo(in, out, sizeof(out));
	assert_string_equal(out, want);
}

static void test_url_strip_userinfo(void **state)
{
	char out[10];

	(void)state;
	expect_strip("nats://user:pass@host:4222", "nats://host:4222");
	expect_strip("nats://token@127.0.0.1:4222", "nats://127.0.0.1:4222");
	expect_strip("nats://host:4222", "nats://host:4222");
	/* An unescaped '@' in the password: the last one in the authority ends it. */
	expect_strip("https://u:p@ss@api.example.com/v1?x=a@b", "https://api.example.com/v1?x=a@b");
	/* '@' only in path, query or fragment is not userinfo. */
	expect_strip("http://host/a@b", "http://host/a@b");
	expect_strip("http://host?q=a@b", "http://host?q=a@b");
	expect_strip("http://host#a@b", "http://host#a@b");
	/* No scheme. */
	expect_strip("user:pw@host:4222", "host:4222");
	expect_strip("", "");
	/* Truncation never leaves the password behind. */
	util_url_strip_userinfo("nats://user:pass@host:4222", out, sizeof(out));
	assert_string_equal(out, "nats://ho");
}

/* util_redact of secret in a copy of in leaves want. */
static void expect_redact(const char *in, const char *secret, const char *want)
{
	char s[128];

	snprintf(s, sizeof(s), "%s", in);
	util_redact(s, secret);
	assert_string_equal(s, want);
}

static void test_redact(void **state)
{
	char s[128];

	(void)state;
	expect_redact("key sk-123 and again sk-123.", "sk-123", "key ****** and again ******.");
	expect_redact("aaaaa", "aa", "****a");
	expect_redact("nothing here", "secret", "nothing here");
	strcpy(s, "nothing here");
	util_redact(s, "");
	assert_string_equal(s, "nothing here");
	util_redact(s, NULL);
	util_redact(NULL, "x");
	assert_string_equal(s, "nothing here");
}

/* ---- UTF-8 truncation ---- */

static void expect_trunc(const char *in, size_t max, const char *want)
{
	char s[64];

	snprintf(s, sizeof(s), "%s", in);
	util_utf8_truncate(s, max);
	assert_string_equal(s, want);
	assert_true(strlen(s) <= max);
}

static void test_utf8_truncate(void **state)
{
	(void)state;
	expect_trunc("hello", 10, "hello");
	expect_trunc("hello", 5, "hello");
	expect_trunc("hello", 3, "hel");
	expect_trunc("hello", 0, "");
	/* "h" + é (2) + "llo" */
	expect_trunc("h\xc3\xa9llo", 1, "h");
	expect_trunc("h\xc3\xa9llo", 2, "h");
	expect_trunc("h\xc3\xa9llo", 3, "h\xc3\xa9");
	/* A 4-byte emoji cut at every offset. */
	const char *emoji = "ab\xf0\x9f\x98\x80" "c";
	expect_trunc(emoji, 2, "ab");
	expect_trunc(emoji, 3, "ab");
	expect_trunc(emoji, 4, "ab");
	expect_trunc(emoji, 5, "ab");
	expect_trunc(emoji, 6, "ab\xf0\x9f\x98\x80");
	expect_trunc("\xe2\x82\xac\xe2\x82\xac", 5, "\xe2\x82\xac");
	expect_trunc("\xe2\x82\xac", 2, "");
	/* Whatever the cut, the result is valid UTF-8 when the input was. */
	const char *mixed = "x\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80y";
	for (size_t max = 0; max <= strlen(mixed); max++) {
		char s[32];
		snprintf(s, sizeof(s), "%s", mixed);
		util_utf8_truncate(s, max);
		for (size_t i = 0; s[i];) {
			size_t n = util_utf8_seqlen(s + i, strlen(s + i));
			if (n == 1 && (unsigned char)s[i] >= 0x80)
				fail_msg("max %zu: invalid byte at %zu", max, i);
			i += n;
		}
	}
}

static void test_now_ms(void **state)
{
	(void)state;
	unsigned long long a = util_now_ms();
	usleep(20 * 1000);
	unsigned long long b = util_now_ms();
	assert_true(b >= a + 15);
	assert_true(b < a + 5000);
}

/* ---- log ---- */

static void test_log_level_names(void **state)
{
	(void)state;
	assert_int_equal(log_level_parse("error"), LOG_LVL_ERROR);
	assert_int_equal(log_level_parse("warn"), LOG_LVL_WARN);
	assert_int_equal(log_level_parse("warning"), LOG_LVL_WARN);
	assert_int_equal(log_level_parse("notice"), LOG_LVL_NOTICE);
	assert_int_equal(log_level_parse("info"), LOG_LVL_INFO);
	assert_int_equal(log_level_parse("debug"), LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("DEBUG"), LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse(""), -1);
	assert_int_equal(log_level_parse("verbose"), -1);
	assert_int_equal(log_level_parse("info "), -1);
	assert_string_equal(log_level_name(LOG_LVL_ERROR), "error");
	assert_string_equal(log_level_name(LOG_LVL_WARN), "warn");
	assert_string_equal(log_level_name(LOG_LVL_NOTICE), "notice");
	assert_string_equal(log_level_name(LOG_LVL_INFO), "info");
	assert_string_equal(log_level_name(LOG_LVL_DEBUG), "debug");
	assert_string_equal(log_level_name(42), "?");
}

static struct stderr_capture cap;

static int log_setup(void **state)
{
	(void)state;
	unsetenv("JOURNAL_STREAM");
	log_init();
	log_set_level(LOG_LVL_INFO);
	return 0;
}

static int log_teardown(void **state)
{
	return log_setup(state);
}

static size_t count_char(const char *s, char c)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

static void test_log_escapes_control_chars(void **state)
{
	(void)state;
	capture_begin(&cap);
	log_info("req\n-1", "line one\nFAKE 2024 error injected\r\t\x1b[31m\x7f end");
	char *out = capture_end(&cap);
	/* One line, with every control byte shown as \xNN. */
	assert_int_equal(count_char(out, '\n'), 1);
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_null(strchr(out, '\r'));
	assert_null(strchr(out, '\t'));
	assert_null(strchr(out, '\x1b'));
	if (!strstr(out, " info [req\\x0a-1] line one\\x0aFAKE 2024 error injected\\x0d\\x09\\x1b[31m\\x7f end\n"))
		fail_msg("unexpected line: %s", out);
	/* Timestamped when not under journald: "YYYY-MM-DDTHH:MM:SS.mmmZ ". */
	assert_int_equal(out[4], '-');
	assert_int_equal(out[10], 'T');
	assert_int_equal(out[23], 'Z');
	free(out);
}

static void test_log_levels_filter(void **state)
{
	(void)state;
	log_set_level(LOG_LVL_WARN);
	assert_int_equal(log_get_level(), LOG_LVL_WARN);
	capture_begin(&cap);
	log_info(NULL, "hidden");
	log_debug(NULL, "hidden");
	log_warn(NULL, "shown %d", 1);
	log_error(NULL, "shown %d", 2);
	char *out = capture_end(&cap);
	assert_null(strstr(out, "hidden"));
	assert_non_null(strstr(out, " warn shown 1\n"));
	assert_non_null(strstr(out, " error shown 2\n"));
	assert_int_equal(count_char(out, '\n'), 2);
	free(out);

	log_set_level(LOG_LVL_DEBUG);
	capture_begin(&cap);
	log_debug("r1", "dbg");
	out = capture_end(&cap);
	assert_non_null(strstr(out, " debug [r1] dbg\n"));
	free(out);
}

static void test_log_journal_and_long(void **state)
{
	char big[3000];

	(void)state;
	/* An inherited JOURNAL_STREAM that is not our stderr: plain lines. */
	setenv("JOURNAL_STREAM", "8:1234", 1);
	capture_begin(&cap);
	log_init();
	log_notice(NULL, "plain");
	char *out = capture_end(&cap);
	assert_null(strstr(out, "<5>"));
	assert_non_null(strstr(out, " notice plain\n"));
	free(out);

	/* JOURNAL_STREAM naming our stderr: priority prefixes, no timestamp. */
	struct stat st;
	char js[64];
	capture_begin(&cap);
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	log_init();
	log_notice(NULL, "hello");
	out = capture_end(&cap);
	assert_string_equal(out, "<5>hello\n");
	free(out);

	/* Longer than log_msg's stack buffer: still one whole, escaped line. */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[2000] = '\n';
	capture_begin(&cap);
	log_error("r", "%s|", big);
	out = capture_end(&cap);
	assert_int_equal(strlen(out), 3 + 4 + 2998 + 4 + 1 + 1);
	assert_memory_equal(out, "<3>[r] ", 7);
	assert_memory_equal(out + 7 + 2000, "\\x0a", 4);
	assert_int_equal(count_char(out, '\n'), 1);
	assert_string_equal(out + strlen(out) - 2, "|\n");
	free(out);
}

static void test_redact_truncated_tail(void **state)
{
	char a[] = "Invalid API key: sk-proj-ABCDEFGHIJ";
	char b[] = "key sk-proj-ABCDEFGHIJKLMNOP and again sk-p";
	char c[] = "ends with sk-";

	(void)state;
	util_redact(a, "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
	assert_string_equal(a, "Invalid API key: ******************");
	util_redact(b, "sk-proj-ABCDEFGHIJKLMNOP");
	assert_string_equal(b, "key ************************ and again ****");
	util_redact(c, "sk-proj-ABCDEFGHIJKLMNOP");
	assert_string_equal(c, "ends with sk-"); /* three characters reveal nothing */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redact_truncated_tail),
		cmocka_unit_test(test_buf_basics),
		cmocka_unit_test(test_buf_growth),
		cmocka_unit_test(test_xalloc),
		cmocka_unit_test(test_json_escape_ascii),
		cmocka_unit_test(test_json_escape_utf8),
		cmocka_unit_test(test_utf8_seqlen),
		cmocka_unit_test(test_mask_secret),
		cmocka_unit_test(test_url_strip_userinfo),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_utf8_truncate),
		cmocka_unit_test(test_now_ms),
		cmocka_unit_test(test_log_level_names),
		cmocka_unit_test_setup_teardown(test_log_escapes_control_chars, log_setup, log_teardown),
		cmocka_unit_test_setup_teardown(test_log_levels_filter, log_setup, log_teardown),
		cmocka_unit_test_setup_teardown(test_log_journal_and_long, log_setup, log_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
