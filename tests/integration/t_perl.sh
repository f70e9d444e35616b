#!/usr/bin/env bash
# t_perl.sh: Perl DBI + DBD::Pg (libpq linked at build time; PQconnectdb,
# PQexec, PQexecParams, PQprepare/PQexecPrepared, PQsendQuery for pg_async,
# COPY with pg_putcopydata/pg_getcopydata). Two connections opened by the
# same (only) thread. Checks, while held, the server's view and `pqshim stat`
# (two records with the same opener tid, exact counts), then the data and the
# totals after exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=client.sh
. "$(dirname "$0")/client.sh"

PERL=/usr/bin/perl
"$PERL" -MDBD::Pg -e 1 2>/dev/null || fail "needs DBD::Pg (Debian: libdbd-pg-perl)"
POL=$(policy_new perl)
APP=t_perl
K=10 R=50
SECRET=sekrit-t-perl

# Per connection (see tests/clients/perl_client.pl). DBD::Pg runs a statement
# with placeholders unprepared (PQexecParams) the first time and prepares it
# (PQprepare, then PQexecPrepared) from the second execution on
# (pg_switch_prepared = 2).
#  A (AutoCommit): SET, CREATE (PQexec), DELETE (PQexecParams), K executions
#     of the INSERT + its PQprepare (K+1), COPY FROM, COPY TO, one async INSERT
#     (PQsendQuery): K+7 statements, each its own xact (the prepare included)
#  B (AutoCommit off, DBD::Pg sends "begin" itself): begin, K INSERTs,
#     commit; begin, 2 INSERTs, rollback; begin, SELECT, commit: K+9
#     statements, 3 xacts
QA=$((K + 7)) XA=$((K + 7)) QB=$((K + 9)) XB=3

client_start perl_client.pl "$PERL" "$PQT_ROOT/tests/clients/perl_client.pl" \
	--app "$APP" --stmts "$K" --copy "$R"

client_held
assert_eq "$(q "[$mine] | length")" 2 "connection records of pid $PID"
assert_eq "$(q "[$mine | .tid] | unique | map(tostring) | join(\" \")")" "$PID" \
	"opener tid of both records (single-threaded perl)"
# the two records, ordered by statement count: A has fewer (K+7 < K+9)
assert_eq "$(q "[$mine | [.queries, .xacts, .state, .status, .inherited, .application_name,
	.threads == [.tid]] | map(tostring) | join(\" \")] | sort_by(split(\" \")[0] | tonumber) |
	join(\",\")")" \
	"$QA $XA idle ok false $APP true,$QB $XB idle ok false $APP true" \
	"records: queries xacts state status inherited application_name only-opener"
assert_match "$(q "[$mine][0].server")" "(^| )port=$PQT_PRIMARY_PORT( |$)" "server"
assert_eq "$(q ".processes[] | select(.pid == $PID) | [.program, .threads, .connections] |
	map(tostring) | join(\" \")")" "perl 1 2" "process record: program threads connections"

client_rows perl_t
assert_eq "$(client_who perl_t a_async)" 1 "rows: A's async INSERT"

client_end perl_client.pl $((QA + QB)) $((XA + XB))
echo "ok: DBD::Pg: 2 connections in one thread, $((QA + QB)) statements"
