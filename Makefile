# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Test files run on this many processes (pytest-xdist, one file per process so each
# module fixture is built once): most of the suite's time is subprocesses importing
# TensorFlow, which a second process overlaps.
TEST_WORKERS ?= 2

.PHONY: install demo demo-full test clean

$(BIN)/.installed: setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test,beam,lite]'
	touch $@

install: $(BIN)/.installed

# The demo's sizes are the recipes demo and demo_full (sports1m_tf/recipes/).
demo: install
	$(BIN)/sports1m-demo --workdir=demo_run

demo-full: install
	$(BIN)/sports1m-demo --full --workdir=demo_full

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

clean:
	rm -rf $(VENV) demo_run demo_full
