# taskgate: `make run` starts the gateway on an embedded SQLite database; `make test` checks it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TASKGATE_DATA_DIR ?= .taskgate
# `make run PORT=9000 HOST=0.0.0.0`: what `taskgate serve` reads as TASKGATE_HTTP__PORT/__HOST.
ifdef PORT
export TASKGATE_HTTP__PORT := $(PORT)
endif
ifdef HOST
export TASKGATE_HTTP__HOST := $(HOST)
endif

.PHONY: run test lint fmt migration services sandbox bench clean

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

fmt: $(STAMP)
	$(BIN)/ruff check --fix src tests bench scripts
	$(BIN)/ruff format src tests bench scripts

# `make migration name="add widgets"` (a new branch) or `... head=0200` (continue that branch).
migration: $(STAMP)
	@test -n "$(name)" || { echo 'usage: make migration name="what it does" [head=0200]'; exit 2; }
	$(BIN)/python scripts/new_migration.py "$(name)" $(if $(head),--head $(head))
	$(BIN)/ruff format src/taskgate/db/migrations/versions

test: $(STAMP) services lint
	$(BIN)/pytest -q

bench: $(STAMP) services
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
