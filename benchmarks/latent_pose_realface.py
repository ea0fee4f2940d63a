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
5. `--variant` (default both): legacy = compute_pose_identity_error.py's behaviour, every frame scored, LPD's
   MEAN_FACE template standing in for landmarks dlib does not find and LPD's central crop for the identity
   descriptor; clean = those frames skipped. Each row counts its fallback frames either way. `--detector`
   (default both): hog = the bench's metrics as they are; cnn = the same metrics with dlib's MMOD CNN face
   detector swapped in (a diagnostic, not the bench's setting). `--size 128` uses
   configs/latent_pose-realface128*.yaml (the tiny networks at 128 px: NOT the official architecture) and a
   128-px store. `--reuse` re-scores the checkpoints already in --work without training.

    python benchmarks/latent_pose_realface.py --work /tmp/lp-realface --out bench_out/latent_pose_realface.json
    python benchmarks/latent_pose_realface.py --work /tmp/lp-realface-128 --size 128 --videos 24 \
        --meta-steps 400 --finetune-steps 125 --threads 2 --out bench_out/latent_pose_realface_128.json
"""

from __future__ import annotations

import argparse
import hashlib
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
from benchmarks.common import emit_report  # noqa: E402
from methods.registry import load_config, load_model  # noqa: E402
from methods.train import train  # noqa: E402
from plumbing.provenance import package_versions  # noqa: E402
from prep.detect import DlibDetector  # noqa: E402
from prep.latentpose_crop import crop_frame  # noqa: E402
from prep.store import FrameStore, FrameStoreWriter  # noqa: E402

CONFIGS = {64: (REPO / "configs/latent_pose-tiny.yaml", REPO / "configs/latent_pose-tiny-finetune.yaml"),
           128: (REPO / "configs/latent_pose-realface128.yaml", REPO / "configs/latent_pose-realface128-finetune.yaml")}
SCORE_SIZE = 256
VARIANTS = ("legacy", "clean")


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


def _run_json(run: Path) -> dict:
    """A finished run's summary (steps, final losses) from its run.json, for --reuse."""
    info = json.loads((run / "run.json").read_text())
    return {"steps": info.get("steps", info.get("step")), "final_losses": info.get("final_losses")}


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


def _mean(values: np.ndarray) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def score(outputs: np.ndarray, driver: np.ndarray, identity: np.ndarray, metrics: dict, variant: str) -> dict:
    """Identity error against the astronaut, pose error against the driver; all frames at 256 px.

    legacy (compute_pose_identity_error.py): identity error over every frame, LPD's central crop standing in for
    a face dlib does not find; pose error over every frame, LPD's MEAN_FACE template standing in for missing
    landmarks (on either side). clean: identity error over the frames with a detected face only (the metric's
    clean reference normalisation), pose error over frames with landmarks on both sides. Both count fallbacks."""
    ident = metrics["identity"](outputs, identity)
    fallback = ident.fields["fallback_crop"]
    values = ident.values if variant == "legacy" else ident.values[~fallback]
    row = {"identity_error": {"mean": _mean(values), "frames_scored": len(values),
                              "frames_central_crop_fallback": int(fallback.sum()),
                              "frames_skipped": 0 if variant == "legacy" else int(fallback.sum())}}
    pose = metrics["pose"](outputs, driver)
    gt_missing, gen_missing = pose.fields["gt_missing"], pose.fields["gen_missing"]
    row["pose_error"] = {**_summary(pose), "driver_no_face": int(gt_missing.sum()),
                         "output_no_face": int(gen_missing.sum()),
                         "frames_mean_face_fallback": int((gt_missing | gen_missing).sum()) if variant == "legacy"
                         else 0}
    return row


def _cnn_detect(detector):
    """A DlibFace.detect replacement: dlib's MMOD CNN face detector (same (K, 5) boxes, best confidence first)."""
    def detect(frame: np.ndarray) -> np.ndarray:
        found = detector(np.ascontiguousarray(frame), 0)
        boxes = sorted(((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence) for d in found),
                       key=lambda b: -b[4])
        return np.asarray(boxes, np.float64).reshape(-1, 5)
    return detect


def _cached(detect, cache: dict):
    """detect() memoised on the frame's bytes (every variant and metric sees the same frames: detect once)."""
    def run(frame: np.ndarray) -> np.ndarray:
        frame = np.ascontiguousarray(frame)
        key = (frame.shape, hashlib.sha1(frame.tobytes()).hexdigest())
        if key not in cache:
            cache[key] = detect(frame)
        return cache[key]
    return run


def build_metrics(variant: str, detector: str, cache: dict) -> dict:
    """The bench's identity_error_dlib and pose_error_dlib; detector 'cnn' swaps dlib's MMOD CNN face detector
    (face_recognition_models' mmod_human_face_detector.dat) in for the HOG one on these instances only (the
    landmark predictor, descriptor and fallbacks stay the bench's): NOT the bench's setting, a diagnostic."""
    metrics = {"identity": get_metric("identity_error_dlib", variant=variant),
               "pose": get_metric("pose_error_dlib", variant=variant)}
    if detector == "cnn":
        import dlib

        from prep.detect import _face_recognition_models_file

        cnn = dlib.cnn_face_detection_model_v1(str(_face_recognition_models_file("mmod_human_face_detector.dat")))
        for metric in metrics.values():
            metric.faces.detect = _cached(_cnn_detect(cnn), cache)
    else:
        for metric in metrics.values():
            metric.faces.detect = _cached(metric.faces.detect, cache)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="working folder (synth set, stores, runs)")
    parser.add_argument("--videos", type=int, default=16, help="synthetic face videos (train + test)")
    parser.add_argument("--frames", type=int, default=40, help="frames per synthetic video")
    parser.add_argument("--meta-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=125, help="the README's figure for one image")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--size", type=int, choices=sorted(CONFIGS), default=64,
                        help="64: configs/latent_pose-tiny*.yaml; 128: configs/latent_pose-realface128*.yaml "
                             "(both NOT the official architecture)")
    parser.add_argument("--variant", choices=(*VARIANTS, "both"), default="both",
                        help="scoring: legacy (LPD's fallbacks: MEAN_FACE, central crop), clean (skip), or both")
    parser.add_argument("--detector", choices=("hog", "cnn", "both"), default="both",
                        help="face detector of the dlib metrics: hog (the bench's), cnn (dlib MMOD, a diagnostic)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the meta and fine-tuned checkpoints already in --work (re-score only)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work, seconds = args.work, {}
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    tiny, tiny_ft = CONFIGS[args.size]
    synth, store_dir = work / "synth-faces", work / "store-faces"
    if not store_dir.exists():  # a finished store is reused (the synthetic set is seeded)
        _cli("synth", "--kind", "faces", "--videos", str(args.videos), "--frames", str(args.frames), "--seed", "0",
             "--out", str(synth))
        _cli("prep", "synthetic", "--src", str(synth), "--out", str(store_dir), "--size", str(args.size), "--masks",
             "synthetic", "--workers", "2", "--no-progress", "--overwrite")
    store = FrameStore(store_dir)
    train_videos, test_videos = store.videos("train"), store.videos("test")
    seconds["synth_prep"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    meta_cfg = _config(tiny, dataset_params={"use_masks": True},
                       model_params={"num_labels": max(16, len(train_videos))})
    reuse = args.reuse and (work / "meta" / "last-checkpoint.pth.tar").exists()
    meta = (_run_json(work / "meta") if reuse else
            _train(store_dir, meta_cfg, work / "meta", args.meta_steps, len(train_videos)))
    seconds["meta_learning"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    astronaut = skimage.data.astronaut()
    crop, box = crop_frame(astronaut, DlibDetector(), 256)
    face_dir = work / "store-astronaut"
    if not face_dir.exists():
        with FrameStoreWriter(face_dir, {"recipe": "benchmarks.latent_pose_realface"}) as writer:
            writer.add_video("astronaut", crop[None], split="train", person_id="astronaut", fps=25.0,
                             recipe="skimage.data.astronaut")
    ft_cfg = _config(tiny_ft, dataset_params={"use_masks": False}, train_params={"batch_size": 1})
    reuse = args.reuse and (work / "finetune" / "last-checkpoint.pth.tar").exists()
    ft = (_run_json(work / "finetune") if reuse else
          _train(face_dir, ft_cfg, work / "finetune", args.finetune_steps, 1,
                 init_from=work / "meta" / "last-checkpoint.pth.tar"))
    seconds["fine_tuning"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    driver_id = test_videos[0]
    driver = store.read(driver_id, list(range(store.num_frames(driver_id))))
    driver = np.stack(driver)
    source = _tensor(crop[None])
    models = {"finetuned": load_model("latent_pose", work / "finetune" / "last-checkpoint.pth.tar", ft_cfg)[0],
              "meta_only": load_model("latent_pose", work / "meta" / "last-checkpoint.pth.tar", meta_cfg)[0]}
    outputs = {name: _uint8(m.animate(source, _tensor(driver))) for name, m in models.items()}
    small_astronaut = cv2.resize(crop, (args.size, args.size), interpolation=cv2.INTER_AREA)
    outputs["reference: driver frames"] = driver
    outputs[f"reference: astronaut at {args.size} px, static"] = np.repeat(small_astronaut[None], len(driver), 0)
    driver_256 = _up(driver)
    variants = VARIANTS if args.variant == "both" else (args.variant,)
    detectors = ("hog", "cnn") if args.detector == "both" else (args.detector,)
    rows: dict = {name: {} for name in outputs}
    for detector in detectors:
        cache: dict = {}
        for variant in variants:
            metrics = build_metrics(variant, detector, cache)
            for name, frames in outputs.items():
                rows[name][f"{detector}/{variant}"] = score(_up(frames), driver_256, crop[None], metrics, variant)
    seconds["driving_and_scoring"] = round(time.perf_counter() - t0, 1)

    picks = np.linspace(0, len(driver) - 1, 8).round().astype(int)
    strip = np.concatenate([np.concatenate(list(outputs[k][picks]), axis=1)
                            for k in ("reference: driver frames", "finetuned", "meta_only")], axis=0)
    cv2.imwrite(str(work / "samples.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    report = {
        "benchmark": "latent_pose_realface", "command": " ".join(["python", *sys.argv]),
        "device": "cpu", "threads": torch.get_num_threads(), "seconds": seconds,
        "cpu_budget": f"{sum(seconds.values()):.0f} s wall on this machine ({torch.get_num_threads()} torch threads)",
        "reused_checkpoints": bool(args.reuse),
        "meta": {"config": f"{tiny.relative_to(REPO)} (+ use_masks: true; NOT the official architecture)",
                 "steps": meta["steps"],
                 "train_videos": len(train_videos), "final_losses": meta.get("final_losses")},
        "finetune": {"config": f"{tiny_ft.relative_to(REPO)} (+ use_masks: false, batch_size: 1)",
                     "steps": ft["steps"], "astronaut_box": [round(v, 1) for v in box],
                     "final_losses": ft.get("final_losses")},
        "driver": {"store": str(store_dir), "video": driver_id, "frames": len(driver), "split": "test"},
        "scoring": (f"frames upscaled {args.size} -> {SCORE_SIZE} px bicubic; identity_error_dlib, pose_error_dlib; "
                    "rows[name]['<detector>/<variant>']: hog = the bench's detector, cnn = dlib MMOD swapped in "
                    "(diagnostic); legacy = LPD's fallbacks (MEAN_FACE landmarks, central crop) over every "
                    "frame, clean = frames without a face skipped; fallbacks counted in both"),
        "rows": rows, "samples": str(work / "samples.png"),
        "package_versions": package_versions()}
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
