# One venv, created on demand; every target goes through it.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The dependencies come from the lock (requirements/dev.txt: runtime + dev + bench, every
# file checked against its hash, a dependency missing from the lock refused), then the
# project itself without dependencies. `make lock` regenerates the lock from pyproject.toml.
LOCK_DEV := requirements/dev.txt
LOCK_RUNTIME := requirements/runtime.txt

.PHONY: install test test-unit lint demo bench clean lock

$(STAMP): pyproject.toml $(LOCK_DEV)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK_DEV)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Resolved from PyPI alone (uv reads no pip.conf) for every platform and Python >= 3.11
# (--universal: markers instead of this machine's answers); the pins already in the
# files are kept unless pyproject.toml needs others (`UPGRADE=1 make lock` takes the
# newest). The dev lock is held to the runtime lock's pins, so the image (runtime) and CI
# (dev) run the same versions. tests/deploy/test_lock.py checks the lock against pyproject.toml.
UV_COMPILE = $(BIN)/uv pip compile --no-config --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

lock: $(STAMP)
	$(UV_COMPILE) pyproject.toml -o $(LOCK_RUNTIME)
	$(UV_COMPILE) pyproject.toml --extra dev --extra bench -c $(LOCK_RUNTIME) -o $(LOCK_DEV)

# coverage of the package is printed; its floor (fail_under in pyproject.toml) holds for the
# whole suite only, since a subset chosen with PYTEST_ARGS covers less
COVERAGE := --cov --cov-report=term $(if $(PYTEST_ARGS),--cov-fail-under=0)

test: $(STAMP)
	$(BIN)/python -m pytest $(COVERAGE) $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

demo: $(STAMP)
	$(BIN)/execflow demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/logging_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
