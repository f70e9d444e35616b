/*
 * policy_text.c - the text helpers of the policy module: messages that quote
 * the input safely, the errors list, and the suggestions for misspelt names
 * ("did you mean ...?").  Pure; the small byte helpers are inline in
 * policy_int.h.
 */
#include "policy_int.h"

#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define WORD_MAX 64      /* longer names get no suggestion */

/*
 * Write s[0..n) into out as printable text for an error message: control
 * bytes become \xNN, and input longer than SHOW_MAX is cut with "...".  Bytes
 * >= 0x80 pass through so that UTF-8 paths stay readable.
 */
const char *policy_show(char *out, size_t size, const char *s, size_t n)
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

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

void policy_add_error(struct policy_errors *errs, const char *name,
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

unsigned policy_edit_distance(const char *a, size_t an, const char *b)
{
	unsigned row[WORD_MAX + 1];
	size_t bn = strlen(b), i, j;

	if (an > WORD_MAX || bn > WORD_MAX)
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

bool policy_typo_of(const char *s, size_t n, const char *word)
{
	unsigned d = policy_edit_distance(s, n, word);

	return d <= 2 && d < strlen(word) / 2 + 1;
}

const char *policy_word_resembling(const char *s, size_t n, const char *const *words)
{
	const char *best = NULL;
	unsigned best_d = UINT_MAX;

	for (size_t i = 0; words[i]; i++) {
		unsigned d = policy_edit_distance(s, n, words[i]);

		if (policy_typo_of(s, n, words[i]) && d < best_d) {
			best = words[i];
			best_d = d;
		}
	}
	return best;
}

const char *policy_list_words(char *out, size_t size, const char *const *words)
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
