# Every target builds or reuses .venv itself, so a fresh machine with only
# Python 3.10+ needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint format types bench autobahn soak mutation clean venv

venv: $(STAMP)

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check zen_websocket tests scripts examples
	$(BIN)/ruff format --check zen_websocket tests scripts examples

format: $(STAMP)
	$(BIN)/ruff format zen_websocket tests scripts examples
	$(BIN)/ruff check --fix zen_websocket tests scripts examples

types: $(STAMP)
	$(BIN)/mypy zen_websocket

bench: $(STAMP)
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

autobahn: $(STAMP)
	$(BIN)/python scripts/autobahn.py $(AUTOBAHN_ARGS)

soak: $(STAMP)
	$(BIN)/python scripts/soak.py $(SOAK_ARGS)

# Mutation testing (mutmut) of each pure module against only its own unit
# tests; prints killed / total per module. MUTATION_ARGS="jsonrpc --diffs".
mutation: $(STAMP)
	$(BIN)/python scripts/mutation.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info reports
