# One venv, created on demand; every target goes through it.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-unit lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

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
