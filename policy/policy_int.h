/*
 * policy_int.h - what the parts of the policy module share: the text
 * helpers of policy_text.c, used by policy.c (the parser) and policy_file.c
 * (the file on disk).  Not part of the module's public face: see policy.h.
 *
 * Everything works on (pointer, length) slices of the input, which need not
 * be NUL-terminated; the byte classes are ASCII's, whatever the locale
 * (<ctype.h> is locale-dependent and undefined on negative chars).
 */
#ifndef PQSHIM_POLICY_INT_H
#define PQSHIM_POLICY_INT_H

#include "policy.h"

#include <stdbool.h>

#define SHOW_MAX 60                      /* input bytes quoted in a message */
#define SHOW_BUF (4 * SHOW_MAX + 4)      /* what policy_show() may write */

static inline bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static inline bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static inline char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static inline bool is_comment_start(char c)
{
	return c == '#' || c == ';';
}

/* [A-Za-z0-9._-]: the bytes of a segment name (and of a group name). */
static inline bool policy_is_segment_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
	       c == '.' || c == '_' || c == '-';
}

/* Drop blanks at both ends of the slice. */
static inline void trim(const char **s, size_t *n)
{
	while (*n > 0 && is_blank((*s)[0])) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && is_blank((*s)[*n - 1]))
		(*n)--;
}

/* The slice is `word`, ignoring ASCII case. */
static inline bool slice_equals_word(const char *s, size_t n, const char *word)
{
	for (size_t i = 0; i < n; i++)
		if (word[i] == '\0' || ascii_lower(s[i]) != ascii_lower(word[i]))
			return false;
	return word[n] == '\0';
}

static inline bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_digit(s[i]))
			return false;
	return n > 0;
}

/* Value of a digit string, saturating just above `max` so it cannot overflow. */
static inline uint64_t digits_value(const char *s, size_t n, uint64_t max)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++) {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > max)
			return max + 1;
	}
	return v;
}

/*
 * s[0..n) as printable text for an error message, in out (at least SHOW_BUF
 * bytes): control bytes, '"' and '\\' escaped, input longer than SHOW_MAX
 * cut with "...".  Returns out.
 */
const char *policy_show(char *out, size_t size, const char *s, size_t n);

/* Appends "name:line: message" (or "name: message" when line is 0). */
__attribute__((format(printf, 4, 5)))
void policy_add_error(struct policy_errors *errs, const char *name,
                      unsigned line, const char *fmt, ...);

/* Case-insensitive Levenshtein distance, or UINT_MAX when a name is long. */
unsigned policy_edit_distance(const char *a, size_t an, const char *b);

/* Close enough to `word` to be a typo of it, and not so short that
 * anything is close. */
bool policy_typo_of(const char *s, size_t n, const char *word);

/* The word of a NULL-terminated list that s[0..n) is a typo of, or NULL. */
const char *policy_word_resembling(const char *s, size_t n, const char *const *words);

/* "a, b or c" from a NULL-terminated word list, in out.  Returns out. */
const char *policy_list_words(char *out, size_t size, const char *const *words);

#endif
