# The two commands: `make run` (server on the embedded default) and `make test` (whole suite).
# Each creates the virtualenv it needs; nothing else has to be installed first.
PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8080
BIN    := $(VENV)/bin

.PHONY: run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.runtime $@

run: $(VENV)/.runtime
	PORT=$(PORT) $(BIN)/uvicorn app.main:app --host $(HOST) --port $(PORT) --proxy-headers

test: $(VENV)/.dev
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy app

format: $(VENV)/.dev
	$(BIN)/ruff check --fix app tests bench
	$(BIN)/ruff format app tests bench

bench: $(VENV)/.dev
	$(BIN)/python bench/redis_append_cost.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
