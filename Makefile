# ferroshm: `make demo` and `make test` work on a fresh machine with a Rust
# toolchain and Python 3.9+; everything else is installed into .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: help demo test build build-dev test-rust test-stubs test-python bench lint clean fuzz \
	wheels test-wheels test-matrix

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.deps: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.9.4,<2" "pytest>=7" pytest-timeout numpy hypothesis mypy
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
		$(PY) -m pytest tests/test_stateful.py tests/test_fuzz_list.py tests/test_faults.py \
		tests/test_stress.py tests/test_security.py
	out=$$(cd fuzz && cargo run --release --quiet --bin list_reader -- $(FUZZ_ITERATIONS)) && \
		echo "$$out" && echo "$$out" >> $(abspath $(FUZZ_REPORT))

# Wheels and the interpreter matrix (.ci/matrix.py). Every CPython 3.9-3.13
# found (pyenv's, or python3.X on PATH; MATRIX_PYTHONS="path ..." to choose)
# gets a manylinux2014 wheel, linked by zig against glibc 2.17 and checked
# with auditwheel; test-wheels installs each into a clean venv of its
# interpreter and runs the whole suite against it, from outside the source
# tree. test-matrix (what CI runs) is test-wheels: one build per interpreter.
WHEEL_DIR ?= dist
$(VENV)/.wheel-deps: $(VENV)/.deps
	$(PY) -m pip install -q "ziglang==0.17.1" "auditwheel>=6,<7"
	touch $@

wheels: $(VENV)/.wheel-deps  ## manylinux2014 wheels for every CPython 3.9-3.13 found, and the sdist, into dist/
	$(PY) .ci/matrix.py wheels --out $(WHEEL_DIR) --tools $(VENV)/bin

test-wheels: wheels  ## each wheel installed in a clean venv of its interpreter: the whole suite against it
	$(PY) .ci/matrix.py test --wheels $(WHEEL_DIR)

test-matrix: test-wheels  ## CI's name for test-wheels: every CPython 3.9-3.13 found, CPython's own tests included

bench: build  ## side-by-side benchmark against the standard library
	$(PY) benches/bench.py

lint:  ## rustfmt check, then clippy of the core and of the bindings
	cargo fmt --check
	cd fuzz && cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --all-targets --features python -- -D warnings

clean:
	rm -rf $(VENV) target
