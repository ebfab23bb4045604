# sdk/rust/rust.mk -- the Rust SDK (sdk/rust/hotffi) and the Rust runtime
# the tests steer (sdk/rust/ctl -> build/lib/librust_ctl.so).  Also defines
# how every Rust runtime of the tree is built (CARGO_BUILD), for
# examples/rust and tests/compat.
#
# Offline: no crate has a dependency, so `cargo build --offline --locked`
# needs no registry; the target directories are inside build/.  cargo is
# taken from PATH, else from rustup's ~/.cargo/bin.  Without it the Rust
# runtimes are not built and tests/nginx/410-rust.t says why.

CARGO ?= $(firstword $(shell command -v cargo 2>/dev/null) \
                     $(wildcard $(HOME)/.cargo/bin/cargo))
RUST_SDK_SRCS := sdk/rust/hotffi/Cargo.toml $(wildcard sdk/rust/hotffi/src/*.rs)

# $(call CARGO_BUILD,WORKSPACE_DIR,PACKAGE,LIBNAME,TARGET_SUBDIR[,FLAGS]):
# builds the cdylib of PACKAGE in build/TARGET_SUBDIR, then moves it into
# build/lib/libLIBNAME.so by rename(), so that an nginx that has the old
# file mapped keeps its (unlinked) copy intact.  rustup's cargo finds rustc
# next to itself, hence the PATH.
define CARGO_BUILD
	@mkdir -p $(BUILD)/lib
	cd $(1) && PATH="$(dir $(CARGO)):$$PATH" \
	    CARGO_TARGET_DIR=$(CURDIR)/$(BUILD)/$(4) \
	    $(CARGO) build --offline --locked --release -p $(2) $(5)
	cp $(BUILD)/$(4)/release/lib$(2).so $(BUILD)/lib/lib$(3).so.tmp
	mv -f $(BUILD)/lib/lib$(3).so.tmp $(BUILD)/lib/lib$(3).so
endef

ifneq ($(CARGO),)

all: $(BUILD)/lib/librust_ctl.so

$(BUILD)/lib/librust_ctl.so: $(RUST_SDK_SRCS) sdk/rust/Cargo.toml \
        sdk/rust/Cargo.lock sdk/rust/ctl/Cargo.toml sdk/rust/ctl/lib.rs
	$(call CARGO_BUILD,sdk/rust,rust_ctl,rust_ctl,cargo)

# The SDK's own unit tests, against a fake host (part of `make test`), and
# rustfmt/clippy over every crate of the tree (`make rust-lint`).
RUST_WORKSPACES := sdk/rust examples/rust tests/compat/rust_echo

test: rust-test
lint: rust-lint

rust-test:
	cd sdk/rust && PATH="$(dir $(CARGO)):$$PATH" \
	    CARGO_TARGET_DIR=$(CURDIR)/$(BUILD)/cargo-test \
	    $(CARGO) test --offline --locked -p hotffi

rust-lint:
	for d in $(RUST_WORKSPACES); do \
	    (cd $$d && PATH="$(dir $(CARGO)):$$PATH" \
	     CARGO_TARGET_DIR=$(CURDIR)/$(BUILD)/cargo-lint \
	     $(CARGO) fmt --all --check && \
	     PATH="$(dir $(CARGO)):$$PATH" \
	     CARGO_TARGET_DIR=$(CURDIR)/$(BUILD)/cargo-lint \
	     $(CARGO) clippy --offline --locked --release -- -D warnings) \
	    || exit 1; done

.PHONY: rust-test rust-lint

else

$(warning cargo not found (PATH, $(HOME)/.cargo/bin): the Rust runtimes are not built)

endif
