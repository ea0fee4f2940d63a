"""CLI commands of the methods package: `methods`, `train`, `finetune`, `reconstruct`, `animate` (thin: parse, call,
print)."""

from __future__ import annotations

import argparse
import json
import os

from plumbing.errors import AnimbenchError


def _bool(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 1920x1080), got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return width, height


def register(sub: argparse._SubParsersAction) -> None:
    """Add the methods subcommands."""
    p = sub.add_parser("methods", help="list the registered methods: paper, configs, official checkpoints")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter on names (default: all)")
    p.add_argument("--json", action="store_true", help="print the method cards as JSON")
    p.set_defaults(func=_methods)

    p = sub.add_parser("train", help="train a method on a frame store's train split")
    p.add_argument("method")
    p.add_argument("--store", required=True, help="frame store directory")
    p.add_argument("--config", required=True,
                   help="YAML config: a path, a dataset name (vox, tiny) or a file name (vox-256.yaml)")
    p.add_argument("--out", required=True, help="run directory: checkpoints, tb/ logs, run.json")
    p.add_argument("--epochs", type=int, help="override train_params.num_epochs")
    p.add_argument("--repeats", type=int, help="override train_params.num_repeats")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (a checkpoint is saved)")
    p.add_argument("--batch-size", type=int, help="override train_params.batch_size (global, over all processes)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                   help="autocast: auto = bf16 on CUDA, off on CPU")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--log-every", type=int, default=10, help="print the losses every N steps")
    p.add_argument("--keep-checkpoints", type=int, metavar="N",
                   help="keep only the N newest epoch checkpoints (default: every one, as the official code)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs); loss lines stay")
    p.add_argument("--align-corners", type=_bool, default=None, metavar="true|false",
                   help="grid_sample convention (default true: the official weights' torch 1.0 semantics)")
    p.add_argument("--stage", metavar="NAME",
                   help="training stage, one of the method's stages (default: the one its config trains; mraa: "
                        "main, then avd started --init-from the main run's checkpoint)")
    p.add_argument("--init-from", metavar="PATH",
                   help="start from this checkpoint's (or official checkpoint folder's) weights: every tensor whose "
                        "key and shape match (e.g. EDN's local stage from its global run)")
    p.set_defaults(func=_train)

    p = sub.add_parser("finetune", help="fine-tune a meta-learned model on images of one person (latent_pose)",
                       description="Fine-tune METHOD from a meta checkpoint on the images of one person; writes the "
                                   "run (RUN/store, checkpoints, run.json, finetune.json). Iterations without "
                                   "--iters: the official README's rule, 125 for one image rising linearly to 230 "
                                   "for 31+ images; --iters paper: batched_finetune.py's 560 (the paper's metrics). "
                                   "Batch B = min(N, the config's batch_size), num_epochs = ceil(iters / floor(N / "
                                   "B)) as the official scripts (whole epochs).")
    p.add_argument("method")
    p.add_argument("--checkpoint", required=True, help="the meta-learned checkpoint (ours or the release)")
    p.add_argument("--images", required=True,
                   help="a folder of images of ONE person, or a frame store whose train split holds one person")
    p.add_argument("--out", required=True, help="new run folder")
    p.add_argument("--iters", type=_iters, metavar="N|paper",
                   help="iterations (default: 125 for 1 image .. 230 for 31+, linear between; paper = 560)")
    p.add_argument("--config", help="fine-tuning config (default: the method card's `finetune` config)")
    p.add_argument("--crop", choices=["latentpose", "none"],
                   help="image folders: latentpose (default: the official per-image face crop) or none (the images "
                        "already are latent-pose crops)")
    p.add_argument("--detector", choices=["dlib", "dlib-cnn", "s3fd"],
                   help="face detector of --crop latentpose (default dlib, offline; s3fd is the official one)")
    p.add_argument("--masks", metavar="DIR|graphonomy",
                   help="foreground masks: a folder of mask files named as the images, or graphonomy (its weight "
                        "file placed); without: the config's dataset_params.use_masks decides")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=_finetune)

    p = sub.add_parser("reconstruct", help="FOMM's reconstruction protocol on a store split (absolute keypoints)")
    p.add_argument("method")
    p.add_argument("--checkpoint", help="official-layout .pth.tar (not for the baselines)")
    p.add_argument("--config", help="YAML config matching the checkpoint (not for the baselines)")
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True, help="directory: predictions/ (a frame store) and reconstruction.json")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=16, help="frames per forward pass")
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit-videos", type=int, help="only the first N videos of the split")
    p.add_argument("--align-corners", type=_bool, default=None, metavar="true|false")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_reconstruct)

    p = sub.add_parser("animate", help="animate a source image by a driving video, or generate frames from poses")
    p.add_argument("method")
    p.add_argument("--checkpoint", help="official-layout checkpoint, or (pose2img) an official checkpoint folder")
    p.add_argument("--config")
    p.add_argument("--source", help="video-driven families: source image (png, jpg, ...); latent_pose: an image, a "
                                    "folder of images, a video or a store of the person (the identity is the mean "
                                    "over them; not needed, and not used, with a fine-tuned checkpoint)")
    p.add_argument("--driving",
                   help="video-driven families: driving video (any container FFmpeg reads: mp4, mov, mkv, gif); "
                        "latent_pose: also a folder of images (sorted name order) or a store")
    p.add_argument("--no-crop", action="store_true", default=None,
                   help="latent_pose: the images already are latent-pose crops (read as the official driving loader "
                        "reads crops), instead of the latent-pose crop of every image")
    p.add_argument("--detector", choices=["dlib", "dlib-cnn", "s3fd"],
                   help="latent_pose: face detector of the latent-pose crop (default dlib; s3fd is the official one)")
    p.add_argument("--poses", help="pose-driven families: a folder of label maps (png), of OpenPose keypoint files "
                                   "(<name>_pose.yml / <name>_keypoints.json), a frame store with poses, or a "
                                   "video (with --pose-backend)")
    p.add_argument("--normalize-to", metavar="TARGET",
                   help="pose-driven: globally normalise the poses to this target subject's OpenPose folder")
    p.add_argument("--face-boxes", metavar="DIR",
                   help="pose-driven, label maps: facetexts128 .txt files named as the label maps (default: "
                        "<P>_facetexts128 or ../test_facetexts128 beside P when present)")
    p.add_argument("--video", help="pose-driven, frame store: the video id (default: the first test video)")
    p.add_argument("--pose-backend", metavar="rtpose|dwpose",
                   help="pose-driven, a video as --poses: the detector that finds each frame's pose (its weight file "
                        "placed by the user: see `animbench weights list`)")
    p.add_argument("--frame-size", type=_size, metavar="WxH",
                   help="pose-driven, OpenPose files: the frame size their pixels refer to (default 1920x1080)")
    p.add_argument("--out", required=True,
                   help="OUT.mp4, OUT.gif, OUT.npy (raw float32 frames) or OUT/ (a directory of %%07d.png)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--relative", dest="relative", action="store_true", default=None,
                      help="relative keypoint motion (default: the config's animate/transfer params)")
    mode.add_argument("--absolute", dest="relative", action="store_false", help="absolute driving keypoints")
    mode.add_argument("--avd", action="store_true", default=None,
                      help="animation via disentanglement (families with an AVD network, e.g. mraa)")
    p.add_argument("--adapt-scale", action="store_true", default=None,
                   help="scale the motion by the keypoint hull-area ratio (default: the config's)")
    p.add_argument("--align-corners", type=_bool, default=None, metavar="true|false")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fps", type=float, help="output frame rate (default: the driving video's)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=_animate)


def _methods(args: argparse.Namespace) -> int:
    from methods.registry import get_method, list_methods

    cards = [get_method(n) for n in list_methods(args.pattern)]
    if not cards:
        raise AnimbenchError(f"no method matches {args.pattern!r} (methods: {', '.join(list_methods())})")
    if args.json:
        print(json.dumps([c.as_dict() for c in cards], indent=2))
        return 0
    for c in cards:
        print(f"{c.name}  [{c.family}{'' if c.trainable else ', not trainable'}]")
        print(f"  paper:       {c.paper}")
        if c.configs:
            print(f"  configs:     {', '.join(f'{k}={v}' for k, v in c.configs.items())}")
        print(f"  checkpoints: {', '.join(f'{k} ({v})' for k, v in c.checkpoints.items()) or '-'}")
        if c.notes:
            print(f"  notes:       {c.notes}")
    from methods.config import config_search_path

    print("--config takes a path, a dataset name above (vox) or a file name (vox-256.yaml), looked up in: "
          + ", ".join(str(p) for p in config_search_path()) + " (METHOD/ subfolders first; set ANIMBENCH_CONFIGS)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from methods.train import train

    summary = train(args.method, args.store, args.config, args.out, epochs=args.epochs, num_repeats=args.repeats,
                    max_steps=args.max_steps, batch_size=args.batch_size, device=args.device, amp=args.amp,
                    resume=args.resume, seed=args.seed, num_workers=args.workers, log_every=args.log_every,
                    align_corners=args.align_corners, keep_checkpoints=args.keep_checkpoints,
                    progress=not args.no_progress, init_from=args.init_from, stage=args.stage)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        keys = ("status", "method", "steps", "final_losses", "last_checkpoint", "steps_per_s", "wall_s")
        print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    return 0


def _iters(text: str) -> int | str:
    if text == "paper":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of iterations or 'paper', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of iterations, got {text!r}")
    return value


def _finetune(args: argparse.Namespace) -> int:
    from methods.finetune import finetune

    record = finetune(args.method, args.checkpoint, args.images, args.out, iters=args.iters, config=args.config,
                      crop=args.crop, detector=args.detector, masks=args.masks, device=args.device, seed=args.seed,
                      progress=not args.no_progress)
    train = record["train"]
    print(json.dumps({"status": train.get("status"), "method": record["method"], "num_images": record["num_images"],
                      "schedule": record["schedule"], "steps": train.get("steps"),
                      "final_losses": train.get("final_losses"), "checkpoint": record["checkpoint"]}, indent=2))
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from methods.infer import reconstruct

    summary = reconstruct(args.method, args.store, args.out, checkpoint=args.checkpoint, config=args.config,
                          split=args.split, batch_size=args.batch_size, device=args.device,
                          limit_videos=args.limit_videos, align_corners=args.align_corners,
                          overwrite=args.overwrite)
    keys = ("method", "split", "num_videos", "num_frames", "l1", "l1_video_weighted", "l1_quantised",
            "frames_per_s")
    print(json.dumps({k: summary[k] for k in keys} | {"out": args.out}, indent=2))
    return 0


def _animate(args: argparse.Namespace) -> int:
    from methods.infer import check_animate_inputs
    from methods.infer_pose import animate_poses
    from methods.infer_set import animate

    pose_options = {"normalize_to": args.normalize_to, "face_boxes": args.face_boxes, "video": args.video,
                    "frame_size": args.frame_size, "pose_backend": args.pose_backend}
    video_options = {"relative": args.relative, "adapt_scale": args.adapt_scale, "avd": args.avd,
                     "align_corners": args.align_corners, "no_crop": args.no_crop, "detector": args.detector}
    if check_animate_inputs(args.method, args.source, args.driving, args.poses, pose_options=pose_options,
                            video_options=video_options) == "poses":
        record = animate_poses(args.method, args.poses, args.out, checkpoint=args.checkpoint, config=args.config,
                               device=args.device, fps=args.fps, overwrite=args.overwrite,
                               progress=not args.no_progress, **pose_options)
        keys = ("output", "format", "num_frames", "frame_size", "fps", "poses")
    else:
        record = animate(args.method, args.source, args.driving, args.out, checkpoint=args.checkpoint,
                         config=args.config, relative=args.relative, adapt_scale=args.adapt_scale,
                         align_corners=args.align_corners, device=args.device, fps=args.fps,
                         overwrite=args.overwrite, progress=not args.no_progress, no_crop=bool(args.no_crop),
                         detector=args.detector, avd=bool(args.avd))
        keys = ("output", "format", "num_frames", "frame_size", "fps", "mode")
    print(json.dumps({k: record[k] for k in keys}, indent=2, default=str))
    return 0
