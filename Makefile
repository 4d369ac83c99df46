# ferroshm: `make demo` and `make test` work on a fresh machine with a Rust
# toolchain and Python 3.9+; everything else is installed into .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: help demo test build build-dev test-rust test-stubs test-python bench lint clean fuzz \
	wheels test-wheels test-matrix sid-chroot test-tsan wheels-ft test-clients \
	cross-tools test-windows check-macos build-windows

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.deps: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.9.4,<2" "pytest>=7" pytest-timeout numpy hypothesis mypy
	$(PY) -m pip install -q joblib "dask[distributed]"
	touch $@

build: $(VENV)/.deps  ## build the extension in release mode into .venv
	$(VENV)/bin/maturin develop --release --quiet

build-dev: $(VENV)/.deps  ## build the extension in debug mode into .venv
	$(VENV)/bin/maturin develop --quiet

demo: build  ## run the NumPy pipeline demo, ferroshm next to the stdlib
	$(PY) examples/numpy_pipeline.py

test: build lint test-rust test-stubs test-python  ## build, then lint and run every test

test-rust:  ## cargo test of the Rust core, with the tests that compare with CPython (python feature)
	cargo test --release --features python

test-stubs:  ## check python/ferroshm/_native.pyi against the built module (mypy stubtest)
	$(PY) -m mypy.stubtest ferroshm._native

test-python:  ## pytest, with CPython's own shared-memory tests
	$(PY) -m pytest

# `make fuzz`: the robustness tests of `make test`, run long (FUZZ_EXAMPLES
# hypothesis examples per state machine, 20x that per list-fuzzing strategy,
# ~10x the faults, a minute of stress per start method), then the Rust
# list-reader fuzzer of fuzz/ (guard pages; FUZZ_ITERATIONS inputs). Figures
# are appended to FUZZ_REPORT, one JSON object a line.
FUZZ_EXAMPLES ?= 1000
FUZZ_ITERATIONS ?= 5000000
FUZZ_REPORT ?= fuzz/report.jsonl
fuzz: build  ## long robustness runs: stateful, list fuzzing, faults, stress; then the Rust fuzzer
	FERROSHM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FERROSHM_ROBUSTNESS_REPORT=$(abspath $(FUZZ_REPORT)) \
		$(PY) -m pytest tests/test_stateful.py tests/test_fuzz_list.py tests/test_fuzz_fast_path.py tests/test_faults.py \
		tests/test_stress.py tests/test_security.py
	FERROSHM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FERROSHM_ROBUSTNESS_REPORT=$(abspath $(FUZZ_REPORT)) \
		$(PY) -m pytest tests/test_array_headers.py -k fuzz
	out=$$(cd fuzz && cargo run --release --quiet --bin list_reader -- $(FUZZ_ITERATIONS)) && \
		echo "$$out" && echo "$$out" >> $(abspath $(FUZZ_REPORT))

# Wheels and the interpreter matrix (.ci/matrix.py). Every CPython 3.9-3.15
# found (pyenv's, or python3.X on PATH, or for 3.14 and 3.15 Debian sid's in
# the chroot of tools/sid-chroot.sh when it is set up; MATRIX_PYTHONS="path
# sid:path ..." to choose) gets a manylinux2014 wheel, linked by zig against
# glibc 2.17 and checked with auditwheel; test-wheels installs each into a
# clean venv of its interpreter and runs the whole suite against it, from
# outside the source tree. test-matrix (what CI runs) sets the chroot up
# first (root; created once in /var/cache/ferroshm/sid, or $FERROSHM_SID,
# and reused), then is test-wheels: one build per interpreter.
WHEEL_DIR ?= dist
$(VENV)/.wheel-deps: $(VENV)/.deps
	$(PY) -m pip install -q "ziglang==0.17.1" "auditwheel>=6,<7"
	touch $@

wheels: $(VENV)/.wheel-deps  ## manylinux2014 wheels for every CPython 3.9-3.15 found, and the sdist, into dist/
	$(PY) .ci/matrix.py wheels --out $(WHEEL_DIR) --tools $(VENV)/bin

test-wheels: wheels  ## each wheel installed in a clean venv of its interpreter: the whole suite against it
	$(PY) .ci/matrix.py test --wheels $(WHEEL_DIR)

sid-chroot:  ## create the Debian sid chroot with CPython 3.14 and 3.15 unless it is there (root)
	tools/sid-chroot.sh setup

test-matrix: sid-chroot  ## CI's: the sid chroot, then test-wheels: every CPython 3.9-3.15, CPython's own tests included
	$(MAKE) test-wheels

# Free-threaded wheels (README "Free-threading"): cp314t and cp315t,
# manylinux2014 through zig as above. No free-threaded 3.14 or 3.15 exists on
# this machine: maturin takes the target interpreter's configuration from
# its own bundled sysconfig data, so these wheels are built and checked with
# auditwheel, never installed or tested here.
FT_PYTHONS ?= 3.14t 3.15t
wheels-ft: $(VENV)/.wheel-deps  ## cp314t/cp315t wheels (free-threaded; built and checked, not tested) into dist/
	for v in $(FT_PYTHONS); do \
		PATH="$(abspath $(VENV))/bin:$$PATH" CARGO_TARGET_DIR=$(abspath target)/ft$$v \
		$(VENV)/bin/maturin build --release --zig --compatibility manylinux2014 -i python$$v \
			-o $(WHEEL_DIR) --quiet || exit 1; \
	done
	for v in $(subst .,,$(FT_PYTHONS)); do \
		w=$$(ls $(WHEEL_DIR)/ferroshm-*-cp$${v%t}-cp$$v-*.whl) && \
		$(VENV)/bin/auditwheel show $$w | grep manylinux_2_17_x86_64 >/dev/null && echo "$$w: manylinux_2_17_x86_64" \
		|| exit 1; \
	done

# `make test-clients`: the real-client suite (README "Real-client suite";
# clients/run.py). A release wheel of ferroshm for $(PY)'s interpreter, then
# each library of clients/libraries.py: its own tests from its pinned sdist,
# on the stdlib and with ferroshm patched into every process, each run in a
# private /dev/shm; fails on any test whose outcome differs and on segments
# ferroshm leaves. Its venv, sdists and logs go to target/clients/.
# CLIENTS="pyshmem shmlock" runs only those.
CLIENTS ?=
CLIENTS_WHEEL_DIR := target/clients/wheel
test-clients: $(VENV)/.deps  ## third-party libraries' own tests, stdlib vs a ferroshm wheel patched in
	rm -rf $(CLIENTS_WHEEL_DIR)
	$(VENV)/bin/maturin build --release --quiet --interpreter $(PY) --out $(CLIENTS_WHEEL_DIR)
	$(PY) clients/run.py run --wheel $(CLIENTS_WHEEL_DIR)/ferroshm-*.whl $(if $(CLIENTS),--only $(CLIENTS))

bench: build  ## side-by-side benchmark against the standard library
	$(PY) benches/bench.py
	$(PY) benches/bench_arrays.py

lint:  ## rustfmt check, then clippy of the core and of the bindings
	cargo fmt --check
	cd fuzz && cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --all-targets --features python -- -D warnings

# --- other platforms (README "Platforms"; facts in platforms.md) ------------------------------
# rustup's toolchain here has only the Linux standard library, so these use
# Debian's rustc-web/cargo-web (by full path: ~/.cargo/bin comes first on
# PATH), which ship the library's source for -Zbuild-std; stable cargo takes
# -Z flags with RUSTC_BOOTSTRAP=1. Their builds go to target/cross, apart
# from rustup's. tools/install-cross.sh installs them (idempotent, root).
CROSS_CARGO := RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO=/usr/bin/cargo \
	CARGO_TARGET_DIR=$(abspath target/cross) /usr/bin/cargo
# cargo would run rustup's cargo-clippy from ~/.cargo/bin; Debian's is
# called directly and finds its clippy-driver next to it.
CROSS_CLIPPY := RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO=/usr/bin/cargo \
	CARGO_TARGET_DIR=$(abspath target/cross) /usr/bin/cargo-clippy clippy
# Debian's clippy 1.96 (newer than rustup's) reports missing_const_for_thread_local
# on a thread_local! whose initializer is `const { ... }` already: a false
# positive of that release, allowed in the cross lint runs only.
CROSS_CLIPPY_ALLOW := -A clippy::missing_const_for_thread_local
WIN_TARGET := x86_64-pc-windows-gnu
MACOS_TARGETS := x86_64-apple-darwin aarch64-apple-darwin
WINEPREFIX := $(abspath target/wineprefix)
WIN_ENV := WINEPREFIX=$(WINEPREFIX) WINEDEBUG=-all \
	CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
	CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
# wine 8.0 has no bcryptprimitives.dll, which every Rust .exe imports
# (ProcessPrng): the stand-in from tools/ goes into the prefix.
WINE_SHIM := $(WINEPREFIX)/drive_c/windows/system32/bcryptprimitives.dll
# The Python version the bindings are cross-built for (any 3.9+ works): no
# interpreter of the target can run here, so pyo3 is told the version.
CROSS_PYTHON_VERSION ?= 3.11
CROSS_PYO3 := PYO3_CROSS_PYTHON_VERSION=$(CROSS_PYTHON_VERSION)

cross-tools:  ## install Debian's Rust with std sources, clippy, MinGW and wine (root)
	tools/install-cross.sh

$(WINE_SHIM): tools/bcryptprimitives.c tools/bcryptprimitives.def
	tools/install-cross.sh
	WINEPREFIX=$(WINEPREFIX) WINEDEBUG=-all wine wineboot --init
	WINEPREFIX=$(WINEPREFIX) wineserver --wait
	x86_64-w64-mingw32-gcc -shared -O2 -o $@ $^ -ladvapi32

test-windows: $(WINE_SHIM)  ## build the Rust core for Windows (MinGW) and run its tests under wine
	$(WIN_ENV) $(CROSS_CARGO) test -Zbuild-std --target $(WIN_TARGET)
	$(WIN_ENV) $(CROSS_CLIPPY) -Zbuild-std --target $(WIN_TARGET) --all-targets -- -D warnings $(CROSS_CLIPPY_ALLOW)

check-macos: cross-tools  ## cargo check and clippy of the crate for x86_64- and aarch64-apple-darwin
	for t in $(MACOS_TARGETS); do \
		$(CROSS_CARGO) check -Zbuild-std --target $$t --all-targets && \
		$(CROSS_CLIPPY) -Zbuild-std --target $$t --all-targets -- -D warnings $(CROSS_CLIPPY_ALLOW) && \
		$(CROSS_PYO3) $(CROSS_CLIPPY) -Zbuild-std --target $$t --all-targets --features python -- -D warnings $(CROSS_CLIPPY_ALLOW) \
		|| exit 1; \
	done

# The extension module for Windows, built without a Windows Python: pyo3
# writes the pythonXY.dll import library itself (generate-import-lib) for
# CROSS_PYTHON_VERSION. Clippy of the bindings, then the build; the .pyd
# can be built and inspected here, not run (no Windows CPython).
WIN_PYD := target/cross/$(WIN_TARGET)/release/ferroshm.dll
build-windows: cross-tools  ## clippy and cross-build of the Python extension for Windows (_native.pyd)
	$(WIN_ENV) $(CROSS_PYO3) $(CROSS_CLIPPY) -Zbuild-std --target $(WIN_TARGET) --all-targets \
		--features python,pyo3/generate-import-lib -- -D warnings $(CROSS_CLIPPY_ALLOW)
	$(WIN_ENV) $(CROSS_PYO3) $(CROSS_CARGO) build -Zbuild-std --release --target $(WIN_TARGET) --lib \
		--features python,pyo3/generate-import-lib
	cp $(WIN_PYD) target/cross/_native.pyd
	x86_64-w64-mingw32-objdump -p target/cross/_native.pyd > target/cross/_native.pyd.txt
	grep -q "DLL Name: python$(subst .,,$(CROSS_PYTHON_VERSION)).dll" target/cross/_native.pyd.txt
	grep -q " PyInit__native$$" target/cross/_native.pyd.txt
	@echo "target/cross/_native.pyd: a PE DLL exporting PyInit__native, importing" \
		"python$(subst .,,$(CROSS_PYTHON_VERSION)).dll"

# --- ThreadSanitizer (README "Free-threading") ----------------------------------------------
# The Rust core's tests under TSan, the threads of src/list/thread_tests.rs
# sharing lists and segments among them (the two long single-threaded
# random-block tests are skipped: TSan adds nothing there). Debian's
# rustc-web (cross-tools) builds std instrumented (-Zbuild-std) but ships no
# Rust TSan runtime, so gcc's static libtsan is linked instead
# (-Zexternal-clangrt): a linker wrapper puts it first, as gcc's
# -static-libtsan does, and leaves the (uninstrumented) build scripts alone;
# the __tsan_mem* entry points LLVM emits and gcc 12's runtime lacks call its
# intercepted memcpy/memmove/memset. rustix goes through libc
# (--cfg=rustix_use_libc) so that TSan sees every mmap and munmap: a new
# mapping at a recycled address would otherwise inherit the old one's
# history (false reports across tests). Run it in a private /dev/shm, as
# `make test`. Builds go to target/tsan.
TSAN_DIR := $(abspath target/tsan)
TSAN_CARGO := RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO=/usr/bin/cargo \
	CARGO_TARGET_DIR=$(TSAN_DIR) CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=$(TSAN_DIR)/cc-tsan \
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-Zsanitizer=thread -Zexternal-clangrt --cfg=rustix_use_libc" \
	/usr/bin/cargo
$(TSAN_DIR)/cc-tsan: Makefile
	mkdir -p $(TSAN_DIR)
	printf '%s\n' '#include <string.h>' \
		'void *__tsan_memcpy(void *d, const void *s, size_t n) { return memcpy(d, s, n); }' \
		'void *__tsan_memmove(void *d, const void *s, size_t n) { return memmove(d, s, n); }' \
		'void *__tsan_memset(void *d, int c, size_t n) { return memset(d, c, n); }' > $(TSAN_DIR)/shim.c
	cc -O2 -fno-builtin -c -o $(TSAN_DIR)/shim.o $(TSAN_DIR)/shim.c
	printf '%s\n' '#!/bin/sh' \
		'case "$$*" in */x86_64-unknown-linux-gnu/*) ;; *) exec cc "$$@" ;; esac' \
		'exec cc $(shell cc -print-file-name=libtsan_preinit.o) -Wl,--whole-archive $(shell cc -print-file-name=libtsan.a) -Wl,--no-whole-archive "$$@" $(TSAN_DIR)/shim.o -lstdc++ -lrt -ldl -lpthread -lm -lc' \
		> $@
	chmod +x $@

test-tsan: cross-tools $(TSAN_DIR)/cc-tsan  ## the Rust core's tests (threads sharing lists and segments) under ThreadSanitizer
	$(TSAN_CARGO) test -Zbuild-std --target x86_64-unknown-linux-gnu --lib -- --skip list::tests::random_

clean:
	rm -rf $(VENV) target
