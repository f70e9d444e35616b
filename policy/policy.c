/*
 * policy.c - the policy parser: INI text in, a struct policy or a list of
 * "file:line: message" errors out.
 *
 * Owns policy_defaults(), policy_parse() and policy_scope_word().  Reading
 * the file from disk (bounds, refusals, partial writes) is policy_file.c.
 * The grammar and every key are in SPEC.md, section "The policy file"; the
 * choices SPEC leaves open are listed just below.
 *
 * Invariants:
 *  - policy_parse() is pure.  It reads only text[0 .. len-1], which need not
 *    be NUL-terminated and may hold any bytes: it works on (pointer, length)
 *    slices of the input and never copies a line, so it has no line buffer to
 *    overflow and never looks for a terminator that is not there.
 *  - It never half-applies: everything goes into a local struct policy, and
 *    *out is written only when the whole text parsed without error.
 *
 * Choices where SPEC is silent:
 *  - Section names, keys, booleans and enum words match case-insensitively
 *    (pgbouncer does the same); strings keep their case.
 *  - A comment may follow a value only after whitespace ("4  # four"), so
 *    "/srv/a#b" keeps its '#'.  Inside double quotes '#' and ';' are literal;
 *    there are no escapes (conninfo values quote with single quotes anyway).
 *  - Durations need a unit (ms, s, m, h); only a bare "0" may go without.
 *    "5 s" is accepted.  The longest duration is 7 days.
 *  - Counts are whole numbers from 0 to 1,000,000, except max_processes
 *    (1 to 65,536) and max_tracked (1 to 1,048,576); priority is signed.
 *  - flag_file and a log file must be absolute paths: every process that
 *    shares the policy must mean the same file whatever its working directory.
 *  - `segment` may be empty (= derive it); otherwise [A-Za-z0-9._-]{1,64},
 *    and not "." or "..".  `group` may be empty (= owner only); otherwise a
 *    name as useradd takes it, never a number.
 *  - [read_only] enabled = yes, or a flag_file, without a replica is an
 *    error: there would be nowhere to send the connections.  Likewise
 *    scope = cluster without a coordinator, and a coordinator without
 *    scope = cluster (one of the two is a mistake).
 *  - A text with no section header (empty, blanks, comments only) is an
 *    error, "empty policy": it is what a file caught between truncation and
 *    writing looks like, and it must not read as "every default, no cap".
 *  - [lane "NAME"]: the name is any text without a control byte or '"', up
 *    to 63 bytes, unique (ASCII case-insensitively); each lane needs a
 *    match; its keys may not repeat within it; match patterns hold no ','.
 *    user and dbname take exact names ('*' refused).  A lane's max_active
 *    above the global one is accepted (the global cap holds over it).
 *  - Keys under an unknown or malformed section header are skipped without
 *    more errors: the header's error already says what is wrong.
 *  - Lines end at '\n'; a '\r' before it (CRLF files) and a UTF-8 byte order
 *    mark at the very start are ignored.  At most one error per line.
 */
#include "policy_int.h"

#include <assert.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT_MAX        1000000u                /* upper bound of every count */
#define DURATION_MAX_MS  (7ull * 24 * 3600 * 1000) /* 7 days */
#define SEGMENT_MAX      64                      /* longest explicit segment name */
#define GROUP_MAX        32                      /* longest group name (useradd's) */
#define MAX_PROCESSES_MAX 65536u                 /* [shim] max_processes bounds */
#define MAX_TRACKED_MAX  1048576u                /* [shim] max_tracked bounds */
#define WAIT_UNSET       UINT64_MAX              /* a lane's wait_timeout, not given */

/* Enum fields are written through a generic int store; they must be ints. */
_Static_assert(sizeof(enum cap_scope) == sizeof(int), "enum size");
_Static_assert(sizeof(enum nested_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cross_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum switch_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum intx_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum onerror_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum fork_mode) == sizeof(int), "enum size");

/* ------------------------------------------------------------------------ */
/* The keys                                                                 */

enum section { SEC_NONE, SEC_CAP, SEC_TRACKING, SEC_READ_ONLY, SEC_SHIM, SEC_LANE, SEC_SKIP };

/* Indexed by enum section; SEC_NONE and SEC_SKIP have no name.  [lane] is
 * never written bare: its header is [lane "NAME"]. */
static const char *const section_names[] = {
	[SEC_CAP] = "cap",
	[SEC_TRACKING] = "tracking",
	[SEC_READ_ONLY] = "read_only",
	[SEC_SHIM] = "shim",
	[SEC_LANE] = "lane",
};

enum value_kind {
	KIND_ENUM,       /* one of key_def.words; stored as int */
	KIND_BOOL,       /* yes/no/true/false/on/off; stored as int 0/1 */
	KIND_COUNT,      /* 0 .. COUNT_MAX; stored as uint32_t */
	KIND_DURATION,   /* with unit, in ms; stored as uint64_t */
	KIND_STRING,     /* any text up to POLICY_STR_MAX - 1 bytes */
	KIND_ABS_PATH,   /* "" or an absolute path */
	KIND_SEGMENT,    /* "" or [A-Za-z0-9._-]{1,64} */
	KIND_LOG,        /* stderr | syslog | an absolute path */
	KIND_INT,        /* -COUNT_MAX .. COUNT_MAX; stored as int32_t */
	KIND_CONNINFO,   /* libpq keyword=value pairs or a URI, not empty */
	KIND_GROUP,      /* "" or a group name (its existence is the shim's to check) */
	KIND_MATCH,      /* a lane's KIND=PATTERN, ... (the current lane's conditions) */
};

/* Word lists are indexed by the enum's value, so the parsed index is the value. */
static const char *const scope_words[]   = { "process", "host", "cluster", NULL };
static const char *const nested_words[]  = { "share", "fail", NULL };
static const char *const cross_words[]   = { "allow", "warn", "deny", NULL };
static const char *const switch_words[]  = { "migrate", "reset", NULL };
static const char *const intx_words[]    = { "keep", "terminate", NULL };
static const char *const onerror_words[] = { "fail-closed", "fail-open", NULL };
static const char *const fork_words[]    = { "protect", "allow", NULL };
/* Indexed by enum match_kind. */
static const char *const match_words[]   = { "program", "application_name", "user",
                                             "dbname", NULL };

struct key_def {
	enum section section;
	const char *name;
	enum value_kind kind;
	size_t offset;                 /* of the field in struct policy, or in
	                                  struct policy_lane for SEC_LANE keys */
	const char *const *words;      /* KIND_ENUM only */
	uint32_t min, max;             /* KIND_COUNT bounds; 0, 0 = 0 .. COUNT_MAX */
};

#define FIELD(f) offsetof(struct policy, f)
#define LANE(f) offsetof(struct policy_lane, f)
#define KEY(sec, name, kind, offset, words) { sec, name, kind, offset, words, 0, 0 }
#define COUNT_IN(sec, name, offset, min, max) { sec, name, KIND_COUNT, offset, NULL, min, max }

static const struct key_def keys[] = {
	KEY(SEC_CAP, "scope", KIND_ENUM, FIELD(scope), scope_words),
	KEY(SEC_CAP, "coordinator", KIND_CONNINFO, FIELD(coordinator), NULL),
	KEY(SEC_CAP, "max_active", KIND_COUNT, FIELD(max_active), NULL),
	KEY(SEC_CAP, "max_connections", KIND_COUNT, FIELD(max_connections), NULL),
	KEY(SEC_CAP, "max_connections_per_thread", KIND_COUNT,
	    FIELD(max_connections_per_thread), NULL),
	KEY(SEC_CAP, "wait_timeout", KIND_DURATION, FIELD(wait_timeout_ms), NULL),
	KEY(SEC_CAP, "nested", KIND_ENUM, FIELD(nested), nested_words),

	KEY(SEC_TRACKING, "cross_thread", KIND_ENUM, FIELD(cross_thread), cross_words),
	KEY(SEC_TRACKING, "leak_report", KIND_BOOL, FIELD(leak_report), NULL),
	KEY(SEC_TRACKING, "after_fork", KIND_ENUM, FIELD(after_fork), fork_words),

	KEY(SEC_READ_ONLY, "enabled", KIND_BOOL, FIELD(ro_enabled), NULL),
	KEY(SEC_READ_ONLY, "flag_file", KIND_ABS_PATH, FIELD(flag_file), NULL),
	KEY(SEC_READ_ONLY, "primary", KIND_STRING, FIELD(primary), NULL),
	KEY(SEC_READ_ONLY, "replica", KIND_STRING, FIELD(replica), NULL),
	KEY(SEC_READ_ONLY, "on_switch", KIND_ENUM, FIELD(on_switch), switch_words),
	KEY(SEC_READ_ONLY, "drain_timeout", KIND_DURATION, FIELD(drain_timeout_ms), NULL),
	KEY(SEC_READ_ONLY, "in_transaction", KIND_ENUM, FIELD(in_transaction), intx_words),

	KEY(SEC_SHIM, "segment", KIND_SEGMENT, FIELD(segment), NULL),
	KEY(SEC_SHIM, "group", KIND_GROUP, FIELD(group), NULL),
	COUNT_IN(SEC_SHIM, "max_processes", FIELD(max_processes), 1, MAX_PROCESSES_MAX),
	COUNT_IN(SEC_SHIM, "max_tracked", FIELD(max_tracked), 1, MAX_TRACKED_MAX),
	KEY(SEC_SHIM, "on_error", KIND_ENUM, FIELD(on_error), onerror_words),
	KEY(SEC_SHIM, "log", KIND_LOG, FIELD(log), NULL),

	KEY(SEC_LANE, "match", KIND_MATCH, 0, NULL),
	KEY(SEC_LANE, "max_active", KIND_COUNT, LANE(max_active), NULL),
	KEY(SEC_LANE, "exclusive", KIND_BOOL, LANE(exclusive), NULL),
	KEY(SEC_LANE, "priority", KIND_INT, LANE(priority), NULL),
	KEY(SEC_LANE, "wait_timeout", KIND_DURATION, LANE(wait_timeout_ms), NULL),
};

enum { KEY_COUNT = sizeof keys / sizeof keys[0] };

void policy_defaults(struct policy *p)
{
	memset(p, 0, sizeof *p);
	p->scope = SCOPE_HOST;
	p->max_active = 0;
	p->max_connections = 0;
	p->max_connections_per_thread = 0;
	p->wait_timeout_ms = 30 * 1000;
	p->nested = NESTED_SHARE;

	p->cross_thread = CROSS_WARN;
	p->leak_report = 1;
	p->after_fork = FORK_PROTECT;

	p->ro_enabled = 0;
	p->on_switch = SWITCH_MIGRATE;
	p->drain_timeout_ms = 2 * 60 * 1000;
	p->in_transaction = INTX_KEEP;

	p->on_error = ONERROR_FAIL_CLOSED;
	strcpy(p->log, "stderr");
	p->max_processes = 512;
	p->max_tracked = 4096;
}

const char *policy_scope_word(enum cap_scope scope)
{
	if ((unsigned)scope < sizeof scope_words / sizeof scope_words[0] - 1)
		return scope_words[scope];
	return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Suggestions for misspelt names                                           */

static const char *section_resembling(const char *s, size_t n)
{
	for (int sec = SEC_CAP; sec <= SEC_SHIM; sec++)
		if (policy_typo_of(s, n, section_names[sec]))
			return section_names[sec];
	return NULL;
}

static const struct key_def *find_key(enum section sec, const char *s, size_t n)
{
	for (size_t k = 0; k < KEY_COUNT; k++)
		if (keys[k].section == sec && slice_equals_word(s, n, keys[k].name))
			return &keys[k];
	return NULL;
}

/* The key of that exact name in any section, to say where it belongs. */
static const struct key_def *find_key_anywhere(const char *s, size_t n)
{
	for (size_t k = 0; k < KEY_COUNT; k++)
		if (slice_equals_word(s, n, keys[k].name))
			return &keys[k];
	return NULL;
}

static const struct key_def *key_resembling(enum section sec, const char *s, size_t n)
{
	const struct key_def *best = NULL;
	unsigned best_d = UINT_MAX;

	for (size_t k = 0; k < KEY_COUNT; k++) {
		unsigned d;

		if (keys[k].section != sec || !policy_typo_of(s, n, keys[k].name))
			continue;
		d = policy_edit_distance(s, n, keys[k].name);
		if (d < best_d) {
			best = &keys[k];
			best_d = d;
		}
	}
	return best;
}

/* ------------------------------------------------------------------------ */
/* The parser                                                               */

#define LINE_MAX_BYTES 4096

struct parser {
	const char *name;                /* for messages */
	struct policy_errors *errs;
	struct policy pol;               /* filled here, copied out on success */
	enum section section;
	unsigned line;
	unsigned first_set[KEY_COUNT];   /* line a key was first set on, or 0;
	                                    a lane's keys: in the current lane */
	bool has_section;                /* a section header was seen */
	bool match_set[POLICY_MAX_LANES];/* a lane's match was given (maybe wrong) */
	char label[SHOW_BUF + 16];       /* the current section, for messages */
};

#define ERR(ps, ...) policy_add_error((ps)->errs, (ps)->name, (ps)->line, __VA_ARGS__)

/* The current lane: SEC_LANE is entered only once a lane was added. */
static struct policy_lane *current_lane(struct parser *ps)
{
	assert(ps->section == SEC_LANE && ps->pol.nlanes > 0);
	return &ps->pol.lanes[ps->pol.nlanes - 1];
}

/* Where a key's field lives: in the policy, or in the current lane. */
static char *field_of(struct parser *ps, const struct key_def *key)
{
	if (key->section == SEC_LANE)
		return (char *)current_lane(ps) + key->offset;
	return (char *)&ps->pol + key->offset;
}

/* "[cap]", or "[lane \"web\"]" inside a lane. */
static const char *section_label(const struct parser *ps, enum section sec)
{
	static const char *const bracketed[] = {
		[SEC_CAP] = "[cap]", [SEC_TRACKING] = "[tracking]",
		[SEC_READ_ONLY] = "[read_only]", [SEC_SHIM] = "[shim]",
		[SEC_LANE] = "[lane \"NAME\"]",
	};

	if (sec == SEC_LANE && ps->section == SEC_LANE)
		return ps->label;
	return bracketed[sec];
}

static void store_int(struct parser *ps, const struct key_def *key, int v)
{
	memcpy(field_of(ps, key), &v, sizeof v);
}

static void store_u32(struct parser *ps, const struct key_def *key, uint32_t v)
{
	memcpy(field_of(ps, key), &v, sizeof v);
}

static void store_u64(struct parser *ps, const struct key_def *key, uint64_t v)
{
	memcpy(field_of(ps, key), &v, sizeof v);
}

static void store_string(struct parser *ps, const struct key_def *key,
                         const char *s, size_t n)
{
	char *dst = field_of(ps, key);

	assert(n < POLICY_STR_MAX);
	memcpy(dst, s, n);
	dst[n] = '\0';
}

static void parse_enum(struct parser *ps, const struct key_def *key,
                       const char *v, size_t n)
{
	char shown[SHOW_BUF], expected[128];

	for (int i = 0; key->words[i]; i++) {
		if (slice_equals_word(v, n, key->words[i])) {
			store_int(ps, key, i);
			return;
		}
	}
	ERR(ps, "bad value \"%s\" for %s: expected %s", policy_show(shown, sizeof shown, v, n),
	    key->name, policy_list_words(expected, sizeof expected, key->words));
}

static void parse_bool(struct parser *ps, const struct key_def *key,
                       const char *v, size_t n)
{
	static const char *const yes[] = { "yes", "true", "on" };
	static const char *const no[] = { "no", "false", "off" };
	char shown[SHOW_BUF];

	for (size_t i = 0; i < 3; i++) {
		if (slice_equals_word(v, n, yes[i])) {
			store_int(ps, key, 1);
			return;
		}
		if (slice_equals_word(v, n, no[i])) {
			store_int(ps, key, 0);
			return;
		}
	}
	ERR(ps, "bad value \"%s\" for %s: expected yes or no (or true/false, on/off)",
	    policy_show(shown, sizeof shown, v, n), key->name);
}

static void parse_count(struct parser *ps, const struct key_def *key,
                        const char *v, size_t n)
{
	char shown[SHOW_BUF];
	uint32_t max = key->max ? key->max : COUNT_MAX;
	uint64_t value;

	if (n == 0) {
		ERR(ps, "missing value for %s: expected a whole number", key->name);
		return;
	}
	if (v[0] == '-' && all_digits(v + 1, n - 1)) {
		ERR(ps, "bad value \"%s\" for %s: expected a whole number (%u or more)",
		    policy_show(shown, sizeof shown, v, n), key->name, key->min);
		return;
	}
	if (!all_digits(v, n)) {
		ERR(ps, "bad value \"%s\" for %s: expected a whole number",
		    policy_show(shown, sizeof shown, v, n), key->name);
		return;
	}
	value = digits_value(v, n, max);
	if (value > max) {
		ERR(ps, "bad value \"%s\" for %s: at most %u",
		    policy_show(shown, sizeof shown, v, n), key->name, max);
		return;
	}
	if (value < key->min) {
		ERR(ps, "bad value \"%s\" for %s: at least %u",
		    policy_show(shown, sizeof shown, v, n), key->name, key->min);
		return;
	}
	store_u32(ps, key, (uint32_t)value);
}

/* A signed whole number: an optional sign, then digits. */
static void parse_int(struct parser *ps, const struct key_def *key,
                      const char *v, size_t n)
{
	char shown[SHOW_BUF];
	bool negative = n > 0 && v[0] == '-';
	size_t skip = n > 0 && (v[0] == '-' || v[0] == '+');
	uint64_t value;

	if (n == 0) {
		ERR(ps, "missing value for %s: expected a whole number (negative allowed)",
		    key->name);
		return;
	}
	if (!all_digits(v + skip, n - skip)) {
		ERR(ps, "bad value \"%s\" for %s: expected a whole number (negative allowed)",
		    policy_show(shown, sizeof shown, v, n), key->name);
		return;
	}
	value = digits_value(v + skip, n - skip, COUNT_MAX);
	if (value > COUNT_MAX) {
		ERR(ps, "bad value \"%s\" for %s: from -%u to %u",
		    policy_show(shown, sizeof shown, v, n), key->name, COUNT_MAX, COUNT_MAX);
		return;
	}
	store_int(ps, key, negative ? -(int)value : (int)value);
}

/* Milliseconds per unit, or 0 when the text is not one of ms, s, m, h. */
static uint64_t unit_ms(const char *u, size_t n)
{
	if (n == 2 && u[0] == 'm' && u[1] == 's')
		return 1;
	if (n == 1 && u[0] == 's')
		return 1000;
	if (n == 1 && u[0] == 'm')
		return 60 * 1000;
	if (n == 1 && u[0] == 'h')
		return 3600 * 1000;
	return 0;
}

static void parse_duration(struct parser *ps, const struct key_def *key,
                           const char *v, size_t n)
{
	char shown[SHOW_BUF];
	size_t digits = 0;
	const char *unit;
	size_t unit_len;
	uint64_t per_unit, number;

	if (n == 0) {
		ERR(ps, "missing value for %s: expected a duration like 250ms, 5s, 2m or 1h",
		    key->name);
		return;
	}
	while (digits < n && is_digit(v[digits]))
		digits++;
	unit = v + digits;
	unit_len = n - digits;
	trim(&unit, &unit_len);          /* "5 s" reads as "5s" */
	if (digits > 0 && unit_len == 0) {
		/* A bare number could be ms or s: make the user say which. */
		if (digits_value(v, digits, 0) == 0) {
			store_u64(ps, key, 0);
			return;
		}
		ERR(ps, "bad value \"%s\" for %s: a duration needs a unit, "
		    "as in 250ms, 5s, 2m or 1h", policy_show(shown, sizeof shown, v, n), key->name);
		return;
	}
	per_unit = unit_ms(unit, unit_len);
	if (digits == 0 || per_unit == 0) {
		ERR(ps, "bad value \"%s\" for %s: expected a duration like 250ms, 5s, 2m or 1h",
		    policy_show(shown, sizeof shown, v, n), key->name);
		return;
	}
	number = digits_value(v, digits, DURATION_MAX_MS / per_unit);
	if (number > DURATION_MAX_MS / per_unit) {
		ERR(ps, "bad value \"%s\" for %s: at most 7 days (168h)",
		    policy_show(shown, sizeof shown, v, n), key->name);
		return;
	}
	store_u64(ps, key, number * per_unit);
}

static bool string_fits(struct parser *ps, const struct key_def *key, size_t n)
{
	if (n < POLICY_STR_MAX)
		return true;
	ERR(ps, "value of %s is too long (%zu bytes; at most %d)",
	    key->name, n, POLICY_STR_MAX - 1);
	return false;
}

static void parse_string(struct parser *ps, const struct key_def *key,
                         const char *v, size_t n)
{
	if (string_fits(ps, key, n))
		store_string(ps, key, v, n);
}

static void parse_abs_path(struct parser *ps, const struct key_def *key,
                           const char *v, size_t n)
{
	char shown[SHOW_BUF];

	if (n > 0 && v[0] != '/') {
		ERR(ps, "bad value \"%s\" for %s: expected an absolute path (starting with /)",
		    policy_show(shown, sizeof shown, v, n), key->name);
		return;
	}
	parse_string(ps, key, v, n);
}

/* At most `max` bytes of [A-Za-z0-9._-]: a file or group name's bytes. */
static bool made_of_name_chars(const char *v, size_t n, size_t max)
{
	for (size_t i = 0; i < n; i++)
		if (!policy_is_segment_char(v[i]))
			return false;
	return n <= max;
}

static void parse_segment(struct parser *ps, const struct key_def *key,
                          const char *v, size_t n)
{
	char shown[SHOW_BUF];

	/* "." and ".." would name a directory, not a segment file. */
	if (!made_of_name_chars(v, n, SEGMENT_MAX) || slice_equals_word(v, n, ".") ||
	    slice_equals_word(v, n, "..")) {
		ERR(ps, "bad value \"%s\" for %s: expected 1 to %d letters, digits, "
		    "'.', '_' or '-'", policy_show(shown, sizeof shown, v, n), key->name, SEGMENT_MAX);
		return;
	}
	store_string(ps, key, v, n);
}

static void parse_log(struct parser *ps, const struct key_def *key,
                      const char *v, size_t n)
{
	char shown[SHOW_BUF];

	if (slice_equals_word(v, n, "stderr")) {
		store_string(ps, key, "stderr", 6);
	} else if (slice_equals_word(v, n, "syslog")) {
		store_string(ps, key, "syslog", 6);
	} else if (n > 0 && v[0] == '/') {
		parse_string(ps, key, v, n);
	} else {
		ERR(ps, "bad value \"%s\" for %s: expected stderr, syslog or an absolute path",
		    policy_show(shown, sizeof shown, v, n), key->name);
	}
}

/*
 * The coordinator's conninfo.  The parser is pure and links nothing of
 * libpq: it refuses only what libpq certainly would (an empty value, a word
 * with no '='), and the shim's connect reports the rest.
 */
static void parse_conninfo(struct parser *ps, const struct key_def *key,
                           const char *v, size_t n)
{
	char shown[SHOW_BUF];
	bool uri = (n >= 13 && memcmp(v, "postgresql://", 13) == 0) ||
	           (n >= 11 && memcmp(v, "postgres://", 11) == 0);

	if (n == 0) {
		ERR(ps, "missing value for %s: expected connection keywords, "
		    "as in host=db1 port=5432 dbname=postgres", key->name);
		return;
	}
	if (!uri && !memchr(v, '=', n)) {
		ERR(ps, "bad value \"%s\" for %s: expected keyword=value pairs "
		    "(host=db1 port=5432 dbname=postgres) or a postgresql:// URI",
		    policy_show(shown, sizeof shown, v, n), key->name);
		return;
	}
	parse_string(ps, key, v, n);
}

/*
 * A group's name, as useradd accepts it: 1 to 32 letters, digits, '.', '_'
 * or '-', not starting with '-', and not a number (a gid would read as a
 * name on some systems and not on others).  Whether the group exists is the
 * shim's to check, on the machine that uses the policy.
 */
static void parse_group(struct parser *ps, const struct key_def *key,
                        const char *v, size_t n)
{
	char shown[SHOW_BUF];

	if (!made_of_name_chars(v, n, GROUP_MAX) || (n > 0 && v[0] == '-')) {
		ERR(ps, "bad value \"%s\" for %s: expected a group name (1 to %d letters, "
		    "digits, '.', '_' or '-', not starting with '-')",
		    policy_show(shown, sizeof shown, v, n), key->name, GROUP_MAX);
		return;
	}
	if (all_digits(v, n)) {
		ERR(ps, "bad value \"%s\" for %s: expected the group's name, not its number",
		    policy_show(shown, sizeof shown, v, n), key->name);
		return;
	}
	store_string(ps, key, v, n);
}

/* One KIND=PATTERN of a match; false (error reported) when it is wrong. */
static bool parse_condition(struct parser *ps, const char *s, size_t n,
                            struct lane_match *m)
{
	const char *eq = memchr(s, '=', n), *k = s, *pat;
	size_t kn, pn;
	char shown[SHOW_BUF], kinds[128];
	const char *guess;
	int kind = -1;

	if (!eq) {
		ERR(ps, "condition \"%s\" in match has no \"=\": expected KIND=PATTERN, "
		    "as in application_name=web-*", policy_show(shown, sizeof shown, s, n));
		return false;
	}
	kn = (size_t)(eq - s);
	trim(&k, &kn);
	for (int i = 0; match_words[i]; i++)
		if (slice_equals_word(k, kn, match_words[i]))
			kind = i;
	if (kind < 0) {
		policy_show(shown, sizeof shown, k, kn);
		guess = policy_word_resembling(k, kn, match_words);
		if (guess)
			ERR(ps, "unknown kind \"%s\" in match (did you mean \"%s\"?)", shown, guess);
		else
			ERR(ps, "unknown kind \"%s\" in match: expected %s", shown,
			    policy_list_words(kinds, sizeof kinds, match_words));
		return false;
	}
	pat = eq + 1;
	pn = n - (size_t)(pat - s);
	trim(&pat, &pn);
	if (pn == 0) {
		ERR(ps, "empty pattern for %s in match", match_words[kind]);
		return false;
	}
	if (pn >= POLICY_NAME_MAX) {
		ERR(ps, "pattern for %s in match is too long (%zu bytes; at most %d)",
		    match_words[kind], pn, POLICY_NAME_MAX - 1);
		return false;
	}
	/* user and dbname are names that the server compares exactly. */
	if ((kind == MATCH_USER || kind == MATCH_DBNAME) && memchr(pat, '*', pn)) {
		ERR(ps, "%s in match takes an exact name, not a pattern (\"%s\")",
		    match_words[kind], policy_show(shown, sizeof shown, pat, pn));
		return false;
	}
	m->kind = (enum match_kind)kind;
	memcpy(m->pattern, pat, pn);
	m->pattern[pn] = '\0';
	return true;
}

/* match = KIND=PATTERN, KIND=PATTERN ...: all must hold. */
static void parse_match(struct parser *ps, const struct key_def *key,
                        const char *v, size_t n)
{
	struct lane_match found[LANE_MAX_MATCH];
	int count = 0;
	size_t pos = 0;

	ps->match_set[ps->pol.nlanes - 1] = true;
	if (n == 0) {
		ERR(ps, "missing value for %s: expected KIND=PATTERN, ... "
		    "(program, application_name, user or dbname)", key->name);
		return;
	}
	while (pos <= n) {
		const char *item = v + pos, *comma = memchr(item, ',', n - pos);
		size_t in = comma ? (size_t)(comma - item) : n - pos;
		struct lane_match m;

		pos += in + 1;
		trim(&item, &in);
		if (in == 0) {
			ERR(ps, "empty condition in match (a comma too many?)");
			return;
		}
		if (count == LANE_MAX_MATCH) {
			ERR(ps, "too many conditions in match (at most %d)", LANE_MAX_MATCH);
			return;
		}
		if (!parse_condition(ps, item, in, &m))
			return;
		for (int i = 0; i < count; i++) {
			if (found[i].kind == m.kind) {
				ERR(ps, "%s appears twice in match (every condition must hold)",
				    match_words[m.kind]);
				return;
			}
		}
		found[count++] = m;
	}
	current_lane(ps)->nmatch = count;
	memcpy(current_lane(ps)->match, found, sizeof found[0] * (size_t)count);
}

static void parse_value(struct parser *ps, const struct key_def *key,
                        const char *v, size_t n)
{
	switch (key->kind) {
	case KIND_ENUM:     parse_enum(ps, key, v, n); break;
	case KIND_BOOL:     parse_bool(ps, key, v, n); break;
	case KIND_COUNT:    parse_count(ps, key, v, n); break;
	case KIND_DURATION: parse_duration(ps, key, v, n); break;
	case KIND_STRING:   parse_string(ps, key, v, n); break;
	case KIND_ABS_PATH: parse_abs_path(ps, key, v, n); break;
	case KIND_SEGMENT:  parse_segment(ps, key, v, n); break;
	case KIND_LOG:      parse_log(ps, key, v, n); break;
	case KIND_INT:      parse_int(ps, key, v, n); break;
	case KIND_CONNINFO: parse_conninfo(ps, key, v, n); break;
	case KIND_GROUP:    parse_group(ps, key, v, n); break;
	case KIND_MATCH:    parse_match(ps, key, v, n); break;
	}
}

/*
 * Cut the value out of the text after '=': strip blanks and a trailing
 * comment, or take what is between double quotes.  False (and an error
 * reported) when the quotes are wrong.
 */
static bool extract_value(struct parser *ps, const struct key_def *key,
                          const char **s, size_t *n)
{
	const char *v = *s;
	size_t vn = *n;
	bool blank_before;

	while (vn > 0 && is_blank(v[0])) {
		v++;
		vn--;
	}
	blank_before = v != *s;
	if (vn > 0 && v[0] == '"') {
		const char *close = memchr(v + 1, '"', vn - 1);
		const char *rest;
		size_t rest_n;

		if (!close) {
			ERR(ps, "missing closing quote (\") in the value of %s", key->name);
			return false;
		}
		rest = close + 1;
		rest_n = vn - (size_t)(rest - v);
		trim(&rest, &rest_n);
		if (rest_n > 0 && !is_comment_start(rest[0])) {
			ERR(ps, "unexpected text after the closing quote in the value of %s",
			    key->name);
			return false;
		}
		*s = v + 1;
		*n = (size_t)(close - (v + 1));
		return true;
	}
	/* A comment starts at '#' or ';' after whitespace: "/srv/a#b" keeps it. */
	for (size_t i = 0; i < vn; i++) {
		if (is_comment_start(v[i]) && (i == 0 ? blank_before : is_blank(v[i - 1]))) {
			vn = i;
			break;
		}
	}
	trim(&v, &vn);
	*s = v;
	*n = vn;
	return true;
}

static void report_unknown_key(struct parser *ps, const char *k, size_t kn)
{
	const char *sec = section_label(ps, ps->section);
	const struct key_def *elsewhere = find_key_anywhere(k, kn);
	const struct key_def *close = key_resembling(ps->section, k, kn);
	char shown[SHOW_BUF];

	policy_show(shown, sizeof shown, k, kn);
	if (elsewhere)
		ERR(ps, "unknown key \"%s\" in %s (%s belongs in %s)",
		    shown, sec, elsewhere->name, section_label(ps, elsewhere->section));
	else if (close)
		ERR(ps, "unknown key \"%s\" in %s (did you mean \"%s\"?)",
		    shown, sec, close->name);
	else
		ERR(ps, "unknown key \"%s\" in %s", shown, sec);
}

static void parse_assignment(struct parser *ps, const char *s, size_t n)
{
	const char *eq = memchr(s, '=', n);
	const char *k = s, *v;
	size_t kn, vn;
	const struct key_def *key;
	char shown[SHOW_BUF];

	if (!eq) {
		ERR(ps, "missing \"=\" in \"%s\" (expected key = value)",
		    policy_show(shown, sizeof shown, s, n));
		return;
	}
	kn = (size_t)(eq - s);
	trim(&k, &kn);
	if (kn == 0) {
		ERR(ps, "missing key before \"=\"");
		return;
	}
	if (ps->section == SEC_SKIP)
		return;
	if (ps->section == SEC_NONE) {
		key = find_key_anywhere(k, kn);
		if (key)
			ERR(ps, "key \"%s\" outside of any section (it belongs in %s)",
			    policy_show(shown, sizeof shown, k, kn), section_label(ps, key->section));
		else
			ERR(ps, "key \"%s\" outside of any section",
			    policy_show(shown, sizeof shown, k, kn));
		return;
	}
	key = find_key(ps->section, k, kn);
	if (!key) {
		report_unknown_key(ps, k, kn);
		return;
	}
	if (ps->first_set[key - keys]) {
		ERR(ps, "duplicate key \"%s\" in %s (first set on line %u)",
		    key->name, section_label(ps, key->section), ps->first_set[key - keys]);
		return;
	}
	ps->first_set[key - keys] = ps->line;
	v = eq + 1;
	vn = n - (size_t)(v - s);
	if (extract_value(ps, key, &v, &vn))
		parse_value(ps, key, v, vn);
}

/* Is s[0..n) the word "lane", alone or before a blank or a quote? */
static bool starts_a_lane(const char *s, size_t n)
{
	return n >= 4 && slice_equals_word(s, 4, "lane") &&
	       (n == 4 || is_blank(s[4]) || s[4] == '"' || s[4] == ']');
}

/* A lane's name: free text, but one that messages, JSON and labels can
 * carry; false (error reported) when it is not. */
static bool lane_name_is_fine(struct parser *ps, const char *name, size_t n)
{
	char shown[SHOW_BUF];

	policy_show(shown, sizeof shown, name, n);
	if (n == 0) {
		ERR(ps, "empty lane name: give the lane a name, as in [lane \"reports\"]");
		return false;
	}
	if (n >= POLICY_NAME_MAX) {
		ERR(ps, "lane name \"%s\" is too long (%zu bytes; at most %d)",
		    shown, n, POLICY_NAME_MAX - 1);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
			ERR(ps, "lane name \"%s\" contains a control character", shown);
			return false;
		}
	}
	for (int i = 0; i < ps->pol.nlanes; i++) {
		if (slice_equals_word(name, n, ps->pol.lanes[i].name)) {
			ERR(ps, "duplicate lane \"%s\" (first on line %u)", shown,
			    ps->pol.lanes[i].line);
			return false;
		}
	}
	if (ps->pol.nlanes == POLICY_MAX_LANES) {
		ERR(ps, "too many lanes (at most %d)", POLICY_MAX_LANES);
		return false;
	}
	return true;
}

/* [lane "NAME"]: s[0..n) is what follows the word "lane". */
static void parse_lane_header(struct parser *ps, const char *s, size_t n)
{
	const char *name, *close, *rest;
	size_t name_n, rest_n;
	struct policy_lane *lane;
	char shown[SHOW_BUF];

	while (n > 0 && is_blank(s[0])) {
		s++;
		n--;
	}
	if (n == 0 || s[0] == ']') {
		ERR(ps, "missing lane name: expected [lane \"NAME\"]");
		return;
	}
	if (s[0] != '"') {
		ERR(ps, "the lane's name goes between double quotes: expected [lane \"NAME\"]");
		return;
	}
	name = s + 1;
	close = memchr(name, '"', n - 1);
	if (!close) {
		ERR(ps, "missing closing quote (\") in the lane's name");
		return;
	}
	name_n = (size_t)(close - name);
	rest = close + 1;
	rest_n = n - (size_t)(rest - s);
	trim(&rest, &rest_n);
	policy_show(shown, sizeof shown, name, name_n);
	if (rest_n == 0 || rest[0] != ']') {
		ERR(ps, "missing \"]\" after the lane's name in [lane \"%s\"", shown);
		return;
	}
	rest++;
	rest_n--;
	trim(&rest, &rest_n);
	if (rest_n > 0 && !is_comment_start(rest[0])) {
		ERR(ps, "unexpected text after [lane \"%s\"]", shown);
		return;
	}
	if (!lane_name_is_fine(ps, name, name_n))
		return;

	lane = &ps->pol.lanes[ps->pol.nlanes++];
	memset(lane, 0, sizeof *lane);
	memcpy(lane->name, name, name_n);
	lane->line = ps->line;
	lane->wait_timeout_ms = WAIT_UNSET;
	/* A lane's keys are its own: a new lane may set them again. */
	for (size_t k = 0; k < KEY_COUNT; k++)
		if (keys[k].section == SEC_LANE)
			ps->first_set[k] = 0;
	snprintf(ps->label, sizeof ps->label, "[lane \"%s\"]", shown);
	ps->section = SEC_LANE;
}

static void report_unknown_section(struct parser *ps, const char *name, size_t name_n)
{
	char shown[SHOW_BUF];
	const char *guess = section_resembling(name, name_n);
	size_t word = 0;

	policy_show(shown, sizeof shown, name, name_n);
	while (word < name_n && !is_blank(name[word]) && name[word] != '"')
		word++;
	if (guess)
		ERR(ps, "unknown section [%s] (did you mean [%s]?)", shown, guess);
	else if (policy_typo_of(name, word, "lane"))
		ERR(ps, "unknown section [%s] (did you mean [lane \"NAME\"]?)", shown);
	else
		ERR(ps, "unknown section [%s] (expected [cap], [tracking], [read_only], [shim] "
		    "or [lane \"NAME\"])", shown);
}

static void parse_section_header(struct parser *ps, const char *s, size_t n)
{
	const char *close, *name = s + 1, *rest;
	size_t name_n = n - 1, rest_n;
	char shown[SHOW_BUF];

	/* Until the header is understood, its keys are skipped, not misfiled. */
	ps->section = SEC_SKIP;
	ps->has_section = true;
	while (name_n > 0 && is_blank(name[0])) {
		name++;
		name_n--;
	}
	/* Before looking for ']': a lane's name may contain one. */
	if (starts_a_lane(name, name_n)) {
		parse_lane_header(ps, name + 4, name_n - 4);
		return;
	}
	close = memchr(s, ']', n);
	if (!close) {
		ERR(ps, "missing \"]\" at the end of section header \"%s\"",
		    policy_show(shown, sizeof shown, s, n));
		return;
	}
	name_n = (size_t)(close - name);
	trim(&name, &name_n);
	rest = close + 1;
	rest_n = n - (size_t)(rest - s);
	trim(&rest, &rest_n);
	policy_show(shown, sizeof shown, name, name_n);
	if (rest_n > 0 && !is_comment_start(rest[0])) {
		ERR(ps, "unexpected text after [%s]", shown);
		return;
	}
	for (int sec = SEC_CAP; sec <= SEC_SHIM; sec++) {
		if (slice_equals_word(name, name_n, section_names[sec])) {
			ps->section = (enum section)sec;
			return;
		}
	}
	report_unknown_section(ps, name, name_n);
}

static void parse_line(struct parser *ps, const char *s, size_t n)
{
	if (n > LINE_MAX_BYTES) {
		ERR(ps, "line too long (more than %d bytes)", LINE_MAX_BYTES);
		return;
	}
	if (memchr(s, '\0', n)) {
		ERR(ps, "line contains a NUL byte (is this a text file?)");
		return;
	}
	trim(&s, &n);
	if (n == 0 || is_comment_start(s[0]))
		return;
	if (s[0] == '[')
		parse_section_header(ps, s, n);
	else
		parse_assignment(ps, s, n);
}

/* The line a key outside [lane] was set on, or 0. */
static unsigned line_of(const struct parser *ps, enum section sec, const char *key_name)
{
	for (size_t k = 0; k < KEY_COUNT; k++)
		if (keys[k].section == sec && strcmp(keys[k].name, key_name) == 0)
			return ps->first_set[k];
	assert(!"no such key");
	return 0;
}

static void check_read_only(struct parser *ps)
{
	const struct policy *p = &ps->pol;

	if (p->replica[0] != '\0')
		return;
	if (p->ro_enabled) {
		ps->line = line_of(ps, SEC_READ_ONLY, "enabled");
		ERR(ps, "[read_only] enabled = yes needs a replica "
		    "(the connection keywords to switch to)");
	}
	if (p->flag_file[0] != '\0') {
		ps->line = line_of(ps, SEC_READ_ONLY, "flag_file");
		ERR(ps, "[read_only] flag_file needs a replica "
		    "(the connection keywords to switch to)");
	}
}

static void check_cluster(struct parser *ps)
{
	struct policy *p = &ps->pol;

	p->scope_line = line_of(ps, SEC_CAP, "scope");
	if (p->scope == SCOPE_CLUSTER && line_of(ps, SEC_CAP, "coordinator") == 0) {
		ps->line = p->scope_line;
		ERR(ps, "scope = cluster needs a coordinator (the conninfo of the "
		    "PostgreSQL server that keeps the cluster's slots)");
	}
	if (p->scope != SCOPE_CLUSTER && p->coordinator[0] != '\0') {
		ps->line = line_of(ps, SEC_CAP, "coordinator");
		ERR(ps, "coordinator is used only with scope = cluster "
		    "(add scope = cluster, or remove coordinator)");
	}
}

/*
 * A lane without a match would take every connection and leave the lanes
 * after it empty; one without wait_timeout gets the cap's, whichever line
 * set that.  A lane's max_active above the global one is accepted as it
 * is: the global cap still holds over every lane, and an operator who
 * lowers the global cap for a while must not have to edit every lane.
 */
static void check_lanes(struct parser *ps)
{
	for (int i = 0; i < ps->pol.nlanes; i++) {
		struct policy_lane *lane = &ps->pol.lanes[i];
		char shown[SHOW_BUF];

		if (!ps->match_set[i]) {
			ps->line = lane->line;
			ERR(ps, "[lane \"%s\"] has no match (which connections go in it?)",
			    policy_show(shown, sizeof shown, lane->name, strlen(lane->name)));
		}
		if (lane->wait_timeout_ms == WAIT_UNSET)
			lane->wait_timeout_ms = ps->pol.wait_timeout_ms;
	}
}

int policy_parse(const char *name, const char *text, size_t len,
                 struct policy *out, struct policy_errors *errs)
{
	struct policy_errors scratch;
	struct parser ps;
	size_t pos = 0;

	if (!errs)
		errs = &scratch;
	errs->count = 0;
	memset(&ps, 0, sizeof ps);
	ps.name = name ? name : "policy";
	ps.errs = errs;
	ps.section = SEC_NONE;
	policy_defaults(&ps.pol);
	if (!text)
		len = 0;

	/* Editors on some systems start UTF-8 files with a byte order mark. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		pos = 3;
	while (pos < len) {
		const char *start = text + pos;
		const char *nl = memchr(start, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - start) : len - pos;

		ps.line++;
		parse_line(&ps, start, n);
		pos += n + (nl != NULL);
	}
	/* A file caught between truncation and writing reads as nothing: it
	 * must never stand for "every default, no cap". */
	if (!ps.has_section && errs->count == 0)
		policy_add_error(errs, ps.name, 0, "empty policy: no section in it "
		                 "(a policy needs at least one, such as [cap])");
	check_read_only(&ps);
	check_cluster(&ps);
	check_lanes(&ps);

	if (errs->count > 0)
		return -1;
	if (out)
		*out = ps.pol;
	return 0;
}
