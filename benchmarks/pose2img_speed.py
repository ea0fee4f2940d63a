"""pose2img (Everybody Dance Now) generation speed: frames/s of the full-size generators, peak memory.

Stages: the global G at 512x256 (configs/pose2img-edn-global.yaml, the BASELINE of the ratios), the local
enhancer at 1024x512 (edn-local) and the local G + face residual at 1024x512 (edn-face, one 128x128 box per
frame). Each runs `Pose2Img.generate` as transfer does: autoregressive, one frame at a time, conditioned on the
previous raw output. Random label maps (generation cost does not depend on the weights or the labels).

Timing: stages interleaved round by round (one block of `--frames` frames each), the median block reported, so
load drift on a shared machine hits every stage alike; `ratio_to_global` = frames/s of a stage / frames/s of the
global stage measured in the same run. Peak memory: CPU = the process's max RSS (getrusage) after each stage's
first block (cumulative: it includes the stages built before it), plus each stage's parameter bytes; CUDA =
torch.cuda.max_memory_allocated per stage.

    python benchmarks/pose2img_speed.py --out bench_out/pose2img_speed.json                 # CPU
    python benchmarks/pose2img_speed.py --device cuda --out bench_out/pose2img_speed_cuda.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.common import emit_report, maxrss_mb  # noqa: E402
from methods.registry import get_method, load_config  # noqa: E402
from plumbing.provenance import package_versions  # noqa: E402

STAGES = ("global", "local", "face")



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setup(stage: str, device: torch.device, frames: int):
    """The stage's model on device and a function generating `frames` frames (returns the seconds taken)."""
    cfg = load_config(REPO / "configs" / f"pose2img-edn-{stage}.yaml", method="pose2img")
    torch.manual_seed(0)
    model = get_method("pose2img").build(cfg, True).to(device).eval()
    w, h = model.generator_size
    labels = (torch.rand(frames, 3, h, w, generator=torch.Generator().manual_seed(1)) > 0.9).float().to(device)
    boxes = None
    if model.face_generator is not None:
        boxes = torch.tensor([[10, 138, 440, 568]] * frames)

    def run() -> float:
        _sync(device)
        t0 = time.perf_counter()
        model.generate(labels, boxes)
        _sync(device)
        return time.perf_counter() - t0

    params = sum(p.numel() * p.element_size() for n in ("generator", "face_generator")
                 if getattr(model, n) is not None for p in getattr(model, n).parameters())
    return model, run, {"size": f"{w}x{h}", "generator_param_mb": round(params / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=2, help="frames per timed block (autoregressive)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    stages = [s for s in args.stages.split(",") if s]
    if "global" not in stages:
        stages.insert(0, "global")  # the baseline of every ratio
    runs, info = {}, {}
    for stage in stages:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _, run, info[stage] = setup(stage, device, args.frames)
        run()  # warm-up block (allocations, first-call overheads)
        info[stage]["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) \
            if device.type == "cuda" else round(maxrss_mb(), 1)
        runs[stage] = run
    seconds = {s: [] for s in stages}
    for _ in range(args.rounds):
        for stage, run in runs.items():
            seconds[stage].append(run())
    fps = {s: args.frames / statistics.median(v) for s, v in seconds.items()}
    rows = {s: {**info[s], "frames_per_s": round(fps[s], 4), "ratio_to_global": round(fps[s] / fps["global"], 4),
                "block_seconds": [round(x, 3) for x in seconds[s]]} for s in stages}
    report = {"benchmark": "pose2img_speed", "device": str(device), "threads": torch.get_num_threads(),
              "frames_per_block": args.frames, "rounds": args.rounds, "baseline": "global",
              "memory": "cuda max_memory_allocated per stage" if device.type == "cuda"
              else "max RSS after the stage's warm-up (cumulative)", "stages": rows,
              "package_versions": package_versions()}
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
