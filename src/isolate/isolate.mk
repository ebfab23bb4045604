# Isolated runtimes (docs/isolation.md): the worker's side, a runtime
# library the core loads like any other, and the helper program next to
# it, which finds it there (the installed library is built again, naming
# the helper's installed path: dist/dist.mk).  Both include the core's
# return codes; the helper opens libraries with the core's own rules
# (hotffi_library.c).

ISO_LIB     := $(BUILD)/lib/libhotffi_isolate.so
ISO_HELPER  := $(BUILD)/lib/hotffi-isolated
ISO_CFLAGS   = $(CFLAGS) $(WARN) -std=gnu11 -Iinclude -Isrc/core -Isrc/isolate
ISO_HDRS    := $(wildcard src/isolate/*.h) include/hotffi.h src/core/hotffi_core.h \
               src/core/hotffi_direct.h src/core/hotffi_hub.h
ISO_COMMON  := src/isolate/hotffi_ring.c src/isolate/hotffi_iso_shm.c
ISO_WORKER  := src/isolate/hotffi_isolate.c src/isolate/hotffi_iso_proc.c \
               src/isolate/hotffi_iso_conf.c $(ISO_COMMON)
ISO_HELPER_SRCS := src/isolate/hotffi_isolated.c src/core/hotffi_library.c \
                   src/core/hotffi_elf.c src/core/hotffi_spin.c \
                   src/core/hotffi_sched.c src/core/hotffi_env.c \
                   $(ISO_COMMON)

all: $(ISO_LIB) $(ISO_HELPER)

# $(call ISO_LIB_CC,DEFS): the library into $@; DEFS empty finds the
# helper next to it, -DHOTFFI_ISO_HELPER_PATH=... at that path
define ISO_LIB_CC
@mkdir -p $(@D)
$(CC) $(CPPFLAGS) $(ISO_CFLAGS) $(1) -fPIC -shared -fvisibility=hidden \
    -o $@ $(ISO_WORKER) $(LDFLAGS) -lpthread -ldl
endef

$(ISO_LIB): $(ISO_WORKER) $(ISO_HDRS)
	$(call ISO_LIB_CC,)

# -rdynamic: the runtime library resolves the ABI against this program
$(ISO_HELPER): $(ISO_HELPER_SRCS) $(ISO_HDRS) src/core/hotffi_library.h \
        src/core/hotffi_spin.h src/core/hotffi_sched.h src/core/hotffi_env.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ISO_CFLAGS) -rdynamic -o $@ $(ISO_HELPER_SRCS) \
	    $(LDFLAGS) -lpthread -ldl

# the ring's unit test, in both sanitizer variants of tests/unit/unit.mk
define iso_unit_variant
$(BUILD)/unit/$(1)/test_ring: tests/unit/test_ring.c $(ISO_COMMON) $(ISO_HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(UNIT_CFLAGS) -Isrc/isolate $$(SAN_$(1)) -o $$@ $$< \
	    $(ISO_COMMON) -lcmocka -lpthread
endef

$(eval $(call iso_unit_variant,asan))
$(eval $(call iso_unit_variant,tsan))
