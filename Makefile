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

# The whole chain on synthetic sets, on CPU: synth -> prep -> train -> reconstruct / animate -> bench -> report,
# for the video-driven families (faces, with masks for latent_pose) and the pose-driven one (bodies with poses).
DEMO_STEPS ?= 300
DEMO_TPSMM_STEPS ?= 100
DEMO_AVD_STEPS ?= 200
DEMO_SUCCESSORS = mraa=$(DEMO)/runs/mraa/last-checkpoint.pth.tar@configs/mraa-tiny.yaml,tpsmm=$(DEMO)/runs/tpsmm/last-checkpoint.pth.tar@configs/tpsmm-tiny.yaml
DEMO_POSE_STEPS ?= 200
DEMO_LP_STEPS ?= 100
DEMO_LP_FT_ITERS ?= 60
demo: venv
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(VENV)/bin/animbench synth --kind faces --videos 8 --frames 40 --seed 0 --out $(DEMO)/synth-faces
	$(VENV)/bin/animbench prep synthetic --src $(DEMO)/synth-faces --out $(DEMO)/store-faces --workers 2 --size 64 \
		--masks synthetic --no-progress
	$(VENV)/bin/animbench store info $(DEMO)/store-faces
	$(VENV)/bin/animbench store verify $(DEMO)/store-faces
	$(VENV)/bin/animbench train fomm --store $(DEMO)/store-faces --config configs/fomm-tiny.yaml \
		--out $(DEMO)/runs/fomm --max-steps $(DEMO_STEPS) --log-every 10 --keep-checkpoints 1
	$(VENV)/bin/animbench train monkey_net --store $(DEMO)/store-faces --config configs/monkey_net-tiny.yaml \
		--out $(DEMO)/runs/monkey_net --max-steps $(DEMO_STEPS) --log-every 10 --keep-checkpoints 1
	$(VENV)/bin/animbench train mraa --store $(DEMO)/store-faces --config configs/mraa-tiny.yaml \
		--out $(DEMO)/runs/mraa --max-steps $(DEMO_STEPS) --log-every 50 --keep-checkpoints 1
	$(VENV)/bin/animbench train tpsmm --store $(DEMO)/store-faces --config configs/tpsmm-tiny.yaml \
		--out $(DEMO)/runs/tpsmm --max-steps $(DEMO_TPSMM_STEPS) --log-every 25 --keep-checkpoints 1
	@echo "--- the successors' second stage: the AVD network, trained on the main run's frozen regions / keypoints ---"
	$(VENV)/bin/animbench train mraa --stage avd --init-from $(DEMO)/runs/mraa/last-checkpoint.pth.tar \
		--store $(DEMO)/store-faces --config configs/mraa-tiny.yaml --out $(DEMO)/runs/mraa-avd \
		--max-steps $(DEMO_AVD_STEPS) --log-every 20 --keep-checkpoints 1
	$(VENV)/bin/animbench train tpsmm --stage avd --init-from $(DEMO)/runs/tpsmm/last-checkpoint.pth.tar \
		--store $(DEMO)/store-faces --config configs/tpsmm-tiny.yaml --out $(DEMO)/runs/tpsmm-avd \
		--max-steps $(DEMO_AVD_STEPS) --log-every 20 --keep-checkpoints 1
	$(VENV)/bin/animbench reconstruct fomm --checkpoint $(DEMO)/runs/fomm/last-checkpoint.pth.tar \
		--config configs/fomm-tiny.yaml --store $(DEMO)/store-faces --out $(DEMO)/reconstruction/fomm
	$(VENV)/bin/animbench store export $(DEMO)/store-faces --split test --out $(DEMO)/export-png
	$(VENV)/bin/animbench store export $(DEMO)/store-faces --split train --format mp4 --out $(DEMO)/export-mp4
	src=$$(ls -d $(DEMO)/export-png/test/*/ | head -1); drv=$$(ls $(DEMO)/export-mp4/train/*.mp4 | head -1); \
	$(VENV)/bin/animbench animate fomm --checkpoint $(DEMO)/runs/fomm/last-checkpoint.pth.tar \
		--config configs/fomm-tiny.yaml --source $${src}0000000.png --driving $$drv --out $(DEMO)/animation.mp4 && \
	for m in mraa tpsmm; do $(VENV)/bin/animbench animate $$m --checkpoint $(DEMO)/runs/$$m-avd/last-checkpoint.pth.tar \
		--config configs/$$m-tiny.yaml --source $${src}0000000.png --driving $$drv --avd \
		--out $(DEMO)/animation-$$m-avd.mp4 || exit 1; done
	$(VENV)/bin/animbench bench --store $(DEMO)/store-faces --protocol reconstruction --workers 2 \
		--methods fomm=$(DEMO)/runs/fomm/last-checkpoint.pth.tar@configs/fomm-tiny.yaml,monkey_net=$(DEMO)/runs/monkey_net/last-checkpoint.pth.tar@configs/monkey_net-tiny.yaml,$(DEMO_SUCCESSORS),copy-source,oracle \
		--metrics l1,psnr,ssim --out $(DEMO)/results
	$(VENV)/bin/animbench leaderboard $(DEMO)/results
	$(VENV)/bin/animbench report $(DEMO)/results --out $(DEMO)/report
	@echo "--- latent-pose reenactment: meta-learn on the faces (with their masks), fine-tune on a new person, drive ---"
	$(VENV)/bin/animbench synth --kind faces --videos 2 --identities 1 --frames 40 --seed 3 \
		--out $(DEMO)/synth-one-face > /dev/null
	$(VENV)/bin/animbench prep synthetic --src $(DEMO)/synth-one-face --out $(DEMO)/store-one-face --workers 2 \
		--size 64 --masks synthetic --no-progress
	$(VENV)/bin/animbench train latent_pose --store $(DEMO)/store-faces --config configs/latent_pose-demo.yaml \
		--out $(DEMO)/runs/latent_pose --max-steps $(DEMO_LP_STEPS) --log-every 50 --keep-checkpoints 1
	$(VENV)/bin/animbench finetune latent_pose --checkpoint $(DEMO)/runs/latent_pose/last-checkpoint.pth.tar \
		--images $(DEMO)/store-one-face --config configs/latent_pose-demo-finetune.yaml \
		--out $(DEMO)/runs/latent_pose-finetune --iters $(DEMO_LP_FT_ITERS) --no-progress > /dev/null
	drv=$$(ls $(DEMO)/export-mp4/train/*.mp4 | head -1); \
	$(VENV)/bin/animbench animate latent_pose --checkpoint $(DEMO)/runs/latent_pose-finetune/last-checkpoint.pth.tar \
		--config configs/latent_pose-demo-finetune.yaml --driving $$drv --no-crop --out $(DEMO)/latent_pose.mp4 \
		--no-progress > /dev/null
	@echo "--- pose-driven (Everybody Dance Now): one subject, its held-out video, another dancer's poses ---"
	$(VENV)/bin/animbench synth --kind bodies --videos 4 --identities 1 --held-out-videos 1 --frames 40 --seed 0 \
		--out $(DEMO)/synth-bodies > /dev/null
	$(VENV)/bin/animbench synth --kind bodies --videos 1 --frames 40 --seed 1 --out $(DEMO)/synth-dancer > /dev/null
	$(VENV)/bin/animbench prep synthetic --src $(DEMO)/synth-bodies --out $(DEMO)/store-bodies --workers 2 --size 64 \
		--poses synthetic --no-progress
	$(VENV)/bin/animbench prep synthetic --src $(DEMO)/synth-dancer --out $(DEMO)/store-dancer --workers 2 --size 64 \
		--poses synthetic --no-progress
	$(VENV)/bin/animbench train pose2img --store $(DEMO)/store-bodies --config configs/pose2img-tiny.yaml \
		--out $(DEMO)/runs/pose2img --max-steps $(DEMO_POSE_STEPS) --log-every 50 --keep-checkpoints 1
	$(VENV)/bin/animbench animate pose2img --checkpoint $(DEMO)/runs/pose2img --config configs/pose2img-tiny.yaml \
		--poses $(DEMO)/store-dancer --out $(DEMO)/pose-transfer.mp4 > /dev/null
	$(VENV)/bin/animbench bench --store $(DEMO)/store-bodies --protocol pose-transfer --workers 2 \
		--methods pose2img=$(DEMO)/runs/pose2img/last-checkpoint.pth.tar@configs/pose2img-tiny.yaml \
		--metrics l1,psnr,ssim,ssim_body,ssim_face --out $(DEMO)/results-pose
	$(VENV)/bin/animbench report $(DEMO)/results-pose --out $(DEMO)/report-pose
	@echo "--- regression gate: the same checkpoints benched again must score what the first run scored ---"
	$(VENV)/bin/animbench bench --store $(DEMO)/store-faces --protocol reconstruction --workers 2 \
		--methods fomm=$(DEMO)/runs/fomm/last-checkpoint.pth.tar@configs/fomm-tiny.yaml,monkey_net=$(DEMO)/runs/monkey_net/last-checkpoint.pth.tar@configs/monkey_net-tiny.yaml,$(DEMO_SUCCESSORS),copy-source,oracle \
		--metrics l1,psnr,ssim --out $(DEMO)/results-rerun > /dev/null
	$(VENV)/bin/animbench compare $(DEMO)/results-rerun --baseline $(DEMO)/results
	@echo ""
	@echo "demo outputs in $(abspath $(DEMO)):"
	@echo "  synthetic videos  $(DEMO)/synth-faces/   frame store  $(DEMO)/store-faces/"
	@echo "  training runs     $(DEMO)/runs/{fomm,monkey_net,mraa,tpsmm}/ (checkpoints, run.json, tb/), {mraa,tpsmm}-avd/"
	@echo "  reconstructions   $(DEMO)/reconstruction/fomm/   animations  $(DEMO)/animation{,-mraa-avd,-tpsmm-avd}.mp4"
	@echo "  exports           $(DEMO)/export-png/ (FOMM layout), $(DEMO)/export-mp4/   results  $(DEMO)/results/"
	@echo "  report            $(DEMO)/report/report.html (+ .md, .tex, .csv, figures)"
	@echo "  latent pose       $(DEMO)/runs/latent_pose{,-finetune}/, $(DEMO)/latent_pose.mp4 (the fine-tuned avatar driven)"
	@echo "  pose-driven       $(DEMO)/store-bodies/ (frames + poses), $(DEMO)/runs/pose2img/ (+ latest_net_*.pth),"
	@echo "                    $(DEMO)/pose-transfer.mp4 (the subject dancing another's poses), $(DEMO)/report-pose/"

bench: venv
	@mkdir -p $(BENCH)
	$(PY) benchmarks/store_read.py --out $(BENCH)/store_read.json
	$(PY) benchmarks/png_encoders.py --out $(BENCH)/png_encoders.json
	$(PY) benchmarks/prep_throughput.py --out $(BENCH)/prep_throughput.json
	$(PY) benchmarks/clip_seek.py --out $(BENCH)/clip_seek.json
	$(PY) benchmarks/prep_memory.py --out $(BENCH)/prep_memory.json
	$(PY) benchmarks/prep_projection.py --out $(BENCH)/prep_projection.json
	$(PY) benchmarks/multinode.py --out $(BENCH)/multinode.json
	$(PY) benchmarks/metrics_speed.py --out $(BENCH)/metrics_speed.json
	$(PY) benchmarks/fomm_speed.py --out $(BENCH)/fomm_speed.json
	$(PY) benchmarks/pose2img_speed.py --out $(BENCH)/pose2img_speed.json
	@echo "benchmark results in $(abspath $(BENCH))"

clean:
	rm -rf $(DEMO) $(BENCH)
