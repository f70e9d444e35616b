# pqshim - see README.md.  `make` builds build/libpqshim.so and build/pqshim;
# `make check` runs the unit tests (under ASan+UBSan) and the integration
# tests against a real primary and replica; `make bench` runs tests/bench.

PREFIX  ?= /usr/local
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR ?=
CC      ?= cc
BUILD   := build

PG_INC      := $(shell pkg-config --variable=includedir libpq 2>/dev/null || echo /usr/include/postgresql)
PG_MAJOR    := $(shell pkg-config --modversion libpq 2>/dev/null | cut -d. -f1)
# libpq-int.h (shim/pqint.c and shim/pqerr.c only) needs the server headers of the same major.
PG_INTERNAL := -I$(PG_INC)/internal -I$(PG_INC)/$(PG_MAJOR)/server
# libmicrohttpd: `pqshim serve` only; never linked into libpqshim.so.
MHD_CFLAGS  := $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
MHD_LIBS    := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -I$(PG_INC) -Ishim -Ipolicy
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

POLICY_SRCS := policy/policy.c policy/policy_file.c policy/policy_text.c
# Modules that know nothing of interposition: shared by the shim, the tool and the unit tests.
CORE_SRCS   := $(POLICY_SRCS) shim/segment.c shim/procid.c shim/cap.c shim/cap_lock.c shim/cap_lanes.c shim/cap_lanes_table.c shim/cap_revoke.c shim/cap_park.c shim/cap_spin.c shim/connmap.c shim/log.c shim/share.c
# The rest of the shim, by layer (see README, "How the code is laid out").
SHIM_SRCS   := $(CORE_SRCS) shim/real.c shim/pqint.c shim/pqerr.c \
               shim/record.c shim/slots.c shim/lanes.c shim/connargs.c shim/route.c shim/session.c shim/readonly.c \
               shim/switch.c shim/drain.c shim/lease.c shim/lease_pool.c shim/lease_gate.c shim/standby.c shim/coord.c \
               shim/startup.c shim/segwatch.c shim/track.c shim/work.c shim/defer.c shim/reload.c shim/drainer.c \
               shim/wrap_connect.c shim/wrap_work.c shim/wrap_dlsym.c shim/progname.c shim/wrap_dlopen.c shim/wrap_exec.c shim/got.c
TOOL_SRCS   := $(CORE_SRCS) $(sort $(wildcard tools/*.c))
UNIT_TESTS  := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(sort $(wildcard tests/unit/test_*.c)))
HEADERS     := $(wildcard shim/*.h policy/*.h tools/*.h)

SHIM_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(SHIM_SRCS))
TOOL_OBJS := $(patsubst %.c,$(BUILD)/tobj/%.o,$(TOOL_SRCS))

.PHONY: all check unit integration bench demo install clean fuzz setup layers soak
all: $(BUILD)/libpqshim.so $(BUILD)/pqshim

$(BUILD)/obj/shim/pqint.o $(BUILD)/obj/shim/pqerr.o: $(BUILD)/obj/shim/%.o: shim/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PG_INTERNAL) -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

# Not linked against libpq on purpose: the shim finds the libpq the program
# loaded (see shim/real.c), and programs that never use libpq pay nothing.
$(BUILD)/libpqshim.so: $(SHIM_OBJS)
	$(CC) -shared -Wl,-z,now -Wl,-z,defs -o $@ $^ -ldl -lpthread

$(BUILD)/tobj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/tobj/tools/cmd_serve.o: ALL_CFLAGS += $(MHD_CFLAGS)
$(BUILD)/pqshim: $(TOOL_OBJS)
	$(CC) -o $@ $^ -lpq $(MHD_LIBS) -lpthread

$(BUILD)/unit/%: tests/unit/%.c $(CORE_SRCS) $(HEADERS) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $< $(CORE_SRCS) -lcmocka -lpthread

unit: $(UNIT_TESTS)

# Install missing Debian packages first (tools/setup.sh), then build in a
# fresh make so that pkg-config sees what was just installed.
setup:
	@bash tools/setup.sh

# No file of shim/ or policy/ includes a header of a higher layer.
layers:
	@bash tools/check_layers.sh

check: setup
	@$(MAKE) --no-print-directory all unit
	@bash tests/check.sh $(UNIT_TESTS)

BENCH_BINS := $(BUILD)/bench/handoff $(BUILD)/bench/fastpath $(BUILD)/bench/fill \
              $(BUILD)/bench/passthru/libpqshim.so
$(BUILD)/bench/passthru/libpqshim.so: tests/bench/passthru.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I/usr/include/postgresql -shared -fPIC -o $@ $< -ldl
$(BUILD)/bench/%: tests/bench/%.c $(CORE_SRCS) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CORE_SRCS) -lpthread

bench: setup
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@bash tests/bench/run.sh

# Faults for a few minutes (kill -9 storms, policy rewrites, forks): not
# part of check.  tests/soak/soak.sh says what it shows.
soak: setup
	@$(MAKE) --no-print-directory all
	@bash tests/soak/soak.sh

demo: setup
	@$(MAKE) --no-print-directory all
	@bash tools/demo.sh

fuzz: $(BUILD)/fuzz_policy
$(BUILD)/fuzz_policy: policy/fuzz_policy.c $(POLICY_SRCS) $(HEADERS)
	clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Ipolicy -o $@ policy/fuzz_policy.c $(POLICY_SRCS)

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/libpqshim.so $(DESTDIR)$(PREFIX)/lib/libpqshim.so
	install -m 0755 $(BUILD)/pqshim $(DESTDIR)$(PREFIX)/bin/pqshim
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0644 doc/pqshim.1 $(DESTDIR)$(PREFIX)/share/man/man1/pqshim.1
	install -m 0644 doc/pqshim-policy.5 $(DESTDIR)$(PREFIX)/share/man/man5/pqshim-policy.5
	install -d $(DESTDIR)$(PREFIX)/share/pqshim
	install -m 0755 tools/demo.sh $(DESTDIR)$(PREFIX)/share/pqshim/demo.sh
	install -m 0644 tools/demo_app.py tests/integration/pgbed.sh $(DESTDIR)$(PREFIX)/share/pqshim/
	install -d $(DESTDIR)$(SYSTEMDUNITDIR) $(BUILD)/dist
	for f in pqshim-serve.service pqshim-preload.conf; do \
		sed 's|@PREFIX@|$(PREFIX)|g' dist/$$f >$(BUILD)/dist/$$f || exit 1; done
	install -m 0644 $(BUILD)/dist/pqshim-serve.service $(DESTDIR)$(SYSTEMDUNITDIR)/pqshim-serve.service
	install -m 0644 $(BUILD)/dist/pqshim-preload.conf $(DESTDIR)$(PREFIX)/share/pqshim/pqshim-preload.conf

clean:
	rm -rf $(BUILD)
