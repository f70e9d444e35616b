#!/usr/bin/env bash
# tools/check_layers.sh - `make layers`: the shim's modules depend in one
# direction only.  Every file of shim/ and policy/ has a layer (the table
# below: a module's .c and .h share theirs); a file may include the headers
# of its own layer and of the layers below, never one above.  A file or a
# header missing from the table fails too: a new module takes its place here.
# Prints each upward include and ends with one line: "layers: ok" or
# "layers: N upward includes"; exits non-zero on any.
set -euo pipefail
cd "$(dirname "$0")/.."

# layer  modules (file names without .c/.h)
table='
0 core      policy policy_file policy_text policy_int segment cap cap_lock cap_lanes cap_lanes_table cap_revoke cap_park cap_spin cap_int procid connmap log clock progname fuzz_policy lease_seg share
1 libpq     real pqint pqerr
2 services  shim record slots lanes connargs route session readonly switch drain lease lease_pool lease_int lease_gate standby coord
3 lifecycle startup segwatch track work defer reload drainer
4 wrappers  wrap_connect wrap_work wrap_dlsym wrap_dlopen wrap_exec got
'
declare -A layer name
while read -r n lname mods; do
	[ -n "$n" ] || continue
	for m in $mods; do layer[$m]=$n; name[$m]=$lname; done
done <<<"$table"

bad=0
for f in shim/*.[ch] policy/*.[ch]; do
	m=$(basename "${f%.*}")
	if [ -z "${layer[$m]:-}" ]; then
		echo "$f: not in the table of layers (tools/check_layers.sh)"
		bad=$((bad + 1))
		continue
	fi
	while IFS= read -r inc; do
		h=$(basename "${inc%.h}")
		# headers of the system, libpq and PostgreSQL: not ours
		[ -e "shim/$h.h" ] || [ -e "policy/$h.h" ] || continue
		if [ -z "${layer[$h]:-}" ]; then
			echo "$f: includes $inc, which is not in the table of layers"
			bad=$((bad + 1))
		elif [ "${layer[$h]}" -gt "${layer[$m]}" ]; then
			echo "$f (${name[$m]}) includes $inc (${name[$h]}): an upward dependency"
			bad=$((bad + 1))
		fi
	done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done
if [ "$bad" = 0 ]; then
	echo "layers: ok"
else
	echo "layers: $bad faults"
	exit 1
fi
