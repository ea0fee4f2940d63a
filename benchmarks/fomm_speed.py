"""FOMM at 256x256 (the official vox-256 config): training steps/s, reconstruction frames/s, peak memory.

Training runs the real step (generator + kp losses backward, discriminator step when the config has a GAN) on
random 256x256 batches; reconstruction runs the protocol's forward (kp on source and driving, generator) on
batches of frames. Without torchvision's VGG19 file the perceptual loss falls back to `random_vgg19`: the same
network and cost, random weights (recorded). On CUDA each variant (bf16 autocast, channels_last, torch.compile)
is reported as a ratio to the fp32 eager baseline measured in the same run.

Peak memory: CPU = the process's max RSS after each phase (getrusage; cumulative, so phases run from smallest
to largest), CUDA = torch.cuda.max_memory_allocated per variant.

    python benchmarks/fomm_speed.py --out bench_out/fomm_speed.json                      # CPU
    python benchmarks/fomm_speed.py --device cuda --batch-size 8 --out bench_out/fomm_speed_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from methods.config import load_config  # noqa: E402
from methods.fomm import FOMM  # noqa: E402
from methods.losses import VGG19_FILE  # noqa: E402
from methods.train import make_optimizers, train_step  # noqa: E402
from methods.weights import get as get_weight  # noqa: E402
from prep.provenance import package_versions  # noqa: E402

DEFAULT_CONFIG = REPO.parent / "shared/data/official-configs/fomm/vox-256.yaml"
VARIANTS = ("fp32", "bf16", "channels_last", "compile")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build(cfg: dict, device: torch.device, variant: str) -> FOMM:
    """The vox-256 model on device, in the variant's memory format / compilation."""
    torch.manual_seed(0)
    model = FOMM.from_config(cfg).to(device)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    if variant == "compile":
        model.kp_detector = torch.compile(model.kp_detector)
        model.generator = torch.compile(model.generator)
        # the discriminator stays eager: compiled, spectral norm's in-place power iteration breaks its backward
    return model


def _inputs(batch: int, size: int, device: torch.device, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    source, driving = (torch.rand(batch, 3, size, size, generator=gen).to(device) for _ in range(2))
    if variant == "channels_last":
        source, driving = (x.contiguous(memory_format=torch.channels_last) for x in (source, driving))
    return source, driving


def time_training(cfg: dict, device: torch.device, variant: str, batch: int, steps: int, warmup: int) -> dict:
    """Steps per second of the official training step."""
    model = build(cfg, device, variant).train()
    optimizers = make_optimizers(model, cfg, "fomm")
    size = cfg["dataset_params"]["frame_shape"][0]
    source, driving = _inputs(batch, size, device, variant)
    amp = torch.bfloat16 if variant == "bf16" else None
    for _ in range(warmup):
        train_step(model, optimizers, source, driving, amp)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        losses = train_step(model, optimizers, source, driving, amp)
    _sync(device)
    seconds = time.perf_counter() - t0
    out = {"steps": steps, "batch_size": batch, "seconds": round(seconds, 3), "steps_per_s": steps / seconds,
           "frames_per_s": steps * batch / seconds, "final_losses": losses,
           "perceptual_backend": model.perceptual_loss.backend}
    out["peak_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _maxrss_mb())
    return out


def time_reconstruction(cfg: dict, device: torch.device, variant: str, batch: int, batches: int,
                        warmup: int) -> dict:
    """Frames per second of the reconstruction protocol's forward (eval mode, no grad)."""
    model = build(cfg, device, variant).eval()
    size = cfg["dataset_params"]["frame_shape"][0]
    source, driving = _inputs(batch, size, device, variant)
    source = source[:1].expand_as(driving)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if variant == "bf16" else nullcontext()
    with torch.no_grad(), autocast:
        for _ in range(warmup):
            model.reconstruct(source, driving)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            model.reconstruct(source, driving)
        _sync(device)
    seconds = time.perf_counter() - t0
    out = {"frames": batches * batch, "batch_size": batch, "seconds": round(seconds, 3),
           "frames_per_s": batches * batch / seconds}
    out["peak_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _maxrss_mb())
    return out


def main() -> None:
    """Parse arguments, run every phase and variant, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", default=None, help=f"comma list of {VARIANTS} (default: fp32 on CPU, all on CUDA)")
    p.add_argument("--batch-size", type=int, default=2, help="training batch")
    p.add_argument("--train-steps", type=int, default=2)
    p.add_argument("--recon-batch", type=int, default=4, help="frames per reconstruction forward")
    p.add_argument("--recon-batches", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = (args.variants.split(",") if args.variants else
                list(VARIANTS) if device.type == "cuda" else ["fp32"])
    cfg = load_config(args.config, method="fomm")
    fallback = cfg["train_params"].get("perceptual_fallback")
    if not get_weight(VGG19_FILE).path().is_file() and fallback is None:
        fallback = "random_vgg19"  # same layers and cost as the real loss
        cfg["train_params"]["perceptual_fallback"] = fallback
    result = {
        "benchmark": "fomm_speed", "config": {"path": args.config, "sha256": cfg["_meta"]["sha256"]},
        "device": str(device), "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                               else os.uname().machine),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "perceptual_fallback": fallback,
        "package_versions": package_versions(), "reconstruction": {}, "training": {},
    }
    for variant in variants:  # reconstruction first: the CPU peak (max RSS) only grows
        result["reconstruction"][variant] = time_reconstruction(cfg, device, variant, args.recon_batch,
                                                                args.recon_batches, args.warmup)
        print("reconstruction", variant, json.dumps(result["reconstruction"][variant]), flush=True)
    for variant in variants:
        result["training"][variant] = time_training(cfg, device, variant, args.batch_size, args.train_steps,
                                                    args.warmup)
        print("training", variant, json.dumps(result["training"][variant], default=str), flush=True)
    if "fp32" in variants:
        for phase, key in (("reconstruction", "frames_per_s"), ("training", "steps_per_s")):
            base = result[phase]["fp32"][key]
            result[f"{phase}_speedup_vs_fp32"] = {v: r[key] / base for v, r in result[phase].items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: result.get(k) for k in ("reconstruction_speedup_vs_fp32", "training_speedup_vs_fp32")}))


if __name__ == "__main__":
    main()
