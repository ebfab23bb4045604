# Unit tests of src/core with cmocka, each built twice: ASan+UBSan and TSan.
# tests/unit/test_NAME.c is a test program; tests/unit/rt_NAME.c is a
# runtime library some of them load (built per sanitizer, next to them).

UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
UNIT_RTS    := $(wildcard tests/unit/rt_*.c)
UNIT_HDRS   := $(wildcard tests/unit/*.h)
UNIT_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer $(WARN) \
               -Iinclude -Isrc/core -Itests/unit
SAN_asan    := -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_tsan    := -fsanitize=thread

define unit_variant
$(BUILD)/unit/$(1)/%: tests/unit/%.c $(CORE_SRCS) $(CORE_HDRS) $(UNIT_HDRS) \
        $(patsubst tests/unit/%.c,$(BUILD)/unit/$(1)/lib%.so,$(UNIT_RTS))
	@mkdir -p $$(@D)
	$$(CC) $$(UNIT_CFLAGS) $$(SAN_$(1)) -rdynamic -o $$@ $$< $$(CORE_SRCS) \
	    -lcmocka -ldl -lpthread

$(BUILD)/unit/$(1)/lib%.so: tests/unit/%.c include/hotffi.h $(UNIT_HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(UNIT_CFLAGS) $$(SAN_$(1)) -fPIC -shared -o $$@ $$< -lpthread
endef

$(eval $(call unit_variant,asan))
$(eval $(call unit_variant,tsan))

UNIT_BINS := $(foreach v,asan tsan,\
               $(patsubst tests/unit/%.c,$(BUILD)/unit/$(v)/%,$(UNIT_SRCS)))
UNIT_LIBS := $(foreach v,asan tsan,\
               $(patsubst tests/unit/%.c,$(BUILD)/unit/$(v)/lib%.so,$(UNIT_RTS)))

# made by a pattern rule only, they would be deleted as intermediate files,
# and a program run by hand could not load them
.SECONDARY: $(UNIT_LIBS)

# Each program runs with its own variant's runtimes on the library path;
# every failure is counted and the target fails at the end.
test-unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
	    echo "== $$t"; \
	    HOTFFI_UNIT_LIBDIR=$$(dirname $$t) \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    $$t || fail=$$((fail + 1)); \
	done; \
	echo "unit: $$fail program(s) failed"; test $$fail -eq 0
