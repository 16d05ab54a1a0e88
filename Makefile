# p11proxy — plain Makefile. `make`, `make check`, `make check-asan`, `make valgrind`,
# `make bench`, `make demo`, `make install PREFIX=... DESTDIR=...`.

# Installation directories, the GNU way: every path is under PREFIX, and DESTDIR goes in front
# of every path written. SYSCONFDIR is $(PREFIX)/etc (PREFIX=/usr/local writes
# /usr/local/etc/p11proxy/...), except that PREFIX=/usr uses /etc, as usual. SYSTEMDUNITDIR=
# (empty) leaves out the systemd unit, its environment file and the sysusers.d entry.
PREFIX ?= /usr/local
EXEC_PREFIX ?= $(PREFIX)
BINDIR ?= $(EXEC_PREFIX)/bin
LIBDIR ?= $(EXEC_PREFIX)/lib
MODULEDIR ?= $(LIBDIR)/pkcs11
INCLUDEDIR ?= $(PREFIX)/include
DATAROOTDIR ?= $(PREFIX)/share
MANDIR ?= $(DATAROOTDIR)/man
ifeq ($(patsubst %/,%,$(PREFIX)),/usr)
SYSCONFDIR ?= /etc
else
SYSCONFDIR ?= $(PREFIX)/etc
endif
P11KIT_MODULEDIR ?= $(DATAROOTDIR)/p11-kit/modules
# bash-completion's directory for completions loaded on demand.
BASHCOMPDIR ?= $(DATAROOTDIR)/bash-completion/completions
# What the p11-kit module file names: an absolute path, or a bare file name that p11-kit looks
# up in its own module directory (the Debian package does that: MODULEDIR is that directory).
P11KIT_MODULE ?= $(MODULEDIR)/libproxy.so
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
INSTALL ?= install
VERSION := $(shell sed -n 's/^\#define P11PROXY_VERSION_MAJOR //p' include/p11proxy.h).$(shell \
	sed -n 's/^\#define P11PROXY_VERSION_MINOR //p' include/p11proxy.h)

# Build directory: `make O=build-asan EXTRA_CFLAGS=...` builds a variant beside the default.
O ?= build
# Parallel jobs for the builds the test targets make (the suites themselves run one at a time).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
CC ?= cc
PKG_CONFIG ?= pkg-config
PKGS := p11-kit-1 yaml-0.1 libcrypto sqlite3 libpq

WARN := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wwrite-strings -Wno-unused-parameter -Wvla -Wpointer-arith -Wcast-qual
HARDEN := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fno-strict-overflow
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -pthread $(WARN) $(HARDEN) \
	-Ilib -Iinclude $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null) $(CFLAGS) $(EXTRA_CFLAGS)
LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -ldl -pthread
LDHARDEN := -Wl,-z,relro,-z,now
ALL_LDFLAGS := $(LDHARDEN) $(LDFLAGS) $(EXTRA_LDFLAGS)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)
# The CLI alone serves HTTP (`p11proxy health --listen`), tells systemd it is ready (libsystemd's
# sd_notify) and writes JSON (jansson): none of them is ever in libproxy.so.
CLI_PKGS := libmicrohttpd jansson libsystemd
CLI_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(CLI_PKGS) 2>/dev/null)
CLI_LIBS := $(shell $(PKG_CONFIG) --libs $(CLI_PKGS) 2>/dev/null)
# Test and bench programs hand string literals to the (non-const) PKCS#11 API all the time.
TEST_CFLAGS := $(ALL_CFLAGS) -Wno-cast-qual -Wno-write-strings

LIB_SRCS := $(sort $(wildcard lib/*/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(O)/obj/%.o)
TOOL_SRCS := $(sort $(wildcard tools/*.c))
TOOL_OBJS := $(TOOL_SRCS:%.c=$(O)/obj/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(O)/tests/%)
PROG_SRCS := $(sort $(wildcard tests/progs/*.c))
PROG_BINS := $(PROG_SRCS:tests/progs/%.c=$(O)/tests/%)
SHIM_SRCS := $(sort $(wildcard tests/shim/*.c))
# Fuzz targets (tests/fuzz/fuzz_NAME.c): see the `fuzz` rule.
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(O)/tests/%)
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(O)/bench/%)
DEPS := $(LIB_OBJS:.o=.d) $(TOOL_OBJS:.o=.d)

MODULE := $(O)/libproxy.so
STATIC := $(O)/libp11p.a
CLI := $(O)/p11proxy

.PHONY: all deps tests check check-asan valgrind bench bench-callgrind demo install uninstall \
	clean format \
	format-check man-lint fuzz

all: $(MODULE) $(CLI)

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(STATIC): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

# The module exports C_GetFunctionList only (version script + hidden visibility);
# -z nodelete keeps it mapped after dlclose, as threads may still be returning from it.
$(MODULE): $(LIB_OBJS) lib/module.map
	$(CC) -shared -o $@ $(LIB_OBJS) -Wl,--version-script=lib/module.map -Wl,-z,nodelete \
		-Wl,--no-undefined $(ALL_LDFLAGS) $(LIBS)

$(O)/obj/tools/%.o: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CLI_CFLAGS) -MMD -MP -c $< -o $@

$(CLI): $(TOOL_OBJS) $(STATIC)
	$(CC) -o $@ $(TOOL_OBJS) $(STATIC) $(ALL_LDFLAGS) $(LIBS) $(CLI_LIBS)

$(O)/tests/%: tests/unit/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -DP11P_TEST_SRCDIR='"$(CURDIR)/tests"' -o $@ $< $(STATIC) \
		$(ALL_LDFLAGS) $(CHECK_LIBS) $(LIBS)

$(O)/tests/%: tests/progs/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(STATIC) $(ALL_LDFLAGS) $(LIBS)

$(O)/bench/%: bench/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(STATIC) $(ALL_LDFLAGS) $(LIBS) -lm

# Fuzz targets: tests/fuzz/fuzz_NAME.c defines LLVMFuzzerTestOneInput. Every build links it with
# tests/fuzz/standalone.c (the seeds, then fixed-seed random mutations; no coverage feedback),
# which the suites run in `make check`, `check-asan` and `valgrind`. `make fuzz` links it with
# clang's libFuzzer instead (coverage-guided, ASan+UBSan, in build-fuzz/) and runs each target
# for FUZZ_SECONDS from tests/fuzz/corpus/NAME and tests/data/NAME, with tests/fuzz/NAME.dict;
# new inputs go to build-fuzz/corpus/NAME, crashes to build-fuzz/.
$(O)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/standalone.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $< tests/fuzz/standalone.c $(STATIC) $(ALL_LDFLAGS) $(LIBS)

$(O)/libfuzzer/fuzz_%: tests/fuzz/fuzz_%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -fsanitize=fuzzer -o $@ $< $(STATIC) $(ALL_LDFLAGS) $(LIBS)

fuzz: deps
	$(MAKE) O=build-fuzz CC=clang CFLAGS="-O1 -g" EXTRA_CFLAGS="$(FUZZ_CFLAGS)" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined" \
		$(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/libfuzzer/%)
	@set -e; for n in $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%); do \
		mkdir -p build-fuzz/corpus/$$n; \
		echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
		build-fuzz/libfuzzer/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
			-max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix=build-fuzz/ \
			$$([ -f tests/fuzz/$$n.dict ] && echo -dict=tests/fuzz/$$n.dict) \
			build-fuzz/corpus/$$n tests/fuzz/corpus/$$n \
			$$([ -d tests/data/$$n ] && echo tests/data/$$n); \
	done

# Test-only shim module that wraps another PKCS#11 module (fault injection).
$(O)/tests/libshim.so: $(SHIM_SRCS) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -shared -o $@ $(SHIM_SRCS) $(STATIC) $(ALL_LDFLAGS) $(LIBS)

# Test-only malicious module: lies about lengths, counts and handles on command (EVIL_LIE).
$(O)/tests/libevil.so: tests/evil/evil.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -shared -o $@ $< $(ALL_LDFLAGS) -pthread

tests: all $(UNIT_BINS) $(PROG_BINS) $(FUZZ_BINS) $(if $(SHIM_SRCS),$(O)/tests/libshim.so) \
	$(O)/tests/libevil.so

deps:
	@tests/install-deps.sh

# The README's test command: installs what it needs, builds, runs every suite.
check: deps
	$(MAKE) -j$(JOBS) tests
	tests/run.sh $(O) normal

# The sanitizer build is the strict test build: a violated precondition aborts (base/log.h).
check-asan: deps
	$(MAKE) -j$(JOBS) O=build-asan CFLAGS="-O1 -g" \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -DP11P_STRICT" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined" tests
	tests/run.sh build-asan asan

valgrind: deps
	$(MAKE) -j$(JOBS) tests
	tests/run.sh $(O) valgrind

# Wall-clock figures (bench/run.sh), then instructions per call under callgrind
# (bench/callgrind.sh, alone with `make bench-callgrind`). Figures, never a verdict.
bench: deps
	$(MAKE) all $(BENCH_BINS) $(O)/tests/libshim.so
	rc=0; bench/run.sh $(O) || rc=$$?; bench/callgrind.sh $(O) || rc=1; exit $$rc

bench-callgrind: deps
	$(MAKE) all $(O)/bench/bench_calls
	BENCH_PARTS=callgrind bench/callgrind.sh $(O)

# The demo's HA slot reaches SoftHSM2 through the test shim, and its application is a test program.
demo:
	@tests/install-deps.sh
	$(MAKE) all $(O)/tests/libshim.so $(O)/tests/signloop
	tools/demo.sh $(O)

# Every file `install` writes, under $(DESTDIR); `uninstall` removes exactly these. The
# environment file is installed only when absent (it is the operator's), and removed only when
# unchanged. The configuration itself (proxy.yaml) is never written: only proxy.yaml.example.
INSTALLED := $(MODULEDIR)/libproxy.so $(BINDIR)/p11proxy $(INCLUDEDIR)/p11proxy.h \
	$(PKGCONFIGDIR)/p11proxy.pc $(MANDIR)/man5/proxy.yaml.5 $(MANDIR)/man7/p11proxy.7 \
	$(MANDIR)/man8/p11proxy.8 $(P11KIT_MODULEDIR)/p11proxy.module $(BASHCOMPDIR)/p11proxy \
	$(SYSCONFDIR)/p11proxy/proxy.yaml.example \
	$(if $(SYSTEMDUNITDIR),$(SYSTEMDUNITDIR)/p11proxy-health.service $(SYSUSERSDIR)/p11proxy.conf)
ENVFILE := $(SYSCONFDIR)/default/p11proxy
SUBST := sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@BINDIR@|$(BINDIR)|g' \
	-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@MODULEDIR@|$(MODULEDIR)|g' \
	-e 's|@P11KIT_MODULE@|$(P11KIT_MODULE)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	-e 's|@VERSION@|$(VERSION)|g'

install: all
	$(INSTALL) -d $(DESTDIR)$(MODULEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR) \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(P11KIT_MODULEDIR) $(DESTDIR)$(SYSCONFDIR)/p11proxy \
		$(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BASHCOMPDIR)
	$(INSTALL) -m 0644 $(MODULE) $(DESTDIR)$(MODULEDIR)/libproxy.so
	$(INSTALL) -m 0755 $(CLI) $(DESTDIR)$(BINDIR)/p11proxy
	$(INSTALL) -m 0644 include/p11proxy.h $(DESTDIR)$(INCLUDEDIR)/p11proxy.h
	$(SUBST) proxy-conf/p11proxy.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/p11proxy.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/p11proxy.pc
	$(INSTALL) -m 0644 man/proxy.yaml.5 $(DESTDIR)$(MANDIR)/man5/proxy.yaml.5
	$(INSTALL) -m 0644 man/p11proxy.7 $(DESTDIR)$(MANDIR)/man7/p11proxy.7
	$(INSTALL) -m 0644 man/p11proxy.8 $(DESTDIR)$(MANDIR)/man8/p11proxy.8
	$(INSTALL) -m 0644 tools/completion/p11proxy.bash $(DESTDIR)$(BASHCOMPDIR)/p11proxy
	$(SUBST) proxy-conf/p11proxy.module.in > $(DESTDIR)$(P11KIT_MODULEDIR)/p11proxy.module
	chmod 0644 $(DESTDIR)$(P11KIT_MODULEDIR)/p11proxy.module
	$(INSTALL) -m 0644 proxy-conf/proxy.yaml $(DESTDIR)$(SYSCONFDIR)/p11proxy/proxy.yaml.example
ifneq ($(SYSTEMDUNITDIR),)
	$(INSTALL) -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(SYSCONFDIR)/default
	$(SUBST) systemd/p11proxy-health.service.in > \
		$(DESTDIR)$(SYSTEMDUNITDIR)/p11proxy-health.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/p11proxy-health.service
	$(INSTALL) -m 0644 systemd/p11proxy.sysusers $(DESTDIR)$(SYSUSERSDIR)/p11proxy.conf
	@if [ -e $(DESTDIR)$(ENVFILE) ]; then \
		echo "install: keeping $(DESTDIR)$(ENVFILE) (the operator's)"; \
	else \
		echo "install: systemd/p11proxy.default.in -> $(DESTDIR)$(ENVFILE)"; \
		$(SUBST) systemd/p11proxy.default.in > $(DESTDIR)$(ENVFILE) && \
			chmod 0644 $(DESTDIR)$(ENVFILE); \
	fi
endif

# Removes what `install` wrote (with the same variables), then the directories that are
# p11proxy's own when empty. Shared directories (bin, lib, man, ...) stay.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
ifneq ($(SYSTEMDUNITDIR),)
	@$(SUBST) systemd/p11proxy.default.in | \
	if cmp -s - $(DESTDIR)$(ENVFILE); then \
		echo "rm -f $(DESTDIR)$(ENVFILE)"; rm -f $(DESTDIR)$(ENVFILE); \
	elif [ -e $(DESTDIR)$(ENVFILE) ]; then \
		echo "uninstall: keeping $(DESTDIR)$(ENVFILE) (changed since install)"; \
	fi
endif
	@if [ -d $(DESTDIR)$(SYSCONFDIR)/p11proxy ]; then \
		rmdir --ignore-fail-on-non-empty $(DESTDIR)$(SYSCONFDIR)/p11proxy; fi

man-lint:
	mandoc -Tlint -W warning man/*.[578]

format:
	clang-format -i $(LIB_SRCS) $(wildcard lib/*/*.h) $(TOOL_SRCS) $(wildcard tools/*.h)

format-check:
	clang-format --dry-run --Werror $(LIB_SRCS) $(wildcard lib/*/*.h)

clean:
		rm -rf build build-asan build-fuzz


-include $(DEPS)
