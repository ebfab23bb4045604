# loaders/lua -- build/lib/libhotffi_lua.so, the loader that runs Lua code
# as a hotffi runtime, a "Lua service" (docs/lua-services.md).  Included by
# the top Makefile.
#
# Linked against the LuaJIT that nginx's Lua module links (Debian's
# libnginx-mod-http-lua: OpenResty's luajit2, libluajit-5.1.so.2), so the
# worker maps one LuaJIT; the headers are libluajit2-5.1-dev's.

HOTFFI_LUA_INC  ?= /usr/include/luajit-2.1
HOTFFI_LUA_LIB  := $(BUILD)/lib/libhotffi_lua.so
HOTFFI_LUA_SRCS := $(wildcard loaders/lua/*.c)
HOTFFI_LUA_HDRS := $(wildcard loaders/lua/*.h) include/hotffi.h

# -z nodelete: a VM's compiled code and callbacks may outlive a dlclose()
all: $(HOTFFI_LUA_LIB)

$(HOTFFI_LUA_LIB): $(HOTFFI_LUA_SRCS) $(HOTFFI_LUA_HDRS) loaders/lua/lua.mk
	@test -f $(HOTFFI_LUA_INC)/luajit.h || \
	    { echo "no luajit.h: install libluajit2-5.1-dev ('make setup')"; \
	      exit 1; }
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(RT_CFLAGS) -fvisibility=hidden \
	    -I$(HOTFFI_LUA_INC) -o $@ $(HOTFFI_LUA_SRCS) $(LDFLAGS) \
	    -shared -Wl,-z,nodelete -lluajit-5.1 -lpthread -ldl -lm
