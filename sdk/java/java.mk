# sdk/java -- build/lib/hotffi.jar, the Java SDK (io.hotffi), and the Java
# runtimes of the examples and tests, compiled against it into build/java/.
# Included by the top Makefile.

HOTFFI_JAR         := $(BUILD)/lib/hotffi.jar
HOTFFI_JAR_SRCS    := $(wildcard sdk/java/src/io/hotffi/*.java)
HOTFFI_JAVA_JAR_BIN = $(patsubst %/javac,%/jar,$(realpath $(HOTFFI_JAVAC)))
HOTFFI_JAVA_RTS    := $(BUILD)/java/examples/.built $(BUILD)/java/tests/.built

all: $(HOTFFI_JAR) $(HOTFFI_JAVA_RTS)

$(HOTFFI_JAR): $(HOTFFI_JAR_SRCS) sdk/java/java.mk
	@rm -rf $(BUILD)/java/sdk && mkdir -p $(BUILD)/java/sdk $(@D)
	$(HOTFFI_JAVAC) -Xlint:all -Werror --release 17 \
	    -d $(BUILD)/java/sdk $(HOTFFI_JAR_SRCS)
	$(HOTFFI_JAVA_JAR_BIN) cf $@ -C $(BUILD)/java/sdk .

$(BUILD)/java/%/.built: $(HOTFFI_JAR) $(wildcard examples/java/*.java) \
                        $(wildcard tests/lib/java/*.java)
	@rm -rf $(@D) && mkdir -p $(@D)
	$(HOTFFI_JAVAC) --release 17 -cp $(HOTFFI_JAR) -d $(@D) \
	    $(wildcard $(if $(filter examples,$*),examples,tests/lib)/java/*.java)
	@touch $@
