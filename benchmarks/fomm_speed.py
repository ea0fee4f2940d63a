"""The FOMM family at 256x256, side by side: Monkey-Net, FOMM, MRAA and TPSMM on their official vox configs:
training steps/s, reconstruction frames/s, peak memory.

Each method is built from the registry (methods.registry.load_model) with its own official 256 config
(`--methods`, `--config METHOD=PATH` to override one); nothing here names a method's networks. Training runs the real step (generator + kp losses backward, discriminator step when the config has a GAN) on
random 256x256 batches; reconstruction runs the protocol's forward (kp on source and driving, generator) on
batches of frames. Without torchvision's VGG19 file the perceptual loss falls back to `random_vgg19`: the same
network and cost, random weights (recorded). On CUDA each variant (bf16 autocast, channels_last, torch.compile)
is reported as a ratio to the fp32 eager baseline measured in the same run.

Variants are timed interleaved, round by round (one training step / one reconstruction forward each), and the
median block is reported, so load drift on a shared machine hits every variant alike. Peak memory: CUDA =
torch.cuda.max_memory_allocated per variant; CPU = the process's max RSS after each phase (getrusage;
cumulative, and with several variants alive it covers all of them).

    python benchmarks/fomm_speed.py --out bench_out/fomm_speed.json                      # CPU, all four
    python benchmarks/fomm_speed.py --methods fomm --device cuda --batch-size 8 --out bench_out/fomm_speed_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from methods.interface import Method  # noqa: E402
from methods.losses import VGG19_FILE  # noqa: E402
from methods.registry import get_method, load_config, load_model  # noqa: E402
from methods.train import make_optimizers, train_step  # noqa: E402
from plumbing.provenance import package_versions  # noqa: E402
from plumbing.weights import get as get_weight  # noqa: E402

OFFICIAL = REPO.parent / "shared/data/official-configs"
DEFAULT_CONFIGS = {"monkey_net": OFFICIAL / "monkeynet/vox.yaml", "fomm": OFFICIAL / "fomm/vox-256.yaml",
                   "mraa": OFFICIAL / "mraa/vox256.yaml", "tpsmm": OFFICIAL / "tpsmm/vox-256.yaml"}
VARIANTS = ("fp32", "bf16", "channels_last", "compile")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build(method: str, cfg: dict, device: torch.device, variant: str) -> Method:
    """The method's model on device, in the variant's memory format / compilation."""
    torch.manual_seed(0)
    model, _ = load_model(method, config=cfg, device=device)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    if variant == "compile":
        # the discriminators stay eager: compiled, spectral norm's in-place power iteration breaks their backward
        for name in model.networks:
            if name not in model.discriminators and isinstance(getattr(model, name, None), torch.nn.Module):
                setattr(model, name, torch.compile(getattr(model, name)))
    return model


def _inputs(batch: int, size: int, device: torch.device, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    source, driving = (torch.rand(batch, 3, size, size, generator=gen).to(device) for _ in range(2))
    if variant == "channels_last":
        source, driving = (x.contiguous(memory_format=torch.channels_last) for x in (source, driving))
    return source, driving


def _frame_size(cfg: dict) -> int:
    shape = cfg["dataset_params"].get("frame_shape") or cfg["dataset_params"].get("image_shape") or [256]
    return int(shape[0])


def setup_training(method: str, cfg: dict, device: torch.device, variant: str, batch: int
                   ) -> Callable[[int], dict]:
    """A function running n official training steps of one variant (returns the last losses)."""
    model = build(method, cfg, device, variant).train()
    optimizers = make_optimizers(model, cfg)
    source, driving = _inputs(batch, _frame_size(cfg), device, variant)
    amp = torch.bfloat16 if variant == "bf16" else None

    def run(n: int) -> dict:
        losses = {}
        for _ in range(n):
            losses = train_step(model, optimizers, source, driving, amp)
        return losses | {"backends": model.training_backends()}

    return run


def setup_reconstruction(method: str, cfg: dict, device: torch.device, variant: str, batch: int
                         ) -> Callable[[int], dict]:
    """A function running n reconstruction forwards (eval, no grad) of `batch` frames for one variant."""
    model = build(method, cfg, device, variant).eval()
    source, driving = _inputs(batch, _frame_size(cfg), device, variant)
    source = source[:1].expand_as(driving)

    def run(n: int) -> dict:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if variant == "bf16" else nullcontext()
        with torch.no_grad(), autocast:
            for _ in range(n):
                model.reconstruct(source, driving)
        return {}

    return run


def measure(runs: dict[str, Callable[[int], dict]], device: torch.device, rounds: int, per_round: int,
            warmup: int) -> dict[str, dict]:
    """Seconds per block of `per_round` iterations, variants interleaved round by round (load drift hits all)."""
    for run in runs.values():
        run(warmup)
    seconds: dict[str, list[float]] = {v: [] for v in runs}
    peaks: dict[str, float] = {}
    extra: dict[str, dict] = {}
    for _ in range(rounds):
        for variant, run in runs.items():
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            extra[variant] = run(per_round)
            _sync(device)
            seconds[variant].append(time.perf_counter() - t0)
            if device.type == "cuda":
                peaks[variant] = max(peaks.get(variant, 0.0), torch.cuda.max_memory_allocated(device) / 2**20)
    return {v: {"block_seconds": [round(x, 3) for x in seconds[v]], "median_block_s": statistics.median(seconds[v]),
                "peak_mb": peaks.get(v, _maxrss_mb()), **extra[v]} for v in runs}


def _configs(methods: list[str], overrides: list[str]) -> dict[str, Path]:
    paths = {m: DEFAULT_CONFIGS.get(m) for m in methods}
    for item in overrides:
        method, _, path = item.partition("=")
        if method not in paths or not path:
            sys.exit(f"fomm_speed: --config {item!r}: expected METHOD=PATH with METHOD one of {methods}")
        paths[method] = Path(path)
    for method, path in paths.items():
        if path is None or not path.is_file():
            sys.exit(f"fomm_speed: {method}: config {path} not found: the official configs live in ../shared (a dev "
                     "checkout) or the official repository's config/ folder; pass --config METHOD=PATH")
    return paths


def bench_method(method: str, path: Path, device: torch.device, variants: list[str], args: argparse.Namespace
                 ) -> dict:
    """Reconstruction then training figures of one method, every variant interleaved."""
    cfg = load_config(path, method=method)
    fallback = cfg["train_params"].get("perceptual_fallback")
    has_perceptual = "perceptual_fallback" in get_method(method).config_spec.schema.get("train_params", {})
    if has_perceptual and not get_weight(VGG19_FILE).path().is_file() and fallback is None:
        fallback = "random_vgg19"  # same layers and cost as the real loss
        cfg["train_params"]["perceptual_fallback"] = fallback
    out: dict = {"config": {"path": str(path), "sha256": cfg["_meta"]["sha256"]}, "frame_size": _frame_size(cfg),
                 "perceptual_fallback": fallback}
    # reconstruction first: on CPU the peak (max RSS of the process) only grows
    recon = measure({v: setup_reconstruction(method, cfg, device, v, args.recon_batch) for v in variants}, device,
                    args.rounds, 1, args.warmup)
    for r in recon.values():
        r.update(frames_per_block=args.recon_batch, frames_per_s=args.recon_batch / r["median_block_s"])
    out["reconstruction"] = recon
    print(method, "reconstruction", json.dumps(recon), flush=True)
    training = measure({v: setup_training(method, cfg, device, v, args.batch_size) for v in variants}, device,
                       args.rounds, 1, args.warmup)
    for r in training.values():
        r.update(batch_size=args.batch_size, steps_per_s=1 / r["median_block_s"],
                 frames_per_s=args.batch_size / r["median_block_s"])
    out["training"] = training
    print(method, "training", json.dumps(training, default=str), flush=True)
    if "fp32" in variants:
        for phase, key in (("reconstruction", "frames_per_s"), ("training", "steps_per_s")):
            base = out[phase]["fp32"][key]
            out[f"{phase}_speedup_vs_fp32"] = {v: r[key] / base for v, r in out[phase].items()}
    return out


def table(result: dict) -> str:
    """Markdown: one row per method and variant, with ratios to FOMM's fp32 figures of the same run (the first
    method's when FOMM is not benchmarked)."""
    methods = result["methods"]
    ref_name = "fomm" if "fomm" in methods else next(iter(methods))
    ref = methods[ref_name]
    ref_r, ref_t = ref["reconstruction"]["fp32"]["frames_per_s"], ref["training"]["fp32"]["steps_per_s"]
    lines = [f"| method | variant | reconstruction frames/s | x {ref_name} fp32 | training steps/s | "
             f"x {ref_name} fp32 | peak MB |",
             "|---|---|---|---|---|---|---|"]
    for name, m in methods.items():
        for v, r in m["reconstruction"].items():
            t = m["training"][v]
            lines.append(f"| {name} | {v} | {r['frames_per_s']:.2f} | {r['frames_per_s'] / ref_r:.2f} | "
                         f"{t['steps_per_s']:.3f} | {t['steps_per_s'] / ref_t:.2f} | {t['peak_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run every method, phase and variant, write the JSON and print a table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="monkey_net,fomm,mraa,tpsmm", help="comma list (registry names)")
    p.add_argument("--config", action="append", default=[], metavar="METHOD=PATH",
                   help="another config for one method (default: its official vox 256 config in ../shared)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", default=None, help=f"comma list of {VARIANTS} (default: fp32 on CPU, all on CUDA)")
    p.add_argument("--batch-size", type=int, default=2, help="training batch")
    p.add_argument("--recon-batch", type=int, default=4, help="frames per reconstruction forward")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (one step / one forward per variant each)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = (args.variants.split(",") if args.variants else
                list(VARIANTS) if device.type == "cuda" else ["fp32"])
    methods = [m for m in args.methods.split(",") if m]
    paths = _configs(methods, args.config)
    result = {
        "benchmark": "fomm_speed",
        "device": str(device), "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                               else os.uname().machine),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "package_versions": package_versions(),
        "methods": {m: bench_method(m, paths[m], device, variants, args) for m in methods},
    }
    result["table"] = table(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(result["table"])


if __name__ == "__main__":
    main()
