# sundynix-dispatcher. `make` builds the daemon and sundynixctl into build/;
# `make test` runs every unit and integration test; `make test SANITIZE=1`
# does it again under ASan+UBSan in build/asan.

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
VERSION  := 0.1.0

BUILD    := build
OPT      ?= -O2
ifeq ($(SANITIZE),1)
BUILD    := build/asan
OPT      := -O1
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

PKGS     := libuv libnats libcurl jansson libsystemd libcrypto libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla
CFLAGS   ?=
override CFLAGS += -std=c11 -D_GNU_SOURCE -DSUNDYNIX_VERSION='"$(VERSION)"' $(OPT) -g $(WARN) \
	$(SANFLAGS) -Iinclude $(PKG_CFLAGS)
override LDFLAGS += $(SANFLAGS)

# Modules, listed explicitly. Pure ones have no I/O and link alone in tests.
PURE_MODS   := util log config contract provider modelcfg prompt sse openai record metrics srv
DAEMON_MODS := pool bus http upstream probe control stub request prom httpd main
CTL_MODS    := sundynixctl

PURE_OBJS   := $(PURE_MODS:%=$(BUILD)/obj/%.o)
DAEMON_OBJS := $(PURE_OBJS) $(DAEMON_MODS:%=$(BUILD)/obj/%.o)
CTL_OBJS    := $(BUILD)/obj/util.o $(BUILD)/obj/contract.o $(BUILD)/obj/provider.o $(BUILD)/obj/modelcfg.o $(BUILD)/obj/sundynixctl.o

DAEMON := $(BUILD)/sundynix-dispatcher
CTL    := $(BUILD)/sundynixctl
MOCK   := $(BUILD)/tests/mock-backend

# Unit tests (cmocka): each links the production objects of its module.
UNIT_TESTS := sse openai contract provider modelcfg prompt config util pool record request metrics srv
unit_objs_sse      := util sse
unit_objs_openai   := util openai sse
unit_objs_contract := util contract
unit_objs_provider := util provider
unit_objs_modelcfg := util provider modelcfg
unit_objs_prompt   := util prompt
unit_objs_config   := util log contract config
unit_objs_util     := util log
unit_objs_pool     := util log provider modelcfg pool
unit_objs_record   := util record
unit_objs_metrics  := util log contract metrics
unit_objs_srv      := util log contract metrics srv
unit_objs_request  := util log config contract provider modelcfg pool prompt openai stub record metrics request
UNIT_BINS := $(UNIT_TESTS:%=$(BUILD)/tests/unit_%)

# Integration tests: each a C program using tests/integration/harness.c
# against a real nats-server, the mock backend and the real daemon.
INTEG_TESTS := $(patsubst tests/integration/test_%.c,%,$(wildcard tests/integration/test_*.c))
INTEG_BINS  := $(INTEG_TESTS:%=$(BUILD)/tests/integ_%)

.PHONY: all test unit integration clean install uninstall demo deps bench fuzz check-config

all: $(DAEMON) $(CTL)

$(BUILD)/obj/%.o: src/%.c $(wildcard include/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

$(DAEMON): $(DAEMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(CTL): $(CTL_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(MOCK): tests/mock_backend.c $(BUILD)/obj/util.o $(wildcard include/*.h) | $(BUILD)/tests
	$(CC) $(CFLAGS) -o $@ tests/mock_backend.c $(BUILD)/obj/util.o $(LDFLAGS) $(PKG_LIBS)

define unit_rule
$(BUILD)/tests/unit_$(1): tests/unit/test_$(1).c $$(unit_objs_$(1):%=$(BUILD)/obj/%.o) | $(BUILD)/tests
	$$(CC) $$(CFLAGS) -o $$@ $$^ $$(LDFLAGS) $$(PKG_LIBS) -lcmocka
endef
$(foreach t,$(UNIT_TESTS),$(eval $(call unit_rule,$(t))))

$(BUILD)/tests/integ_%: tests/integration/test_%.c tests/integration/harness.c tests/integration/harness.h \
		$(BUILD)/obj/util.o | $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests/integration -o $@ $< tests/integration/harness.c $(BUILD)/obj/util.o \
		$(LDFLAGS) $(PKG_LIBS) -lcmocka

LOADGEN := $(BUILD)/bench/loadgen
$(BUILD)/bench:
	mkdir -p $@
$(LOADGEN): bench/loadgen.c $(BUILD)/obj/util.o $(wildcard include/*.h) | $(BUILD)/bench
	$(CC) $(CFLAGS) -o $@ bench/loadgen.c $(BUILD)/obj/util.o $(LDFLAGS) $(PKG_LIBS)

deps:
	./scripts/install-deps.sh

unit: $(UNIT_BINS)
integration: all $(MOCK) $(INTEG_BINS)

test: deps
	$(MAKE) all $(UNIT_BINS) $(MOCK) $(INTEG_BINS)
	BUILD=$(BUILD) ./tests/run.sh $(UNIT_BINS) $(INTEG_BINS) tests/test_systemd_unit.sh

bench: deps
	$(MAKE) all $(MOCK) $(LOADGEN)
	BUILD=$(BUILD) ./bench/run.sh

demo: deps
	$(MAKE) all $(MOCK)
	BUILD=$(BUILD) ./scripts/demo.sh

# libFuzzer targets (clang); run each for FUZZ_SECONDS over a corpus under build/.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 -D_GNU_SOURCE \
	-Wall -Wextra -Werror -Iinclude $(shell pkg-config --cflags jansson)
build/fuzz_%: tests/fuzz/fuzz_%.c src/%.c src/util.c $(wildcard include/*.h)
	mkdir -p build
	clang $(FUZZ_FLAGS) tests/fuzz/fuzz_$*.c src/$*.c src/util.c -o $@ $(shell pkg-config --libs jansson)

build/fuzz_openai_fast: tests/fuzz/fuzz_openai_fast.c tests/openai_agree.h src/openai.c src/util.c $(wildcard include/*.h)
	mkdir -p build
	clang $(FUZZ_FLAGS) tests/fuzz/fuzz_openai_fast.c src/openai.c src/util.c -o $@ $(shell pkg-config --libs jansson)

fuzz: build/fuzz_sse build/fuzz_openai build/fuzz_openai_fast
	for t in sse openai openai_fast; do mkdir -p build/fuzz-corpus/$$t; \
		./build/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) build/fuzz-corpus/$$t || exit 1; done

check-config: $(DAEMON)
	$(DAEMON) --check-config -c config/dispatcher.json

clean:
	rm -rf build

# The unit goes under PREFIX too (/usr/local/lib/systemd/system and
# /usr/lib/systemd/system are both on systemd's search path); its ExecStart=
# is rewritten to $(PREFIX)/sbin. The config lives in /etc/sundynix whatever
# PREFIX is, since the daemon looks there, and is never overwritten.
SYSTEMD_UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR          ?= $(PREFIX)/share/man

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(SYSTEMD_UNITDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)/etc/sundynix
	install -m 0755 $(CTL) $(DESTDIR)$(PREFIX)/bin/sundynixctl
	install -m 0755 $(DAEMON) $(DESTDIR)$(PREFIX)/sbin/sundynix-dispatcher
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' systemd/sundynix-dispatcher.service \
		>$(DESTDIR)$(SYSTEMD_UNITDIR)/sundynix-dispatcher.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_UNITDIR)/sundynix-dispatcher.service
	install -m 0644 docs/man/sundynix-dispatcher.8 $(DESTDIR)$(MANDIR)/man8/sundynix-dispatcher.8
	install -m 0644 docs/man/sundynixctl.1 $(DESTDIR)$(MANDIR)/man1/sundynixctl.1
	@if [ -e $(DESTDIR)/etc/sundynix/dispatcher.json ]; then \
		echo "keeping the existing $(DESTDIR)/etc/sundynix/dispatcher.json (example: config/dispatcher.json)"; \
	else \
		echo "install -m 0644 config/dispatcher.json $(DESTDIR)/etc/sundynix/dispatcher.json"; \
		install -m 0644 config/dispatcher.json $(DESTDIR)/etc/sundynix/dispatcher.json; \
	fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/sundynixctl $(DESTDIR)$(PREFIX)/sbin/sundynix-dispatcher \
		$(DESTDIR)$(SYSTEMD_UNITDIR)/sundynix-dispatcher.service \
		$(DESTDIR)$(MANDIR)/man8/sundynix-dispatcher.8 $(DESTDIR)$(MANDIR)/man1/sundynixctl.1
	@if [ -e $(DESTDIR)/etc/sundynix/dispatcher.json ]; then \
		echo "kept $(DESTDIR)/etc/sundynix/dispatcher.json; remove /etc/sundynix by hand if no longer wanted"; \
	fi
