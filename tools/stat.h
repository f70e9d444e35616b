/*
 * stat.h - the machine-readable forms of a snapshot, written by
 * cmd_stat.c: `pqshim stat --json | --prometheus` print them once,
 * `pqshim serve` answers every scrape with them, so the two never differ.
 */
#ifndef PQSHIM_STAT_H
#define PQSHIM_STAT_H

#include <stdio.h>

struct snapshot;

/* One JSON object: the fields of pqshim(1) "JSON OUTPUT". */
void stat_write_json(FILE *out, const struct snapshot *s, const char *segname);

/* Prometheus text exposition format 0.0.4, every name prefixed pqshim_. */
void stat_write_prometheus(FILE *out, const struct snapshot *s);

#endif
