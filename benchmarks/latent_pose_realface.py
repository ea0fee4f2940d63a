"""latent_pose on a real face, on CPU (report only): meta-learn the tiny config on synthetic faces, fine-tune on
skimage's astronaut, drive her with an unseen synthetic face's video; identity and pose errors by dlib proxies.

1. `animbench synth --kind faces` + `animbench prep synthetic --size 64 --masks synthetic` (the synthetic
   foreground masks), then `methods.train.train` meta-learns configs/latent_pose-tiny.yaml with its masks on
   (`dataset_params.use_masks: true`) for `--meta-steps` steps. The tiny config is NOT the official architecture
   (MobileNetV2 trunks at width 0.25, 64 px): a CPU-sized stand-in.
2. skimage.data.astronaut() is latent-pose cropped at 256 px with dlib's HOG detector (prep.latentpose_crop.
   crop_frame with prep.detect's DlibDetector) into a one-image store, and configs/latent_pose-tiny-finetune.yaml
   fine-tunes `--init-from` the meta checkpoint for `--finetune-steps` steps at batch 1 (the README's min(#images,
   8)); `use_masks: false` (the official noSegm input: no Graphonomy weights here, so no mask for a photo).
3. The first test-split video of the synthetic store (an identity never trained on) drives the fine-tuned model
   (`LatentPose.animate`); the meta model alone (identity from the astronaut crop, no fine-tuning) drives too.
4. Scores, on frames upscaled from 64 to 256 px (bicubic; dlib's HOG finds no 35-px face), with the bench's
   offline dlib proxies, `clean` variants: identity error = 1 - cosine(dlib descriptor of a frame, the
   astronaut's mean descriptor; one image here); pose error = mean over 68 dlib landmarks of the distance
   between output and driver landmarks / the driver's inter-ocular distance; frames where dlib finds no face
   are skipped and counted. References measured alike: the driver frames themselves (identity: a model that
   copies the driver), the astronaut crop at 64 px repeated (identity: the best a 64-px output can do; pose: a
   model that ignores the driver).

    python benchmarks/latent_pose_realface.py --work /tmp/lp-realface --out bench_out/latent_pose_realface.json
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import torch  # noqa: E402

from bench.metrics.registry import get_metric  # noqa: E402
from methods.config import load_config  # noqa: E402
from methods.registry import load_model  # noqa: E402
from methods.train import train  # noqa: E402
from plumbing.provenance import package_versions  # noqa: E402
from prep.detect import DlibDetector  # noqa: E402
from prep.latentpose_crop import crop_frame  # noqa: E402
from prep.store import FrameStore, FrameStoreWriter  # noqa: E402

TINY, TINY_FT = REPO / "configs/latent_pose-tiny.yaml", REPO / "configs/latent_pose-tiny-finetune.yaml"
SCORE_SIZE = 256


def _cli(*argv: str) -> None:
    """One animbench command (its JSON/progress output discarded); a failure stops the benchmark."""
    run = subprocess.run([sys.executable, "-m", "animbench", *argv], cwd=REPO, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"animbench {' '.join(argv)} failed:\n{run.stderr[-2000:]}")


def _config(path: Path, **sections: dict) -> dict:
    cfg = load_config(path, method="latent_pose")
    cfg = {k: v for k, v in cfg.items() if k != "_meta"}
    for section, values in sections.items():
        cfg[section] = {**cfg[section], **values}
    return load_config(cfg, method="latent_pose")


def _train(store: Path, cfg: dict, out: Path, steps: int, num_videos: int, **kwargs) -> dict:
    """`steps` steps in one epoch (num_repeats covers them: one checkpoint, at the end)."""
    repeats = math.ceil(steps * int(cfg["train_params"]["batch_size"]) / num_videos) + 1
    return train("latent_pose", store, cfg, out, epochs=1, num_repeats=repeats, max_steps=steps, device="cpu",
                 progress=False, log_every=max(steps // 4, 1), keep_checkpoints=1, **kwargs)


def _up(frames: np.ndarray) -> np.ndarray:
    """uint8 (N, h, w, 3) -> uint8 (N, 256, 256, 3), bicubic."""
    return np.stack([cv2.resize(f, (SCORE_SIZE, SCORE_SIZE), interpolation=cv2.INTER_CUBIC) for f in frames])


def _uint8(video: torch.Tensor) -> np.ndarray:
    return (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def _summary(scores) -> dict:
    """Mean over scored frames, and how many frames dlib could not score."""
    scored = ~scores.skipped
    mean = float(np.nanmean(scores.values)) if scored.any() else None
    return {"mean": None if mean is None else round(mean, 4), "frames_scored": int(scored.sum()),
            "frames_skipped": int(scores.skipped.sum())}


def score(outputs: np.ndarray, driver: np.ndarray, identity: np.ndarray, metrics: dict) -> dict:
    """Identity error against the astronaut, pose error against the driver; all frames at 256 px."""
    ident = metrics["identity"](outputs, identity)
    row = {"identity_error": _summary(ident),
           "identity_fallback_crops": int(ident.fields["fallback_crop"].sum())}
    pose = metrics["pose"](outputs, driver)
    row["pose_error"] = {**_summary(pose), "driver_no_face": int(pose.fields["gt_missing"].sum()),
                         "output_no_face": int(pose.fields["gen_missing"].sum())}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="working folder (synth set, stores, runs)")
    parser.add_argument("--videos", type=int, default=16, help="synthetic face videos (train + test)")
    parser.add_argument("--frames", type=int, default=40, help="frames per synthetic video")
    parser.add_argument("--meta-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=125, help="the README's figure for one image")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work, seconds = args.work, {}
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    synth, store_dir = work / "synth-faces", work / "store-faces"
    if not store_dir.exists():  # a finished store is reused (the synthetic set is seeded)
        _cli("synth", "--kind", "faces", "--videos", str(args.videos), "--frames", str(args.frames), "--seed", "0",
             "--out", str(synth))
        _cli("prep", "synthetic", "--src", str(synth), "--out", str(store_dir), "--size", "64", "--masks",
             "synthetic", "--workers", "2", "--no-progress", "--overwrite")
    store = FrameStore(store_dir)
    train_videos, test_videos = store.videos("train"), store.videos("test")
    seconds["synth_prep"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    meta_cfg = _config(TINY, dataset_params={"use_masks": True},
                       model_params={"num_labels": max(16, len(train_videos))})
    meta = _train(store_dir, meta_cfg, work / "meta", args.meta_steps, len(train_videos))
    seconds["meta_learning"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    astronaut = skimage.data.astronaut()
    crop, box = crop_frame(astronaut, DlibDetector(), 256)
    face_dir = work / "store-astronaut"
    if not face_dir.exists():
        with FrameStoreWriter(face_dir, {"recipe": "benchmarks.latent_pose_realface"}) as writer:
            writer.add_video("astronaut", crop[None], split="train", person_id="astronaut", fps=25.0,
                             recipe="skimage.data.astronaut")
    ft_cfg = _config(TINY_FT, dataset_params={"use_masks": False}, train_params={"batch_size": 1})
    ft = _train(face_dir, ft_cfg, work / "finetune", args.finetune_steps, 1,
                init_from=work / "meta" / "last-checkpoint.pth.tar")
    seconds["fine_tuning"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    driver_id = test_videos[0]
    driver = store.read(driver_id, list(range(store.num_frames(driver_id))))
    driver = np.stack(driver)
    source = _tensor(crop[None])
    models = {"finetuned": load_model("latent_pose", work / "finetune" / "last-checkpoint.pth.tar", ft_cfg)[0],
              "meta_only": load_model("latent_pose", work / "meta" / "last-checkpoint.pth.tar", meta_cfg)[0]}
    outputs = {name: _uint8(m.animate(source, _tensor(driver))) for name, m in models.items()}
    small_astronaut = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA)
    outputs["reference: driver frames"] = driver
    outputs["reference: astronaut at 64 px, static"] = np.repeat(small_astronaut[None], len(driver), 0)
    metrics = {"identity": get_metric("identity_error_dlib", variant="clean"),
               "pose": get_metric("pose_error_dlib", variant="clean")}
    driver_256 = _up(driver)
    rows = {name: score(_up(frames), driver_256, crop[None], metrics) for name, frames in outputs.items()}
    seconds["driving_and_scoring"] = round(time.perf_counter() - t0, 1)

    picks = np.linspace(0, len(driver) - 1, 8).round().astype(int)
    strip = np.concatenate([np.concatenate(list(outputs[k][picks]), axis=1)
                            for k in ("reference: driver frames", "finetuned", "meta_only")], axis=0)
    cv2.imwrite(str(work / "samples.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    report = {
        "benchmark": "latent_pose_realface", "command": " ".join(["python", *sys.argv]),
        "device": "cpu", "threads": torch.get_num_threads(), "seconds": seconds,
        "cpu_budget": f"{sum(seconds.values()):.0f} s wall on this machine ({torch.get_num_threads()} torch threads)",
        "meta": {"config": "configs/latent_pose-tiny.yaml (+ use_masks: true)", "steps": meta["steps"],
                 "train_videos": len(train_videos), "final_losses": meta.get("final_losses")},
        "finetune": {"config": "configs/latent_pose-tiny-finetune.yaml (+ use_masks: false, batch_size: 1)",
                     "steps": ft["steps"], "astronaut_box": [round(v, 1) for v in box],
                     "final_losses": ft.get("final_losses")},
        "driver": {"store": str(store_dir), "video": driver_id, "frames": len(driver), "split": "test"},
        "scoring": f"frames upscaled 64 -> {SCORE_SIZE} px bicubic; identity_error_dlib, pose_error_dlib (clean)",
        "rows": rows, "samples": str(work / "samples.png"),
        "package_versions": package_versions()}
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out is not None:
        from plumbing.files import atomic_write_text

        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(text + "\n", args.out)


if __name__ == "__main__":
    main()
