# examples/rust/rust.mk -- the Rust example runtimes (see docs/rust.md):
#   build/lib/librust_echo.so      echo
#   build/lib/librust_words.so     the most frequent words of a text
#   build/lib/librust_reload_a.so  one library in two versions, to show a
#   build/lib/librust_reload_b.so  code reload with unpin = true
#   build/lib/librust_counter_a.so two builds of a counter that hands its
#   build/lib/librust_counter_b.so count over in rt:__reload()
# CARGO and CARGO_BUILD are in sdk/rust/rust.mk.

RUST_EX_SRCS := $(RUST_SDK_SRCS) examples/rust/Cargo.toml \
                examples/rust/Cargo.lock

ifneq ($(CARGO),)

all: $(BUILD)/lib/librust_echo.so $(BUILD)/lib/librust_words.so \
     $(BUILD)/lib/librust_reload_a.so $(BUILD)/lib/librust_reload_b.so \
     $(BUILD)/lib/librust_counter_a.so $(BUILD)/lib/librust_counter_b.so

$(BUILD)/lib/librust_%.so: $(RUST_EX_SRCS) examples/rust/%/Cargo.toml \
        examples/rust/%/lib.rs
	$(call CARGO_BUILD,examples/rust,rust_$*,rust_$*,cargo)

# The two versions build in target directories of their own: the same
# crate with other features would otherwise overwrite the same file.
$(BUILD)/lib/librust_reload_a.so: $(RUST_EX_SRCS) \
        examples/rust/reload/Cargo.toml examples/rust/reload/lib.rs
	$(call CARGO_BUILD,examples/rust,rust_reload,rust_reload_a,cargo-reload-a)

$(BUILD)/lib/librust_reload_b.so: $(RUST_EX_SRCS) \
        examples/rust/reload/Cargo.toml examples/rust/reload/lib.rs
	$(call CARGO_BUILD,examples/rust,rust_reload,rust_reload_b,cargo-reload-b,--features b)

$(BUILD)/lib/librust_counter_a.so: $(RUST_EX_SRCS) \
        examples/rust/counter/Cargo.toml examples/rust/counter/lib.rs
	$(call CARGO_BUILD,examples/rust,rust_counter,rust_counter_a,cargo-counter-a)

$(BUILD)/lib/librust_counter_b.so: $(RUST_EX_SRCS) \
        examples/rust/counter/Cargo.toml examples/rust/counter/lib.rs
	$(call CARGO_BUILD,examples/rust,rust_counter,rust_counter_b,cargo-counter-b,--features b)

endif
