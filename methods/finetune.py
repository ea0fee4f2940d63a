"""`animbench finetune`: a meta-learned model fine-tuned on images of one person (a latent-pose avatar).

The images (a folder, or a frame store whose train split holds one person) become a small frame store inside the
run folder (`RUN/store`: one video per image, so crops of any size can sit side by side), cut the latent-pose way
(prep.latentpose_crop.crop_frame with the chosen detector) or, with crop "none", stored as they are (they already
are crops; the family reads them with the official loader's --no-crop path). Masks come from `masks` (a folder of
mask files named as the images, or "graphonomy") when given; without them the store has none and the config's
`dataset_params.use_masks` decides (true: a one-line error; false: all-ones masks, the official noSegm input).
Then the generic loop (methods/train.py) trains the method's fine-tuning config from the meta checkpoint
(`init_from`); the family's `prepare_training` computes the identity the generator starts from.

Iterations (`iterations_rule`, official README and batched_finetune.py): without `iters`, 125 for one image rising
linearly to 230 for 31 images or more (the README's "125 when NUM_IMAGES=1 ... 230 when NUM_IMAGES>30"; the
straight line in between is ours); `iters="paper"` is batched_finetune.py's 560 (the paper's metrics). Batch
B = min(N, train_params.batch_size) and num_epochs = ceil(iters / floor(N / B)), as both official scripts; the run
trains whole epochs, so it may take up to floor(N / B) - 1 steps more than `iters`, as officially.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from plumbing.errors import AnimbenchError
from plumbing.files import atomic_write_text
from plumbing.ids import check_id

README_ITERS = (125, 230)  # README: 125 for one image, 230 for more than 30
README_FULL_AT = 31
PAPER_ITERS = 560  # batched_finetune.py's TARGET_NUM_ITERATIONS
FINETUNE_STAGE = "finetune"
STORE_DIR = "store"
RECORD_FILE = "finetune.json"
CROPS = ("latentpose", "none")


def default_iterations(num_images: int) -> int:
    """The README's rule: 125 for one image, 230 from 31 images on, linear in between (rounded)."""
    if num_images < 1:
        raise AnimbenchError(f"fine-tuning: {num_images} images; expected at least one")
    lo, hi = README_ITERS
    return lo + round((min(num_images, README_FULL_AT) - 1) * (hi - lo) / (README_FULL_AT - 1))


def iterations_rule(num_images: int, batch_size: int, iters: int | str | None = None) -> dict[str, int]:
    """{"iterations", "batch_size", "steps_per_epoch", "num_epochs", "steps"}: iters (None: the README's rule,
    "paper": 560) with B = min(N, batch_size) and num_epochs = ceil(iters / floor(N / B)) as officially."""
    if iters is None:
        target = default_iterations(num_images)
    elif iters == "paper":
        target = PAPER_ITERS
    elif isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise AnimbenchError(f"--iters {iters!r}: expected a positive number of iterations or 'paper' (560)")
    else:
        target = iters
    if num_images < 1 or batch_size < 1:
        raise AnimbenchError(f"fine-tuning: {num_images} images, batch size {batch_size}; expected at least one each")
    batch = min(num_images, batch_size)
    per_epoch = num_images // batch
    epochs = -(-target // per_epoch)
    return {"iterations": target, "batch_size": batch, "steps_per_epoch": per_epoch, "num_epochs": epochs,
            "steps": epochs * per_epoch}


def _finetune_config(method: str, config: str | os.PathLike | None) -> tuple[Any, dict[str, Any]]:
    """(the config as given, loaded): the fine-tuning config (the card's `finetune` one by default); one-line error for a method without a
    fine-tuning stage or a config of another stage."""
    from methods.registry import get_method, load_config

    card = get_method(method)
    owner = getattr(card.build, "__self__", None)
    if not card.trainable or FINETUNE_STAGE not in getattr(owner, "stages", ()):
        raise AnimbenchError(f"method {method}: has no fine-tuning stage (its stages: "
                             f"{', '.join(getattr(owner, 'stages', ('none',)))})")
    if config is None:
        config = card.configs.get(FINETUNE_STAGE)
        if config is None:
            raise AnimbenchError(f"method {method}: its card names no '{FINETUNE_STAGE}' config; pass --config")
    cfg = load_config(config, method=method)
    try:  # a rule on the config alone: no networks built
        stage = owner.training_stage(owner.__new__(owner), cfg)
    except AttributeError:  # a family whose rule reads its networks
        stage = card.build(cfg, True).training_stage(cfg)
    if stage != FINETUNE_STAGE:
        raise AnimbenchError(f"--config {cfg['_meta']['path']}: trains the {stage!r} stage, not "
                             f"'{FINETUNE_STAGE}' (e.g. {card.configs.get(FINETUNE_STAGE, 'its finetune config')})")
    return config, cfg


def _mask_reader(masks: str | None, device: str) -> tuple[Any, dict[str, Any] | None]:
    """masks -> (reader(image name, source frame, stored frame, box) -> uint8 (h, w) or None, manifest facts)."""
    if masks is None:
        return None, None
    import cv2

    from prep.latentpose_crop import crop_frame_mask
    from prep.masks.sources import mask_facts, read_mask_file

    if masks == "graphonomy":
        from prep.masks.graphonomy import GraphonomySegmenter

        segmenter = GraphonomySegmenter(device=device)
        return (lambda name, frame, stored, box: segmenter.mask(stored)), mask_facts(masks)
    folder = Path(masks)
    if not folder.is_dir():
        raise AnimbenchError(f"--masks {masks}: not a folder of mask files, nor graphonomy")
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}

    def read(name: str, frame: np.ndarray, stored: np.ndarray, box: Any) -> np.ndarray:
        path = files.get(Path(name).stem)
        if path is None:
            raise AnimbenchError(f"--masks {folder}: no mask file named as the image {name} (<stem>.png)")
        mask = read_mask_file(path)
        (h, w), (fh, fw) = mask.shape[:2], frame.shape[:2]
        if abs(h * fw - w * fh) > max(h, w, fh, fw):  # more than rounding: another picture's mask
            raise AnimbenchError(f"--masks {path}: {w}x{h}, its image {name} is {fw}x{fh} (expected the image's "
                                 "shape; a mask of another size is resized, not one of another aspect ratio)")
        if box is not None:  # a full-frame mask, cut as its frame was
            if mask.shape != frame.shape[:2]:
                mask = cv2.resize(mask, (frame.shape[1], frame.shape[0]))
            mask = crop_frame_mask(mask, box, stored.shape[0])
        if mask.shape != stored.shape[:2]:
            mask = cv2.resize(mask, (stored.shape[1], stored.shape[0]))
        return np.ascontiguousarray(mask, np.uint8)

    return read, {"source": f"files:{folder.resolve()}", "backend": "mask files named as the images", "weights": None}


def write_image_store(images: str | os.PathLike, root: Path, *, crop: str = "latentpose",
                      detector: str | None = None, masks: str | None = None, device: str = "cpu",
                      person_id: str = "identity") -> dict[str, Any]:
    """A folder of images of one person -> a frame store at root (train split, one video per image, named by
    its file name), each image cut the latent-pose way or stored as it is (crop "none"); returns what was done."""
    from methods.infer_inputs import image_files, read_rgb
    from methods.infer_set import make_face_detector
    from prep.latentpose_crop import NO_FACE_BOX, crop_frame
    from prep.store import FrameStoreWriter

    if crop not in CROPS:
        raise AnimbenchError(f"--crop {crop!r}: expected one of {', '.join(CROPS)}")
    if crop == "none" and detector is not None:
        raise AnimbenchError("--detector: only with --crop latentpose")
    files = image_files(images)
    if not files:
        raise AnimbenchError(f"--images {images}: holds no images (.png, .jpg, ...) and is not a frame store")
    det = make_face_detector(detector) if crop == "latentpose" else None
    read_mask, facts = _mask_reader(masks, device)
    boxes: dict[str, list[float]] = {}
    config = {"recipe": "animbench finetune", "images": str(images), "crop": crop,
              "detector": (detector or "dlib") if det is not None else None}
    with FrameStoreWriter(root, config, masks=facts) as writer:
        for path in files:
            frame = read_rgb(path)
            box = None
            stored = frame
            if det is not None:
                stored, box = crop_frame(frame, det)
                boxes[path.name] = [float(v) for v in box]
            mask = None if read_mask is None else [read_mask(path.name, frame, stored, box)]
            writer.add_video(check_id(path.name, field="image name", where=str(path)), [stored], masks=mask,
                             split="train", person_id=person_id, fps=25.0, source_path=str(path),
                             recipe="finetune-images")
    # the official crop goes on with its fallback window when no face is found; say so, or the avatar silently
    # learns a corner of the background
    no_face = sorted(name for name, box in boxes.items() if tuple(box) == NO_FACE_BOX)
    if no_face:
        shown = ", ".join(no_face[:5]) + (", ..." if len(no_face) > 5 else "")
        print(f"animbench: note: no face found in {len(no_face)} of {len(files)} image(s) ({shown}): cut with the "
              f"official fallback window {NO_FACE_BOX}; try --detector s3fd or other photos", file=sys.stderr,
              flush=True)
    return {"images": [p.name for p in files], "crop": crop, "detector": config["detector"], "boxes": boxes or None,
            "no_face": no_face, "masks": facts}


def _one_person(store: Any, where: str) -> int:
    """The number of training images of a store whose train split holds one person (else a one-line error)."""
    videos = store.videos("train")
    if not videos:
        raise AnimbenchError(f"--images {where}: the store's train split is empty (it must hold the images of one "
                             "person)")
    people = sorted({str(p) for p in (store.info(v).get("person_id") for v in videos) if p is not None})
    if len(people) > 1:
        raise AnimbenchError(f"--images {where}: the train split holds {len(people)} people ({', '.join(people[:3])}"
                             f"{', ...' if len(people) > 3 else ''}); fine-tuning takes the images of one")
    return sum(store.num_frames(v) for v in videos)


def finetune(method: str, checkpoint: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, *,
             iters: int | str | None = None, config: str | os.PathLike | None = None, crop: str | None = None,
             detector: str | None = None, masks: str | None = None, device: str | None = None, seed: int = 0,
             progress: bool = True, keep_checkpoints: int = 1, log_every: int = 10) -> dict[str, Any]:
    """`animbench finetune`: fine-tune METHOD from the meta checkpoint on the images of one person (a folder, cut
    the latent-pose way unless crop "none", or a store whose train split holds one person, used as it is) into
    the run folder `out`; iterations by `iterations_rule` (module docstring). Returns the record also written to
    out/finetune.json (the train summary under "train")."""
    from methods.train import train
    from prep.store import FrameStore

    config, cfg = _finetune_config(method, config)
    if not Path(checkpoint).is_file():
        raise AnimbenchError(f"--checkpoint {checkpoint}: no such file (the meta-learned checkpoint)")
    run = Path(out)
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise AnimbenchError(f"--out {run}: exists and is not empty; choose a new run folder")
    source = Path(images)
    created = not run.exists()
    try:
        if (source / "manifest.json").is_file():
            for flag, given in (("--crop", crop), ("--detector", detector), ("--masks", masks)):
                if given is not None:
                    raise AnimbenchError(f"{flag}: --images {source} is a frame store, used as it is (prep cut it)")
            store, prepared = FrameStore(source), {"store": str(source), "crop": "as stored"}
        elif source.is_dir():
            prepared = write_image_store(source, run / STORE_DIR, crop=crop or "latentpose", detector=detector,
                                         masks=masks, device=device or "cpu")
            store = FrameStore(run / STORE_DIR)
        else:
            raise AnimbenchError(f"--images {source}: not a folder of images nor a frame store")
        num_images = _one_person(store, str(source))
        schedule = iterations_rule(num_images, int(cfg["train_params"].get("batch_size") or 1), iters)
        use_masks = (cfg.get("dataset_params") or {}).get("use_masks")
        if store.mask_info is None and use_masks:
            raise AnimbenchError(f"--images {source}: no masks (pass --masks DIR|graphonomy) and the config "
                                 f"{cfg['_meta']['path']} has dataset_params.use_masks: true (false: all-ones "
                                 "masks, the official noSegm input)")
        if store.mask_info is None:
            print(f"animbench: note: no mask source: the config's dataset_params.use_masks ({use_masks}) decides: "
                  "all-ones masks (the official noSegm input)", file=sys.stderr, flush=True)
        print(f"animbench: fine-tuning on {num_images} image(s): {schedule['iterations']} iterations -> batch "
              f"{schedule['batch_size']}, {schedule['num_epochs']} epoch(s) of {schedule['steps_per_epoch']} "
              "step(s)", file=sys.stderr, flush=True)
        summary = train(method, store, config, run, epochs=schedule["num_epochs"], num_repeats=1,
                        batch_size=schedule["batch_size"], device=device, seed=seed, log_every=log_every,
                        keep_checkpoints=keep_checkpoints, progress=progress, init_from=checkpoint)
    except BaseException:
        # nothing half-made blocks the rerun, unless a checkpoint was saved (it holds the training done)
        if created and run.is_dir() and not any(run.glob("*.pth.tar")):
            shutil.rmtree(run, ignore_errors=True)
        raise
    record = {"method": method, "meta_checkpoint": str(checkpoint), "images": str(images), "num_images": num_images,
              "prepared": prepared, "masks": store.mask_info, "schedule": schedule,
              "iterations_rule": "README: 125 for 1 image .. 230 for 31+ (linear between); 'paper': 560; "
                                 "num_epochs = ceil(iters / floor(N / B)), B = min(N, batch_size)",
              "checkpoint": str(run / "last-checkpoint.pth.tar"), "train": summary}
    atomic_write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", run / RECORD_FILE)
    return record


