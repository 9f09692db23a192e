# Two entry points for a fresh Linux machine with Python >= 3.11:
#   make run   -> create .venv from pinned versions (first use only), then `snakemake --cores 4`
#   make test  -> same environment, then the test suite
#   make lint  -> ruff (lint + format check), snakefmt --check, snakemake --lint
# Extra Snakemake arguments go through ARGS, e.g.
#   make run ARGS="--config 'mnist_mirrors=[../shared/data/mnist]'"
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 4
ARGS   ?=
BIN    := $(VENV)/bin

.PHONY: run test lint venv clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock requirements-torch.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	# PyTorch's CPU index is tried once (--retries 0): offline, pip falls back to find-links.
	$(BIN)/python -m pip install --quiet --retries 0 --no-deps -r requirements-torch.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

run: venv
	$(BIN)/snakemake --cores $(CORES) $(ARGS)

test: venv
	$(BIN)/python -m pytest $(ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

clean-venv:
	rm -rf $(VENV)
