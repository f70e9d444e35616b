/*
 * policy.c - reads the policy file: INI text in, a struct policy or a list of
 * "file:line: message" errors out.
 *
 * Owns policy_defaults(), policy_parse(), policy_load() and
 * policy_segment_name().  The grammar and every key are in SPEC.md, section
 * "The policy file"; the choices SPEC leaves open are listed just below.
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
 *  - Counts are whole numbers from 0 to 1,000,000.
 *  - flag_file and a log file must be absolute paths: every process that
 *    shares the policy must mean the same file whatever its working directory.
 *  - `segment` may be empty (= derive it); otherwise [A-Za-z0-9._-]{1,64},
 *    and not "." or "..".
 *  - [read_only] enabled = yes, or a flag_file, without a replica is an
 *    error: there would be nowhere to send the connections.
 *  - Keys under an unknown or malformed section header are skipped without
 *    more errors: the header's error already says what is wrong.
 *  - Lines end at '\n'; a '\r' before it (CRLF files) and a UTF-8 byte order
 *    mark at the very start are ignored.  At most one error per line.
 *
 * policy_load()'s own refusals have no line number and read "PATH: message";
 * errors inside the file read "PATH:LINE: message" like policy_parse()'s.
 */
#include "policy.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COUNT_MAX        1000000u                /* upper bound of every count */
#define DURATION_MAX_MS  (7ull * 24 * 3600 * 1000) /* 7 days */
#define SEGMENT_MAX      64                      /* longest explicit segment name */
#define DERIVED_BASE_MAX 32                      /* basename part of a derived one */
#define SHOW_MAX         60                      /* input bytes quoted in a message */

/* Enum fields are written through a generic int store; they must be ints. */
_Static_assert(sizeof(enum cap_scope) == sizeof(int), "enum size");
_Static_assert(sizeof(enum nested_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cross_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum switch_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum intx_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum onerror_mode) == sizeof(int), "enum size");

/* ------------------------------------------------------------------------ */
/* The keys                                                                 */

enum section { SEC_NONE, SEC_CAP, SEC_TRACKING, SEC_READ_ONLY, SEC_SHIM, SEC_SKIP };

/* Indexed by enum section; SEC_NONE and SEC_SKIP have no name. */
static const char *const section_names[] = {
	[SEC_CAP] = "cap",
	[SEC_TRACKING] = "tracking",
	[SEC_READ_ONLY] = "read_only",
	[SEC_SHIM] = "shim",
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
};

/* Word lists are indexed by the enum's value, so the parsed index is the value. */
static const char *const scope_words[]   = { "process", "host", "cluster", NULL };
static const char *const nested_words[]  = { "share", "fail", NULL };
static const char *const cross_words[]   = { "allow", "warn", "deny", NULL };
static const char *const switch_words[]  = { "migrate", "reset", NULL };
static const char *const intx_words[]    = { "keep", "terminate", NULL };
static const char *const onerror_words[] = { "fail-closed", "fail-open", NULL };

struct key_def {
	enum section section;
	const char *name;
	enum value_kind kind;
	size_t offset;                 /* of the field in struct policy */
	const char *const *words;      /* KIND_ENUM only */
};

#define FIELD(f) offsetof(struct policy, f)

static const struct key_def keys[] = {
	{ SEC_CAP, "scope", KIND_ENUM, FIELD(scope), scope_words },
	{ SEC_CAP, "max_active", KIND_COUNT, FIELD(max_active), NULL },
	{ SEC_CAP, "max_connections", KIND_COUNT, FIELD(max_connections), NULL },
	{ SEC_CAP, "max_connections_per_thread", KIND_COUNT,
	  FIELD(max_connections_per_thread), NULL },
	{ SEC_CAP, "wait_timeout", KIND_DURATION, FIELD(wait_timeout_ms), NULL },
	{ SEC_CAP, "nested", KIND_ENUM, FIELD(nested), nested_words },

	{ SEC_TRACKING, "cross_thread", KIND_ENUM, FIELD(cross_thread), cross_words },
	{ SEC_TRACKING, "leak_report", KIND_BOOL, FIELD(leak_report), NULL },

	{ SEC_READ_ONLY, "enabled", KIND_BOOL, FIELD(ro_enabled), NULL },
	{ SEC_READ_ONLY, "flag_file", KIND_ABS_PATH, FIELD(flag_file), NULL },
	{ SEC_READ_ONLY, "primary", KIND_STRING, FIELD(primary), NULL },
	{ SEC_READ_ONLY, "replica", KIND_STRING, FIELD(replica), NULL },
	{ SEC_READ_ONLY, "on_switch", KIND_ENUM, FIELD(on_switch), switch_words },
	{ SEC_READ_ONLY, "drain_timeout", KIND_DURATION, FIELD(drain_timeout_ms), NULL },
	{ SEC_READ_ONLY, "in_transaction", KIND_ENUM, FIELD(in_transaction), intx_words },

	{ SEC_SHIM, "segment", KIND_SEGMENT, FIELD(segment), NULL },
	{ SEC_SHIM, "on_error", KIND_ENUM, FIELD(on_error), onerror_words },
	{ SEC_SHIM, "log", KIND_LOG, FIELD(log), NULL },
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
/* Bytes and slices                                                         */

/* Own versions: <ctype.h> is locale-dependent and UB on negative chars. */
static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool is_segment_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
	       c == '.' || c == '_' || c == '-';
}

static bool is_comment_start(char c)
{
	return c == '#' || c == ';';
}

static void trim(const char **s, size_t *n)
{
	while (*n > 0 && is_blank((*s)[0])) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && is_blank((*s)[*n - 1]))
		(*n)--;
}

static bool slice_equals_word(const char *s, size_t n, const char *word)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (word[i] == '\0' || ascii_lower(s[i]) != ascii_lower(word[i]))
			return false;
	return word[n] == '\0';
}

/*
 * Write s[0..n) into out as printable text for an error message: control
 * bytes become \xNN, and input longer than SHOW_MAX is cut with "...".  Bytes
 * >= 0x80 pass through so that UTF-8 paths stay readable.
 */
static const char *show(char *out, size_t size, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	assert(size >= 4 * SHOW_MAX + 4);
	for (i = 0; i < n && i < SHOW_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
			out[o++] = '\\';
			if (c == '"' || c == '\\') {
				out[o++] = (char)c;
			} else {
				out[o++] = 'x';
				out[o++] = hex[c >> 4];
				out[o++] = hex[c & 15];
			}
		} else {
			out[o++] = (char)c;
		}
	}
	if (i < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

#define SHOW_BUF (4 * SHOW_MAX + 4)

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/* Appends "name:line: message" (or "name: message" when line is 0). */
__attribute__((format(printf, 4, 5)))
static void add_error(struct policy_errors *errs, const char *name,
                      unsigned line, const char *fmt, ...)
{
	va_list ap;
	char *m;
	size_t size = sizeof errs->msg[0];
	int n;

	errs->count++;
	if (errs->count > POLICY_MAX_ERRORS)
		return;
	m = errs->msg[errs->count - 1];
	if (line > 0)
		n = snprintf(m, size, "%s:%u: ", name, line);
	else
		n = snprintf(m, size, "%s: ", name);
	if (n < 0 || (size_t)n >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(m + n, size - (size_t)n, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Suggestions for misspelt names                                           */

/* Case-insensitive Levenshtein distance, or UINT_MAX when a name is long. */
static unsigned edit_distance(const char *a, size_t an, const char *b)
{
	unsigned row[SEGMENT_MAX + 1];
	size_t bn = strlen(b), i, j;

	if (an > SEGMENT_MAX || bn > SEGMENT_MAX)
		return UINT_MAX;
	for (j = 0; j <= bn; j++)
		row[j] = (unsigned)j;
	for (i = 1; i <= an; i++) {
		unsigned diag = row[0];

		row[0] = (unsigned)i;
		for (j = 1; j <= bn; j++) {
			unsigned up = row[j];
			unsigned cost = ascii_lower(a[i - 1]) != ascii_lower(b[j - 1]);
			unsigned best = diag + cost;

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[bn];
}

/* Close enough to be a typo, and not so short that anything is close. */
static bool looks_like_a_typo_of(const char *s, size_t n, const char *word)
{
	unsigned d = edit_distance(s, n, word);

	return d <= 2 && d < strlen(word) / 2 + 1;
}

static const char *section_resembling(const char *s, size_t n)
{
	for (int sec = SEC_CAP; sec <= SEC_SHIM; sec++)
		if (looks_like_a_typo_of(s, n, section_names[sec]))
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

		if (keys[k].section != sec || !looks_like_a_typo_of(s, n, keys[k].name))
			continue;
		d = edit_distance(s, n, keys[k].name);
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
	unsigned first_set[KEY_COUNT];   /* line a key was first set on, or 0 */
};

#define ERR(ps, ...) add_error((ps)->errs, (ps)->name, (ps)->line, __VA_ARGS__)

static void store_int(struct parser *ps, const struct key_def *key, int v)
{
	memcpy((char *)&ps->pol + key->offset, &v, sizeof v);
}

static void store_u32(struct parser *ps, const struct key_def *key, uint32_t v)
{
	memcpy((char *)&ps->pol + key->offset, &v, sizeof v);
}

static void store_u64(struct parser *ps, const struct key_def *key, uint64_t v)
{
	memcpy((char *)&ps->pol + key->offset, &v, sizeof v);
}

static void store_string(struct parser *ps, const struct key_def *key,
                         const char *s, size_t n)
{
	char *dst = (char *)&ps->pol + key->offset;

	assert(n < POLICY_STR_MAX);
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* "a, b or c" from a NULL-terminated word list. */
static const char *list_words(char *out, size_t size, const char *const *words)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; words[i]; i++) {
		const char *sep = i == 0 ? "" : words[i + 1] ? ", " : " or ";
		int n = snprintf(out + o, size - o, "%s%s", sep, words[i]);

		if (n < 0 || (size_t)n >= size - o)
			break;
		o += (size_t)n;
	}
	return out;
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
	ERR(ps, "bad value \"%s\" for %s: expected %s", show(shown, sizeof shown, v, n),
	    key->name, list_words(expected, sizeof expected, key->words));
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
	    show(shown, sizeof shown, v, n), key->name);
}

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_digit(s[i]))
			return false;
	return n > 0;
}

/* Value of a digit string, saturating just above `max` so it cannot overflow. */
static uint64_t digits_value(const char *s, size_t n, uint64_t max)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++) {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > max)
			return max + 1;
	}
	return v;
}

static void parse_count(struct parser *ps, const struct key_def *key,
                        const char *v, size_t n)
{
	char shown[SHOW_BUF];
	uint64_t value;

	if (n == 0) {
		ERR(ps, "missing value for %s: expected a whole number", key->name);
		return;
	}
	if (v[0] == '-' && all_digits(v + 1, n - 1)) {
		ERR(ps, "bad value \"%s\" for %s: expected a whole number (0 or more)",
		    show(shown, sizeof shown, v, n), key->name);
		return;
	}
	if (!all_digits(v, n)) {
		ERR(ps, "bad value \"%s\" for %s: expected a whole number",
		    show(shown, sizeof shown, v, n), key->name);
		return;
	}
	value = digits_value(v, n, COUNT_MAX);
	if (value > COUNT_MAX) {
		ERR(ps, "bad value \"%s\" for %s: at most %u",
		    show(shown, sizeof shown, v, n), key->name, COUNT_MAX);
		return;
	}
	store_u32(ps, key, (uint32_t)value);
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
		    "as in 250ms, 5s, 2m or 1h", show(shown, sizeof shown, v, n), key->name);
		return;
	}
	per_unit = unit_ms(unit, unit_len);
	if (digits == 0 || per_unit == 0) {
		ERR(ps, "bad value \"%s\" for %s: expected a duration like 250ms, 5s, 2m or 1h",
		    show(shown, sizeof shown, v, n), key->name);
		return;
	}
	number = digits_value(v, digits, DURATION_MAX_MS / per_unit);
	if (number > DURATION_MAX_MS / per_unit) {
		ERR(ps, "bad value \"%s\" for %s: at most 7 days (168h)",
		    show(shown, sizeof shown, v, n), key->name);
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
		    show(shown, sizeof shown, v, n), key->name);
		return;
	}
	parse_string(ps, key, v, n);
}

static void parse_segment(struct parser *ps, const struct key_def *key,
                          const char *v, size_t n)
{
	char shown[SHOW_BUF];
	bool ok = n <= SEGMENT_MAX;

	for (size_t i = 0; ok && i < n; i++)
		ok = is_segment_char(v[i]);
	/* "." and ".." would name a directory, not a segment file. */
	if (ok && (slice_equals_word(v, n, ".") || slice_equals_word(v, n, "..")))
		ok = false;
	if (!ok) {
		ERR(ps, "bad value \"%s\" for %s: expected 1 to %d letters, digits, "
		    "'.', '_' or '-'", show(shown, sizeof shown, v, n), key->name, SEGMENT_MAX);
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
		    show(shown, sizeof shown, v, n), key->name);
	}
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
	const char *sec = section_names[ps->section];
	const struct key_def *elsewhere = find_key_anywhere(k, kn);
	const struct key_def *close = key_resembling(ps->section, k, kn);
	char shown[SHOW_BUF];

	show(shown, sizeof shown, k, kn);
	if (elsewhere)
		ERR(ps, "unknown key \"%s\" in [%s] (%s belongs in [%s])",
		    shown, sec, elsewhere->name, section_names[elsewhere->section]);
	else if (close)
		ERR(ps, "unknown key \"%s\" in [%s] (did you mean \"%s\"?)",
		    shown, sec, close->name);
	else
		ERR(ps, "unknown key \"%s\" in [%s]", shown, sec);
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
		    show(shown, sizeof shown, s, n));
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
			ERR(ps, "key \"%s\" outside of any section (it belongs in [%s])",
			    show(shown, sizeof shown, k, kn), section_names[key->section]);
		else
			ERR(ps, "key \"%s\" outside of any section",
			    show(shown, sizeof shown, k, kn));
		return;
	}
	key = find_key(ps->section, k, kn);
	if (!key) {
		report_unknown_key(ps, k, kn);
		return;
	}
	if (ps->first_set[key - keys]) {
		ERR(ps, "duplicate key \"%s\" in [%s] (first set on line %u)",
		    key->name, section_names[key->section], ps->first_set[key - keys]);
		return;
	}
	ps->first_set[key - keys] = ps->line;
	v = eq + 1;
	vn = n - (size_t)(v - s);
	if (extract_value(ps, key, &v, &vn))
		parse_value(ps, key, v, vn);
}

static void parse_section_header(struct parser *ps, const char *s, size_t n)
{
	const char *close = memchr(s, ']', n);
	const char *name = s + 1, *rest;
	size_t name_n, rest_n;
	char shown[SHOW_BUF];
	const char *guess;

	/* Until the header is understood, its keys are skipped, not misfiled. */
	ps->section = SEC_SKIP;
	if (!close) {
		ERR(ps, "missing \"]\" at the end of section header \"%s\"",
		    show(shown, sizeof shown, s, n));
		return;
	}
	name_n = (size_t)(close - name);
	trim(&name, &name_n);
	rest = close + 1;
	rest_n = n - (size_t)(rest - s);
	trim(&rest, &rest_n);
	show(shown, sizeof shown, name, name_n);
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
	guess = section_resembling(name, name_n);
	if (guess)
		ERR(ps, "unknown section [%s] (did you mean [%s]?)", shown, guess);
	else
		ERR(ps, "unknown section [%s] (expected [cap], [tracking], [read_only] or [shim])",
		    shown);
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

static unsigned line_of(const struct parser *ps, const char *key_name)
{
	for (size_t k = 0; k < KEY_COUNT; k++)
		if (strcmp(keys[k].name, key_name) == 0)
			return ps->first_set[k];
	assert(!"no such key");
	return 0;
}

/* Rules that tie keys together, checked once every line has been read. */
static void check_the_whole_policy(struct parser *ps)
{
	const struct policy *p = &ps->pol;

	if (p->replica[0] != '\0')
		return;
	if (p->ro_enabled) {
		ps->line = line_of(ps, "enabled");
		ERR(ps, "[read_only] enabled = yes needs a replica "
		    "(the connection keywords to switch to)");
	}
	if (p->flag_file[0] != '\0') {
		ps->line = line_of(ps, "flag_file");
		ERR(ps, "[read_only] flag_file needs a replica "
		    "(the connection keywords to switch to)");
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
	check_the_whole_policy(&ps);

	if (errs->count > 0)
		return -1;
	if (out)
		*out = ps.pol;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Loading a file                                                           */

#define FILE_MAX_BYTES (1024 * 1024)

static int load_file_checked(const char *path, int fd, char **buf, size_t *len,
                             struct policy_errors *errs)
{
	struct stat st;
	char why[128];
	size_t want, got = 0;

	if (fstat(fd, &st) != 0) {
		add_error(errs, path, 0, "cannot read: %s",
		          strerror_r(errno, why, sizeof why));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		add_error(errs, path, 0, "refused: a directory, not a policy file");
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		add_error(errs, path, 0, "refused: not a regular file");
		return -1;
	}
	/* Whoever can write the policy controls every program that uses it. */
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		add_error(errs, path, 0, "refused: group- or world-writable (mode %04o); "
		          "chmod go-w %s", (unsigned)(st.st_mode & 07777), path);
	if (st.st_uid != 0 && st.st_uid != geteuid())
		add_error(errs, path, 0, "refused: owned by uid %u, not by you or root",
		          (unsigned)st.st_uid);
	if (st.st_size > FILE_MAX_BYTES)
		add_error(errs, path, 0, "refused: larger than 1 MiB (%lld bytes)",
		          (long long)st.st_size);
	if (errs->count > 0)
		return -1;

	want = (size_t)st.st_size;
	*buf = malloc(want + 1);
	if (!*buf) {
		add_error(errs, path, 0, "cannot read: out of memory");
		return -1;
	}
	/* Read one byte more than fstat said, to notice a file still growing. */
	while (got < want + 1) {
		ssize_t r = read(fd, *buf + got, want + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			add_error(errs, path, 0, "cannot read: %s",
			          strerror_r(errno, why, sizeof why));
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got > want) {
		add_error(errs, path, 0, "changed while being read; try again");
		return -1;
	}
	*len = got;
	return 0;
}

int policy_load(const char *path, struct policy *out, struct policy_errors *errs)
{
	struct policy_errors scratch;
	char why[128];
	char *buf = NULL;
	size_t len = 0;
	int fd, rc;

	if (!errs)
		errs = &scratch;
	errs->count = 0;
	if (!path || !*path) {
		add_error(errs, "policy", 0, "no policy file named");
		return -1;
	}
	/*
	 * Symlinks are followed (a policy linked into place is common); the
	 * checks are made on what was opened.  O_NONBLOCK keeps a FIFO from
	 * hanging us before fstat can refuse it; it does nothing to a file.
	 */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		add_error(errs, path, 0, "cannot open: %s", strerror_r(errno, why, sizeof why));
		return -1;
	}
	rc = load_file_checked(path, fd, &buf, &len, errs);
	close(fd);
	if (rc == 0)
		rc = policy_parse(path, buf, len, out, errs);
	free(buf);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Segment names                                                            */

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/*
 * Make `path` absolute without touching symlinks: prefix the working
 * directory if relative, then drop "." and "//" and fold ".." by text.
 * Symlinks are deliberately not resolved: re-pointing a symlinked policy
 * must not move the processes that use it to another segment.  False if
 * it does not fit.
 */
static bool absolute_path(const char *path, char *out, size_t size)
{
	char joined[PATH_MAX * 2];
	size_t o = 0;
	const char *p;

	if (path[0] == '/') {
		if (strlen(path) >= sizeof joined)
			return false;
		strcpy(joined, path);
	} else {
		char cwd[PATH_MAX];
		int n;

		if (!getcwd(cwd, sizeof cwd))
			return false;
		n = snprintf(joined, sizeof joined, "%s/%s", cwd, path);
		if (n < 0 || (size_t)n >= sizeof joined)
			return false;
	}

	for (p = joined; *p;) {
		const char *end;
		size_t n;

		while (*p == '/')
			p++;
		end = strchrnul(p, '/');
		n = (size_t)(end - p);
		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* nothing to add */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;            /* the '/' before the dropped component */
		} else {
			if (o + 1 + n + 1 > size)
				return false;
			out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p = end;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return true;
}

static void copy_truncated(char *buf, size_t size, const char *s)
{
	snprintf(buf, size, "%s", s);
}

void policy_segment_name(const struct policy *p, const char *path,
                         char *buf, size_t size)
{
	char absolute[PATH_MAX], base[DERIVED_BASE_MAX + 1];
	const char *full = path, *b, *dot;
	size_t bn, i;

	if (!buf || size == 0)
		return;
	if (p && p->segment[0] != '\0') {
		copy_truncated(buf, size, p->segment);
		return;
	}
	if (!path || !*path) {
		copy_truncated(buf, size, "default");
		return;
	}
	if (absolute_path(path, absolute, sizeof absolute))
		full = absolute;

	/* The basename without its extension: "/etc/app/web.ini" -> "web". */
	b = strrchr(full, '/');
	b = b ? b + 1 : full;
	dot = strrchr(b, '.');
	bn = (dot && dot != b) ? (size_t)(dot - b) : strlen(b);
	if (bn > DERIVED_BASE_MAX)
		bn = DERIVED_BASE_MAX;
	for (i = 0; i < bn; i++)
		base[i] = is_segment_char(b[i]) ? b[i] : '_';
	base[bn] = '\0';
	if (bn == 0)
		strcpy(base, "policy");

	snprintf(buf, size, "p-%s-%08x", base, (unsigned)fnv1a(full));
}

/* The first value matching `format` (one %s-style conversion) on a line of
 * a file that may not parse as a whole.  1 when found. */
static int recover_value(const char *path, const char *format, char *out)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[512];
	int found = 0;
	while (!found && fgets(line, sizeof line, f))
		found = sscanf(line, format, out) == 1;
	fclose(f);
	return found;
}

/* The value of a `segment = NAME` line of a policy that does not load: a
 * broken policy still names the segment its programs use (the shim and
 * the tool must agree on it, or `pqshim stat` could not show the error). */
void policy_recover_segment(const char *path, char *out, size_t size)
{
	char name[65];
	if (recover_value(path, " segment = %64[A-Za-z0-9._-]", name))
		snprintf(out, size, "%s", name);
}

/* Likewise `on_error`: a policy that does not load still says what to do
 * about it.  Anything but a clear "fail-open" means fail-closed. */
enum onerror_mode policy_recover_on_error(const char *path)
{
	char word[32];
	if (recover_value(path, " on_error = %31[a-z-]", word) && strcmp(word, "fail-open") == 0)
		return ONERROR_FAIL_OPEN;
	return ONERROR_FAIL_CLOSED;
}
