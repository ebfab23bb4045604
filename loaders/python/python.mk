# loaders/python -- build/lib/libhotffi_python.so, the loader that embeds
# CPython (docs/python.md).  Included by the top Makefile.
#
# Built against Debian's CPython (libpython3-dev), asked through Debian's
# /usr/bin/python3 rather than whatever python3 comes first on PATH: a
# pyenv or venv interpreter would give headers and a library that do not
# match the stdlib the workers find.

HOTFFI_PYTHON   ?= /usr/bin/python3
HOTFFI_PY_LIB   := $(BUILD)/lib/libhotffi_python.so
# the core's error-text rule is compiled in, not reached in the module:
# the module hides it, and the loader must work on lua-resty-ffi too
HOTFFI_PY_SRCS  := $(wildcard loaders/python/*.c) src/core/hotffi_err.c
HOTFFI_PY_HDRS  := $(wildcard loaders/python/*.h) include/hotffi.h \
                   src/core/hotffi_err.h src/core/hotffi_core.h

# include directory, LDVERSION, LIBDIR, prefix, executable: asked once,
# and only when a recipe needs them (make lint need not start Python)
HOTFFI_PY_QUERY := import sys, sysconfig as s; \
    print(s.get_paths()["include"], s.get_config_var("LDVERSION"), \
          s.get_config_var("LIBDIR"), sys.base_prefix, sys.executable)
HOTFFI_PY_ASK    = $(HOTFFI_PYTHON) -c '$(HOTFFI_PY_QUERY)'
HOTFFI_PY_VARS   = $(eval HOTFFI_PY_VARS := $$(shell $(HOTFFI_PY_ASK))) \
                   $(HOTFFI_PY_VARS)

HOTFFI_PY_CFLAGS = $(RT_CFLAGS) -fvisibility=hidden -Isrc/core \
                   -I$(word 1,$(HOTFFI_PY_VARS)) \
                   -DHOTFFI_PY_HOME='"$(word 4,$(HOTFFI_PY_VARS))"' \
                   -DHOTFFI_PY_EXECUTABLE='"$(word 5,$(HOTFFI_PY_VARS))"'

# -z nodelete: dlclose() (unpin) must never unmap code that the
# interpreter, which lives as long as the worker, still calls
HOTFFI_PY_LDFLAGS = -shared -Wl,-z,nodelete \
                    -L$(word 3,$(HOTFFI_PY_VARS)) \
                    -lpython$(word 2,$(HOTFFI_PY_VARS)) -lpthread -ldl

# lua-resty-ffi's name for its Python loader, so that its users' nginx.conf
# (ngx.load_ffi("ffi_python3", ...)) works unchanged: the same file, which
# the dynamic linker opens once under either name
HOTFFI_PY_ALIAS := $(BUILD)/lib/libffi_python3.so

all: $(HOTFFI_PY_LIB) $(HOTFFI_PY_ALIAS)

$(HOTFFI_PY_ALIAS): $(HOTFFI_PY_LIB)
	ln -sf $(notdir $(HOTFFI_PY_LIB)) $@

$(HOTFFI_PY_LIB): $(HOTFFI_PY_SRCS) $(HOTFFI_PY_HDRS) loaders/python/python.mk
	@test -x $(HOTFFI_PYTHON) && test -n "$(word 5,$(HOTFFI_PY_VARS))" || \
	    { echo "no CPython at $(HOTFFI_PYTHON): run 'make setup'"; exit 1; }
	@test -f $(word 1,$(HOTFFI_PY_VARS))/Python.h || \
	    { echo "no Python.h: install libpython3-dev ('make setup')"; exit 1; }
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(HOTFFI_PY_CFLAGS) -o $@ $(HOTFFI_PY_SRCS) \
	    $(LDFLAGS) $(HOTFFI_PY_LDFLAGS)
