#!/usr/bin/env bash
# t_robust_self_deferral.sh - one thread never waits on itself through a
# deferred send.
#  One Ruby thread, two connections, max_active = 1, wait_timeout = 2s:
#  send_query on A (results not read yet), then B.exec, which in ruby-pg
#  sends, waits on B's socket, then reads.  B's statement must end by
#  wait_timeout (+ 1 s): it runs or fails with 53300 - never hangs; then A's
#  result is still there to read, and the server ran A's statement.
#  With nested = fail, B fails at once ("would wait on itself").
#  Before the fix, B's send was deferred until A gave its slot back, which
#  needs the program to read A, which it does only after B answers: the
#  program sat in its own poll on B's socket for ever.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

RUBY=/usr/bin/ruby
"$RUBY" -rpg -e 1 2>/dev/null || fail "needs /usr/bin/ruby with ruby-pg (Debian: ruby-pg)"
cat >"$T/self.rb" <<'RB'
require 'pg'
require 'json'
def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
a = PG.connect(application_name: 't_robust_self_a')
b = PG.connect(application_name: 't_robust_self_b')
a.send_query("select pg_sleep(0.2), 'from a'")
t0 = now
begin
  r = b.exec("select 'from b'")
  res = { ok: true, value: r.getvalue(0, 0) }
rescue PG::Error => e
  res = { ok: false, pgcode: e.result && e.result.error_field(PG::PG_DIAG_SQLSTATE), msg: e.message.strip }
end
res[:elapsed] = now - t0
puts "B " + res.to_json
STDOUT.flush
ra = a.get_last_result
puts "A " + { ok: true, value: ra.getvalue(0, 1) }.to_json
a.close
b.close
RB
for nested in share fail; do
	POL=$(policy_new "self_$nested" "[cap]
max_active = 1
wait_timeout = 2s
nested = $nested
")
	timeout -k 1 8 "$PQSHIM" run -p "$POL" -- "$RUBY" "$T/self.rb" >"$T/$nested.out" 2>"$T/$nested.err" &
	P=$!
	bg_track $P
	wait_until 3.5 grep -q '^B ' "$T/$nested.out" ||
		fail "nested = $nested: B.exec neither ran nor failed within 3.5 s (wait_timeout 2 s): $(jqp "$POL" '.connections | map({appname: .application_name, state, slot}) | tostring')"
	RB_=$(sed -n 's/^B //p' "$T/$nested.out")
	note "nested = $nested: B: $RB_"
	if [ "$nested" = fail ]; then
		# (a refused PQsend* returns 0 with the text in PQerrorMessage: no
		# result, so no SQLSTATE to carry - SPEC)
		assert_match "$(jq -r .pgcode <<<"$RB_")" '^(53300|null)$' "nested = fail: B's SQLSTATE"
		assert_match "$(jq -r .msg <<<"$RB_")" 'pqshim: .*would wait on itself' "nested = fail: the message"
		assert_le "$(jq .elapsed <<<"$RB_")" 0.5 "nested = fail: B refused at once (s)"
	elif [ "$(jq .ok <<<"$RB_")" = true ]; then
		assert_eq "$(jq -r .value <<<"$RB_")" "from b" "B's row"
	else
		assert_eq "$(jq -r .pgcode <<<"$RB_")" 53300 "B failed, with 53300"
		assert_match "$(jq -r .msg <<<"$RB_")" '^pqshim: ' "B's message"
		assert_le "$(jq .elapsed <<<"$RB_")" 2.6 "B's wait (s)"
	fi
	rc=0
	wait $P || rc=$?
	assert_eq "$rc" 0 "nested = $nested: exit status ($(cat "$T/$nested.err"))"
	assert_eq "$(sed -n 's/^A //p' "$T/$nested.out" | jq -r .value)" "from a" "nested = $nested: A's result read after B"
	assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" "nested = $nested: stat after"
done
