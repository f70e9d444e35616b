#!/usr/bin/env bash
# tools/setup.sh - install what pqshim needs from Debian's packages, only if
# missing.  Run by `make check` and `make demo` (and so by CI) before they
# build.  As root it installs; otherwise it names what is missing and how to
# install it, and fails.
set -euo pipefail

pkgs=(
	build-essential pkg-config          # the compiler and libpq's pkg-config file
	libpq-dev                           # libpq-fe.h, and libpq-int.h for shim/pqerr.c
	postgresql-server-dev-15            # ... whose includes need these three
	libkrb5-dev libssl-dev
	uthash-dev libcmocka-dev            # unit tests
	postgresql-15                       # the test bed: primary and streaming replica
	jq procps util-linux openssl        # integration tests (jq, pgrep, runuser, script; a TLS bed)
	iproute2                            # t_cluster_keepalive: a veth pair into a network namespace
	python3 python3-psycopg2 python3-psycopg ruby-pg libdbd-pg-perl   # client tests
	php8.2-cli php8.2-pgsql php8.2-fpm libfcgi-bin   # PHP client tests (cgi-fcgi talks to php-fpm)
	clang                               # libFuzzer for policy/fuzz_policy.c
	valgrind                            # tests/bench: callgrind instruction counts
	gnuplot-nox                         # make demo: the picture of the run
	libmicrohttpd-dev curl              # pqshim serve's HTTP server; its test scrapes with curl
)
missing=()
for p in "${pkgs[@]}"; do
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "pqshim setup: missing Debian packages: ${missing[*]}" >&2
	echo "  install them with: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "pqshim setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The postgresql package may create and start a cluster of its own: the tests
# and the demo start their own servers, so it only costs memory.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | awk '$1 == 15 && $2 == "main" && $4 == "online"' | grep -q .; then
	pg_ctlcluster 15 main stop || true
fi
