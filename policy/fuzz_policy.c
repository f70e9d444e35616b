/*
 * fuzz_policy.c - libFuzzer target for the policy parser.
 *
 * Feeds arbitrary bytes to policy_parse() and checks the promises of
 * policy.h that a crash alone would not reveal: on error *out is untouched
 * and every message is a terminated "fuzz:..." string; on success every
 * string field is terminated, every enum and bound is in range, every lane
 * has a match and a wait_timeout, and what this build refuses is refused
 * with "fuzz:..." messages.  Also derives the segment name of whatever
 * parsed.
 *
 * Build: make fuzz (build/fuzz_policy).  Run, seeded with the examples and
 * the edge cases of policy/corpus/ (new inputs go to the first directory):
 *   mkdir -p build/corpus && build/fuzz_policy -max_total_time=120 \
 *       build/corpus policy/examples policy/corpus
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
	CHECK((unsigned)p->after_fork <= FORK_ALLOW);
	CHECK(p->max_processes >= 1 && p->max_processes <= 65536);
	CHECK(p->max_tracked >= 1 && p->max_tracked <= 1048576);
	CHECK(p->scope != SCOPE_CLUSTER || p->coordinator[0] != '\0');
	check_terminated(p->coordinator, sizeof p->coordinator);
	check_terminated(p->group, sizeof p->group);
	CHECK(p->nlanes >= 0 && p->nlanes <= POLICY_MAX_LANES);
	for (int i = 0; i < p->nlanes; i++) {
		const struct policy_lane *l = &p->lanes[i];

		check_terminated(l->name, sizeof l->name);
		CHECK(l->name[0] != '\0' && l->line > 0);
		CHECK(l->nmatch >= 1 && l->nmatch <= LANE_MAX_MATCH);
		for (int m = 0; m < l->nmatch; m++) {
			CHECK((unsigned)l->match[m].kind <= MATCH_DBNAME);
			check_terminated(l->match[m].pattern, sizeof l->match[m].pattern);
			CHECK(l->match[m].pattern[0] != '\0');
		}
		CHECK(l->exclusive == 0 || l->exclusive == 1);
		CHECK(l->wait_timeout_ms <= 7ull * 24 * 3600 * 1000);
	}
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
	static struct policy_errors errs, refused;
	char segment[128];

	/* A pattern no parse produces, to see that a failed parse left it alone. */
	memset(&untouched, 0xa5, sizeof untouched);
	out = untouched;
	if (policy_parse("fuzz", (const char *)data, size, &out, &errs) == 0) {
		CHECK(errs.count == 0);
		check_policy_is_whole(&out);
		refused.count = 0;
		if (policy_unsupported(&out, "fuzz", &refused) != 0) {
			CHECK(refused.count > 0);
			CHECK(strncmp(refused.msg[0], "fuzz:", 5) == 0);
		}
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
