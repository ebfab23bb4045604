# sdk/go/go.mk -- the Go SDK (sdk/go/hotffi) and the Go runtime the tests
# steer (sdk/go/internal/ctl -> build/lib/libgo_ctl.so).  Also defines how
# every Go runtime of the tree is built (GO_SHARED), for examples/go and
# tests/compat.
#
# Offline and self-contained: Debian's golang-go, the standard library only,
# no module proxy, and the build and module caches inside build/ so that
# nothing depends on $HOME.

GO          ?= go
GO_ENV      := GOCACHE=$(CURDIR)/$(BUILD)/go-cache \
               GOPATH=$(CURDIR)/$(BUILD)/go-path \
               GOPROXY=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=1
GO_SDK_SRCS := sdk/go/go.mod $(wildcard sdk/go/hotffi/*.go) include/hotffi.h

# $(call GO_SHARED,MODULE_DIR,PACKAGE,LIBNAME): builds the c-shared library
# in build/go-out, then moves it into build/lib by rename(), so that an
# nginx that has the old file mapped keeps its (unlinked) copy intact.
# go build also writes a C header next to the library; it stays in go-out.
define GO_SHARED
	@mkdir -p $(BUILD)/go-out $(BUILD)/lib
	cd $(1) && $(GO_ENV) $(GO) build -buildmode=c-shared \
	    -o $(CURDIR)/$(BUILD)/go-out/lib$(3).so $(2)
	cp $(BUILD)/go-out/lib$(3).so $(BUILD)/lib/lib$(3).so.tmp
	mv -f $(BUILD)/lib/lib$(3).so.tmp $(BUILD)/lib/lib$(3).so
endef

GO_TEST_RTS := $(BUILD)/lib/libgo_ctl.so

all: $(GO_TEST_RTS)

$(BUILD)/lib/libgo_ctl.so: $(GO_SDK_SRCS) $(wildcard sdk/go/internal/ctl/*.go)
	$(call GO_SHARED,sdk/go,./internal/ctl,go_ctl)

# gofmt and go vet over every Go module of the tree (not part of `all`)
GO_MODULES := sdk/go examples/go bench/go_bare \
              $(patsubst %/go.mod,%,$(wildcard tests/compat/*/go.mod))

go-lint:
	@out=$$(gofmt -l $(GO_MODULES)); \
	    if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	for d in $(GO_MODULES); do \
	    (cd $$d && $(GO_ENV) $(GO) vet ./...) || exit 1; done

.PHONY: go-lint
lint: go-lint
