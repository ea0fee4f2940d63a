# animbench: two commands on a fresh machine.
#   make demo   create .venv, install, run synth -> prep -> train -> bench -> report on CPU
#   make test   create .venv, install, run the test suite
#   make bench  speed / memory benchmarks (ratios against a baseline measured in the same run)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := demo_out
BENCH := bench_out
export RAY_TMPDIR ?= /tmp/animbench-ray

.PHONY: venv demo test bench lint clean

venv: $(STAMP)

# Reinstall only when pyproject.toml changes; the venv itself is reused.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

test: venv
	$(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check prep methods bench reports tests benchmarks

demo: venv
	@mkdir -p $(DEMO)
	$(VENV)/bin/animbench synth --kind faces --videos 6 --frames 48 --seed 0 --out $(DEMO)/synth-faces
	$(VENV)/bin/animbench store write-synthetic $(DEMO)/synth-faces --out $(DEMO)/store-faces --overwrite
	$(VENV)/bin/animbench store info $(DEMO)/store-faces
	$(VENV)/bin/animbench store verify $(DEMO)/store-faces
	@echo "demo outputs: $(abspath $(DEMO))"

bench: venv
	@mkdir -p $(BENCH)
	$(PY) benchmarks/store_read.py --out $(BENCH)/store_read.json

clean:
	rm -rf $(DEMO) $(BENCH)
