# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install curate, run the BBC News pipeline end to end
#   make test   create or reuse .venv, install the test extras, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
# torch first and pinned: an unpinned torch pulled in by any dependency is a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: demo test install bench clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(PIP) install -q $(TORCH)
	touch $@

$(VENV)/.base: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.base
	$(PIP) install -q -e '.[test,ray]'
	touch $@

$(VENV)/.bench: pyproject.toml $(VENV)/.base
	$(PIP) install -q -e '.[test,bench,ray]'
	touch $@

install: $(VENV)/.base

# The report test opens the page in real headless Chromium (Debian's package), installed here when we can.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "note: chromium is not installed; the report's browser test will be skipped"

test: $(VENV)/.test chromium
	$(BIN)/python -m pytest -q tests

demo: $(VENV)/.test
	$(MAKE) -C examples/bbc_news CURATE=$(abspath $(BIN))/curate PYTHON=$(abspath $(BIN))/python

bench: $(VENV)/.bench
	@echo "benchmarks: see benchmarks/README.md; e.g. $(BIN)/python benchmarks/bench_embed.py"

clean:
	rm -rf $(VENV) examples/*/work benchmarks/out
