# shellcheck shell=bash
# tests/integration/seg_hold.sh: sourced by the t_seg_*.sh tests after
# lib.sh: builds tests/clients/c_seg_hold.c as $T/hold (see that file).
cc -Wall -Werror -I"$(pkg-config --variable=includedir libpq)" \
	"$PQT_ROOT/tests/clients/c_seg_hold.c" -o "$T/hold" -lpq ||
	fail "cannot build c_seg_hold"
