# hscale -- one non-recursive Makefile.
#
#   make            release build: build/hscale (-O2)
#   make test       deps, ASan+UBSan build, C unit tests, end-to-end tests
#   make run        deps, build, start `hscale up`
#   make fuzz       every libFuzzer target for FUZZ_SECONDS each
#   make bench      the side-by-side comparisons under bench/
#   make lint       cppcheck over src/
#
# Sources are found by wildcard per module; objects go under build/<variant>/.

CC       ?= gcc
PKGS     := libfyaml jansson sqlite3 libpq hiredis openssl zlib liburing libdeflate libbrotlienc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CSTD     := -std=c11 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS_BASE := $(CSTD) $(WARN) $(PKG_CFLAGS) -Isrc -MMD -MP -pthread
LDLIBS   := $(PKG_LIBS) -lpthread -lm

MODULES  := core http gateway store bench app control
SRC      := $(foreach m,$(MODULES),$(wildcard src/$(m)/*.c)) $(wildcard src/cmd/*.c)
MAIN     := src/main.c
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

BUILD    ?= build
REL_DIR  := $(BUILD)/release
SAN_DIR  := $(BUILD)/asan
REL_OBJ  := $(patsubst src/%.c,$(REL_DIR)/%.o,$(SRC) $(MAIN))
SAN_OBJ  := $(patsubst src/%.c,$(SAN_DIR)/%.o,$(SRC) $(MAIN))
SAN_LIB_OBJ := $(patsubst src/%.c,$(SAN_DIR)/%.o,$(SRC))

REL_CFLAGS := $(CFLAGS_BASE) -O2 -g -DHSCALE_VERSION=\"$(VERSION)\"
SAN_CFLAGS := $(CFLAGS_BASE) -O1 -g -fno-omit-frame-pointer \
              -fsanitize=address,undefined -fno-sanitize-recover=undefined \
              -DHSCALE_VERSION=\"$(VERSION)\"

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(SAN_DIR)/tests/%,$(UNIT_SRC))

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 30
# Every target links all of src/ but main.c and cmd/, compiled once for the
# fuzz variant; a target that #includes a source file (to reach its static
# tables) filters that file's object out with FUZZ_EXCLUDE.
FUZZ_LIB_SRC := $(foreach m,$(MODULES),$(wildcard src/$(m)/*.c))
FUZZ_OBJ_DIR := $(BUILD)/fuzz/obj
FUZZ_LIB_OBJ := $(patsubst src/%.c,$(FUZZ_OBJ_DIR)/%.o,$(FUZZ_LIB_SRC))
FUZZ_CFLAGS  := $(CSTD) -g -O1 -Isrc $(PKG_CFLAGS) -pthread -DHSCALE_VERSION=\"$(VERSION)\"

PYTHON   := /usr/bin/python3

.PHONY: all deps test unit e2e run fuzz bench lint clean
all: $(BUILD)/hscale

$(BUILD)/hscale: $(REL_OBJ)
	$(CC) $(REL_CFLAGS) -o $@ $^ $(LDLIBS)

$(SAN_DIR)/hscale: $(SAN_OBJ)
	$(CC) $(SAN_CFLAGS) -o $@ $^ $(LDLIBS)

$(REL_DIR)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -c -o $@ $<

$(SAN_DIR)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -c -o $@ $<

$(SAN_DIR)/tests/%: tests/unit/%.c $(SAN_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -Itests/unit -o $@ $^ $(LDLIBS) -lcriterion

deps:
	@bash scripts/deps.sh

unit: $(UNIT_BIN)
	@bash scripts/run_unit.sh $(UNIT_BIN)

e2e: $(SAN_DIR)/hscale
	@HSCALE_BIN=$(CURDIR)/$(SAN_DIR)/hscale $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

test: deps
	@$(MAKE) --no-print-directory $(SAN_DIR)/hscale $(UNIT_BIN)
	@bash scripts/run_tests.sh "$(CURDIR)/$(SAN_DIR)/hscale" $(UNIT_BIN)

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/hscale
	./$(BUILD)/hscale up

$(FUZZ_OBJ_DIR)/%.o: src/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

# kept between runs (make would delete them as intermediates of the pattern rule)
.SECONDARY: $(FUZZ_LIB_OBJ)

$(BUILD)/fuzz/fuzz_app_body: FUZZ_EXCLUDE := $(FUZZ_OBJ_DIR)/app/app_write.o $(FUZZ_OBJ_DIR)/app/app_users.o

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $(filter-out $(FUZZ_EXCLUDE),$^) $(LDLIBS)

fuzz: deps $(FUZZ_BIN)
	@bash scripts/run_fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

bench: deps $(BUILD)/hscale
	@for b in $(filter-out bench/lib.sh,$(wildcard bench/*.sh)); do echo "== $$b"; bash $$b || exit 1; done

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --std=c11 -D__GNUC__ -Isrc src

clean:
	rm -rf build

-include $(REL_OBJ:.o=.d) $(SAN_OBJ:.o=.d) $(FUZZ_LIB_OBJ:.o=.d)
