"""pose2img on real footage: overfit a reduced global stage on edn-sample's three real frames, report L1/PSNR/SSIM.

Data: ../shared/data/edn-sample/train/{train_label,train_img}/*.png (the official graph_train.py output, 1024x512
label/image pairs), read as the official global-stage loader reads them (scale_width to 512: labels PIL nearest,
images bicubic, [-1, 1]). The training pairs are the consecutive frames (t, t+1) of the sorted folder, as the
official loader; one batch holds both pairs. The model: the global stage's networks and losses
(configs/pose2img-edn-global.yaml) with narrower layers (`--ngf`, `--blocks`) so CPU steps take about a second;
VGG19 when its file is present, else the config's documented fallback (recorded). Training stops at `--budget-s`
seconds (or `--steps`). Then the three frames are generated as transfer does (autoregressive, the first frame
on zeros, each later one on the previous raw output) and scored against train_img at 512x256 with the bench's
pixel metrics (L1 on float [0, 1] outputs, PSNR and SSIM on floor(255 * pred) as stored): LPIPS needs weights
that are not available here.

    python benchmarks/pose2img_overfit.py --budget-s 300 --out bench_out/pose2img_overfit.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.metrics.pixel import l1, psnr, ssim  # noqa: E402
from benchmarks.common import emit_report  # noqa: E402
from methods.infer import quantise  # noqa: E402
from methods.registry import get_method, load_config  # noqa: E402
from methods.train import make_optimizers, train_batch  # noqa: E402

SAMPLE = REPO.parent / "shared" / "data" / "edn-sample" / "train"


def reduced_config(ngf: int, blocks: int, fallback: str) -> dict:
    """The official global stage with narrower networks (everything else as the README's command)."""
    cfg = load_config(REPO / "configs" / "pose2img-edn-global.yaml", method="pose2img")
    cfg = copy.deepcopy({k: v for k, v in cfg.items() if k != "_meta"})
    cfg["model_params"]["generator_params"].update(ngf=ngf, n_blocks_global=blocks)
    cfg["model_params"]["discriminator_params"]["ndf"] = ngf
    cfg["train_params"]["perceptual_fallback"] = fallback
    return load_config(cfg, method="pose2img")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=300.0, help="CPU training budget in seconds")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps (else the budget)")
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--fallback", default="pixel_l1", choices=["pixel_l1", "random_vgg19"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--save-frames", type=Path, default=None, help="write the generated frames as PNGs here")
    args = parser.parse_args()
    if not SAMPLE.is_dir():
        sys.exit(f"{SAMPLE}: edn-sample not found (../shared/data/edn-sample)")
    torch.set_num_threads(args.threads)
    cfg = reduced_config(args.ngf, args.blocks, args.fallback)
    cfg["train_params"]["lr"] = args.lr
    torch.manual_seed(0)
    model = get_method("pose2img").build(cfg, True)
    names = sorted(p.name for p in (SAMPLE / "train_label").glob("*.png"))
    labels = torch.stack([model.label_tensor(np.asarray(Image.open(SAMPLE / "train_label" / n).convert("RGB")))
                          for n in names])  # (3, 3, 256, 512) in [0, 1]
    targets = [model.pose_target(np.asarray(Image.open(SAMPLE / "train_img" / n).convert("RGB"))) for n in names]
    images = torch.stack([model.view.image_tensor(t) for t in targets])  # (3, 3, 256, 512) in [-1, 1]
    pairs = [(i, i + 1) for i in range(len(names) - 1)]
    batch = (torch.stack([labels[[a, b]] for a, b in pairs]), torch.stack([images[[a, b]] for a, b in pairs]),
             torch.zeros(len(pairs), 4, dtype=torch.int64))
    optimizers = make_optimizers(model, cfg)
    t0, step, history = time.perf_counter(), 0, []
    while (args.steps is None and time.perf_counter() - t0 < args.budget_s) or (args.steps and step < args.steps):
        losses = train_batch(model, optimizers, batch)
        step += 1
        if step == 1 or step % 25 == 0:
            history.append({"step": step, "seconds": round(time.perf_counter() - t0, 1),
                            **{k: round(v, 4) for k, v in losses.items()}})
            print(history[-1], flush=True)
    train_s = time.perf_counter() - t0
    outputs, _ = model.generate(labels)
    pred = ((outputs + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float32)
    gt = np.stack(targets)
    scores = {"l1": l1(pred, gt), "psnr": psnr(quantise(pred), gt), "ssim": ssim(quantise(pred), gt)}
    if args.save_frames is not None:
        args.save_frames.mkdir(parents=True, exist_ok=True)
        for name, frame in zip(names, quantise(pred), strict=True):
            Image.fromarray(frame).save(args.save_frames / name)
    report = {
        "benchmark": "pose2img_overfit", "data": str(SAMPLE), "frames": names, "size": "512x256",
        "model": {"ngf": args.ngf, "n_blocks_global": args.blocks, "n_downsample_global": 4, "num_D": 2,
                  "parameters_G": sum(p.numel() for p in model.generator.parameters())},
        "vgg_backend": model.training_backends(), "lr": args.lr, "threads": args.threads,
        "budget_s": args.budget_s, "steps": step, "train_s": round(train_s, 1), "history": history,
        "per_frame": {k: [round(float(x), 4) for x in v] for k, v in scores.items()},
        "mean": {k: round(float(np.mean(v)), 4) for k, v in scores.items()},
        "copy_zero_output_baseline": {"l1": round(float(np.mean(l1(np.full_like(pred, 0.5), gt))), 4)},
    }
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
