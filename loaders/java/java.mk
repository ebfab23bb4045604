# loaders/java -- build/lib/libhotffi_java.so, the loader that runs Java
# runtimes in a JVM of each worker (docs/java.md), and build/lib/hotffi.jar,
# the Java SDK it loads.  Included by the top Makefile.
#
# Built against the JDK of /usr/bin/javac (Debian's default-jdk-headless,
# OpenJDK 17): JAVA_HOME is where that javac really lives, so another JDK
# first on PATH does not mix its headers with this libjvm.

HOTFFI_JAVAC      ?= /usr/bin/javac
HOTFFI_JAVA_HOME  ?= $(patsubst %/bin/javac,%,$(realpath $(HOTFFI_JAVAC)))
HOTFFI_JAVA_LIB   := $(BUILD)/lib/libhotffi_java.so
HOTFFI_JAVA_JARF  := $(BUILD)/lib/hotffi.jar
HOTFFI_JAVA_SRCS  := $(wildcard loaders/java/*.c)
HOTFFI_JAVA_HDRS  := $(wildcard loaders/java/*.h) include/hotffi.h
HOTFFI_JAVA_LIBJVM = $(HOTFFI_JAVA_HOME)/lib/server

HOTFFI_JAVA_CFLAGS = $(RT_CFLAGS) -fvisibility=hidden \
                     -I$(HOTFFI_JAVA_HOME)/include \
                     -I$(HOTFFI_JAVA_HOME)/include/linux

# -z nodelete: the JVM lives as long as the worker and calls the natives
HOTFFI_JAVA_LDFLAGS = -shared -Wl,-z,nodelete -L$(HOTFFI_JAVA_LIBJVM) \
                      -Wl,-rpath,$(HOTFFI_JAVA_LIBJVM) -ljvm -lpthread -ldl

# $(call HOTFFI_JAVA_CC,JAR): the loader into $@, finding the SDK at the
# absolute path JAR unless $HOTFFI_JAVA_SDK says otherwise.  This build's
# finds build/lib/hotffi.jar; the installed one is built again with the
# installed jar's path (dist/dist.mk).
define HOTFFI_JAVA_CC
@test -f $(HOTFFI_JAVA_HOME)/include/jni.h || \
    { echo "no JDK at '$(HOTFFI_JAVA_HOME)': run 'make setup'"; exit 1; }
@mkdir -p $(@D)
$(CC) $(CPPFLAGS) $(HOTFFI_JAVA_CFLAGS) -DHOTFFI_JAVA_JAR='"$(1)"' \
    -o $@ $(HOTFFI_JAVA_SRCS) $(LDFLAGS) $(HOTFFI_JAVA_LDFLAGS)
endef

# lua-resty-ffi's name for its Java loader, so that its users' nginx.conf
# (ngx.load_ffi("ffi_java", "demo.App?,init,")) finds this one: the same
# file, which the dynamic linker opens once under either name
HOTFFI_JAVA_ALIAS := $(BUILD)/lib/libffi_java.so

all: $(HOTFFI_JAVA_LIB) $(HOTFFI_JAVA_ALIAS)

$(HOTFFI_JAVA_ALIAS): $(HOTFFI_JAVA_LIB)
	ln -sf $(notdir $(HOTFFI_JAVA_LIB)) $@

$(HOTFFI_JAVA_LIB): $(HOTFFI_JAVA_SRCS) $(HOTFFI_JAVA_HDRS) \
                    loaders/java/java.mk | $(HOTFFI_JAVA_JARF)
	$(call HOTFFI_JAVA_CC,$(abspath $(HOTFFI_JAVA_JARF)))
