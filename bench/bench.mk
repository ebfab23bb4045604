# bench/bench.mk -- `make bench` (see bench/README.md); not part of `make
# test`.  The baseline's echo server, the machine's limits (memcpy, the
# bare two-thread echo) and the busy case's CPU hog are built from bench/*.c
# into build/bench/, Go's bound (the C echo's loop in Go) from bench/go_bare
# into build/lib/libgo_bare.so, the HTTP case's hand-off bound from
# bench/handoff.c into build/bench/libhandoff.so (against the nginx tree
# the module is built in); bench/run.pl drives everything else.

BENCH_BINS := $(BUILD)/bench/echo_server $(BUILD)/bench/limits \
              $(BUILD)/bench/hog $(BUILD)/lib/libgo_bare.so \
              $(BUILD)/bench/libhandoff.so

$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -o $@ $< -lpthread

NGX_INCS := $(addprefix -I$(BUILD)/nginx-src/,src/core src/event \
              src/event/modules src/os/unix objs)

$(BUILD)/bench/libhandoff.so: bench/handoff.c $(MODULE)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared $(NGX_INCS) -o $@ $< -lpthread

$(BUILD)/lib/libgo_bare.so: bench/go_bare/go.mod bench/go_bare/main.go
	$(call GO_SHARED,bench/go_bare,.,go_bare)

# the bridge, then the sandbox against native Lua, then code-reload
# propagation (push to every worker of two servers through Redis), then
# the latency blip of in-place runtime reloads under load; BENCH_CASES,
# when set, names those to run (bench/README.md)
bench_comma := ,
bench_case = $(if $(BENCH_CASES),$(filter $(1),$(subst \
    $(bench_comma), ,$(BENCH_CASES))),all)

bench: all $(BENCH_BINS)
	perl bench/run.pl
	$(if $(call bench_case,sandbox),perl bench/sandbox/run.pl \
	    $(if $(BENCH_QUICK),'quick=1'))
	$(if $(call bench_case,code_reload),perl bench/code_reload/run.pl \
	    $(if $(BENCH_QUICK),--versions 3))
	$(if $(call bench_case,reload),perl bench/reload/run.pl \
	    $(if $(BENCH_QUICK),--seconds 1 --reps 1))

# syscalls, context switches and CPU per call (perf stat, or strace -c) and
# a CPU profile (perf record) of sequential echo, C against the socket
bench-profile: all $(BENCH_BINS)
	perl bench/run.pl --profile

.PHONY: bench-profile
