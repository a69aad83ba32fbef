# portrait-gans — `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
UV      := $(shell command -v uv 2>/dev/null)
DATA    ?=
ARGS    ?=

export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

# --------------------------------------------------------------------------------------- environment
.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@if [ -z "$(UV)" ]; then python3 -m pip install --quiet uv; fi
	@UV=$$(command -v uv || echo "python3 -m uv"); \
	  $$UV venv --quiet --allow-existing $(VENV) --python 3.11 2>/dev/null || $$UV venv --quiet --allow-existing $(VENV); \
	  $$UV pip install --quiet --python $(PY) -r requirements.lock && \
	  $$UV pip install --quiet --python $(PY) --no-deps -e .
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv with the locked stack (uv, ~30 s from cache)

.PHONY: lock
lock: ## re-resolve requirements.lock from pyproject.toml
	uv pip compile pyproject.toml --extra dev --extra faces --python-version 3.11 -o requirements.lock

# ------------------------------------------------------------------------------------------ quality
.PHONY: test
test: $(STAMP) ## fast test suite (no slow/gpu/ddp tests; WANDB disabled)
	WANDB_MODE=disabled $(PY) -m pytest -m "not slow and not gpu and not ddp" -q $(ARGS)

.PHONY: test-slow
test-slow: $(STAMP) ## the slow tests only
	WANDB_MODE=disabled $(PY) -m pytest -m "slow" -q $(ARGS)

.PHONY: test-all
test-all: $(STAMP) ## every CPU test, slow ones included
	WANDB_MODE=disabled $(PY) -m pytest -m "not gpu" -q $(ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff lint + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

.PHONY: format
format: $(STAMP) ## ruff autofix + format
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

.PHONY: clean
clean: ## remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache runs wandb lightning_logs bench_results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: distclean
distclean: clean ## also remove .venv
	rm -rf $(VENV)

# -------------------------------------------------------------------------------------------- bench
.PHONY: bench-data
bench-data: $(STAMP) ## synthetic face world: faces/s at 128² on one core vs reading the same faces from disk
	$(PY) -m datamodules.bench_data
