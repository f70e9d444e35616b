/*
 * stat.h - the snapshot `pqshim stat` shows and its machine-readable
 * forms, in cmd_stat.c: `pqshim stat --json | --prometheus` take and print
 * one once, `pqshim serve` takes and writes one for every scrape, so the
 * two never differ.
 */
#ifndef PQSHIM_STAT_H
#define PQSHIM_STAT_H

#include <stdio.h>

struct snapshot;
struct snap_source;

/*
 * Take snapshot s of src with everything the writers below show: the
 * records (snap_take), the escaped count and object from the segment's
 * header, the cluster view (cluster_read).  0, or -1 when the segment was
 * truncated, removed or replaced under the tool (s->lost_why says which;
 * nothing is to be shown).  The escaped object and the cluster view are
 * the tool's single copies, kept for the last snapshot taken: a program
 * that takes snapshots in several threads (serve) takes and writes each
 * under one lock.
 */
int stat_take(struct snap_source *src, struct snapshot *s);

/* One JSON object: the fields of pqshim(1) "JSON OUTPUT". */
void stat_write_json(FILE *out, const struct snapshot *s, const char *segname);

/* Prometheus text exposition format 0.0.4, every name prefixed pqshim_. */
void stat_write_prometheus(FILE *out, const struct snapshot *s);

#endif
