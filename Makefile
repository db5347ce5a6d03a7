# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

$(BIN)/.installed: setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test,beam]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/sports1m-demo --workdir=demo_run

test: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) demo_run
