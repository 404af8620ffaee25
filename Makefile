# lit_clf: one-command setup, quickstart and tests (see README).
# Runs here point at the local copies in ../shared when they exist; configs keep hub ids and upstream URLs.
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
TORCH ?= torch==2.13.0
MINILM := $(if $(wildcard $(SHARED)/models/all-MiniLM-L6-v2),$(SHARED)/models/all-MiniLM-L6-v2,sentence-transformers/all-MiniLM-L6-v2)

export LIT_CLF_DATA ?= $(if $(wildcard $(SHARED)/data),$(abspath $(SHARED)/data),)
export HF_HUB_OFFLINE ?= $(if $(wildcard $(SHARED)/models),1,0)
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install quickstart test test-slow test-gpu lint clean

install: $(VENV)/.installed

# torch first and pinned: an open torch requirement would pull the multi-GB CUDA build.
$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

quickstart: install
	$(VENV)/bin/lit-clf fit --config configs/massive/minilm-intent.yaml --model.init_args.backbone $(MINILM)

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

# CUDA-only cases (skipped without a GPU); not part of `make test`.
test-gpu: install
	$(PY) -m pytest -q -m gpu

lint: install
	$(VENV)/bin/ruff check lit_clf tests bench
	$(VENV)/bin/ruff format --check lit_clf tests bench

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache
