/*
 * policy_int.h - what policy.c (the parser) and policy_file.c (the file on
 * disk) share.  Not part of the module's public face: see policy.h.
 */
#ifndef PQSHIM_POLICY_INT_H
#define PQSHIM_POLICY_INT_H

#include "policy.h"

#include <stdbool.h>

/* Appends "name:line: message" (or "name: message" when line is 0). */
__attribute__((format(printf, 4, 5)))
void policy_add_error(struct policy_errors *errs, const char *name,
                      unsigned line, const char *fmt, ...);

/* [A-Za-z0-9._-]: the bytes of a segment name. */
bool policy_is_segment_char(char c);

#endif
