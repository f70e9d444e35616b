#!/usr/bin/env bash
# t_robust_fork.sh - a forked child can neither use nor end its parent's
# session (after_fork = protect, the default).
#  A psycopg2 parent inserts a row (its transaction is open) and forks; the
#  child runs a statement on the inherited connection: it fails with a
#  pqshim: error, SQLSTATE 55000; the child closes the connection (libpq
#  would send Terminate on the shared socket) and exits 0.  The parent's
#  COMMIT then works (its row is there), and stat counts no leak.
#  With after_fork = allow, libpq's behaviour: the child's statement runs on
#  the parent's session and its close ends it (the parent's COMMIT fails).
#  Before the fix, the child's statement ran inside the parent's transaction
#  and its close ended the parent's session: the COMMIT failed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROB=$PQT_ROOT/tests/clients/py_robust.py
sql_primary "drop table if exists robust_fork; create table robust_fork (x text)" >/dev/null
POL=$(policy_new fork "[cap]
max_active = 2
")
"$PQSHIM" run -p "$POL" -- "$PY" "$ROB" fork --app t_robust_fork >"$T/out" 2>"$T/err" ||
	fail "fork client failed: $(cat "$T/err")"
cat "$T/err" >&2
CU=$(sed -n 's/^CHILD_USE //p' "$T/out")
note "child: $CU"
assert_eq "$(jq .ok <<<"$CU")" false "child: a statement on the inherited connection is refused"
assert_eq "$(jq -r .pgcode <<<"$CU")" 55000 "child: its SQLSTATE"
assert_match "$(jq -r .msg <<<"$CU")" '^pqshim: .*after_fork' "child: the message"
assert_eq "$(jq -r .closed <<<"$CU")" true "child: closing it works"
assert_eq "$(sed -n 's/^CHILD //p' "$T/out")" 0 "child: exit status"
PA=$(sed -n 's/^PARENT //p' "$T/out")
note "parent: $PA"
assert_eq "$(jq .ok <<<"$PA")" true "parent: COMMIT after the child closed the connection"
assert_eq "$(sql_primary "select string_agg(x, ',') from robust_fork")" t_robust_fork "server: the parent's row"
assert_eq "$(jqp "$POL" .totals.leaked)" 0 "stat: leaks"

# after_fork = allow: libpq's behaviour - the child's statement goes out on
# the parent's session, and its close ends that session (Terminate).
sql_primary "truncate robust_fork" >/dev/null
POL=$(policy_new fork_allow "[cap]
max_active = 2
[tracking]
after_fork = allow
")
"$PQSHIM" run -p "$POL" -- "$PY" "$ROB" fork --app t_robust_fork_allow >"$T/allow.out" 2>"$T/allow.err" ||
	fail "fork client (allow) failed: $(cat "$T/allow.err")"
CU=$(sed -n 's/^CHILD_USE //p' "$T/allow.out")
note "allow: child: $CU; parent: $(sed -n 's/^PARENT //p' "$T/allow.out")"
assert_eq "$(jq .ok <<<"$CU")" true "allow: the child's statement runs"
assert_eq "$(sed -n 's/^PARENT //p' "$T/allow.out" | jq .ok)" false "allow: the child's close ended the parent's session"
assert_eq "$(sql_primary "select count(*) from robust_fork")" 0 "allow: server: the parent's row never committed"
