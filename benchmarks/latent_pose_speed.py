"""latent_pose (Neural Head Reenactment with Latent Pose Descriptors) speed: driving frames/s at 256x256 with the
official widths, fine-tuning and meta-learning step times, peak memory; the tiny CPU config beside them.

Stages (all randomly initialised: cost does not depend on the weights):
- `drive` (the BASELINE of the ratios): a fine-tuned model of configs/latent_pose-finetune.yaml (official widths,
  256x256) driven as `LatentPose.animate` drives (running averages in eval mode, the pose encoder + generator per
  frame), `--frames` driving frames per block;
- `finetune_step`: one official fine-tuning step (configs/latent_pose-finetune.yaml: generator + discriminator
  train, the embedder frozen), batch `--batch-size`, then the running-average update;
- `meta_step`: one official meta-learning step (configs/latent_pose-meta.yaml: K = `--k` identity frames per
  sample through ResNeXt-50, generator + embedders + discriminator train), then the running-average update. The
  discriminator has `--batch-size` label rows instead of the release's 98,000 (a row lookup: same step cost,
  400 MB less memory);
- `tiny_meta_step`: the same step with configs/latent_pose-tiny.yaml (64 px, MobileNetV2 trunks at width 0.25:
  not the official architecture; what the CPU tests and the demo run), K and batch as that config says.

Without the caffe VGG19 / VGG-Face files the perceptual losses use `perceptual_fallback: random_vgg` (the same
networks and cost, random weights; the backend is recorded).

Timing: stages interleaved round by round (one block each), the median block reported, so load drift on a shared
machine hits every stage alike. `seconds` is per unit (a driving frame or a step); `ratio_to_drive` = seconds per
unit / seconds per driving frame measured in the same run (how many driven frames one step costs). Peak memory:
CPU = the process's max RSS after the stage's warm-up block (cumulative: it includes the stages built before it;
stages are built smallest first), plus each stage's parameter bytes; CUDA = torch.cuda.max_memory_allocated per
stage (its warm-up block).

    python benchmarks/latent_pose_speed.py --rounds 2 --out bench_out/latent_pose_speed.json            # CPU
    python benchmarks/latent_pose_speed.py --device cuda --batch-size 4 --frames 32 \\
        --out bench_out/latent_pose_speed_cuda.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.common import emit_report, maxrss_mb  # noqa: E402
from methods.latent_pose import LatentPose  # noqa: E402
from methods.registry import load_config  # noqa: E402
from methods.train import make_optimizers, train_batch  # noqa: E402
from plumbing.provenance import package_versions  # noqa: E402

STAGES = ("tiny_meta_step", "drive", "finetune_step", "meta_step")  # built in this order (smallest first)
CONFIGS = {"drive": "latent_pose-finetune.yaml", "finetune_step": "latent_pose-finetune.yaml",
           "meta_step": "latent_pose-meta.yaml", "tiny_meta_step": "latent_pose-tiny.yaml"}



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t0

    return run


def setup(stage: str, device: torch.device, args: argparse.Namespace) -> tuple[Callable[[], float], int, dict]:
    """The stage's model on device -> (a timed block, units per block, info)."""
    cfg = load_config(REPO / "configs" / CONFIGS[stage], method="latent_pose")
    cfg["train_params"].setdefault("perceptual_fallback", "random_vgg")
    official = stage != "tiny_meta_step"
    batch = args.batch_size if official else int(cfg["train_params"]["batch_size"])
    k = args.k if official else int(cfg["dataset_params"]["num_frames_for_encoder"])
    if stage == "meta_step":
        cfg["model_params"]["num_labels"] = batch
    cfg["dataset_params"]["num_frames_for_encoder"] = k
    torch.manual_seed(0)
    model = LatentPose.from_config(cfg).to(device)
    size = model.image_size
    gen = torch.Generator().manual_seed(1)
    info = {"config": f"configs/{CONFIGS[stage]}", "size": size,
            "param_mb": round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20, 1)}
    if stage == "drive":
        source = torch.rand(1, 3, size, size, generator=gen).to(device)
        driving = torch.rand(args.frames, 3, size, size, generator=gen).to(device)
        return _timed(device, lambda: model.animate(source, driving)), args.frames, {**info, "unit": "frame"}
    optimizers = make_optimizers(model, cfg)
    model.train()
    inputs = (torch.rand(batch, k, 3, size, size, generator=gen), torch.rand(batch, 3, size, size, generator=gen),
              torch.rand(batch, 3, size, size, generator=gen), torch.ones(batch, 3, size, size),
              torch.arange(batch) % (1 if stage == "finetune_step" else batch))
    inputs = tuple(t.to(device) for t in inputs)

    def step() -> None:
        train_batch(model, optimizers, inputs)
        model.after_step(1)

    backends = {k: v["backend"] for k, v in model.training_backends().items()}
    return _timed(device, step), 1, {**info, "unit": "step", "batch_size": batch, "k": k,
                                     "perceptual_backends": backends}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=4, help="driving frames per timed block")
    parser.add_argument("--batch-size", type=int, default=1, help="samples per official training step")
    parser.add_argument("--k", type=int, default=8, help="identity frames per meta-learning sample (official 8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wanted = set(args.stages.split(",")) | {"drive"}  # the baseline of every ratio
    unknown = wanted - set(STAGES)
    if unknown:
        parser.error(f"--stages: unknown {sorted(unknown)}; expected some of {list(STAGES)}")
    stages = [s for s in STAGES if s in wanted]
    runs, units, info = {}, {}, {}
    for stage in stages:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        runs[stage], units[stage], info[stage] = setup(stage, device, args)
        info[stage]["warmup_seconds"] = round(runs[stage](), 3)  # allocations, first-call overheads
        info[stage]["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) \
            if device.type == "cuda" else round(maxrss_mb(), 1)
    seconds = {s: [] for s in stages}
    for _ in range(args.rounds):
        for stage, run in runs.items():
            seconds[stage].append(run())
    per_unit = {s: statistics.median(v) / units[s] for s, v in seconds.items()}
    rows = {s: {**info[s], "seconds": round(per_unit[s], 4), "per_s": round(1 / per_unit[s], 4),
                "ratio_to_drive": round(per_unit[s] / per_unit["drive"], 3),
                "block_seconds": [round(x, 3) for x in seconds[s]]} for s in stages}
    report = {"benchmark": "latent_pose_speed", "device": str(device), "threads": torch.get_num_threads(),
              "frames_per_block": args.frames, "rounds": args.rounds, "baseline": "drive (seconds per driven frame)",
              "memory": "cuda max_memory_allocated per stage" if device.type == "cuda"
              else "max RSS after the stage's warm-up (cumulative)", "stages": rows,
              "package_versions": package_versions()}
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
