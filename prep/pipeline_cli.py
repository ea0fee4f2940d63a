"""`animbench prep RECIPE --src ... --out STORE [options]`: parse arguments, plan units, run the pipeline, print.
The common options live here; each recipe module adds and reads its own (prep/recipes/).

The same run from Python: `run_prep(recipes.vox.plan(src, metadata), out, PrepConfig("vox"), workers=2)`.
"""

from __future__ import annotations

import argparse
import sys

from prep.decode import BACKENDS
from prep.detect import DETECTORS
from prep.imagecodec import EncodeOptions
from prep.recipes import recipes
from prep.store import DEFAULT_ROW_GROUP


def register(sub: argparse._SubParsersAction) -> None:
    """Add `prep` with one sub-command per recipe."""
    p = sub.add_parser("prep", help="turn raw videos (+ official metadata) into a frame store, in parallel",
                       description="Ray-parallel, resumable preparation of a frame store. Bad videos become "
                                   "rows of the store's failures table; the run goes on.")
    rsub = p.add_subparsers(dest="recipe", required=True, metavar="RECIPE")
    for name, module in recipes().items():
        rp = rsub.add_parser(name, help=module.HELP, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(rp, module.DEFAULTS)
        module.add_arguments(rp)
        if "--detector" not in rp._option_string_actions:  # vox has its own (detect mode); --crop uses it too
            rp.add_argument("--detector", choices=DETECTORS, default="dlib",
                            help="the face detector of --crop latentpose: s3fd (official; face-alignment and its "
                                 "weight file) or dlib's HOG / CNN (offline)")
            rp.add_argument("--detector-weights", default=None, help="an explicit S3FD weight file")
        rp.set_defaults(func=run_command)


def _common(p: argparse.ArgumentParser, defaults: dict) -> None:
    p.add_argument("--src", required=True, help="input folder (raw videos, a synth set, a folder of footage)")
    p.add_argument("--out", required=True, help="the frame store to write")
    g = p.add_argument_group("running")
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: all local cores, or the cluster's CPUs with --address)")
    g.add_argument("--address", default=None, help="join this Ray cluster (e.g. 10.0.0.1:6379) instead of a local one")
    g.add_argument("--resume", action="store_true", help="continue a crashed or partial run: skip finished videos")
    g.add_argument("--retry-failed", action="store_true", help="with --resume, also redo videos that failed")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the store at --out (a folder that is not a frame store is never deleted)")
    g.add_argument("--timeout", type=float, default=300.0,
                   help="seconds a video may go without progress before its worker is killed (default 300)")
    g.add_argument("--retries", type=int, default=1, help="retries of a video whose worker died (default 1)")
    g.add_argument("--decoder", choices=BACKENDS, default="auto", help="pyav, decord, or auto (PyAV, else decord)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--log-every", type=float, default=None, metavar="SECONDS",
                   help="instead of the bar, a plain status line (videos done / total, failed, frames/s, ETA) at "
                        "most every SECONDS and one at the end: for the logs of long runs")
    g.add_argument("--poses", default=None, metavar="DIR|BACKEND",
                   help="fill the store's keypoints table: a folder of OpenPose outputs (DIR/<video id>/), "
                        "'synthetic' (an `animbench synth` set's ground truth), or a detector: rtpose, dwpose")
    g.add_argument("--pose-device", default="cpu", help="where a pose detector runs (default cpu)")
    g.add_argument("--masks", default=None, metavar="DIR|BACKEND",
                   help="fill the store's foreground-mask table: 'synthetic' (an `animbench synth --kind faces` "
                        "set's ground truth), a folder of mask images (DIR/<video id>/, one per stored frame), or "
                        "'graphonomy' (the universal model LPD uses; place universal_trained.pth first)")
    g.add_argument("--mask-device", default="cpu", help="where a segmentation model runs (default cpu)")
    g.add_argument("--crop", choices=["latentpose"], default=None,
                   help="latentpose: crop every frame around its largest detected face as Neural Head Reenactment "
                        "with Latent Pose Descriptors does (square x1.8, blurred padding, 256 px; --detector), "
                        "instead of the recipe's crop boxes; the boxes are kept in the store")
    o = p.add_argument_group("output")
    size = defaults.get("size", 256)
    o.add_argument("--size", type=int, default=size,
                   help=f"output frame side in pixels, 0 keeps the source size (default {size})")
    o.add_argument("--image-format", choices=["png", "jpeg", "jxl"], default="png",
                   help="png: lossless, fpng (default); jpeg: lossy at --jpeg-quality; jxl: lossless JPEG XL "
                        "(~0.7x the bytes of zlib PNG; fewer readers open it, see README)")
    o.add_argument("--jpeg-quality", type=int, default=95)
    o.add_argument("--png-compression", type=int, default=None,
                   help="write PNG with zlib at this level 0-9 instead of fpng (~20x slower at level 1, ~0.8x "
                        "the bytes)")
    o.add_argument("--scaler", choices=["ffmpeg", "opencv"], default="ffmpeg",
                   help="ffmpeg (default): crop and area-scale video frames in their YUV with FFmpeg's "
                        "libavfilter, converting only the stored pixels to RGB (a 720p worker ~1.6x faster); opencv: "
                        "convert the "
                        "whole frame, crop, cv2.INTER_AREA (the frames of stores made before --scaler)")
    o.add_argument("--row-group-size", type=int, default=DEFAULT_ROW_GROUP, help="frames per Parquet row group")
    p.set_defaults(pad=defaults.get("pad", False), pad_value=defaults.get("pad_value", 0))


def plan_and_config(args: argparse.Namespace):
    """The units and PrepConfig an argument namespace asks for (the recipe reads its own arguments)."""
    from prep.config import PrepConfig

    recipe = recipes()[args.recipe]
    units = recipe.plan_from_args(args)
    config = PrepConfig(recipe=args.recipe, size=args.size, pad=args.pad, pad_value=args.pad_value,
                        encode=EncodeOptions(args.image_format, args.jpeg_quality, args.png_compression),
                        row_group_size=args.row_group_size, decoder=args.decoder, poses=args.poses,
                        pose_device=args.pose_device, masks=args.masks, mask_device=args.mask_device,
                        crop=args.crop, scaler=args.scaler, **{**recipe.config_from_args(args), **_crop_config(args)})
    return units, config


def _crop_config(args: argparse.Namespace) -> dict:
    """With --crop latentpose, the detector it uses (the recipe's config may name one for its detect mode)."""
    if args.crop is None:
        return {}
    return {"detector": args.detector, "detector_weights": args.detector_weights}


def run_command(args: argparse.Namespace) -> int:
    """`animbench prep RECIPE`: plan, run, print done / skipped / failed by reason; a run that stores no video
    at all is an error (exit 2) that gives the reasons."""
    from plumbing.errors import AnimbenchError
    from prep.pipeline import run_prep

    units, config = plan_and_config(args)
    summary = run_prep(units, args.out, config, workers=args.workers, address=args.address, resume=args.resume,
                       overwrite=args.overwrite, retry_failed=args.retry_failed, timeout=args.timeout,
                       retries=args.retries, progress=not args.no_progress, log_every=args.log_every,
                       source=str(args.src))
    m = summary.manifest
    rate = summary.frames / max(m["timings"]["wall_s"], 1e-9)
    print(f"prep {args.recipe}: {summary.units} source(s): {summary.run} processed, {summary.skipped} skipped "
          f"(done before) in {summary.wall_s:.1f} s")
    print(f"done     {summary.videos} video(s), {summary.frames} frames ({rate:.0f} frames/s overall)")
    reasons = summary.by_reason()
    print(f"failed   {len(summary.failures)} video(s)" +
          (": " + ", ".join(f"{k} {v}" for k, v in reasons.items()) if reasons else ""))
    print(f"store    {summary.store}  (content hash {m['content_hash'][:16]})")
    if summary.videos == 0:
        first = summary.failures[0] if summary.failures else None
        example = f"; {first['video_id']}: {' '.join(str(first['message']).split())}" if first else ""
        raise AnimbenchError(f"prep {args.recipe}: no video was stored ({len(summary.failures)} failed: "
                             f"{', '.join(f'{k} {v}' for k, v in reasons.items())}){example}; every reason is in "
                             f"{summary.store}/failures.parquet")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `prep` alone (python -m prep.pipeline_cli RECIPE ...), without the other packages' commands."""
    from plumbing.errors import AnimbenchError

    parser = argparse.ArgumentParser(prog="animbench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prep", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except AnimbenchError as exc:
        print(f"animbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
