# examples/go/go.mk -- the Go example runtimes: build/lib/libgo_echo.so and
# build/lib/libgo_fetch.so (see docs/go.md).  GO_SHARED is in sdk/go/go.mk.

GO_EXAMPLES := $(BUILD)/lib/libgo_echo.so $(BUILD)/lib/libgo_fetch.so

all: $(GO_EXAMPLES)

$(BUILD)/lib/libgo_%.so: $(GO_SDK_SRCS) examples/go/go.mod \
        examples/go/%/main.go
	$(call GO_SHARED,examples/go,./$*,go_$*)
