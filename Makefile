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
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check plumbing prep methods bench reports animbench tests benchmarks

# The whole chain on a synthetic face set, on CPU: synth -> prep -> train -> reconstruct -> bench -> report.
DEMO_STEPS ?= 300
demo: venv
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(VENV)/bin/animbench synth --kind faces --videos 8 --frames 40 --seed 0 --out $(DEMO)/synth-faces
	$(VENV)/bin/animbench prep synthetic --src $(DEMO)/synth-faces --out $(DEMO)/store-faces --workers 2 --size 64 --no-progress
	$(VENV)/bin/animbench store info $(DEMO)/store-faces
	$(VENV)/bin/animbench store verify $(DEMO)/store-faces
	$(VENV)/bin/animbench train fomm --store $(DEMO)/store-faces --config configs/fomm-tiny.yaml \
		--out $(DEMO)/runs/fomm --max-steps $(DEMO_STEPS) --log-every 10 --keep-checkpoints 1
	$(VENV)/bin/animbench train monkey_net --store $(DEMO)/store-faces --config configs/monkey_net-tiny.yaml \
		--out $(DEMO)/runs/monkey_net --max-steps $(DEMO_STEPS) --log-every 10 --keep-checkpoints 1
	$(VENV)/bin/animbench reconstruct fomm --checkpoint $(DEMO)/runs/fomm/last-checkpoint.pth.tar \
		--config configs/fomm-tiny.yaml --store $(DEMO)/store-faces --out $(DEMO)/reconstruction/fomm
	$(VENV)/bin/animbench store export $(DEMO)/store-faces --split test --out $(DEMO)/export-png
	$(VENV)/bin/animbench store export $(DEMO)/store-faces --split train --format mp4 --out $(DEMO)/export-mp4
	src=$$(ls -d $(DEMO)/export-png/test/*/ | head -1); drv=$$(ls $(DEMO)/export-mp4/train/*.mp4 | head -1); \
	$(VENV)/bin/animbench animate fomm --checkpoint $(DEMO)/runs/fomm/last-checkpoint.pth.tar \
		--config configs/fomm-tiny.yaml --source $${src}0000000.png --driving $$drv --out $(DEMO)/animation.mp4
	$(VENV)/bin/animbench bench --store $(DEMO)/store-faces --protocol reconstruction --workers 2 \
		--methods fomm=$(DEMO)/runs/fomm/last-checkpoint.pth.tar@configs/fomm-tiny.yaml,monkey_net=$(DEMO)/runs/monkey_net/last-checkpoint.pth.tar@configs/monkey_net-tiny.yaml,copy-source,oracle \
		--metrics l1,psnr,ssim --out $(DEMO)/results
	$(VENV)/bin/animbench leaderboard $(DEMO)/results
	$(VENV)/bin/animbench report $(DEMO)/results --out $(DEMO)/report
	@echo ""
	@echo "demo outputs in $(abspath $(DEMO)):"
	@echo "  synthetic videos  $(DEMO)/synth-faces/   frame store  $(DEMO)/store-faces/"
	@echo "  training runs     $(DEMO)/runs/{fomm,monkey_net}/ (checkpoints, run.json, tb/)"
	@echo "  reconstructions   $(DEMO)/reconstruction/fomm/   animation  $(DEMO)/animation.mp4"
	@echo "  exports           $(DEMO)/export-png/ (FOMM layout), $(DEMO)/export-mp4/   results  $(DEMO)/results/"
	@echo "  report            $(DEMO)/report/report.html (+ .md, .tex, .csv, figures)"

bench: venv
	@mkdir -p $(BENCH)
	$(PY) benchmarks/store_read.py --out $(BENCH)/store_read.json
	$(PY) benchmarks/prep_throughput.py --out $(BENCH)/prep_throughput.json
	$(PY) benchmarks/metrics_speed.py --out $(BENCH)/metrics_speed.json
	$(PY) benchmarks/fomm_speed.py --out $(BENCH)/fomm_speed.json
	@echo "benchmark results in $(abspath $(BENCH))"

clean:
	rm -rf $(DEMO) $(BENCH)
