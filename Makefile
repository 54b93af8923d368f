# sundynix-dispatcher. `make` builds the daemon and sundynixctl into build/;
# `make test` runs every unit and integration test; `make test SANITIZE=1`
# does it again under ASan+UBSan in build/asan, `make test SANITIZE=thread`
# under TSan in build/tsan.

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
ifeq ($(SANITIZE),thread)
BUILD    := build/tsan
OPT      := -O1
SANFLAGS := -fsanitize=thread
# unit_openai_corpus replays every split point of the corpus: about 5 minutes
# under TSan (6 s without). It is single-threaded parsing, where TSan has
# nothing to find; the plain and ASan builds run it.
TSAN_SKIP := unit_openai_corpus
export TSAN_OPTIONS := suppressions=$(CURDIR)/tests/tsan.supp
endif

# Expanded when a recipe uses them, not when make reads this file: on a bare
# machine `make demo` and `make test` install pkg-config and the libraries
# (deps) before anything needs the flags.
PKGS     := libuv libnats libcurl jansson libsystemd libcrypto libmicrohttpd
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla
CFLAGS   ?=
override CFLAGS += -std=c11 -D_GNU_SOURCE -DSUNDYNIX_VERSION='"$(VERSION)"' $(OPT) -g $(WARN) \
	$(SANFLAGS) -Iinclude $(PKG_CFLAGS)
override LDFLAGS += $(SANFLAGS)
# Header dependencies come from the compiler: every object gets a .d file.
DEPFLAGS := -MMD -MP

# Modules, listed explicitly. Core ones link into unit tests without the
# event loop or the network (log and config do file and stderr I/O, provider
# builds curl handles without using them; sse, openai, prompt, modelcfg and
# record are pure; metrics and srv only count and encode); daemon ones are the rest of the daemon.
CORE_MODS   := util log config contract provider modelcfg prompt sse openai record metrics srv
DAEMON_MODS := pool bus bus_loop http upstream probe control stub request prom httpd main
CTL_MODS    := sundynixctl

CORE_OBJS   := $(CORE_MODS:%=$(BUILD)/obj/%.o)
DAEMON_OBJS := $(CORE_OBJS) $(DAEMON_MODS:%=$(BUILD)/obj/%.o)
CTL_OBJS    := $(BUILD)/obj/util.o $(BUILD)/obj/contract.o $(BUILD)/obj/provider.o $(BUILD)/obj/modelcfg.o \
	$(BUILD)/obj/sundynixctl.o

DAEMON := $(BUILD)/sundynix-dispatcher
CTL    := $(BUILD)/sundynixctl
MOCK   := $(BUILD)/tools/mock-backend

# Unit tests (cmocka): each links the production objects of its module.
UNIT_TESTS := sse openai openai_corpus openai_tools openai_tool_streams contract contract_tools contract_stream provider modelcfg prompt \
	config util pool record request request_stream metrics srv
unit_objs_sse      := util sse
unit_objs_openai   := util openai sse
unit_objs_openai_corpus := util openai sse
unit_objs_openai_tools := util openai sse
unit_objs_openai_tool_streams := util openai sse
unit_objs_contract := util contract
unit_objs_contract_tools := util contract
unit_objs_contract_stream := util contract
unit_objs_provider := util provider
unit_objs_modelcfg := util provider modelcfg
unit_objs_prompt   := util prompt
unit_objs_config   := util log contract config
unit_objs_util     := util log
unit_objs_pool     := util log provider modelcfg pool
unit_objs_record   := util record
unit_objs_metrics  := util log contract metrics
unit_objs_srv      := util log contract metrics srv
unit_objs_request  := util log config contract provider modelcfg pool prompt openai stub record metrics request \
	tests/unit/fake_request
unit_objs_request_stream := $(unit_objs_request)
UNIT_BINS := $(UNIT_TESTS:%=$(BUILD)/tests/unit_%)

# Integration tests: each a C program linked with the support library
# (tests/support/, one module per concern) against a real nats-server, the
# mock backend and the real daemon.
INTEG_TESTS  := $(patsubst tests/integration/test_%.c,%,$(wildcard tests/integration/test_*.c))
INTEG_BINS   := $(INTEG_TESTS:%=$(BUILD)/tests/integ_%)
SUPPORT_MODS := fixture bed check file proc tcp http nats_server mock daemon gateway stream relay control notify cmd
SUPPORT_OBJS := $(SUPPORT_MODS:%=$(BUILD)/obj/tests/support/%.o)

# Every object file, for the dependency files beside them.
ALL_OBJS := $(DAEMON_OBJS) $(BUILD)/obj/sundynixctl.o $(SUPPORT_OBJS) \
	$(UNIT_TESTS:%=$(BUILD)/obj/tests/unit/test_%.o) $(INTEG_TESTS:%=$(BUILD)/obj/tests/integration/test_%.o) \
	$(BUILD)/obj/tests/unit/fake_request.o $(BUILD)/obj/tools/mock_backend.o $(BUILD)/obj/bench/loadgen.o

.PHONY: all test unit integration clean install uninstall demo deps bench fuzz check-config

all: $(DAEMON) $(CTL)

$(BUILD)/obj/%.o: src/%.c | $(BUILD)/obj
	$(CC) $(CFLAGS) $(DEPFLAGS) -c -o $@ $<

# Objects outside src/ keep their path below $(BUILD)/obj.
$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(DEPFLAGS) -Itests/support -c -o $@ $<

$(BUILD)/obj/tools/%.o: tools/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/obj/bench/%.o: bench/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/obj $(BUILD)/tests $(BUILD)/tools:
	mkdir -p $@

-include $(ALL_OBJS:.o=.d)

$(DAEMON): $(DAEMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(CTL): $(CTL_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The mock OpenAI-compatible backend: tests, `make demo` and `make bench` use it.
$(MOCK): $(BUILD)/obj/tools/mock_backend.o $(BUILD)/obj/util.o | $(BUILD)/tools
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

define unit_rule
$(BUILD)/tests/unit_$(1): $(BUILD)/obj/tests/unit/test_$(1).o $$(unit_objs_$(1):%=$(BUILD)/obj/%.o) | $(BUILD)/tests
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS) -lcmocka
endef
$(foreach t,$(UNIT_TESTS),$(eval $(call unit_rule,$(t))))

$(INTEG_BINS): $(BUILD)/tests/integ_%: $(BUILD)/obj/tests/integration/test_%.o $(SUPPORT_OBJS) $(BUILD)/obj/util.o \
		| $(BUILD)/tests
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka

LOADGEN := $(BUILD)/bench/loadgen
$(BUILD)/bench:
	mkdir -p $@
$(LOADGEN): $(BUILD)/obj/bench/loadgen.o $(BUILD)/obj/util.o | $(BUILD)/bench
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

deps:
	./scripts/install-deps.sh

unit: $(UNIT_BINS)
integration: all $(MOCK) $(INTEG_BINS)

test: deps
	$(MAKE) all $(UNIT_BINS) $(MOCK) $(INTEG_BINS)
	BUILD=$(BUILD) ./tests/run.sh $(filter-out $(TSAN_SKIP:%=$(BUILD)/tests/%),$(UNIT_BINS)) $(INTEG_BINS) \
		tests/test_systemd_unit.sh

bench: deps
	$(MAKE) all $(MOCK) $(LOADGEN)
	BUILD=$(BUILD) ./bench/run.sh

demo: deps
	$(MAKE) all $(MOCK)
	BUILD=$(BUILD) ./scripts/demo.sh

# libFuzzer targets (clang); run each for FUZZ_SECONDS over a corpus under build/.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 -D_GNU_SOURCE \
	-Wall -Wextra -Werror -Iinclude $(shell pkg-config --cflags jansson)
build/fuzz_%: tests/fuzz/fuzz_%.c src/%.c src/util.c $(wildcard include/*.h)
	mkdir -p build
	clang $(FUZZ_FLAGS) tests/fuzz/fuzz_$*.c src/$*.c src/util.c -o $@ $(shell pkg-config --libs jansson)

build/fuzz_openai_fast: tests/fuzz/fuzz_openai_fast.c tests/openai_agree.h src/openai.c src/util.c $(wildcard include/*.h)
	mkdir -p build
	clang $(FUZZ_FLAGS) tests/fuzz/fuzz_openai_fast.c src/openai.c src/util.c -o $@ $(shell pkg-config --libs jansson)

# The chunk decoder targets also read the seeds in tests/fuzz/seeds/openai
# (read-only: new inputs go to build/) and the keys in tests/fuzz/openai.dict.
fuzz: build/fuzz_sse build/fuzz_openai build/fuzz_openai_fast
	for t in sse openai openai_fast; do mkdir -p build/fuzz-corpus/$$t; \
		case $$t in openai*) extra="-dict=tests/fuzz/openai.dict build/fuzz-corpus/$$t tests/fuzz/seeds/openai";; \
		*) extra=build/fuzz-corpus/$$t;; esac; \
		./build/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) $$extra || exit 1; done

# The Debian package (debian/), built from a copy of the tree into build/, and
# its test (tests/test_package.sh builds it, then installs, upgrades and purges
# it in a bare Debian 12 root).
.PHONY: deb test-package
deb:
	./scripts/install-deps.sh --package
	./scripts/build-deb.sh

test-package:
	./scripts/install-deps.sh --package-test
	./tests/test_package.sh

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
