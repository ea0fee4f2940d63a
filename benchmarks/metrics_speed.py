"""Frames per second of each image metric, as a ratio to a plain numpy L1 pass measured in the same run.

Every metric scores the same (N, H, W, 3) uint8 pred/gt frames. The baseline is the cheapest thing a
harness could do with them: a numpy L1 over [0,1] floats. FID is timed as Inception features per frame
(its per-frame cost) and, separately, one Frechet distance at 2048 dims with both methods.

Weights do not change speed: when the real files are absent the script times LPIPS and FID with seeded
random weights saved under the standard names in a temp TORCH_HOME, and says so in the output.

    python benchmarks/metrics_speed.py --out bench_out/metrics_speed.json [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.metrics import get_metric  # noqa: E402
from bench.metrics.fid import FID_WEIGHTS, feature_statistics, frechet_distance  # noqa: E402
from bench.metrics.lpips_metric import TRUNK_FILES  # noqa: E402
from plumbing import weights  # noqa: E402
from plumbing.provenance import package_versions  # noqa: E402


def frames(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """gt: random smooth-ish frames; pred: gt plus noise (values do not affect speed)."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(np.int16) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    return pred, gt


def best_time(fn, repeats: int, sync: bool) -> float:
    """Best wall time of `repeats` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def numpy_l1(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The baseline: per-frame mean |pred - gt| on [0,1] float32, plain numpy."""
    return np.abs(pred.astype(np.float32) / 255 - gt.astype(np.float32) / 255).mean(axis=(1, 2, 3))


def random_weight_files(torch_home: Path) -> None:
    """Seeded random AlexNet and FID-Inception state_dicts under their standard names (timing only)."""
    from pytorch_fid import inception as pi
    from torchvision.models import alexnet

    ckpt = torch_home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(alexnet().state_dict(), ckpt / TRUNK_FILES["alex"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = pi._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=True)
    for name, block in {"Mixed_5b": pi.FIDInceptionA(192, 32), "Mixed_5c": pi.FIDInceptionA(256, 64),
                        "Mixed_5d": pi.FIDInceptionA(288, 64), "Mixed_6b": pi.FIDInceptionC(768, 128),
                        "Mixed_6c": pi.FIDInceptionC(768, 160), "Mixed_6d": pi.FIDInceptionC(768, 160),
                        "Mixed_6e": pi.FIDInceptionC(768, 192), "Mixed_7b": pi.FIDInceptionE_1(1280),
                        "Mixed_7c": pi.FIDInceptionE_2(2048)}.items():
        setattr(net, name, block)
    torch.save(net.state_dict(), ckpt / FID_WEIGHTS)


def main(argv: list[str] | None = None) -> int:
    """Time every metric on one device and print / write the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="JSON file to write")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS threads on CPU")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--metrics", default="l1,psnr,ssim,lpips,fid")
    ap.add_argument("--skip-distance", action="store_true", help="do not time the 2048-d Frechet distance")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    sync = args.device.startswith("cuda")
    pred, gt = frames(args.frames, args.size)
    real = all(weights.status(n) == "ok" for n in (TRUNK_FILES["alex"], FID_WEIGHTS))
    tmp = None
    if not real:
        tmp = tempfile.TemporaryDirectory()
        os.environ["TORCH_HOME"] = tmp.name  # only this process; the user's folders are untouched
        random_weight_files(Path(tmp.name))

    base_s = best_time(lambda: numpy_l1(pred, gt), args.repeats, sync=False)
    rows = [{"metric": "numpy_l1 (baseline)", "fps": args.frames / base_s, "ratio": 1.0, "weights": "-"}]
    for name in args.metrics.split(","):
        opts: dict = {} if name in ("l1", "psnr") else {"device": args.device}
        if name in ("lpips", "fid"):
            opts["verify_hash"] = real
        metric = get_metric(name, **opts)
        # paired metrics: (pred, gt) pairs per second; FID: generated frames per second through Inception
        # (the reference statistics are computed once per store and cached)
        call = (lambda m=metric: m.features(pred)) if name == "fid" else (lambda m=metric: m(pred, gt))
        fps = args.frames / best_time(call, args.repeats, sync)
        rows.append({"metric": name, "fps": fps, "ratio": fps / rows[0]["fps"],
                     "weights": "-" if "verify_hash" not in opts else ("real" if real else "random (timing only)")})

    distance = {}
    if not args.skip_distance:
        rng = np.random.default_rng(0)
        a = feature_statistics(rng.normal(0, 1, (4096, 2048)))
        b = feature_statistics(rng.normal(0.1, 1, (4096, 2048)))
        for method in ("sqrtm", "eigh"):
            t0 = time.perf_counter()
            value = frechet_distance(a, b, method=method)
            distance[method] = {"seconds": time.perf_counter() - t0, "value": value}

    report = {"device": args.device, "threads": args.threads, "frames": args.frames, "size": args.size,
              "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name() if sync else None,
              "metrics": rows, "frechet_distance_2048": distance, "versions": package_versions()}
    for r in rows:
        print(f"{r['metric']:22s} {r['fps']:10.1f} frames/s   x{r['ratio']:.4f} of numpy L1   weights: {r['weights']}")
    for method, d in distance.items():
        print(f"frechet distance 2048-d, {method:5s}: {d['seconds']:.2f} s (value {d['value']:.6f})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
