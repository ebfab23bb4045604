# hotffi -- build, test and benchmark.  `make help` lists the targets.

NGINX_SRC   ?= /usr/share/nginx/src
NGINX       ?= /usr/sbin/nginx
BUILD       := build
CC          ?= cc
CFLAGS      ?= -O2 -g
WARN        := -Wall -Wextra -Werror -Wpointer-arith -Wno-unused-parameter
RT_CFLAGS   := $(CFLAGS) $(WARN) -fPIC -Iinclude

CORE_SRCS   := $(wildcard src/core/*.c)
CORE_HDRS   := $(wildcard src/core/*.h) include/hotffi.h
NGX_SRCS    := $(wildcard src/nginx/*.c src/nginx/*.h) src/nginx/config
MODULE      := $(BUILD)/modules/ngx_http_hotffi_module.so

# runtimes: examples/c/NAME.c and tests/runtimes/NAME.c -> build/lib/libNAME.so
EXAMPLES    := $(patsubst examples/c/%.c,$(BUILD)/lib/lib%.so,$(wildcard examples/c/*.c))
TEST_RTS    := $(patsubst tests/runtimes/%.c,$(BUILD)/lib/lib%.so,$(wildcard tests/runtimes/*.c))

.PHONY: all setup demo run test test-unit test-nginx test-valgrind lint bench \
        clean help

all: $(MODULE) $(EXAMPLES) $(TEST_RTS)

help:
	@echo "make setup      install Debian packages (as root) and build"
	@echo "make demo       start nginx with the examples, call them, stop"
	@echo "make run        the demo nginx in the foreground until Ctrl-C"
	@echo "make test       unit tests (ASan+UBSan, TSan) and nginx tests"
	@echo "make bench      benchmarks (bench/README.md)"
	@echo "make lint       format and static checks"
	@echo "make install    module, Lua, header, SDKs, loaders (PREFIX, DESTDIR)"
	@echo "make deb        Debian packages into build/deb/"
	@echo "make dist-lua   LuaRocks rockspec and opm tarball into build/dist-lua/"
	@echo "make test-pkg   the packages built, checked, installed and purged (root)"

setup:
	sh scripts/setup.sh
	$(MAKE) all

# The module is built the standard way, in a private copy of the nginx tree
# that matches the installed nginx (Debian's nginx-dev), with its flags;
# nginx's own Makefile then rebuilds only what changed.
NGX_OBJS := $(BUILD)/nginx-src/objs

$(NGX_OBJS)/Makefile: src/nginx/config
	@test -x $(NGINX_SRC)/configure || \
	    { echo "no nginx source at $(NGINX_SRC): run 'make setup'"; exit 1; }
	rm -rf $(BUILD)/nginx-src
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(BUILD)/nginx-src
	cd $(BUILD)/nginx-src && bash -c '. ./conf_flags 2>/dev/null; \
	    ./configure "$${NGX_CONF_FLAGS[@]:---with-compat}" \
	        --with-cc-opt="-O2 -g" \
	        --add-dynamic-module=$(CURDIR)/src/nginx' > configure.log

$(MODULE): $(NGX_OBJS)/Makefile $(CORE_SRCS) $(CORE_HDRS) $(NGX_SRCS)
	@mkdir -p $(@D)
	$(MAKE) -C $(BUILD)/nginx-src -f objs/Makefile modules
	cp $(NGX_OBJS)/ngx_http_hotffi_module.so $@

$(BUILD)/lib/lib%.so: examples/c/%.c include/hotffi.h
	@mkdir -p $(BUILD)/lib
	$(CC) $(RT_CFLAGS) -shared -o $@ $< -lpthread $(LIBS_$*)

$(BUILD)/lib/lib%.so: tests/runtimes/%.c include/hotffi.h
	@mkdir -p $(BUILD)/lib
	$(CC) $(RT_CFLAGS) -shared -o $@ $< -lpthread $(LIBS_$*)

LIBS_digest := -lcrypto

# a second build of the counter, to reload one into the other
COUNTER_B   := $(BUILD)/lib/libcounter_b.so

all: $(COUNTER_B)

$(COUNTER_B): examples/c/counter.c include/hotffi.h
	@mkdir -p $(BUILD)/lib
	$(CC) $(RT_CFLAGS) -DCOUNTER_BUILD='"b"' -shared -o $@ $< -lpthread

# Each language's part (loaders/LANG, sdk/LANG, examples/LANG, tests/compat)
# has its own .mk that adds its outputs to `all` and its tests to `test`.
include $(wildcard loaders/*/*.mk sdk/*/*.mk examples/*/*.mk tests/compat/*.mk \
                   bench/*.mk src/isolate/*.mk)
# install, Debian packages, LuaRocks/opm (docs/packaging.md)
include dist/dist.mk

demo: all
	sh examples/demo.sh

run: all
	sh examples/demo.sh --foreground

include tests/unit/unit.mk

test: all lint test-unit test-nginx test-valgrind

lint:
	sh scripts/lint.sh

test-nginx: all
	prove -r tests/nginx/

# The call paths of the module again, with nginx under valgrind: invalid
# accesses and definite leaks in nginx, the module or a runtime fail them.
VALGRIND_TESTS := tests/nginx/010-call.t tests/nginx/020-errors.t \
                  tests/nginx/030-timeout.t tests/nginx/050-abort.t \
                  tests/nginx/700-reload.t

test-valgrind: all
	HOTFFI_TEST_VALGRIND=1 prove $(VALGRIND_TESTS)

clean:
	rm -rf $(BUILD)
