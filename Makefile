# taskgate: `make run` starts the gateway on an embedded SQLite database; `make test` checks it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TASKGATE_DATA_DIR ?= .taskgate

.PHONY: run test lint services sandbox bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) sandbox
	$(BIN)/taskgate migrate
	$(BIN)/taskgate serve

services:
	bash scripts/ensure-services.sh

sandbox:
	@bash scripts/ensure-bwrap.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: $(STAMP) services lint
	$(BIN)/pytest -q

bench: $(STAMP) services
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
