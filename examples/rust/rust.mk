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

# reload and counter build twice, as _a and _b (with --features b), in
# target directories of their own: the same crate with other features
# would otherwise overwrite the same file.  make takes these rules over
# the one above: their stem is shorter.
$(BUILD)/lib/librust_%_a.so: $(RUST_EX_SRCS) examples/rust/%/Cargo.toml \
        examples/rust/%/lib.rs
	$(call CARGO_BUILD,examples/rust,rust_$*,rust_$*_a,cargo-$*-a)

$(BUILD)/lib/librust_%_b.so: $(RUST_EX_SRCS) examples/rust/%/Cargo.toml \
        examples/rust/%/lib.rs
	$(call CARGO_BUILD,examples/rust,rust_$*,rust_$*_b,cargo-$*-b,--features b)

endif
