/*
 * test_policy.c - unit tests of the policy parser (policy/policy.c).
 *
 * Asserts what a user sees: the values a policy file yields, and the exact
 * "file:line: message" text of every kind of mistake.  policy_load() is
 * tested on real temporary files for its permission and ownership refusals.
 *
 * Build from the top of the tree:
 *   gcc -std=c11 -D_GNU_SOURCE -fsanitize=address,undefined \
 *       tests/unit/test_policy.c policy/policy.c -lcmocka
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../policy/policy.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static struct policy pol;
static struct policy_errors errs;

static int parse(const char *text)
{
	return policy_parse("t.ini", text, strlen(text), &pol, &errs);
}

static void parses(const char *text)
{
	int rc = parse(text);

	if (rc != 0)
		fail_msg("expected to parse, got %d errors, first: %s",
		         errs.count, errs.msg[0]);
	assert_int_equal(errs.count, 0);
}

/* The text fails with exactly one error, and this is its message. */
static void fails_with(const char *text, const char *message)
{
	assert_int_equal(parse(text), -1);
	assert_string_equal(errs.msg[0], message);
	assert_int_equal(errs.count, 1);
}

/* ------------------------------------------------------------------------ */
/* Defaults and every key                                                   */

static void defaults_are_specs(void **state)
{
	struct policy p;

	(void)state;
	memset(&p, 0x5a, sizeof p);
	policy_defaults(&p);
	assert_int_equal(p.scope, SCOPE_HOST);
	assert_int_equal(p.max_active, 0);
	assert_int_equal(p.max_connections, 0);
	assert_int_equal(p.max_connections_per_thread, 0);
	assert_int_equal(p.wait_timeout_ms, 30000);
	assert_int_equal(p.nested, NESTED_SHARE);
	assert_int_equal(p.cross_thread, CROSS_WARN);
	assert_int_equal(p.leak_report, 1);
	assert_int_equal(p.ro_enabled, 0);
	assert_string_equal(p.flag_file, "");
	assert_string_equal(p.primary, "");
	assert_string_equal(p.replica, "");
	assert_int_equal(p.on_switch, SWITCH_MIGRATE);
	assert_int_equal(p.drain_timeout_ms, 120000);
	assert_int_equal(p.in_transaction, INTX_KEEP);
	assert_string_equal(p.segment, "");
	assert_int_equal(p.on_error, ONERROR_FAIL_CLOSED);
	assert_string_equal(p.log, "stderr");
}

/* What a file caught between truncation and writing looks like is never a
 * policy (it would mean "every default, no cap"); one section is enough. */
static void empty_policies_are_errors(void **state)
{
	static const char empty[] =
	    "t.ini: empty policy: no section in it (a policy needs at least one, such as [cap])";
	struct policy d;

	(void)state;
	fails_with("", empty);
	fails_with("\n\n   \n", empty);
	fails_with("\n\n   \n# only a comment\n; and another\n", empty);
	fails_with("\xef\xbb\xbf", empty);
	assert_int_equal(policy_parse("t.ini", NULL, 0, &pol, &errs), -1);
	assert_string_equal(errs.msg[0], empty);

	policy_defaults(&d);
	parses("[cap]\n");
	assert_memory_equal(&pol, &d, sizeof d);
	parses("# every default\n[tracking]\n");
	assert_memory_equal(&pol, &d, sizeof d);
}

/* The example of SPEC.md, byte for byte, continuation comments included. */
static void specs_example_parses(void **state)
{
	(void)state;
	parses(
	    "[cap]\n"
	    "scope = host            # process | host | cluster  [host]\n"
	    "max_active = 4          # active transactions at once; 0 = no cap  [0]\n"
	    "max_connections = 20    # open connections at once; 0 = no cap  [0]\n"
	    "max_connections_per_thread = 2   # 0 = no limit  [0]\n"
	    "wait_timeout = 5s       # longest wait for a slot, then fail  [30s]\n"
	    "nested = share          # a thread that already holds a slot and needs another\n"
	    "                        # connection: share its slot | fail at once  [share]\n"
	    "\n"
	    "[tracking]\n"
	    "cross_thread = warn     # a connection used by a thread other than its opener:\n"
	    "                        # allow | warn | deny  [warn]\n"
	    "leak_report = yes       # at exit, report connections never closed  [yes]\n"
	    "\n"
	    "[read_only]\n"
	    "enabled = no            # yes: matched connections go to the replica  [no]\n"
	    "flag_file = /srv/app/read-only.txt   # read-only while this file exists\n"
	    "primary = host=db1 port=5432         # which connections are \"the primary\"\n"
	    "replica = host=db2 port=5433         # keywords that replace the primary's\n"
	    "on_switch = migrate     # migrate | reset  [migrate]\n"
	    "drain_timeout = 2m      # then connections still in a transaction are: ...\n"
	    "in_transaction = keep   # keep | terminate  [keep]\n"
	    "\n"
	    "[shim]\n"
	    "segment = myapp         # shared statistics/slot segment name [from policy path]\n"
	    "on_error = fail-closed  # fail-closed | fail-open when the policy can't be enforced\n"
	    "log = stderr            # stderr | syslog | a file path\n");
	assert_int_equal(pol.scope, SCOPE_HOST);
	assert_int_equal(pol.max_active, 4);
	assert_int_equal(pol.max_connections, 20);
	assert_int_equal(pol.max_connections_per_thread, 2);
	assert_int_equal(pol.wait_timeout_ms, 5000);
	assert_int_equal(pol.nested, NESTED_SHARE);
	assert_int_equal(pol.cross_thread, CROSS_WARN);
	assert_int_equal(pol.leak_report, 1);
	assert_int_equal(pol.ro_enabled, 0);
	assert_string_equal(pol.flag_file, "/srv/app/read-only.txt");
	assert_string_equal(pol.primary, "host=db1 port=5432");
	assert_string_equal(pol.replica, "host=db2 port=5433");
	assert_int_equal(pol.on_switch, SWITCH_MIGRATE);
	assert_int_equal(pol.drain_timeout_ms, 120000);
	assert_int_equal(pol.in_transaction, INTX_KEEP);
	assert_string_equal(pol.segment, "myapp");
	assert_int_equal(pol.on_error, ONERROR_FAIL_CLOSED);
	assert_string_equal(pol.log, "stderr");
}

static void every_non_default_value_parses(void **state)
{
	(void)state;
	parses("[cap]\nscope = cluster\nnested = fail\n"
	       "coordinator = host=db1 port=5432 dbname=postgres\n"
	       "[tracking]\ncross_thread = deny\nleak_report = no\nafter_fork = allow\n"
	       "[read_only]\nenabled = yes\nreplica = host=r\n"
	       "on_switch = reset\nin_transaction = terminate\n"
	       "[shim]\non_error = fail-open\nlog = syslog\ngroup = app\n"
	       "max_processes = 1024\nmax_tracked = 65536\n");
	assert_int_equal(pol.scope, SCOPE_CLUSTER);
	assert_int_equal(pol.scope_line, 2);
	assert_string_equal(pol.coordinator, "host=db1 port=5432 dbname=postgres");
	assert_int_equal(pol.after_fork, FORK_ALLOW);
	assert_string_equal(pol.group, "app");
	assert_int_equal(pol.max_processes, 1024);
	assert_int_equal(pol.max_tracked, 65536);
	assert_int_equal(pol.nlanes, 0);
	assert_int_equal(pol.nested, NESTED_FAIL);
	assert_int_equal(pol.cross_thread, CROSS_DENY);
	assert_int_equal(pol.leak_report, 0);
	assert_int_equal(pol.ro_enabled, 1);
	assert_string_equal(pol.replica, "host=r");
	assert_int_equal(pol.on_switch, SWITCH_RESET);
	assert_int_equal(pol.in_transaction, INTX_TERMINATE);
	assert_int_equal(pol.on_error, ONERROR_FAIL_OPEN);
	assert_string_equal(pol.log, "syslog");
}

static void enum_words_are_specs(void **state)
{
	static const struct { const char *text; int field_offset; int want; } cases[] = {
		{ "[cap]\nscope = process", offsetof(struct policy, scope), SCOPE_PROCESS },
		{ "[cap]\nscope = host", offsetof(struct policy, scope), SCOPE_HOST },
		{ "[cap]\nscope = CLUSTER\ncoordinator = host=c",
		  offsetof(struct policy, scope), SCOPE_CLUSTER },
		{ "[tracking]\nafter_fork = protect", offsetof(struct policy, after_fork),
		  FORK_PROTECT },
		{ "[tracking]\nafter_fork = Allow", offsetof(struct policy, after_fork),
		  FORK_ALLOW },
		{ "[cap]\nnested = share", offsetof(struct policy, nested), NESTED_SHARE },
		{ "[tracking]\ncross_thread = allow",
		  offsetof(struct policy, cross_thread), CROSS_ALLOW },
		{ "[read_only]\non_switch = migrate",
		  offsetof(struct policy, on_switch), SWITCH_MIGRATE },
		{ "[read_only]\nin_transaction = keep",
		  offsetof(struct policy, in_transaction), INTX_KEEP },
		{ "[shim]\non_error = Fail-Closed",
		  offsetof(struct policy, on_error), ONERROR_FAIL_CLOSED },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int got;

		parses(cases[i].text);
		memcpy(&got, (char *)&pol + cases[i].field_offset, sizeof got);
		assert_int_equal(got, cases[i].want);
	}
	fails_with("[cap]\nscope = global",
	           "t.ini:2: bad value \"global\" for scope: expected process, host or cluster");
	fails_with("[cap]\nnested = wait",
	           "t.ini:2: bad value \"wait\" for nested: expected share or fail");
	fails_with("[tracking]\ncross_thread = ignore",
	           "t.ini:2: bad value \"ignore\" for cross_thread: expected allow, warn or deny");
	fails_with("[read_only]\non_switch = move",
	           "t.ini:2: bad value \"move\" for on_switch: expected migrate or reset");
	fails_with("[read_only]\nin_transaction = kill",
	           "t.ini:2: bad value \"kill\" for in_transaction: expected keep or terminate");
	fails_with("[tracking]\nafter_fork = deny",
	           "t.ini:2: bad value \"deny\" for after_fork: expected protect or allow");
	fails_with("[shim]\non_error = fail_closed",
	           "t.ini:2: bad value \"fail_closed\" for on_error: "
	           "expected fail-closed or fail-open");
	assert_string_equal(policy_scope_word(SCOPE_PROCESS), "process");
	assert_string_equal(policy_scope_word(SCOPE_HOST), "host");
	assert_string_equal(policy_scope_word(SCOPE_CLUSTER), "cluster");
}

static void booleans_take_every_spelling(void **state)
{
	static const char *const yes[] = { "yes", "YES", "true", "True", "on", "ON" };
	static const char *const no[] = { "no", "No", "false", "FALSE", "off", "Off" };
	char text[64];

	(void)state;
	for (size_t i = 0; i < 6; i++) {
		snprintf(text, sizeof text, "[tracking]\nleak_report = %s\n", no[i]);
		parses(text);
		assert_int_equal(pol.leak_report, 0);
		snprintf(text, sizeof text, "[tracking]\nleak_report = %s\n", yes[i]);
		parses(text);
		assert_int_equal(pol.leak_report, 1);
	}
	fails_with("[tracking]\nleak_report = 1",
	           "t.ini:2: bad value \"1\" for leak_report: "
	           "expected yes or no (or true/false, on/off)");
	fails_with("[tracking]\nleak_report = yess",
	           "t.ini:2: bad value \"yess\" for leak_report: "
	           "expected yes or no (or true/false, on/off)");
}

/* ------------------------------------------------------------------------ */
/* Numbers and durations                                                    */

static void counts_are_whole_numbers_up_to_a_million(void **state)
{
	(void)state;
	parses("[cap]\nmax_active = 0\nmax_connections = 1000000\n"
	       "max_connections_per_thread = 007\n");
	assert_int_equal(pol.max_active, 0);
	assert_int_equal(pol.max_connections, 1000000);
	assert_int_equal(pol.max_connections_per_thread, 7);

	fails_with("[cap]\nmax_active = lots",
	           "t.ini:2: bad value \"lots\" for max_active: expected a whole number");
	fails_with("[cap]\nmax_active = 4x",
	           "t.ini:2: bad value \"4x\" for max_active: expected a whole number");
	fails_with("[cap]\nmax_active = 4.5",
	           "t.ini:2: bad value \"4.5\" for max_active: expected a whole number");
	fails_with("[cap]\nmax_active = +4",
	           "t.ini:2: bad value \"+4\" for max_active: expected a whole number");
	fails_with("[cap]\nmax_active = 0x10",
	           "t.ini:2: bad value \"0x10\" for max_active: expected a whole number");
	fails_with("[cap]\nmax_active = -1",
	           "t.ini:2: bad value \"-1\" for max_active: expected a whole number (0 or more)");
	fails_with("[cap]\nmax_active = 1000001",
	           "t.ini:2: bad value \"1000001\" for max_active: at most 1000000");
	fails_with("[cap]\nmax_connections = 99999999999999999999999999",
	           "t.ini:2: bad value \"99999999999999999999999999\" for max_connections: "
	           "at most 1000000");
	fails_with("[cap]\nmax_active =",
	           "t.ini:2: missing value for max_active: expected a whole number");
	fails_with("[cap]\nmax_active = 4 4",
	           "t.ini:2: bad value \"4 4\" for max_active: expected a whole number");
}

static void durations_need_a_unit(void **state)
{
	static const struct { const char *value; uint64_t ms; } ok[] = {
		{ "250ms", 250 }, { "5s", 5000 }, { "2m", 120000 }, { "1h", 3600000 },
		{ "0", 0 }, { "000", 0 }, { "0s", 0 }, { "0ms", 0 }, { "5 s", 5000 },
		{ "168h", 604800000 }, { "604800000ms", 604800000 },
		{ "10080m", 604800000 }, { "\"30s\"", 30000 },
	};
	char text[128];

	(void)state;
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		snprintf(text, sizeof text, "[cap]\nwait_timeout = %s\n", ok[i].value);
		parses(text);
		assert_int_equal(pol.wait_timeout_ms, ok[i].ms);
	}
	parses("[read_only]\ndrain_timeout = 90s");
	assert_int_equal(pol.drain_timeout_ms, 90000);

	fails_with("[cap]\nwait_timeout = 5",
	           "t.ini:2: bad value \"5\" for wait_timeout: a duration needs a unit, "
	           "as in 250ms, 5s, 2m or 1h");
	fails_with("[cap]\nwait_timeout = 1.5s",
	           "t.ini:2: bad value \"1.5s\" for wait_timeout: "
	           "expected a duration like 250ms, 5s, 2m or 1h");
	fails_with("[cap]\nwait_timeout = 5d",
	           "t.ini:2: bad value \"5d\" for wait_timeout: "
	           "expected a duration like 250ms, 5s, 2m or 1h");
	fails_with("[cap]\nwait_timeout = 5S",
	           "t.ini:2: bad value \"5S\" for wait_timeout: "
	           "expected a duration like 250ms, 5s, 2m or 1h");
	fails_with("[cap]\nwait_timeout = s",
	           "t.ini:2: bad value \"s\" for wait_timeout: "
	           "expected a duration like 250ms, 5s, 2m or 1h");
	fails_with("[cap]\nwait_timeout = -5s",
	           "t.ini:2: bad value \"-5s\" for wait_timeout: "
	           "expected a duration like 250ms, 5s, 2m or 1h");
	fails_with("[cap]\nwait_timeout = 169h",
	           "t.ini:2: bad value \"169h\" for wait_timeout: at most 7 days (168h)");
	fails_with("[cap]\nwait_timeout = 604800001ms",
	           "t.ini:2: bad value \"604800001ms\" for wait_timeout: at most 7 days (168h)");
	fails_with("[read_only]\ndrain_timeout = 18446744073709551617ms",
	           "t.ini:2: bad value \"18446744073709551617ms\" for drain_timeout: "
	           "at most 7 days (168h)");
	fails_with("[cap]\nwait_timeout = ",
	           "t.ini:2: missing value for wait_timeout: "
	           "expected a duration like 250ms, 5s, 2m or 1h");
}

/* ------------------------------------------------------------------------ */
/* Strings, paths, segment, log                                             */

static void strings_are_kept_up_to_their_limit(void **state)
{
	char text[1024], want[POLICY_STR_MAX + 1];

	(void)state;
	memset(want, 'x', POLICY_STR_MAX - 1);
	want[POLICY_STR_MAX - 1] = '\0';
	snprintf(text, sizeof text, "[read_only]\nprimary = %s\n", want);
	parses(text);
	assert_string_equal(pol.primary, want);

	snprintf(text, sizeof text, "[read_only]\nprimary = %sx\n", want);
	fails_with(text, "t.ini:2: value of primary is too long (256 bytes; at most 255)");

	parses("[read_only]\nprimary = host=db1 dbname='my db'\nreplica =\n");
	assert_string_equal(pol.primary, "host=db1 dbname='my db'");
	assert_string_equal(pol.replica, "");
	parses("[read_only]\nprimary = \"\"\n");
	assert_string_equal(pol.primary, "");
}

static void paths_must_be_absolute(void **state)
{
	(void)state;
	parses("[read_only]\nflag_file = /srv/app/ro flag.txt\nreplica = host=r\n");
	assert_string_equal(pol.flag_file, "/srv/app/ro flag.txt");
	fails_with("[read_only]\nflag_file = read-only.txt\nreplica = host=r\n",
	           "t.ini:2: bad value \"read-only.txt\" for flag_file: "
	           "expected an absolute path (starting with /)");

	parses("[shim]\nlog = /var/log/pqshim.log\n");
	assert_string_equal(pol.log, "/var/log/pqshim.log");
	parses("[shim]\nlog = SysLog\n");
	assert_string_equal(pol.log, "syslog");
	parses("[shim]\nlog = Stderr\n");
	assert_string_equal(pol.log, "stderr");
	fails_with("[shim]\nlog = pqshim.log",
	           "t.ini:2: bad value \"pqshim.log\" for log: "
	           "expected stderr, syslog or an absolute path");
	fails_with("[shim]\nlog =",
	           "t.ini:2: bad value \"\" for log: "
	           "expected stderr, syslog or an absolute path");
}

static void segment_names_are_file_name_safe(void **state)
{
	char text[256], name[80];

	(void)state;
	parses("[shim]\nsegment = my-app_2.prod\n");
	assert_string_equal(pol.segment, "my-app_2.prod");
	parses("[shim]\nsegment =\n");
	assert_string_equal(pol.segment, "");

	memset(name, 'a', 64);
	name[64] = '\0';
	snprintf(text, sizeof text, "[shim]\nsegment = %s\n", name);
	parses(text);
	assert_string_equal(pol.segment, name);
	snprintf(text, sizeof text, "[shim]\nsegment = %sa\n", name);
	assert_int_equal(parse(text), -1);
	assert_non_null(strstr(errs.msg[0], "for segment: expected 1 to 64 letters"));

	fails_with("[shim]\nsegment = my app",
	           "t.ini:2: bad value \"my app\" for segment: "
	           "expected 1 to 64 letters, digits, '.', '_' or '-'");
	fails_with("[shim]\nsegment = ../etc",
	           "t.ini:2: bad value \"../etc\" for segment: "
	           "expected 1 to 64 letters, digits, '.', '_' or '-'");
	fails_with("[shim]\nsegment = ..",
	           "t.ini:2: bad value \"..\" for segment: "
	           "expected 1 to 64 letters, digits, '.', '_' or '-'");
}

static void read_only_needs_a_replica(void **state)
{
	(void)state;
	fails_with("[read_only]\nprimary = host=db1\nenabled = yes\n",
	           "t.ini:3: [read_only] enabled = yes needs a replica "
	           "(the connection keywords to switch to)");
	fails_with("[read_only]\nflag_file = /srv/ro\n",
	           "t.ini:2: [read_only] flag_file needs a replica "
	           "(the connection keywords to switch to)");
	parses("[read_only]\nenabled = no\n");
	parses("[read_only]\nenabled = yes\nreplica = host=db2\n");
}

/* ------------------------------------------------------------------------ */
/* Syntax: comments, quotes, whitespace, sections                           */

static void comments_and_whitespace_are_ignored(void **state)
{
	(void)state;
	parses("# whole-line comment\n"
	       "; another kind\n"
	       "   # indented comment\n"
	       "\t[cap]   # after a section\n"
	       "max_active = 4   # trailing\n"
	       "\tmax_connections\t=\t20\t; trailing too\n"
	       "  wait_timeout=250ms\n");
	assert_int_equal(pol.max_active, 4);
	assert_int_equal(pol.max_connections, 20);
	assert_int_equal(pol.wait_timeout_ms, 250);

	/* '#' and ';' not after whitespace belong to the value. */
	parses("[read_only]\nflag_file = /srv/a#b;c\nreplica = host=r\n");
	assert_string_equal(pol.flag_file, "/srv/a#b;c");
	parses("[shim]\nsegment = x # y\n");
	assert_string_equal(pol.segment, "x");
	/* A value that is only a comment is empty. */
	parses("[read_only]\nprimary = # none\n");
	assert_string_equal(pol.primary, "");
}

static void quotes_keep_comment_characters(void **state)
{
	(void)state;
	parses("[read_only]\n"
	       "primary = \"host=db1 options='-c x=1' # not a comment\"   # a comment\n"
	       "replica = \"  spaced  \";comment\n");
	assert_string_equal(pol.primary, "host=db1 options='-c x=1' # not a comment");
	assert_string_equal(pol.replica, "  spaced  ");
	parses("[cap]\nmax_active = \"4\"\nscope = \"process\"\n");
	assert_int_equal(pol.max_active, 4);
	assert_int_equal(pol.scope, SCOPE_PROCESS);

	fails_with("[read_only]\nprimary = \"host=db1\n",
	           "t.ini:2: missing closing quote (\") in the value of primary");
	fails_with("[read_only]\nprimary = \"host=db1\" port=5432\n",
	           "t.ini:2: unexpected text after the closing quote in the value of primary");
	/* A quote inside an unquoted value is just a character. */
	parses("[read_only]\nprimary = a\"b\n");
	assert_string_equal(pol.primary, "a\"b");
}

static void line_endings_and_bom_are_tolerated(void **state)
{
	(void)state;
	parses("\xef\xbb\xbf[cap]\r\nmax_active = 3\r\nscope = process\r\n");
	assert_int_equal(pol.max_active, 3);
	assert_int_equal(pol.scope, SCOPE_PROCESS);
	parses("[cap]\nmax_active = 9");           /* no final newline */
	assert_int_equal(pol.max_active, 9);
	/* Line numbers count CRLF lines like LF lines. */
	fails_with("[cap]\r\n\r\nmax_activ = 1\r\n",
	           "t.ini:3: unknown key \"max_activ\" in [cap] (did you mean \"max_active\"?)");
}

static void sections_merge_and_ignore_case(void **state)
{
	(void)state;
	parses("[cap]\nmax_active = 1\n[tracking]\nleak_report = no\n"
	       "[ CAP ]\nmax_connections = 2\n[Cap]\nMax_Connections_Per_Thread = 3\n");
	assert_int_equal(pol.max_active, 1);
	assert_int_equal(pol.max_connections, 2);
	assert_int_equal(pol.max_connections_per_thread, 3);
	assert_int_equal(pol.leak_report, 0);
}

/* Keys split on the first '=', so conninfo values keep theirs. */
static void values_may_contain_equals_signs(void **state)
{
	(void)state;
	parses("[read_only]\nreplica=host=db2 port=5433\n");
	assert_string_equal(pol.replica, "host=db2 port=5433");
}

/* ------------------------------------------------------------------------ */
/* Each kind of error, exactly as the user reads it                         */

static void unknown_keys_are_named_with_a_hint(void **state)
{
	(void)state;
	fails_with("[cap]\nmax_activ = 4\n",
	           "t.ini:2: unknown key \"max_activ\" in [cap] (did you mean \"max_active\"?)");
	fails_with("[tracking]\nscope = host\n",
	           "t.ini:2: unknown key \"scope\" in [tracking] (scope belongs in [cap])");
	fails_with("[cap]\ncolour = blue\n",
	           "t.ini:2: unknown key \"colour\" in [cap]");
	fails_with("[cap]\nmax active = 4\n",
	           "t.ini:2: unknown key \"max active\" in [cap] (did you mean \"max_active\"?)");
}

static void keys_outside_sections_are_errors(void **state)
{
	(void)state;
	fails_with("scope = host\n[cap]\n",
	           "t.ini:1: key \"scope\" outside of any section (it belongs in [cap])");
	fails_with("# header\nfoo = 1\n",
	           "t.ini:2: key \"foo\" outside of any section");
}

static void unknown_sections_are_errors(void **state)
{
	(void)state;
	fails_with("[capp]\nmax_active = 4\n",
	           "t.ini:1: unknown section [capp] (did you mean [cap]?)");
	fails_with("[database]\nhost = x\nport = 1\n",
	           "t.ini:1: unknown section [database] "
	           "(expected [cap], [tracking], [read_only], [shim] or [lane \"NAME\"])");
	fails_with("[]\n", "t.ini:1: unknown section [] "
	           "(expected [cap], [tracking], [read_only], [shim] or [lane \"NAME\"])");
	fails_with("[cap\nmax_active = 4\n",
	           "t.ini:1: missing \"]\" at the end of section header \"[cap\"");
	fails_with("[cap] max_active = 4\n",
	           "t.ini:1: unexpected text after [cap]");
	/* After a bad header its keys are skipped, the next good one counts. */
	assert_int_equal(parse("[capp]\nmax_active = 4\n[cap]\nmax_activ = 4\n"), -1);
	assert_int_equal(errs.count, 2);
	assert_string_equal(errs.msg[1], "t.ini:4: unknown key \"max_activ\" in [cap] "
	                    "(did you mean \"max_active\"?)");
}

static void duplicate_keys_are_errors(void **state)
{
	(void)state;
	fails_with("[cap]\n\nmax_active = 4\nmax_connections = 8\nmax_active = 5\n",
	           "t.ini:5: duplicate key \"max_active\" in [cap] (first set on line 3)");
	fails_with("[cap]\nmax_active = 4\n[tracking]\n[cap]\nMAX_ACTIVE = 4\n",
	           "t.ini:5: duplicate key \"max_active\" in [cap] (first set on line 2)");
}

static void malformed_lines_are_errors(void **state)
{
	(void)state;
	fails_with("[cap]\nmax_active 4\n",
	           "t.ini:2: missing \"=\" in \"max_active 4\" (expected key = value)");
	fails_with("[cap]\n= 4\n", "t.ini:2: missing key before \"=\"");
	/* Control characters are shown escaped, long text is cut. */
	fails_with("[cap]\nab\x01\x1b[31m\n",
	           "t.ini:2: missing \"=\" in \"ab\\x01\\x1b[31m\" (expected key = value)");
}

static void nul_bytes_are_errors(void **state)
{
	static const char text[] = "[cap]\nmax_active = 4\0junk\nscope = host\n";

	(void)state;
	assert_int_equal(policy_parse("t.ini", text, sizeof text - 1, &pol, &errs), -1);
	assert_int_equal(errs.count, 1);
	assert_string_equal(errs.msg[0],
	                    "t.ini:2: line contains a NUL byte (is this a text file?)");
}

static void long_lines_are_errors(void **state)
{
	static char text[5000];

	(void)state;
	/* 4096 bytes is the longest line taken. */
	memset(text, ' ', 4096);
	memcpy(text, "# x", 3);
	strcpy(text + 4096, "\n[cap]\n");
	parses(text);

	/* One byte more is an error, and only that line is lost. */
	memset(text, ' ', 4097);
	memcpy(text, "# x", 3);
	strcpy(text + 4097, "\n[cap]\nmax_active = 1\n");
	fails_with(text, "t.ini:1: line too long (more than 4096 bytes)");
}

static void input_need_not_be_terminated(void **state)
{
	/* Only the first len bytes count; what follows must not be read. */
	static const char text[] = "[cap]\nmax_active = 12345";

	(void)state;
	assert_int_equal(policy_parse("t.ini", text, sizeof text - 4, &pol, &errs), 0);
	assert_int_equal(pol.max_active, 12);
}

static void errors_are_counted_beyond_those_kept(void **state)
{
	char text[4096];
	size_t o = 0;

	(void)state;
	o += (size_t)snprintf(text + o, sizeof text - o, "[cap]\n");
	for (int i = 0; i < 40; i++)
		o += (size_t)snprintf(text + o, sizeof text - o, "bogus%d = 1\n", i);
	assert_int_equal(parse(text), -1);
	assert_int_equal(errs.count, 40);
	assert_string_equal(errs.msg[0], "t.ini:2: unknown key \"bogus0\" in [cap]");
	assert_string_equal(errs.msg[POLICY_MAX_ERRORS - 1],
	                    "t.ini:17: unknown key \"bogus15\" in [cap]");
}

static void every_error_is_reported_with_its_line(void **state)
{
	(void)state;
	assert_int_equal(parse("[cap]\n"
	                       "max_active = lots\n"
	                       "wait_timeout = 5\n"
	                       "[tracking]\n"
	                       "leak_report = maybe\n"), -1);
	assert_int_equal(errs.count, 3);
	assert_string_equal(errs.msg[0], "t.ini:2: bad value \"lots\" for max_active: "
	                    "expected a whole number");
	assert_string_equal(errs.msg[1], "t.ini:3: bad value \"5\" for wait_timeout: "
	                    "a duration needs a unit, as in 250ms, 5s, 2m or 1h");
	assert_string_equal(errs.msg[2], "t.ini:5: bad value \"maybe\" for leak_report: "
	                    "expected yes or no (or true/false, on/off)");
}

static void out_is_untouched_on_error(void **state)
{
	struct policy before, out;
	struct policy_errors e;

	(void)state;
	memset(&before, 0x77, sizeof before);
	out = before;
	assert_int_equal(policy_parse("t.ini", "[cap]\nmax_active = 4\nbad\n", 24,
	                              &out, &e), -1);
	assert_memory_equal(&out, &before, sizeof out);
	/* errs is optional. */
	assert_int_equal(policy_parse("t.ini", "bad", 3, &out, NULL), -1);
	assert_memory_equal(&out, &before, sizeof out);
	assert_int_equal(policy_parse("t.ini", "", 0, &out, NULL), -1);
	assert_memory_equal(&out, &before, sizeof out);
}

static void values_in_messages_are_shortened(void **state)
{
	char text[512];

	(void)state;
	snprintf(text, sizeof text, "[cap]\nmax_active = %0200d\n", 7);
	text[strlen(text) - 2] = 'x';      /* make it not a number */
	assert_int_equal(parse(text), -1);
	assert_int_equal(errs.count, 1);
	assert_string_equal(errs.msg[0], "t.ini:2: bad value \"0000000000000000000000000000"
	                    "00000000000000000000000000000000...\" for max_active: "
	                    "expected a whole number");
}

/* ------------------------------------------------------------------------ */
/* The examples shipped in policy/examples/                                 */

static void examples_parse(void **state)
{
	static const char *const names[] = { "tracking-only.ini", "cap.ini", "read-only.ini",
	                                     "shared-group.ini", "lanes.ini", "cluster.ini" };
	char dir[PATH_MAX], path[PATH_MAX + 64], *slash;

	(void)state;
	/* Found from this source file, so the test runs from the tree's top. */
	snprintf(dir, sizeof dir, "%s", __FILE__);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char buf[8192];
		size_t n;
		FILE *f;

		snprintf(path, sizeof path, "%s/../../policy/examples/%s", dir, names[i]);
		f = fopen(path, "r");
		if (!f) {
			print_message("cannot open %s; skipped\n", path);
			skip();
		}
		n = fread(buf, 1, sizeof buf, f);
		fclose(f);
		if (policy_parse(path, buf, n, &pol, &errs) != 0)
			fail_msg("%s", errs.msg[0]);
	}
}

/* ------------------------------------------------------------------------ */
/* policy_load                                                              */

static char tmp_path[64];

static void write_policy(const char *text, mode_t mode)
{
	int fd;

	strcpy(tmp_path, "/tmp/test_policy_XXXXXX");
	fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(tmp_path, mode), 0);
}

static void load_reads_a_private_file(void **state)
{
	(void)state;
	write_policy("[cap]\nmax_active = 4\n", 0600);
	assert_int_equal(policy_load(tmp_path, &pol, &errs), 0);
	assert_int_equal(pol.max_active, 4);
	assert_int_equal(chmod(tmp_path, 0644), 0);
	assert_int_equal(policy_load(tmp_path, &pol, &errs), 0);
	unlink(tmp_path);
}

static void load_follows_symlinks(void **state)
{
	char link[80];

	(void)state;
	write_policy("[cap]\nmax_active = 5\n", 0600);
	snprintf(link, sizeof link, "%s.link", tmp_path);
	assert_int_equal(symlink(tmp_path, link), 0);
	assert_int_equal(policy_load(link, &pol, &errs), 0);
	assert_int_equal(pol.max_active, 5);
	unlink(link);
	unlink(tmp_path);
}

static void load_refuses_writable_files(void **state)
{
	char want[256];

	(void)state;
	write_policy("[cap]\nmax_active = 4\n", 0666);
	memset(&pol, 0x33, sizeof pol);
	assert_int_equal(policy_load(tmp_path, &pol, &errs), -1);
	assert_int_equal(errs.count, 1);
	snprintf(want, sizeof want, "%s: refused: group- or world-writable (mode 0666); "
	         "chmod go-w %s", tmp_path, tmp_path);
	assert_string_equal(errs.msg[0], want);
	assert_int_equal(pol.max_active, 0x33333333);

	assert_int_equal(chmod(tmp_path, 0620), 0);
	assert_int_equal(policy_load(tmp_path, &pol, &errs), -1);
	snprintf(want, sizeof want, "%s: refused: group- or world-writable (mode 0620); "
	         "chmod go-w %s", tmp_path, tmp_path);
	assert_string_equal(errs.msg[0], want);
	unlink(tmp_path);
}

static void load_refuses_files_of_other_users(void **state)
{
	char want[256];

	(void)state;
	if (geteuid() != 0) {
		print_message("not root: cannot give a file away; skipped\n");
		skip();
	}
	write_policy("[cap]\nmax_active = 4\n", 0644);
	assert_int_equal(chown(tmp_path, 65534, 65534), 0);
	assert_int_equal(policy_load(tmp_path, &pol, &errs), -1);
	assert_int_equal(errs.count, 1);
	snprintf(want, sizeof want, "%s: refused: owned by uid 65534, not by you or root",
	         tmp_path);
	assert_string_equal(errs.msg[0], want);
	unlink(tmp_path);
}

static void load_refuses_what_is_not_a_file(void **state)
{
	char dir[] = "/tmp/test_policy_dir_XXXXXX", fifo[64], want[256];

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(policy_load(dir, &pol, &errs), -1);
	snprintf(want, sizeof want, "%s: refused: a directory, not a policy file", dir);
	assert_string_equal(errs.msg[0], want);

	/* A FIFO must be refused, not waited on. */
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(policy_load(fifo, &pol, &errs), -1);
	snprintf(want, sizeof want, "%s: refused: not a regular file", fifo);
	assert_string_equal(errs.msg[0], want);
	unlink(fifo);

	snprintf(fifo, sizeof fifo, "%s/missing.ini", dir);
	assert_int_equal(policy_load(fifo, &pol, &errs), -1);
	snprintf(want, sizeof want, "%s: cannot open: No such file or directory", fifo);
	assert_string_equal(errs.msg[0], want);
	rmdir(dir);

	assert_int_equal(policy_load(NULL, &pol, &errs), -1);
	assert_string_equal(errs.msg[0], "policy: no policy file named");
}

static void load_refuses_huge_files(void **state)
{
	char want[256];

	(void)state;
	write_policy("", 0600);
	assert_int_equal(truncate(tmp_path, 1024 * 1024 + 1), 0);
	assert_int_equal(policy_load(tmp_path, &pol, &errs), -1);
	snprintf(want, sizeof want, "%s: refused: larger than 1 MiB (1048577 bytes)",
	         tmp_path);
	assert_string_equal(errs.msg[0], want);
	unlink(tmp_path);
}

static void load_names_the_file_in_parse_errors(void **state)
{
	char want[256];

	(void)state;
	write_policy("[cap]\n\nmax_active = -3\n", 0600);
	assert_int_equal(policy_load(tmp_path, &pol, &errs), -1);
	snprintf(want, sizeof want, "%s:3: bad value \"-3\" for max_active: "
	         "expected a whole number (0 or more)", tmp_path);
	assert_string_equal(errs.msg[0], want);
	unlink(tmp_path);
}

/* ------------------------------------------------------------------------ */
/* Segment names                                                            */

static void segment_name_prefers_the_policys(void **state)
{
	char buf[80];

	(void)state;
	policy_defaults(&pol);
	strcpy(pol.segment, "myapp");
	policy_segment_name(&pol, "/etc/pqshim/app.ini", buf, sizeof buf);
	assert_string_equal(buf, "myapp");
}

static void segment_name_without_a_path_is_default(void **state)
{
	char buf[80];

	(void)state;
	policy_defaults(&pol);
	policy_segment_name(&pol, NULL, buf, sizeof buf);
	assert_string_equal(buf, "default");
	policy_segment_name(NULL, NULL, buf, sizeof buf);
	assert_string_equal(buf, "default");
}

static void segment_name_is_derived_from_the_path(void **state)
{
	char a[80], b[80];

	(void)state;
	policy_defaults(&pol);
	/* FNV-1a 32 of "/etc/pqshim/app.ini" is 2e9526ab. */
	policy_segment_name(&pol, "/etc/pqshim/app.ini", a, sizeof a);
	assert_string_equal(a, "p-app-2e9526ab");
	/* Stable, and the same for the same file however it is spelt. */
	policy_segment_name(&pol, "/etc/pqshim/app.ini", b, sizeof b);
	assert_string_equal(a, b);
	policy_segment_name(&pol, "/etc//pqshim/./x/../app.ini", b, sizeof b);
	assert_string_equal(b, "p-app-2e9526ab");
	/* Another directory, another segment. */
	policy_segment_name(&pol, "/srv/pqshim/app.ini", b, sizeof b);
	assert_string_not_equal(a, b);
	assert_memory_equal(b, "p-app-", 6);
	/* No extension, or only a leading dot: the whole name stays. */
	policy_segment_name(&pol, "/srv/policy", b, sizeof b);
	assert_string_equal(b, "p-policy-9948d526");
}

static void segment_name_is_sanitised(void **state)
{
	char buf[80];

	(void)state;
	policy_defaults(&pol);
	policy_segment_name(&pol, "/etc/my app!.ini", buf, sizeof buf);
	assert_string_equal(buf, "p-my_app_-bf6f0503");
	policy_segment_name(&pol, "/etc/a-very-long-policy-name-that-goes-on-and-on.ini",
	                    buf, sizeof buf);
	assert_int_equal(strlen(buf), 2 + 32 + 1 + 8);
	assert_memory_equal(buf, "p-a-very-long-policy-name-that-goe-", 2 + 32 + 1);
	for (const char *c = buf; *c; c++)
		assert_non_null(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		                       "0123456789._-", *c));
	/* A small buffer gets a terminated prefix. */
	policy_segment_name(&pol, "/etc/pqshim/app.ini", buf, 6);
	assert_string_equal(buf, "p-app");
}

static void segment_name_of_a_relative_path_is_absolute(void **state)
{
	char cwd[PATH_MAX], full[PATH_MAX + 16], a[80], b[80];

	(void)state;
	policy_defaults(&pol);
	assert_non_null(getcwd(cwd, sizeof cwd));
	snprintf(full, sizeof full, "%s/app.ini", cwd);
	policy_segment_name(&pol, "app.ini", a, sizeof a);
	policy_segment_name(&pol, full, b, sizeof b);
	assert_string_equal(a, b);
	policy_segment_name(&pol, "./sub/../app.ini", a, sizeof a);
	assert_string_equal(a, b);
}

/* A broken policy still names its segment, so that the shim and the tool
 * agree on where the error shows. */
static void segment_recovered_from_a_broken_policy(void **state)
{
	(void)state;
	char path[] = "/tmp/pqshim-test-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "[cap]\nmax_active = lots\n[shim]\n  segment = app-1.x\ngarbage\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char out[64] = "untouched";
	policy_recover_segment(path, out, sizeof out);
	assert_string_equal(out, "app-1.x");
	unlink(path);
	strcpy(out, "untouched");
	policy_recover_segment(path, out, sizeof out);   /* gone: out left alone */
	assert_string_equal(out, "untouched");
}

/* ------------------------------------------------------------------------ */
/* This round's keys: [cap] coordinator, [tracking] after_fork, [shim]       */
/* group, max_processes, max_tracked                                        */

static void cluster_scope_needs_a_coordinator(void **state)
{
	(void)state;
	static const struct { const char *text, *coordinator; unsigned scope_line; } good[] = {
		{ "[cap]\ncoordinator = postgresql://db1:5432/postgres\nscope = cluster\n",
		  "postgresql://db1:5432/postgres", 3 },
		{ "[cap]\nscope = cluster\ncoordinator = \"host=db1 application_name='a b'\"\n",
		  "host=db1 application_name='a b'", 2 },
		{ "[cap]\nscope = host\n", "", 2 },
	};

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		parses(good[i].text);
		assert_string_equal(pol.coordinator, good[i].coordinator);
		assert_int_equal(pol.scope_line, good[i].scope_line);
	}

	fails_with("[cap]\nmax_active = 4\nscope = cluster\n",
	           "t.ini:3: scope = cluster needs a coordinator (the conninfo of the "
	           "PostgreSQL server that keeps the cluster's slots)");
	fails_with("[cap]\nscope = cluster\ncoordinator =\n",
	           "t.ini:3: missing value for coordinator: expected connection keywords, "
	           "as in host=db1 port=5432 dbname=postgres");
	fails_with("[cap]\nscope = cluster\ncoordinator = \"  \"\n",
	           "t.ini:3: bad value \"  \" for coordinator: expected keyword=value pairs "
	           "(host=db1 port=5432 dbname=postgres) or a postgresql:// URI");
	fails_with("[cap]\nscope = cluster\ncoordinator = db1\n",
	           "t.ini:3: bad value \"db1\" for coordinator: expected keyword=value pairs "
	           "(host=db1 port=5432 dbname=postgres) or a postgresql:// URI");
	fails_with("[cap]\ncoordinator = host=db1\n",
	           "t.ini:2: coordinator is used only with scope = cluster "
	           "(add scope = cluster, or remove coordinator)");
	fails_with("[cap]\nscope = process\ncoordinator = host=db1\n",
	           "t.ini:3: coordinator is used only with scope = cluster "
	           "(add scope = cluster, or remove coordinator)");
	fails_with("[shim]\ncoordinator = host=db1\n",
	           "t.ini:2: unknown key \"coordinator\" in [shim] (coordinator belongs in [cap])");
	fails_with("[cap]\ncoordinater = host=db1\n",
	           "t.ini:2: unknown key \"coordinater\" in [cap] (did you mean \"coordinator\"?)");
}

static void group_is_a_group_name(void **state)
{
	static const char *const good[] = { "app", "_svc-web.1", "",
	                                    "abcdefghijabcdefghijabcdefghij12" };
	static const char *const bad[] = { "abcdefghijabcdefghijabcdefghij123", "-app",
	                                   "\"web app\"", "a/b" };
	char text[128], want[256];

	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		snprintf(text, sizeof text, "[shim]\ngroup = %s\n", good[i]);
		parses(text);
		assert_string_equal(pol.group, good[i]);   /* "": owner only, the default */
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *shown = bad[i][0] == '"' ? "web app" : bad[i];

		snprintf(text, sizeof text, "[shim]\ngroup = %s\n", bad[i]);
		snprintf(want, sizeof want, "t.ini:2: bad value \"%s\" for group: expected a "
		         "group name (1 to 32 letters, digits, '.', '_' or '-', not starting "
		         "with '-')", shown);
		fails_with(text, want);
	}
	fails_with("[shim]\ngroup = 1000\n",
	           "t.ini:2: bad value \"1000\" for group: expected the group's name, not its number");
	fails_with("[shim]\ngruop = app\n",
	           "t.ini:2: unknown key \"gruop\" in [shim] (did you mean \"group\"?)");
}

static void table_sizes_are_bounded(void **state)
{
	static const struct { const char *key; unsigned max; } sizes[] = {
		{ "max_processes", 65536 }, { "max_tracked", 1048576 },
	};

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		const char *k = sizes[i].key;
		unsigned max = sizes[i].max;
		char text[128], want[256];

		snprintf(text, sizeof text, "[shim]\n%s = 1\n", k);
		parses(text);
		snprintf(text, sizeof text, "[shim]\n%s = %u\n", k, max);
		parses(text);
		assert_int_equal(i == 0 ? pol.max_processes : pol.max_tracked, max);

		snprintf(text, sizeof text, "[shim]\n%s = 0\n", k);
		snprintf(want, sizeof want, "t.ini:2: bad value \"0\" for %s: at least 1", k);
		fails_with(text, want);
		snprintf(text, sizeof text, "[shim]\n%s = %u\n", k, max + 1);
		snprintf(want, sizeof want, "t.ini:2: bad value \"%u\" for %s: at most %u",
		         max + 1, k, max);
		fails_with(text, want);
		snprintf(text, sizeof text, "[shim]\n%s = 99999999999999999999999\n", k);
		snprintf(want, sizeof want, "t.ini:2: bad value \"99999999999999999999999\" "
		         "for %s: at most %u", k, max);
		fails_with(text, want);
		snprintf(text, sizeof text, "[shim]\n%s = -5\n", k);
		snprintf(want, sizeof want, "t.ini:2: bad value \"-5\" for %s: "
		         "expected a whole number (1 or more)", k);
		fails_with(text, want);
	}
	parses("[shim]\nmax_processes = 1\nmax_tracked = 1\n");
	assert_int_equal(pol.max_processes, 1);
	assert_int_equal(pol.max_tracked, 1);
	fails_with("[shim]\nmax_processes = many\n",
	           "t.ini:2: bad value \"many\" for max_processes: expected a whole number");
	fails_with("[cap]\nmax_processes = 10\n",
	           "t.ini:2: unknown key \"max_processes\" in [cap] (max_processes belongs in [shim])");
}

/* ------------------------------------------------------------------------ */
/* [lane "NAME"]                                                            */

static void lanes_parse_in_file_order(void **state)
{
	(void)state;
	parses("[cap]\n"
	       "max_active = 4\n"
	       "wait_timeout = 5s\n"
	       "[lane \"migrations\"]\n"
	       "match = application_name=migrate-*\n"
	       "max_active = 1\n"
	       "exclusive = yes\n"
	       "priority = 10\n"
	       "wait_timeout = 10m\n"
	       "[lane \"web requests\"]   # free text between the quotes\n"
	       "match = program=gunicorn*, user=web ,dbname = app,application_name=\"w\"\n"
	       "priority = -5\n"
	       "[ LANE \"a]b\" ]\n"
	       "match = \"user=x\"\n");
	assert_int_equal(pol.max_active, 4);
	assert_int_equal(pol.nlanes, 3);

	assert_string_equal(pol.lanes[0].name, "migrations");
	assert_int_equal(pol.lanes[0].line, 4);
	assert_int_equal(pol.lanes[0].nmatch, 1);
	assert_int_equal(pol.lanes[0].match[0].kind, MATCH_APPLICATION_NAME);
	assert_string_equal(pol.lanes[0].match[0].pattern, "migrate-*");
	assert_int_equal(pol.lanes[0].max_active, 1);
	assert_int_equal(pol.lanes[0].exclusive, 1);
	assert_int_equal(pol.lanes[0].priority, 10);
	assert_int_equal(pol.lanes[0].wait_timeout_ms, 600000);

	assert_string_equal(pol.lanes[1].name, "web requests");
	assert_int_equal(pol.lanes[1].line, 10);
	assert_int_equal(pol.lanes[1].nmatch, 4);
	assert_int_equal(pol.lanes[1].match[0].kind, MATCH_PROGRAM);
	assert_string_equal(pol.lanes[1].match[0].pattern, "gunicorn*");
	assert_int_equal(pol.lanes[1].match[1].kind, MATCH_USER);
	assert_string_equal(pol.lanes[1].match[1].pattern, "web");
	assert_int_equal(pol.lanes[1].match[2].kind, MATCH_DBNAME);
	assert_string_equal(pol.lanes[1].match[2].pattern, "app");
	assert_int_equal(pol.lanes[1].match[3].kind, MATCH_APPLICATION_NAME);
	assert_string_equal(pol.lanes[1].match[3].pattern, "\"w\"");
	assert_int_equal(pol.lanes[1].max_active, 0);
	assert_int_equal(pol.lanes[1].exclusive, 0);
	assert_int_equal(pol.lanes[1].priority, -5);
	/* No wait_timeout of its own: the cap's. */
	assert_int_equal(pol.lanes[1].wait_timeout_ms, 5000);

	assert_string_equal(pol.lanes[2].name, "a]b");
	assert_int_equal(pol.lanes[2].match[0].kind, MATCH_USER);
	assert_string_equal(pol.lanes[2].match[0].pattern, "x");
}

static void a_lane_gets_the_caps_wait_timeout_wherever_it_is_set(void **state)
{
	(void)state;
	parses("[lane \"r\"]\nmatch = user=r\n[cap]\nwait_timeout = 2s\n");
	assert_int_equal(pol.lanes[0].wait_timeout_ms, 2000);
	parses("[lane \"r\"]\nmatch = user=r\n");
	assert_int_equal(pol.lanes[0].wait_timeout_ms, 30000);
	parses("[lane \"r\"]\nmatch = user=r\nwait_timeout = 0\n[cap]\nwait_timeout = 2s\n");
	assert_int_equal(pol.lanes[0].wait_timeout_ms, 0);
	/* A lane's cap above the global one is accepted: the global one holds. */
	parses("[cap]\nmax_active = 2\n[lane \"r\"]\nmatch = user=r\nmax_active = 8\n");
	assert_int_equal(pol.lanes[0].max_active, 8);
}

static void lane_headers_are_checked(void **state)
{
	char text[4096], want[256];
	size_t o = 0;

	(void)state;
	fails_with("[lane]\nmatch = user=x\n",
	           "t.ini:1: missing lane name: expected [lane \"NAME\"]");
	fails_with("[lane ]\n", "t.ini:1: missing lane name: expected [lane \"NAME\"]");
	fails_with("[lane web]\nmatch = user=x\n",
	           "t.ini:1: the lane's name goes between double quotes: expected [lane \"NAME\"]");
	fails_with("[lane \"web]\nmatch = user=x\n",
	           "t.ini:1: missing closing quote (\") in the lane's name");
	fails_with("[lane \"web\"\n",
	           "t.ini:1: missing \"]\" after the lane's name in [lane \"web\"");
	fails_with("[lane \"web\"] x\n", "t.ini:1: unexpected text after [lane \"web\"]");
	fails_with("[lane \"web\" x]\n", "t.ini:1: missing \"]\" after the lane's name in [lane \"web\"");
	fails_with("[lane \"\"]\nmatch = user=x\n",
	           "t.ini:1: empty lane name: give the lane a name, as in [lane \"reports\"]");
	fails_with("[lane \"a\tb\"]\n", "t.ini:1: lane name \"a\\x09b\" contains a control character");
	fails_with("[lane \"0123456789012345678901234567890123456789012345678901234567890123\"]\n",
	           "t.ini:1: lane name \"012345678901234567890123456789012345678901234567890123456789..."
	           "\" is too long (64 bytes; at most 63)");
	parses("[lane \"012345678901234567890123456789012345678901234567890123456789012\"]\n"
	       "match = user=x\n");
	assert_int_equal(strlen(pol.lanes[0].name), 63);
	fails_with("[lane \"web\"]\nmatch = user=a\n[lane \"Web\"]\nmatch = user=b\n",
	           "t.ini:3: duplicate lane \"Web\" (first on line 1)");
	fails_with("[lanes \"web\"]\nmatch = user=a\n",
	           "t.ini:1: unknown section [lanes \\\"web\\\"] (did you mean [lane \"NAME\"]?)");
	fails_with("[lane \"web\"]\nmax_active = 2\n",
	           "t.ini:1: [lane \"web\"] has no match (which connections go in it?)");

	/* As many lanes as POLICY_MAX_LANES, and an error naming the limit beyond. */
	for (int i = 0; i < POLICY_MAX_LANES; i++)
		o += (size_t)snprintf(text + o, sizeof text - o, "[lane \"l%d\"]\nmatch = user=u%d\n", i, i);
	parses(text);
	assert_int_equal(pol.nlanes, POLICY_MAX_LANES);
	assert_string_equal(pol.lanes[POLICY_MAX_LANES - 1].name, "l15");
	snprintf(text + o, sizeof text - o, "[lane \"one more\"]\nmatch = user=x\n");
	snprintf(want, sizeof want, "t.ini:%d: too many lanes (at most %d)",
	         2 * POLICY_MAX_LANES + 1, POLICY_MAX_LANES);
	fails_with(text, want);
}

static void lane_keys_are_checked(void **state)
{
	(void)state;
	fails_with("[lane \"web\"]\nmatch = user=a\nnested = fail\n",
	           "t.ini:3: unknown key \"nested\" in [lane \"web\"] (nested belongs in [cap])");
	fails_with("[lane \"web\"]\nmatch = user=a\npriorty = 1\n",
	           "t.ini:3: unknown key \"priorty\" in [lane \"web\"] (did you mean \"priority\"?)");
	fails_with("[lane \"web\"]\nmatch = user=a\nmax_active = 1\nmax_active = 2\n",
	           "t.ini:4: duplicate key \"max_active\" in [lane \"web\"] (first set on line 3)");
	/* The same key in two lanes is no duplicate. */
	parses("[lane \"a\"]\nmatch = user=a\npriority = 1\n[lane \"b\"]\nmatch = user=b\npriority = 2\n");
	assert_int_equal(pol.lanes[1].priority, 2);
	fails_with("[cap]\nexclusive = yes\n",
	           "t.ini:2: unknown key \"exclusive\" in [cap] (exclusive belongs in [lane \"NAME\"])");
	fails_with("match = user=a\n",
	           "t.ini:1: key \"match\" outside of any section (it belongs in [lane \"NAME\"])");
	fails_with("[lane \"web\"]\nmatch = user=a\nexclusive = maybe\n",
	           "t.ini:3: bad value \"maybe\" for exclusive: expected yes or no (or true/false, on/off)");
	fails_with("[lane \"web\"]\nmatch = user=a\nmax_active = -1\n",
	           "t.ini:3: bad value \"-1\" for max_active: expected a whole number (0 or more)");
	fails_with("[lane \"web\"]\nmatch = user=a\nwait_timeout = 10\n",
	           "t.ini:3: bad value \"10\" for wait_timeout: a duration needs a unit, "
	           "as in 250ms, 5s, 2m or 1h");
	/* Keys under a refused header are not misfiled into the lane before it. */
	fails_with("[lane \"a\"]\nmatch = user=a\n[lane \"a\"]\nmax_active = 3\n",
	           "t.ini:3: duplicate lane \"a\" (first on line 1)");
	assert_int_equal(parse("[lane \"a\"]\nmatch = user=a\n[lane \"a\"]\nmax_active = 3\n"), -1);
}

static void priorities_are_signed(void **state)
{
	(void)state;
	parses("[lane \"a\"]\nmatch = user=a\npriority = +3\n");
	assert_int_equal(pol.lanes[0].priority, 3);
	parses("[lane \"a\"]\nmatch = user=a\npriority = -1000000\n");
	assert_int_equal(pol.lanes[0].priority, -1000000);
	parses("[lane \"a\"]\nmatch = user=a\npriority = 1000000\n");
	assert_int_equal(pol.lanes[0].priority, 1000000);
	fails_with("[lane \"a\"]\nmatch = user=a\npriority = high\n",
	           "t.ini:3: bad value \"high\" for priority: expected a whole number (negative allowed)");
	fails_with("[lane \"a\"]\nmatch = user=a\npriority = -\n",
	           "t.ini:3: bad value \"-\" for priority: expected a whole number (negative allowed)");
	fails_with("[lane \"a\"]\nmatch = user=a\npriority = 1.5\n",
	           "t.ini:3: bad value \"1.5\" for priority: expected a whole number (negative allowed)");
	fails_with("[lane \"a\"]\nmatch = user=a\npriority =\n",
	           "t.ini:3: missing value for priority: expected a whole number (negative allowed)");
	fails_with("[lane \"a\"]\nmatch = user=a\npriority = -1000001\n",
	           "t.ini:3: bad value \"-1000001\" for priority: from -1000000 to 1000000");
}

static void match_conditions_are_checked(void **state)
{
	(void)state;
#define IN_LANE(m) "[lane \"a\"]\nmatch = " m "\n"
	fails_with(IN_LANE(""), "t.ini:2: missing value for match: expected KIND=PATTERN, ... "
	           "(program, application_name, user or dbname)");
	fails_with(IN_LANE("app=web"),
	           "t.ini:2: unknown kind \"app\" in match: expected program, application_name, "
	           "user or dbname");
	fails_with(IN_LANE("applicaton_name=web"),
	           "t.ini:2: unknown kind \"applicaton_name\" in match (did you mean "
	           "\"application_name\"?)");
	fails_with(IN_LANE("usr=web"),
	           "t.ini:2: unknown kind \"usr\" in match (did you mean \"user\"?)");
	fails_with(IN_LANE("user"), "t.ini:2: condition \"user\" in match has no \"=\": "
	           "expected KIND=PATTERN, as in application_name=web-*");
	fails_with(IN_LANE("user="), "t.ini:2: empty pattern for user in match");
	fails_with(IN_LANE("user= , dbname=x"), "t.ini:2: empty pattern for user in match");
	fails_with(IN_LANE("user=a,,dbname=b"), "t.ini:2: empty condition in match (a comma too many?)");
	fails_with(IN_LANE("user=a,"), "t.ini:2: empty condition in match (a comma too many?)");
	fails_with(IN_LANE(",user=a"), "t.ini:2: empty condition in match (a comma too many?)");
	fails_with(IN_LANE("user=a, user=b"),
	           "t.ini:2: user appears twice in match (every condition must hold)");
	fails_with(IN_LANE("program=a, application_name=b, user=c, dbname=d, user=e"),
	           "t.ini:2: too many conditions in match (at most 4)");
	fails_with(IN_LANE("user=app*"),
	           "t.ini:2: user in match takes an exact name, not a pattern (\"app*\")");
	fails_with(IN_LANE("dbname=*"),
	           "t.ini:2: dbname in match takes an exact name, not a pattern (\"*\")");
	fails_with(IN_LANE("program=0123456789012345678901234567890123456789012345678901234567890123"),
	           "t.ini:2: pattern for program in match is too long (64 bytes; at most 63)");
	fails_with("[lane \"a\"]\nmatch = user=a\nmatch = user=b\n",
	           "t.ini:3: duplicate key \"match\" in [lane \"a\"] (first set on line 2)");
	/* Kinds ignore case; patterns keep theirs; '=' may appear in a pattern. */
	parses(IN_LANE("Program=Web*, APPLICATION_NAME=a=b"));
	assert_int_equal(pol.lanes[0].match[0].kind, MATCH_PROGRAM);
	assert_string_equal(pol.lanes[0].match[0].pattern, "Web*");
	assert_string_equal(pol.lanes[0].match[1].pattern, "a=b");
#undef IN_LANE
}

/* ------------------------------------------------------------------------ */
/* What this build refuses                                                  */

static void cluster_and_lanes_pass_once_built(void **state)
{
	struct policy_errors e;

	(void)state;
	parses("[cap]\nmax_active = 2\n\nscope = cluster\ncoordinator = host=c\n"
	       "[lane \"web\"]\nmatch = user=web\n[lane \"batch\"]\nmatch = user=batch\n");
	e.count = 0;
	if (!POLICY_HAS_CLUSTER && !POLICY_HAS_LANES) {
		assert_int_equal(policy_unsupported(&pol, "t.ini", &e), -1);
		assert_int_equal(e.count, 3);
		assert_string_equal(e.msg[0], "t.ini:4: scope = cluster is not supported by this build yet");
		assert_string_equal(e.msg[1], "t.ini:6: [lane \"web\"]: lanes are not supported "
		                    "by this build yet");
		assert_string_equal(e.msg[2], "t.ini:8: [lane \"batch\"]: lanes are not supported "
		                    "by this build yet");
	}
	if (POLICY_HAS_LANES) {
		/* lanes are built: only what is not is refused */
		parses("[cap]\nmax_active = 2\n\nscope = cluster\ncoordinator = host=c\n"
		       "[lane \"web\"]\nmatch = user=web\n[lane \"batch\"]\nmatch = user=batch\n");
		e.count = 0;
		if (POLICY_HAS_CLUSTER) {
			/* both built: lanes with scope = cluster pass too (issue 14) */
			assert_int_equal(policy_unsupported(&pol, "t.ini", &e), 0);
			assert_int_equal(e.count, 0);
		} else {
			assert_int_equal(policy_unsupported(&pol, "t.ini", &e), -1);
			assert_int_equal(e.count, 1);
		}
		/* scope = cluster alone passes */
		parses("[cap]\nmax_active = 2\nscope = cluster\ncoordinator = host=c\n");
		e.count = 0;
		assert_int_equal(policy_unsupported(&pol, "t.ini", &e), POLICY_HAS_CLUSTER ? 0 : -1);
		parses("[cap]\nmax_active = 2\n[lane \"web\"]\nmatch = user=web\n");
		e.count = 0;
		assert_int_equal(policy_unsupported(&pol, "t.ini", &e), 0);
		assert_int_equal(e.count, 0);
	}
	/* What is built passes. */
	parses("[cap]\nscope = host\nmax_active = 2\n");
	e.count = 0;
	assert_int_equal(policy_unsupported(&pol, "t.ini", &e), 0);
	assert_int_equal(e.count, 0);
}

/* ------------------------------------------------------------------------ */
/* Telling a finished write from one caught half-way                        */

#define MS 1000000ll
#define SEC 1000000000ll

static struct stat stat_at(ino_t ino, off_t size, int64_t changed_ns)
{
	struct stat st;

	memset(&st, 0, sizeof st);
	st.st_ino = ino;
	st.st_size = size;
	st.st_mode = S_IFREG | 0600;
	st.st_mtim.tv_sec = st.st_ctim.tv_sec = changed_ns / SEC;
	st.st_mtim.tv_nsec = st.st_ctim.tv_nsec = changed_ns % SEC;
	return st;
}

static void a_change_is_taken_once_quiet(void **state)
{
	struct policy_settle s = { 0 };
	struct stat applied = stat_at(1, 40, 100 * SEC);
	struct stat truncated = stat_at(1, 0, 1000 * SEC);
	struct stat half = stat_at(1, 6, 1000 * SEC + 300 * MS);
	struct stat whole = stat_at(1, 40, 1000 * SEC + 600 * MS);
	uint64_t wait = 0, mono = 5 * SEC;
	int64_t real = 1000 * SEC + 10 * MS;

	(void)state;
	assert_int_equal(policy_settle_look(&s, &applied, &applied, mono, real, &wait),
	                 POLICY_FILE_SAME);
	/* Truncated 10 ms ago: wait for the rest of the half second. */
	assert_int_equal(policy_settle_look(&s, &applied, &truncated, mono, real, &wait),
	                 POLICY_FILE_SETTLING);
	assert_int_equal(wait, POLICY_SETTLE_MS - 10);
	/* A first part written 300 ms later, then a pause of 300 ms: never quiet long enough. */
	assert_int_equal(policy_settle_look(&s, &applied, &half, mono + 310 * MS,
	                                    real + 300 * MS, &wait), POLICY_FILE_SETTLING);
	assert_int_equal(policy_settle_look(&s, &applied, &half, mono + 590 * MS,
	                                    real + 580 * MS, &wait), POLICY_FILE_SETTLING);
	assert_int_equal(wait, POLICY_SETTLE_MS - 290);    /* quiet 290 ms by its ctime */
	/* The rest: quiet 500 ms after its last write, and not before. */
	assert_int_equal(policy_settle_look(&s, &applied, &whole, mono + 700 * MS,
	                                    real + 690 * MS, &wait), POLICY_FILE_SETTLING);
	assert_int_equal(policy_settle_look(&s, &applied, &whole, mono + 1095 * MS,
	                                    real + 1085 * MS, &wait), POLICY_FILE_SETTLING);
	assert_int_equal(wait, 5);
	assert_int_equal(policy_settle_look(&s, &applied, &whole, mono + 1100 * MS,
	                                    real + 1090 * MS, &wait), POLICY_FILE_SETTLED);
	/* Applied: the same again. */
	assert_int_equal(policy_settle_look(&s, &whole, &whole, mono + 1600 * MS,
	                                    real + 1590 * MS, &wait), POLICY_FILE_SAME);
	/* A file renamed in place long after it was written is taken at once. */
	assert_int_equal(policy_settle_look(&s, &whole, &applied, mono + 2 * SEC,
	                                    real + 2 * SEC, &wait), POLICY_FILE_SETTLED);
}

static void a_change_time_in_the_future_is_not_trusted(void **state)
{
	struct policy_settle s = { 0 };
	struct stat applied = stat_at(1, 40, 100 * SEC);
	struct stat ahead = stat_at(2, 40, 2000 * SEC);   /* a skewed clock */
	struct stat old = stat_at(3, 40, 10 * SEC);
	uint64_t wait = 0, mono = 7 * SEC;
	int64_t real = 1000 * SEC;

	(void)state;
	/* Only the process's own clock counts: two looks 500 ms apart. */
	assert_int_equal(policy_settle_look(&s, &applied, &ahead, mono, real, &wait),
	                 POLICY_FILE_SETTLING);
	assert_int_equal(wait, POLICY_SETTLE_MS);
	assert_int_equal(policy_settle_look(&s, &applied, &ahead, mono + 499 * MS, real, &wait),
	                 POLICY_FILE_SETTLING);
	assert_int_equal(policy_settle_look(&s, &applied, &ahead, mono + 500 * MS, real, &wait),
	                 POLICY_FILE_SETTLED);
	/* Another change meanwhile starts the count again (here: old enough by its clock). */
	s.seen_ns = 0;
	assert_int_equal(policy_settle_look(&s, &applied, &ahead, mono, real, &wait),
	                 POLICY_FILE_SETTLING);
	assert_int_equal(policy_settle_look(&s, &applied, &old, mono + 10 * MS, real, &wait),
	                 POLICY_FILE_SETTLED);
}

/* ------------------------------------------------------------------------ */
/* Reading rules                                                            */

static void load_refuses_devices_at_once(void **state)
{
	char out[64] = "untouched";

	(void)state;
	assert_int_equal(policy_load("/dev/zero", &pol, &errs), -1);
	assert_string_equal(errs.msg[0], "/dev/zero: refused: not a regular file");
	assert_int_equal(errs.count, 1);
	assert_int_equal(policy_load("/dev/null", &pol, &errs), -1);
	assert_string_equal(errs.msg[0], "/dev/null: refused: not a regular file");
	/* The recovery of a broken policy reads under the same rules: no spin. */
	policy_recover_segment("/dev/zero", out, sizeof out);
	assert_string_equal(out, "untouched");
	assert_int_equal(policy_recover_on_error("/dev/zero"), ONERROR_FAIL_CLOSED);
	policy_recover_segment("/tmp", out, sizeof out);
	assert_string_equal(out, "untouched");
	policy_recover_segment(NULL, out, sizeof out);
	assert_string_equal(out, "untouched");
}

static void recovery_does_not_wait_on_a_fifo(void **state)
{
	char dir[] = "/tmp/test_policy_dir_XXXXXX", fifo[64], out[64] = "untouched";

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	policy_recover_segment(fifo, out, sizeof out);
	assert_string_equal(out, "untouched");
	assert_int_equal(policy_recover_on_error(fifo), ONERROR_FAIL_CLOSED);
	unlink(fifo);
	rmdir(dir);
}

static void recovery_refuses_huge_files(void **state)
{
	char out[64] = "untouched";

	(void)state;
	write_policy("[shim]\nsegment = big\non_error = fail-open\n", 0600);
	policy_recover_segment(tmp_path, out, sizeof out);
	assert_string_equal(out, "big");
	assert_int_equal(policy_recover_on_error(tmp_path), ONERROR_FAIL_OPEN);
	assert_int_equal(truncate(tmp_path, POLICY_FILE_MAX + 1), 0);
	strcpy(out, "untouched");
	policy_recover_segment(tmp_path, out, sizeof out);
	assert_string_equal(out, "untouched");
	assert_int_equal(policy_recover_on_error(tmp_path), ONERROR_FAIL_CLOSED);
	unlink(tmp_path);
}

/* A file holding `text` does not load: its first error is its path then
 * `suffix`, and pol is left alone. */
static void file_fails_with(const char *text, const char *suffix)
{
	char want[512];

	write_policy(text, 0600);
	memset(&pol, 0x33, sizeof pol);
	assert_int_equal(policy_load(tmp_path, &pol, &errs), -1);
	snprintf(want, sizeof want, "%s%s", tmp_path, suffix);
	assert_string_equal(errs.msg[0], want);
	assert_int_equal(pol.max_active, 0x33333333);
	unlink(tmp_path);
}

static void load_refuses_empty_files(void **state)
{
	static const char empty[] =
	    ": empty policy: no section in it (a policy needs at least one, such as [cap])";

	(void)state;
	file_fails_with("", empty);
	file_fails_with("# nothing yet\n\n", empty);
	/* At the size bound exactly, the file is read (its NUL padding is
	 * refused on its line). */
	write_policy("[cap]\nmax_active = 3\n#", 0600);
	assert_int_equal(truncate(tmp_path, POLICY_FILE_MAX), 0);
	assert_int_equal(policy_load(tmp_path, &pol, &errs), -1);
	assert_non_null(strstr(errs.msg[0], ":3: line too long (more than 4096 bytes)"));
	unlink(tmp_path);
}

static void load_refuses_what_this_build_does_not_do(void **state)
{
	(void)state;
	if (!POLICY_HAS_LANES)
		file_fails_with("[cap]\nmax_active = 2\n[lane \"web\"]\nmatch = user=web\n",
		                ":3: [lane \"web\"]: lanes are not supported by this build yet");
	if (!POLICY_HAS_CLUSTER)
		file_fails_with("[cap]\nscope = cluster\ncoordinator = host=db1\n",
		                ":2: scope = cluster is not supported by this build yet");
	if (POLICY_HAS_LANES && POLICY_HAS_CLUSTER) {
		/* lanes across hosts: loaded whole, an exclusive lane and a capped one */
		write_policy("[cap]\nmax_active = 2\nscope = cluster\ncoordinator = host=db1\n"
		             "[lane \"web\"]\nmatch = user=web\nmax_active = 1\n"
		             "[lane \"migrations\"]\nmatch = application_name=migrate-*\n"
		             "exclusive = yes\n", 0600);
		assert_int_equal(policy_load(tmp_path, &pol, &errs), 0);
		assert_int_equal(pol.scope, SCOPE_CLUSTER);
		assert_int_equal(pol.nlanes, 2);
		assert_int_equal(pol.lanes[0].max_active, 1);
		assert_int_equal(pol.lanes[1].exclusive, 1);
		unlink(tmp_path);
	}
	if (POLICY_HAS_LANES) {
		/* the example of every use of lanes loads whole */
		write_policy("[cap]\nmax_active = 4\n[lane \"migrations\"]\n"
		             "match = application_name=migrate-*\nexclusive = yes\n"
		             "[lane \"reports\"]\nmatch = program=report*\nmax_active = 1\n"
		             "[lane \"web\"]\nmatch = user=web\npriority = 10\n", 0600);
		assert_int_equal(policy_load(tmp_path, &pol, &errs), 0);
		assert_int_equal(pol.nlanes, 3);
		assert_int_equal(pol.lanes[0].exclusive, 1);
		assert_int_equal(pol.lanes[1].max_active, 1);
		assert_int_equal(pol.lanes[2].priority, 10);
		unlink(tmp_path);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_are_specs),
		cmocka_unit_test(empty_policies_are_errors),
		cmocka_unit_test(specs_example_parses),
		cmocka_unit_test(every_non_default_value_parses),
		cmocka_unit_test(enum_words_are_specs),
		cmocka_unit_test(booleans_take_every_spelling),
		cmocka_unit_test(counts_are_whole_numbers_up_to_a_million),
		cmocka_unit_test(durations_need_a_unit),
		cmocka_unit_test(strings_are_kept_up_to_their_limit),
		cmocka_unit_test(paths_must_be_absolute),
		cmocka_unit_test(segment_names_are_file_name_safe),
		cmocka_unit_test(read_only_needs_a_replica),
		cmocka_unit_test(comments_and_whitespace_are_ignored),
		cmocka_unit_test(quotes_keep_comment_characters),
		cmocka_unit_test(line_endings_and_bom_are_tolerated),
		cmocka_unit_test(sections_merge_and_ignore_case),
		cmocka_unit_test(values_may_contain_equals_signs),
		cmocka_unit_test(unknown_keys_are_named_with_a_hint),
		cmocka_unit_test(keys_outside_sections_are_errors),
		cmocka_unit_test(unknown_sections_are_errors),
		cmocka_unit_test(duplicate_keys_are_errors),
		cmocka_unit_test(malformed_lines_are_errors),
		cmocka_unit_test(nul_bytes_are_errors),
		cmocka_unit_test(long_lines_are_errors),
		cmocka_unit_test(input_need_not_be_terminated),
		cmocka_unit_test(errors_are_counted_beyond_those_kept),
		cmocka_unit_test(every_error_is_reported_with_its_line),
		cmocka_unit_test(out_is_untouched_on_error),
		cmocka_unit_test(values_in_messages_are_shortened),
		cmocka_unit_test(examples_parse),
		cmocka_unit_test(load_reads_a_private_file),
		cmocka_unit_test(load_follows_symlinks),
		cmocka_unit_test(load_refuses_writable_files),
		cmocka_unit_test(load_refuses_files_of_other_users),
		cmocka_unit_test(load_refuses_what_is_not_a_file),
		cmocka_unit_test(load_refuses_huge_files),
		cmocka_unit_test(load_names_the_file_in_parse_errors),
		cmocka_unit_test(segment_name_prefers_the_policys),
		cmocka_unit_test(segment_name_without_a_path_is_default),
		cmocka_unit_test(segment_name_is_derived_from_the_path),
		cmocka_unit_test(segment_name_is_sanitised),
		cmocka_unit_test(segment_name_of_a_relative_path_is_absolute),
		cmocka_unit_test(segment_recovered_from_a_broken_policy),
		cmocka_unit_test(cluster_scope_needs_a_coordinator),
		cmocka_unit_test(group_is_a_group_name),
		cmocka_unit_test(table_sizes_are_bounded),
		cmocka_unit_test(lanes_parse_in_file_order),
		cmocka_unit_test(a_lane_gets_the_caps_wait_timeout_wherever_it_is_set),
		cmocka_unit_test(lane_headers_are_checked),
		cmocka_unit_test(lane_keys_are_checked),
		cmocka_unit_test(priorities_are_signed),
		cmocka_unit_test(match_conditions_are_checked),
		cmocka_unit_test(cluster_and_lanes_pass_once_built),
		cmocka_unit_test(a_change_is_taken_once_quiet),
		cmocka_unit_test(a_change_time_in_the_future_is_not_trusted),
		cmocka_unit_test(load_refuses_devices_at_once),
		cmocka_unit_test(recovery_does_not_wait_on_a_fifo),
		cmocka_unit_test(recovery_refuses_huge_files),
		cmocka_unit_test(load_refuses_empty_files),
		cmocka_unit_test(load_refuses_what_this_build_does_not_do),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
