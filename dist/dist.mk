# dist/dist.mk -- installing hotffi outside its checkout (docs/packaging.md):
# `make install` (PREFIX, DESTDIR) for any distribution, `make deb` for
# Debian's packages, `make dist-lua` for LuaRocks and opm, and the tests
# of all three (`make test-pkg`).  Included by the top Makefile.
#
# The version lives in VERSION only; debian/changelog's top entry must say
# the same, and `make deb` refuses to build when it does not.

VERSION     := $(shell cat VERSION)

PREFIX      ?= /usr/local
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
DATADIR     ?= $(PREFIX)/share
# where nginx looks for `load_module modules/...` is the distribution's
# choice; Debian's is /usr/lib/nginx/modules
NGINX_MODULES_DIR ?= $(LIBDIR)/nginx/modules
# lua-nginx-module's default package.path on Debian is
# /usr/share/lua/5.1/?.lua; other builds name theirs in lua_package_path
LUA_DIR     ?= $(DATADIR)/lua/5.1
# arch-independent: the .pc names a header directory, and no library
PKGCONFIG_DIR ?= $(DATADIR)/pkgconfig
# GOPATH-style tree, as Debian's golang-*-dev packages lay it out
GOCODE_DIR  ?= $(DATADIR)/gocode/src
# a cargo directory registry, as Debian's librust-*-dev packages lay it out
CARGO_REGISTRY_DIR ?= $(DATADIR)/cargo/registry
# Java libraries' jars, as Debian's Java policy puts them
JAVADIR     ?= $(DATADIR)/java
# programs that only hotffi runs (the isolation's helper), in a directory
# of hotffi's own there, as the FHS and Debian's policy put them
LIBEXECDIR  ?= $(PREFIX)/libexec

INSTALL     ?= install
LUA_FILES   := $(shell cd lua && find . -name '*.lua' | sed 's|^\./||' | sort)
GO_SDK_FILES := go.mod $(notdir $(wildcard sdk/go/hotffi/*.go))
RUST_SDK_VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' \
                      sdk/rust/hotffi/Cargo.toml | head -n 1)
RUST_SDK_DIR := $(CARGO_REGISTRY_DIR)/hotffi-$(RUST_SDK_VERSION)

.PHONY: install install-module install-isolate install-lua install-dev \
        install-python install-node install-lua-loader install-java \
        uninstall isolate python-loader node-loader lua-loader java-loader \
        FORCE deb dist-lua test-pkg test-dist test-deb test-install

install: install-module install-isolate install-lua install-dev \
         install-python install-node install-lua-loader install-java

install-module: $(MODULE)
	$(INSTALL) -d $(DESTDIR)$(NGINX_MODULES_DIR)
	$(INSTALL) -m 644 $(MODULE) $(DESTDIR)$(NGINX_MODULES_DIR)/

# Isolated runtimes (docs/isolation.md): the library in LIBDIR, where the
# core dlopen()s it by name (resty.hotffi.isolate's "hotffi_isolate"), as
# a loader; its helper program in LIBEXECDIR/hotffi.  The build tree's
# library finds the helper next to itself (build/lib); the one installed
# is built again, into build/install/, naming the helper's installed
# path, kept in a file rewritten only when it changes (as the Java
# loader's jar, below).
ISO_INST        := $(BUILD)/install/libhotffi_isolate.so
ISO_INST_HELPER  = $(LIBEXECDIR)/hotffi/$(notdir $(ISO_HELPER))
ISO_INST_STAMP  := $(BUILD)/install/iso-helper-path

$(ISO_INST_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(ISO_INST_HELPER)' | cmp -s - $@ || \
	    echo '$(ISO_INST_HELPER)' > $@

$(ISO_INST): $(ISO_WORKER) $(ISO_HDRS) src/isolate/isolate.mk \
             $(ISO_INST_STAMP)
	$(call ISO_LIB_CC,-DHOTFFI_ISO_HELPER_PATH='"$(ISO_INST_HELPER)"')

isolate: $(ISO_INST) $(ISO_HELPER)

install-isolate: isolate
	$(INSTALL) -D -m 644 $(ISO_INST) $(DESTDIR)$(LIBDIR)/$(notdir $(ISO_LIB))
	$(INSTALL) -D -m 755 $(ISO_HELPER) $(DESTDIR)$(ISO_INST_HELPER)

install-lua:
	for f in $(LUA_FILES); do \
	    $(INSTALL) -D -m 644 lua/$$f $(DESTDIR)$(LUA_DIR)/$$f || exit 1; \
	done

# the header, the .pc (written for this PREFIX), and the SDKs' sources
# (not their test runtimes).  A cargo directory registry wants a checksum
# file; no .crate was made, so it names no package checksum and no files.
install-dev:
	$(INSTALL) -D -m 644 include/hotffi.h $(DESTDIR)$(INCLUDEDIR)/hotffi.h
	$(INSTALL) -d $(DESTDIR)$(PKGCONFIG_DIR)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' dist/hotffi.pc.in \
	    > $(DESTDIR)$(PKGCONFIG_DIR)/hotffi.pc
	for f in $(GO_SDK_FILES); do \
	    src=sdk/go/hotffi/$$f; [ $$f = go.mod ] && src=sdk/go/go.mod; \
	    dst=$(DESTDIR)$(GOCODE_DIR)/hotffi/sdk/go; \
	    [ $$f = go.mod ] || dst=$$dst/hotffi; \
	    $(INSTALL) -D -m 644 $$src $$dst/$$f || exit 1; \
	done
	for f in Cargo.toml $(patsubst sdk/rust/hotffi/%,%, \
	                      $(wildcard sdk/rust/hotffi/src/*.rs)); do \
	    $(INSTALL) -D -m 644 sdk/rust/hotffi/$$f \
	        $(DESTDIR)$(RUST_SDK_DIR)/$$f || exit 1; \
	done
	printf '{"files":{}}\n' > $(DESTDIR)$(RUST_SDK_DIR)/.cargo-checksum.json

python-loader: $(HOTFFI_PY_LIB) $(HOTFFI_PY_ALIAS)

# the loader in the linker's path, so that hotffi.load("hotffi_python")
# and lua-resty-ffi's ngx.load_ffi("ffi_python3") find it by short name
install-python: python-loader
	$(INSTALL) -D -m 644 $(HOTFFI_PY_LIB) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_PY_LIB))
	ln -sf $(notdir $(HOTFFI_PY_LIB)) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_PY_ALIAS))

# The Java loader finds its SDK jar by the absolute path it was built with
# (loaders/java/java.mk): the one installed is built again, into
# build/install/, with the path where install puts the jar.  That path is
# kept in a file rewritten only when it changes, so that another JAVADIR
# (or PREFIX) rebuilds the loader and the same one does not.
HOTFFI_JAVA_INST      := $(BUILD)/install/libhotffi_java.so
HOTFFI_JAVA_INST_JAR   = $(JAVADIR)/hotffi.jar
HOTFFI_JAVA_INST_STAMP := $(BUILD)/install/java-jar-path

$(HOTFFI_JAVA_INST_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(HOTFFI_JAVA_INST_JAR)' | cmp -s - $@ || \
	    echo '$(HOTFFI_JAVA_INST_JAR)' > $@

$(HOTFFI_JAVA_INST): $(HOTFFI_JAVA_SRCS) $(HOTFFI_JAVA_HDRS) \
                     loaders/java/java.mk $(HOTFFI_JAVA_INST_STAMP)
	$(call HOTFFI_JAVA_CC,$(HOTFFI_JAVA_INST_JAR))

node-loader: $(HOTFFI_NODE_LIB)
lua-loader: $(HOTFFI_LUA_LIB)
java-loader: $(HOTFFI_JAVA_INST) $(HOTFFI_JAR)

# the Node.js and Lua loaders beside the Python one, for the same reason
# (hotffi.load("hotffi_node"), hotffi.load("hotffi_lua")); the JavaScript
# SDK is in the Node.js loader, the Lua one in the Lua loader
install-node: node-loader
	$(INSTALL) -D -m 644 $(HOTFFI_NODE_LIB) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_NODE_LIB))

install-lua-loader: lua-loader
	$(INSTALL) -D -m 644 $(HOTFFI_LUA_LIB) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_LUA_LIB))

# Debian's Java policy: the jar named with its version, and the plain name
# a link to it; the loader under both its names, as in the build tree
install-java: java-loader
	$(INSTALL) -D -m 644 $(HOTFFI_JAVA_INST) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_JAVA_LIB))
	ln -sf $(notdir $(HOTFFI_JAVA_LIB)) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_JAVA_ALIAS))
	$(INSTALL) -D -m 644 $(HOTFFI_JAR) \
	    $(DESTDIR)$(JAVADIR)/hotffi-$(VERSION).jar
	ln -sf hotffi-$(VERSION).jar $(DESTDIR)$(JAVADIR)/hotffi.jar

# what install put there; the directories that are hotffi's alone go too,
# the shared ones (lib/nginx/modules, share/lua/5.1/resty...) stay
uninstall:
	rm -f $(DESTDIR)$(NGINX_MODULES_DIR)/$(notdir $(MODULE))
	rm -f $(DESTDIR)$(LIBDIR)/$(notdir $(ISO_LIB))
	rm -rf $(DESTDIR)$(LIBEXECDIR)/hotffi
	for f in $(LUA_FILES); do rm -f $(DESTDIR)$(LUA_DIR)/$$f; done
	rm -rf $(DESTDIR)$(LUA_DIR)/resty/hotffi
	rm -f $(DESTDIR)$(INCLUDEDIR)/hotffi.h $(DESTDIR)$(PKGCONFIG_DIR)/hotffi.pc
	rm -rf $(DESTDIR)$(GOCODE_DIR)/hotffi $(DESTDIR)$(RUST_SDK_DIR)
	rm -f $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_PY_LIB)) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_PY_ALIAS))
	rm -f $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_NODE_LIB)) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_LUA_LIB)) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_JAVA_LIB)) \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(HOTFFI_JAVA_ALIAS))
	rm -f $(DESTDIR)$(JAVADIR)/hotffi-$(VERSION).jar \
	    $(DESTDIR)$(JAVADIR)/hotffi.jar


# ---- Debian ---------------------------------------------------------------
#
# dpkg-buildpackage writes its results next to the source directory, so the
# source is copied to build/deb/hotffi-VERSION first: the packages land in
# build/deb/ and nothing is written outside the checkout.  Checked with
# lintian; the tags left are explained in debian/*.lintian-overrides.

DEB_DIR     := $(BUILD)/deb
DEB_SRC     := $(DEB_DIR)/hotffi-$(VERSION)

deb:
	@v=$$(dpkg-parsechangelog -S Version); [ "$$v" = "$(VERSION)" ] || \
	    { echo "debian/changelog says $$v, VERSION says $(VERSION)"; exit 1; }
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_SRC)
	tar -cf - --exclude=./build --exclude=./.git --exclude='./obj-*' \
	    --exclude=__pycache__ --exclude='*.o' --exclude='*.so' . \
	    | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b
	rm -rf $(DEB_SRC)
	lintian --fail-on error,warning --info $(DEB_DIR)/*.changes
	@ls -1 $(DEB_DIR)/*.deb


# ---- LuaRocks and opm -----------------------------------------------------
#
# One tarball for both, in opm's layout (lib/ holds lua/'s files), next to
# the rockspec whose modules are lua/'s files, listed when it is made.

LUA_DIST    := $(BUILD)/dist-lua
LUA_PKG     := lua-resty-hotffi-$(VERSION)

dist-lua:
	rm -rf $(LUA_DIST)
	mkdir -p $(LUA_DIST)/$(LUA_PKG)/lib
	cd lua && cp --parents $(LUA_FILES) $(CURDIR)/$(LUA_DIST)/$(LUA_PKG)/lib/
	cp dist/dist.ini README.md $(LUA_DIST)/$(LUA_PKG)/
	awk -v v=$(VERSION) -v files="$(LUA_FILES)" \
	    '/@MODULES@/ { n = split(files, f, " "); \
	                   for (i = 1; i <= n; i++) { m = f[i]; \
	                       sub(/\.lua$$/, "", m); gsub("/", ".", m); \
	                       printf "        [\"%s\"] = \"lib/%s\",\n", \
	                              m, f[i] } \
	                   next } \
	     { gsub(/@VERSION@/, v); print }' \
	    dist/lua-resty-hotffi.rockspec.in \
	    > $(LUA_DIST)/$(LUA_PKG)-1.rockspec
	cd $(LUA_DIST) && tar -czf $(LUA_PKG).tar.gz $(LUA_PKG)
	@ls -1 $(LUA_DIST)/*.rockspec $(LUA_DIST)/*.tar.gz


# ---- tests ----------------------------------------------------------------

test-dist: dist-lua
	sh tests/pkg/dist.sh $(LUA_DIST)

test-deb: deb
	sh tests/pkg/install.sh $(DEB_DIR)

# builds what install copies, then installs into a DESTDIR only (the Java
# loader and the isolation library are built there, for the test's PREFIX)
test-install: $(MODULE) $(ISO_HELPER) python-loader node-loader lua-loader \
              $(HOTFFI_JAR)
	sh tests/pkg/make-install.sh

test-pkg: test-dist test-install test-deb

test: test-pkg
