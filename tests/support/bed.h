/* bed: the peers a test program shares across its tests, and its main. A bed
 * says where to put one nats-server and up to H_BED_MOCKS mock backends;
 * h_main starts them before the first test (cmocka's group setup), runs each
 * test between h_bed_setup and h_test_teardown, and after the last stops the
 * mocks, asserting that they exit cleanly. Before each test the mocks are
 * reset (to the bed's script, if any) and a halted nats-server is resumed.
 * The daemon is not part of a bed: most tests want their own, with their own
 * config; and peers only one test needs, that test starts itself. */
#ifndef SUNDYNIX_TEST_BED_H
#define SUNDYNIX_TEST_BED_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define H_BED_MOCKS 2

struct CMUnitTest;
struct h_mock;
struct h_nats;

struct h_bed {
	struct h_nats **nats; /* filled by the group setup; NULL: no shared server */
	struct {
		struct h_mock **mock; /* filled by the group setup; NULL: unused entry */
		const char *name;
	} mocks[H_BED_MOCKS];
	const char *script;    /* each mock's script before every test; NULL: the default */
	int (*setup)(void);    /* run after the peers started; may be NULL */
	int (*teardown)(void); /* run before the mocks stop; may be NULL */
	bool hard_exit;        /* end with h_exit (a TLS client was used; see h_exit) */
};

/* The per-test setup of H_TEST: h_test_setup, then the resets above. */
int h_bed_setup(void **state);
#define H_TEST(f) cmocka_unit_test_setup_teardown(f, h_bed_setup, h_test_teardown)

/* h_init, then the tests as one cmocka group named name around bed (which
 * may be NULL: no shared peers). Returns what main should. */
#define h_main(name, tests, bed) h__main((name), (tests), UTIL_ARRAY_LEN(tests), (bed))
int h__main(const char *name, const struct CMUnitTest *tests, size_t n, const struct h_bed *bed);
/* A test program's main: h_main over the H_TEST entries that follow bed. */
#define H_MAIN(name, bed, ...)                                                   \
	int main(void)                                                           \
	{                                                                        \
		static const struct CMUnitTest h__tests[] = { __VA_ARGS__ };     \
		return h_main((name), h__tests, (bed));                          \
	}

#endif
