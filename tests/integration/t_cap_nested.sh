#!/usr/bin/env bash
# t_cap_nested.sh: the MAAS scenario on max_active = 1: a thread that holds
# the only slot (connection A inside BEGIN) needs a second connection B, while
# another thread already waits for a slot. One psycopg2 process
# (py_cap_load.py probe), threads t1 (A, B) and t2 (C).
#  - nested = share: B's statements run at once (< 0.3 s, wait_timeout is
#    10 s): an autocommit `select 1`, then a BEGIN during which stat shows B's
#    slot "shared" and A's "held"; t2's `select 1` on C keeps waiting
#    throughout (the server has not seen it) and completes right after A
#    commits (< 0.3 s later).
#  - nested = fail: B's `select 1` fails at once (< 0.3 s) with
#    psycopg2.errors.TooManyConnections (53300), "pqshim: thread <t1's tid>
#    already holds a slot and would wait on itself (max_active = 1,
#    nested = fail, policy PATH)", and never reaches the server; t2 waits and
#    completes right after A commits; B works once A's slot is given back.
#  - nested = share when the owner's transaction (A) ends before the
#    sharer's (B): the slot passes to B, and the waiting C runs only after
#    B commits.
#  - a thread that exits while holding the slot (inside BEGIN on D, D left
#    open) does not give it back: the server still runs D's transaction
#    (D 'idle in transaction', stat shows D's holder as an orphan), so a
#    waiting thread's statement waits on; once another thread commits D,
#    it completes within 1 s.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"
# Each connection CONN gets application_name ${APP}_CONN (--suffix).
PROBE_ARGS=(--suffix)
ok() { # NAME LINE WHAT: the command must succeed; result in $R
	pcmd "$1" "$2"
	assert_eq "$(r .ok)" true "$3: $2: $R"
}
server() { server_activity "${APP}_$1" "state || '|' || query"; } # CONN: state|query of the probe's connection CONN
slots() { # the slot of each of the probe's connections, by application_name
	jqp "$POL" "[.connections[] | select(.pid == $PID) |
		\"\(.application_name | ltrimstr(\"${APP}_\"))=\(.slot)\"] | sort | join(\" \")"
}
queued() { [ "$(jqp "$POL" .cap.waiting)" = 1 ]; } # $POL: the current policy
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# released NAME SEQ SECONDS WHAT: the command just run (the last result)
# freed the slot: the waiting command SEQ gives [[1]] at most SECONDS after
# it returned; $R is then SEQ's result
released() {
	local end after
	end=$(r .t1)
	presult "$1" "$2" 5
	assert_eq "$(r .ok) $(r '.rows | tojson')" "true [[1]]" "$4: the waiter's select 1: $R"
	after=$(secs "$end" "$(r .t1)")
	note "$4: the waiter waited $(r .elapsed) s, done $after s after the release returned"
	assert_le "$after" "$3" "$4: seconds from the release to the waiter's result"
}

# scenario MODE: A in BEGIN on t1, C waiting on t2, then B on t1
scenario() {
	local mode=$1 cseq
	POL=$(policy_new "nested_$mode" "[cap]
max_active = 1
nested = $mode
wait_timeout = 10s
")
	APP=t_cap_nested_$mode
	probe_start "$mode" "$POL" "$APP"
	ok "$mode" "t1 connect A" "$mode"
	ok "$mode" "t1 connect B" "$mode"
	ok "$mode" "t2 connect C" "$mode"
	ok "$mode" "t1 exec A begin" "$mode"
	T1=$(r .tid)
	assert_eq "$(server A)" "idle in transaction|begin" "$mode: server: A"
	psend "$mode" "t2 exec C select 1"
	cseq=$SEQ
	wait_until 5 queued || fail "$mode: t2 never queued: $(stat_json "$POL")"
	assert_eq "$(slots)" "A=held B=none C=waiting" "$mode: stat: slots with C queued"

	if [ "$mode" = share ]; then
		ok "$mode" "t1 exec B select 1" "$mode"
		assert_le "$(r .elapsed)" 0.3 "share: seconds for select 1 on B"
		assert_eq "$(server B)" "idle|select 1" "share: server: B ran it"
		ok "$mode" "t1 exec B begin" "$mode"
		assert_le "$(r .elapsed)" 0.3 "share: seconds for begin on B"
		assert_eq "$(slots)" "A=held B=shared C=waiting" "share: stat: slots with B inside BEGIN"
		assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "1 1" \
			"share: stat: active waiting (B rides on A's slot)"
		assert_eq "$(server B)" "idle in transaction|begin" "share: server: B"
		ok "$mode" "t1 exec B commit" "$mode"
		assert_le "$(r .elapsed)" 0.3 "share: seconds for commit on B"
		assert_eq "$(slots)" "A=held B=none C=waiting" "share: stat: slots after B's commit"
	else
		pcmd "$mode" "t1 exec B select 1"
		note "fail: select 1 on B: $R"
		assert_eq "$(r .ok)" false "fail: select 1 on B fails"
		assert_le "$(r .elapsed)" 0.3 "fail: seconds before the failure"
		assert_eq "$(r .cls) $(r .pgcode)" "TooManyConnections 53300" "fail: exception class, pgcode"
		assert_eq "$(r .tid)" "$T1" "fail: the same thread t1"
		want="pqshim: thread $T1 already holds a slot and would wait on itself (max_active = 1, nested = fail, policy $POL)"
		[[ $(r .msg) == "$want"* ]] || fail "fail: message '$(r .msg)' does not start with '$want'"
		assert_eq "$(server B)" "idle|" "fail: server: B never got the statement"
		assert_eq "$(slots)" "A=held B=none C=waiting" "fail: stat: slots after the refusal"
	fi

	# C has waited all along, unseen by the server.
	pending "$mode" "$cseq" || fail "$mode: C ran while A held the only slot: $(cat "$T/$mode.out")"
	assert_eq "$(server C)" "idle|" "$mode: server: C still waiting"
	ok "$mode" "t1 exec A commit" "$mode"
	local commit_start
	commit_start=$(r .t0)
	released "$mode" "$cseq" 0.3 "$mode: A's commit, C"
	assert_ge "$(secs "$commit_start" "$(r .t1)")" 0 "$mode: C done after A's commit began (it waited)"
	assert_eq "$(server C)" "idle|select 1" "$mode: server: C ran it"
	if [ "$mode" = fail ]; then
		ok "$mode" "t1 exec B select 2" "fail: B after A's commit"
		assert_le "$(r .elapsed)" 0.3 "fail: seconds for select 2 on B after A's commit"
		assert_eq "$(server B)" "idle|select 2" "fail: server: B ran it"
		assert_ge "$(jqp "$POL" '.cap.refused // 1')" 1 "fail: stat: .cap.refused"
	fi
	assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting) \(.cap.timeouts)"')" "0 0 0" \
		"$mode: stat: active waiting timeouts at the end"
	probe_end "$mode"
}
scenario share
scenario fail

# --- nested = share, and the owner's transaction ends first -----------------
# B rides on A's slot; A commits while B is still inside its BEGIN: the slot
# passes to B (the cap goes on counting B's work), not to the waiting C.
POL=$(policy_new nested_hand "[cap]
max_active = 1
nested = share
wait_timeout = 10s
")
APP=t_cap_nested_hand
probe_start hand "$POL" "$APP"
ok hand "t1 connect A" hand
ok hand "t1 connect B" hand
ok hand "t2 connect C" hand
ok hand "t1 exec A begin" hand
ok hand "t1 exec B begin" hand
assert_eq "$(slots)" "A=held B=shared C=none" "hand: stat: slots with A and B inside BEGIN"
psend hand "t2 exec C select 1"
CSEQ=$SEQ
wait_until 5 queued || fail "hand: t2 never queued: $(stat_json "$POL")"
ok hand "t1 exec A commit" hand
assert_eq "$(slots)" "A=none B=held C=waiting" "hand: stat: slots after A's commit"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "1 1" "hand: stat: active waiting after A's commit"
sleep 0.2
pending hand "$CSEQ" || fail "hand: C ran while B still worked on the handed-over slot: $(cat "$T/hand.out")"
assert_eq "$(server C)" "idle|" "hand: server: C still waiting"
assert_eq "$(server B)" "idle in transaction|begin" "hand: server: B"
ok hand "t1 exec B commit" hand
released hand "$CSEQ" 0.3 "hand: B's commit, C"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" "hand: stat: active waiting at the end"
probe_end hand

# --- a thread exits while holding the slot ----------------------------------
POL=$(policy_new nested_exit "[cap]
max_active = 1
wait_timeout = 10s
")
APP=t_cap_nested_exit
probe_start exit "$POL" "$APP"
ok exit "t3 connect D" exit
ok exit "t4 connect E" exit
ok exit "t3 exec D begin" exit
psend exit "t4 exec E select 1"
ESEQ=$SEQ
wait_until 5 queued || fail "exit: t4 never queued"
assert_eq "$(slots)" "D=held E=waiting" "exit: stat: slots"
sleep 0.2
pending exit "$ESEQ" || fail "exit: E ran while D held the only slot"
ok exit "t3 exit" exit
# D's transaction is still open on the server: its slot stays (an orphan)
sleep 0.5
pending exit "$ESEQ" || fail "exit: E ran while D's transaction, left open by t3, held the only slot"
assert_eq "$(server D)" "idle in transaction|begin" "exit: server: D (left open, in its transaction)"
assert_eq "$(jqp "$POL" '[.connections[] | select(.orphan == true) | .application_name] | join(",")')" \
	"${APP}_D" "exit: stat: D's holder shown as an orphan"
ok exit "t5 exec D commit" exit   # another thread ends that transaction
commit_end=$(r .t1)
presult exit "$ESEQ" 5
assert_eq "$(r .ok) $(r '.rows | tojson')" "true [[1]]" "exit: E's select 1 after D's commit: $R"
after=$(secs "$commit_end" "$(r .t1)")
note "exit: E done $after s after D's commit (waited $(r .elapsed) s)"
assert_le "$after" 1.0 "exit: seconds from D's commit to E's result"
assert_eq "$(server E)" "idle|select 1" "exit: server: E ran it"
assert_eq "$(server D)" "idle|commit" "exit: server: D's transaction ended"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" "exit: stat: active waiting"
probe_end exit
echo "ok: nested = share and fail on max_active = 1; a shared slot passes to the sharer; a transaction a thread leaves open keeps its slot until it ends"
