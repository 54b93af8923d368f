/* bed: see bed.h. cmocka's group fixtures take no argument, so the bed of
 * the running group is kept here for them. */
#include "bed.h"

#include <stdarg.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"
#include "mock.h"
#include "nats_server.h"

static const struct h_bed *h__bed;

static int h__bed_group_setup(void **state)
{
	(void)state;
	if (!h__bed)
		return 0;
	if (h__bed->nats)
		*h__bed->nats = h_nats_start(NULL);
	for (size_t i = 0; i < H_BED_MOCKS; i++)
		if (h__bed->mocks[i].mock)
			*h__bed->mocks[i].mock = h_mock_start(h__bed->mocks[i].name, NULL);
	return h__bed->setup ? h__bed->setup() : 0;
}

static int h__bed_group_teardown(void **state)
{
	(void)state;
	if (!h__bed)
		return 0;
	int rc = h__bed->teardown ? h__bed->teardown() : 0;
	for (size_t i = 0; i < H_BED_MOCKS; i++) /* none if the group setup failed */
		if (h__bed->mocks[i].mock && *h__bed->mocks[i].mock)
			h_mock_stop(*h__bed->mocks[i].mock);
	return rc;
}

int h_bed_setup(void **state)
{
	h_test_setup(state);
	if (!h__bed)
		return 0;
	if (h__bed->nats)
		h_nats_resume(*h__bed->nats); /* after a test that failed with it halted */
	for (size_t i = 0; i < H_BED_MOCKS; i++) {
		if (!h__bed->mocks[i].mock)
			continue;
		h_mock_reset(*h__bed->mocks[i].mock);
		if (h__bed->script)
			h_mock_script(*h__bed->mocks[i].mock, "%s", h__bed->script);
	}
	return 0;
}

int h__main(const char *name, const struct CMUnitTest *tests, size_t n, const struct h_bed *bed)
{
	h_init();
	h__bed = bed;
	int rc = _cmocka_run_group_tests(name, tests, n, h__bed_group_setup, h__bed_group_teardown);
	if (bed && bed->hard_exit)
		h_exit(rc);
	return rc;
}
