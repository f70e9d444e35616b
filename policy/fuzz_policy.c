/*
 * fuzz_policy.c - libFuzzer target for the policy parser.
 *
 * Feeds arbitrary bytes to policy_parse() and checks the promises of
 * policy.h that a crash alone would not reveal: on error *out is untouched
 * and every message is a terminated "fuzz:..." string; on success every
 * string field is terminated and every enum is in range.  Also derives the
 * segment name of whatever parsed.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *            policy/fuzz_policy.c policy/policy.c -o /tmp/fuzz_policy
 * Seed it with the files in policy/examples/.
 */
#include "policy.h"

#include <stdlib.h>
#include <string.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_terminated(const char *s, size_t size)
{
	CHECK(memchr(s, '\0', size) != NULL);
}

static void check_policy_is_whole(const struct policy *p)
{
	CHECK((unsigned)p->scope <= SCOPE_CLUSTER);
	CHECK((unsigned)p->nested <= NESTED_FAIL);
	CHECK((unsigned)p->cross_thread <= CROSS_DENY);
	CHECK((unsigned)p->on_switch <= SWITCH_RESET);
	CHECK((unsigned)p->in_transaction <= INTX_TERMINATE);
	CHECK((unsigned)p->on_error <= ONERROR_FAIL_OPEN);
	CHECK(p->leak_report == 0 || p->leak_report == 1);
	CHECK(p->ro_enabled == 0 || p->ro_enabled == 1);
	check_terminated(p->flag_file, sizeof p->flag_file);
	check_terminated(p->primary, sizeof p->primary);
	check_terminated(p->replica, sizeof p->replica);
	check_terminated(p->segment, sizeof p->segment);
	check_terminated(p->log, sizeof p->log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct policy out, untouched;
	static struct policy_errors errs;
	char segment[128];

	/* A pattern no parse produces, to see that a failed parse left it alone. */
	memset(&untouched, 0xa5, sizeof untouched);
	out = untouched;
	if (policy_parse("fuzz", (const char *)data, size, &out, &errs) == 0) {
		CHECK(errs.count == 0);
		check_policy_is_whole(&out);
		policy_segment_name(&out, "/etc/pqshim/fuzz.ini", segment, sizeof segment);
		check_terminated(segment, sizeof segment);
	} else {
		CHECK(errs.count > 0);
		CHECK(memcmp(&out, &untouched, sizeof out) == 0);
		for (int i = 0; i < errs.count && i < POLICY_MAX_ERRORS; i++) {
			check_terminated(errs.msg[i], sizeof errs.msg[i]);
			CHECK(strncmp(errs.msg[i], "fuzz:", 5) == 0);
		}
	}
	return 0;
}
