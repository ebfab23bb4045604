# loaders/node -- build/lib/libhotffi_node.so, the loader that embeds
# Node.js (docs/node.md).  Included by the top Makefile.
#
# Built against Debian 12's libnode-dev (Node 18, linked to the system's
# OpenSSL, libuv and ICU): `make setup` installs it.  The boot script and
# the SDK (sdk/node/hotffi.js) are compiled in, as C string literals.

HOTFFI_NODE_INC   ?= /usr/include/node
HOTFFI_NODE_LIB   := $(BUILD)/lib/libhotffi_node.so
HOTFFI_NODE_SRCS  := $(wildcard loaders/node/*.cc)
HOTFFI_NODE_HDRS  := $(wildcard loaders/node/*.hh) include/hotffi.h
HOTFFI_NODE_JS    := loaders/node/hotffi_node_boot.js sdk/node/hotffi.js
HOTFFI_NODE_GEN   := $(BUILD)/node/hotffi_node_js.h
CXX               ?= c++

HOTFFI_NODE_CXXFLAGS = $(CFLAGS) -std=c++17 -Wall -Wextra -Werror \
                       -Wno-unused-parameter -fPIC -fvisibility=hidden \
                       -Iinclude -I$(BUILD)/node -I$(HOTFFI_NODE_INC)

# -z nodelete: V8's platform threads run this library's code for as long
# as the worker lives, whatever unpin says
HOTFFI_NODE_LDFLAGS  = -shared -Wl,-z,nodelete -lnode -luv -lpthread -ldl

all: $(HOTFFI_NODE_LIB)

# each JS file as a C string literal, named after the file
$(HOTFFI_NODE_GEN): $(HOTFFI_NODE_JS) loaders/node/js2c.pl loaders/node/node.mk
	@mkdir -p $(@D)
	perl loaders/node/js2c.pl $(HOTFFI_NODE_JS) > $@.tmp && mv $@.tmp $@

$(HOTFFI_NODE_LIB): $(HOTFFI_NODE_SRCS) $(HOTFFI_NODE_HDRS) $(HOTFFI_NODE_GEN)
	@test -f $(HOTFFI_NODE_INC)/node.h || \
	    { echo "no $(HOTFFI_NODE_INC)/node.h: install libnode-dev ('make setup')"; exit 1; }
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(HOTFFI_NODE_CXXFLAGS) -o $@ $(HOTFFI_NODE_SRCS) \
	    $(LDFLAGS) $(HOTFFI_NODE_LDFLAGS)
