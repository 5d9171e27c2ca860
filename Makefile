# chargebrain — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest bench fuzz clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/chargebrain run --demo

lint: install
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

# Not part of `make test`: the HTTP fuzzer at length with a random seed, then the stateful
# restart machine with more examples. The environment variables below set the sizes.
fuzz: install
	CHARGEBRAIN_FUZZ_REQUESTS=$${CHARGEBRAIN_FUZZ_REQUESTS:-20000} \
	CHARGEBRAIN_FUZZ_RANDOM=$${CHARGEBRAIN_FUZZ_RANDOM:-1} \
	CHARGEBRAIN_FUZZ_CHECK_EVERY=$${CHARGEBRAIN_FUZZ_CHECK_EVERY:-1} \
	$(BIN)/pytest -q tests/api/test_fuzz_commands.py
	CHARGEBRAIN_STATEFUL_EXAMPLES=$${CHARGEBRAIN_STATEFUL_EXAMPLES:-30} \
	CHARGEBRAIN_STATEFUL_STEPS=$${CHARGEBRAIN_STATEFUL_STEPS:-60} \
	$(BIN)/pytest -q -s tests/e2e/test_stateful_restarts.py

clean:
	rm -rf $(VENV) chargebrain-data .pytest_cache .mypy_cache .ruff_cache
