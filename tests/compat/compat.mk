# tests/compat/compat.mk -- runtimes written for lua-resty-ffi, from its ABI
# description alone (no hotffi header, no SDK), to check that hotffi runs
# them unmodified (tests/nginx/420-compat.t):
#   build/lib/libffi_c_echo.so     C, tests/compat/c_echo (and _b: a 2nd build)
#   build/lib/libffi_go_echo.so    Go, tests/compat/go_echo
#   build/lib/libffi_rust_echo.so  Rust, tests/compat/rust_echo
# GO_SHARED is in sdk/go/go.mk, CARGO_BUILD in sdk/rust/rust.mk.

all: $(BUILD)/lib/libffi_go_echo.so $(BUILD)/lib/libffi_c_echo.so \
     $(BUILD)/lib/libffi_c_echo_b.so

# no -Iinclude: the lua-resty-ffi ABI is all it knows
$(BUILD)/lib/libffi_c_echo.so: tests/compat/c_echo/c_echo.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared -o $@ $< -lpthread

$(BUILD)/lib/libffi_c_echo_b.so: tests/compat/c_echo/c_echo.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -DBUILD='"b"' -fPIC -shared -o $@ $< -lpthread

$(BUILD)/lib/libffi_go_echo.so: tests/compat/go_echo/go.mod \
        tests/compat/go_echo/main.go
	$(call GO_SHARED,tests/compat/go_echo,.,ffi_go_echo)

ifneq ($(CARGO),)
all: $(BUILD)/lib/libffi_rust_echo.so

$(BUILD)/lib/libffi_rust_echo.so: tests/compat/rust_echo/Cargo.toml \
        tests/compat/rust_echo/Cargo.lock tests/compat/rust_echo/lib.rs
	$(call CARGO_BUILD,tests/compat/rust_echo,ffi_rust_echo,ffi_rust_echo,cargo)
endif
