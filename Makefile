# Two commands for a new machine: `make run` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint bench soak clean test-diffusers

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-deps

run: $(VENV)/.run-deps
	$(BIN)/falweb serve --host $(HOST) --port $(PORT)

test: $(VENV)/.test-deps
	bash scripts/test-setup.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The optional diffusers engine's tests (a tiny random SD model; CPU torch, about 1.3 GB).
test-diffusers: $(VENV)/.test-deps
	bash scripts/test-setup.sh
	$(BIN)/python -m pytest tests/test_engine_diffusers.py $(PYTEST_ARGS)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .

# Each prints its goals' figures with the ratio to a baseline measured in the same run.
bench: $(VENV)/.test-deps
	bash scripts/test-setup.sh
	$(BIN)/python bench/proxy.py
	$(BIN)/python bench/local_queue.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/page_weight.py
	$(BIN)/python bench/apps.py

# 60 s under the README's gunicorn deployment: pollers, live sessions, slow clients.
soak: $(VENV)/.test-deps
	$(BIN)/python bench/soak.py --seconds 60

clean:
	rm -rf $(VENV) tests/js/node_modules
