# vibex — build, deps, test, run, bench.
#
#   make deps    install every system package (Debian 12; as root or via sudo)
#   make         build ./vibex
#   make test    build and run every test; last line: "N passed, N failed"
#   make asan    the whole suite under AddressSanitizer + UBSan
#   make run     the paper-trading demo (no network, no keys)
#   make bench   benchmarks, with baselines measured in the same run
#   make bench-deps  fetch TA-Lib's C source (npm package talib) for make bench

CC      ?= cc
PKGS    := luajit libuv libcurl libedit libcrypto nettle libsecp256k1 libwebsockets libpq
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Werror
SECP_VERSION := $(shell pkg-config --modversion libsecp256k1 2>/dev/null)
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
	-DVX_SECP256K1_VERSION='"$(or $(SECP_VERSION),unknown)"' $(EXTRA_CFLAGS)
LDLIBS_ALL = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lmvec -lm -lpthread $(EXTRA_LDLIBS)
LDFLAGS_ALL = -Wl,-E $(EXTRA_LDFLAGS)

BUILD   ?= build/release
BIN     ?= vibex

RUNTIME_SRC := $(filter-out runtime/main.c,$(wildcard runtime/*.c))
RUNTIME_OBJ := $(patsubst runtime/%.c,$(BUILD)/runtime/%.o,$(RUNTIME_SRC))
CTEST_SRC   := $(wildcard tests/c/test_*.c)
CTEST_BIN   := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(CTEST_SRC))
SUPPORT_BIN := $(BUILD)/tests/httpd $(BUILD)/tests/order_sink

DEB_PACKAGES := build-essential pkg-config ca-certificates openssl curl python3 \
	libluajit2-5.1-dev libuv1-dev libcurl4-openssl-dev libedit-dev \
	lua-cjson lua-busted lua-argparse libssl-dev libsecp256k1-dev nettle-dev \
	libwebsockets-dev libwebsockets-evlib-uv libpq-dev postgresql \
	libcmocka-dev libhttp-parser-dev nghttp2-server valgrind hyperfine chromium nodejs wrk

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test asan run bench bench-deps talib clean check-deps

FFI_OK := $(BUILD)/ffi-layout.ok

all: $(BIN) $(FFI_OK)

# Test tools from npm (tests/node: OpenAPI and JSON Schema validators,
# ethers, puppeteer-core for Debian's chromium), at the lockfile's versions.
# Debian's nodejs needs its npm package; NodeSource's nodejs carries npm.
deps:
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES)
	command -v npm >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm
	cd tests/node && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error

$(BUILD)/runtime/%.o: runtime/%.c runtime/*.h | $(BUILD)/runtime
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The indicator kernels are written as loops for the vectoriser; -O3 turns it
# on fully; sqrt without errno and selects around a divide vectorise only
# with these two flags (results are unchanged: no
# fast-math, so nothing is reassociated).
$(BUILD)/runtime/ta_kernels.o: CFLAGS_ALL += -O3 -fno-math-errno -fno-trapping-math

$(BUILD)/runtime:
	mkdir -p $@

$(BUILD)/libvibex.a: $(RUNTIME_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/runtime/main.o $(BUILD)/libvibex.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(BUILD)/runtime/main.o -Wl,--whole-archive $(BUILD)/libvibex.a -Wl,--no-whole-archive $(LDLIBS_ALL)

# Every struct Lua declares through the FFI (stdlib/vibex/cdef.lua) must
# have its C header's layout: checked here, so a drift fails the build.
$(FFI_OK): $(BIN) stdlib/vibex/cdef.lua runtime/*.h tests/support/ffi_layout.lua
	@VX_FFI_DIR=$(BUILD) VX_FFI_CFLAGS="$(shell pkg-config --cflags $(PKGS) 2>/dev/null)" VIBEX_HOME=$(CURDIR) ./$(BIN) tests/support/ffi_layout.lua
	@touch $@

$(BUILD)/tests/%: tests/c/%.c tests/c/*.h $(BUILD)/libvibex.a
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS_ALL) -Iruntime $(LDFLAGS_ALL) -o $@ $< -Wl,--whole-archive $(BUILD)/libvibex.a -Wl,--no-whole-archive $(LDLIBS_ALL) -lcmocka

$(BUILD)/tests/httpd: tests/support/httpd.c
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS_ALL) -o $@ $< $(shell pkg-config --libs libuv) -lhttp_parser

$(BUILD)/tests/order_sink: tests/support/order_sink.c
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS_ALL) -o $@ $< -lpthread

build-tests: $(BIN) $(FFI_OK) $(CTEST_BIN) $(SUPPORT_BIN)

test: build-tests
	@VIBEX_HOME=$(CURDIR) VIBEX_BIN=./$(BIN) BUILD=$(BUILD) tests/run.sh

asan:
	$(MAKE) BUILD=build/asan BIN=build/asan/vibex \
	  OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" test

run: $(BIN) $(FFI_OK)
	./$(BIN) migrate up examples/paper.lua
	./$(BIN) run examples/paper.lua

# TA-Lib, the bench's reference for the indicators: its published C source
# as the npm package `talib` carries it, fetched by `make bench-deps` (never
# by deps or the build) into build/talib-src, built by `make bench` with
# -O3 (its release flags) into a shared library the bench loads.
TALIB_VERSION := 2.0.5
TALIB_SRC := build/talib-src/package/src/lib
TALIB_LIB := $(BUILD)/bench/libta_lib.so

bench-deps:
	rm -rf build/talib-src && mkdir -p build/talib-src
	cd build/talib-src && npm pack --silent talib@$(TALIB_VERSION) >/dev/null && tar xzf talib-$(TALIB_VERSION).tgz
	@test -f $(TALIB_SRC)/src/ta_func/ta_SMA.c && echo "TA-Lib $(TALIB_VERSION) source in build/talib-src"

$(TALIB_LIB):
	@mkdir -p $(dir $@)
	$(CC) -O3 -DNDEBUG -fPIC -shared -w -I$(TALIB_SRC)/include -I$(TALIB_SRC)/src/ta_common \
	  -I$(TALIB_SRC)/src/ta_func $(TALIB_SRC)/src/ta_func/*.c $(TALIB_SRC)/src/ta_common/*.c -o $@ -lm

talib:
	@if [ -f $(TALIB_SRC)/src/ta_func/ta_SMA.c ]; then $(MAKE) --no-print-directory $(TALIB_LIB); \
	else echo "bench: TA-Lib's source is not here; run 'make bench-deps' for the TA-Lib comparison"; fi

bench: $(BIN) $(SUPPORT_BIN) talib
	@VIBEX_BIN=./$(BIN) BUILD=$(BUILD) VIBEX_TALIB=$$([ -f $(TALIB_LIB) ] && echo $(TALIB_LIB)) \
	  ./$(BIN) tests/bench/run.lua

clean:
	rm -rf build $(BIN)
