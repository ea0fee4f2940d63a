"""`animbench prep RECIPE --src ... --out STORE [options]`: parse arguments, plan units, run the pipeline, print.

The same run from Python: `run_prep(recipes.vox.plan(src, metadata), out, PrepConfig("vox"), workers=2)`.
"""

from __future__ import annotations

import argparse
import sys

from prep.decode import BACKENDS
from prep.detect import DETECTORS, OUT_OF_FRAME, CropRules
from prep.recipes import YOUTUBE_URL, recipes
from prep.store import DEFAULT_ROW_GROUP, EncodeOptions


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
        _RECIPE_ARGS[name](rp)
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
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    g.add_argument("--timeout", type=float, default=300.0,
                   help="seconds a video may go without progress before its worker is killed (default 300)")
    g.add_argument("--retries", type=int, default=1, help="retries of a video whose worker died (default 1)")
    g.add_argument("--decoder", choices=BACKENDS, default="auto", help="decord, pyav, or auto (decord, else PyAV)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    o = p.add_argument_group("output")
    size = defaults.get("size", 256)
    o.add_argument("--size", type=int, default=size,
                   help=f"output frame side in pixels, 0 keeps the source size (default {size})")
    o.add_argument("--image-format", choices=["png", "jpeg"], default="png")
    o.add_argument("--jpeg-quality", type=int, default=95)
    o.add_argument("--png-compression", type=int, default=1,
                   help="zlib level 0-9 of lossless PNG frames (default 1; 0 encodes fastest at ~1.7x the bytes)")
    o.add_argument("--row-group-size", type=int, default=DEFAULT_ROW_GROUP, help="frames per Parquet row group")
    p.set_defaults(pad=defaults.get("pad", False), pad_value=defaults.get("pad_value", 0))


def _download_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("download (optional, needs `pip install yt-dlp`)")
    g.add_argument("--download", action="store_true", help="fetch videos missing from --src with yt-dlp")
    g.add_argument("--url-template", default=YOUTUBE_URL, help=f"URL of a video id (default {YOUTUBE_URL})")


def _detect_args(p: argparse.ArgumentParser) -> None:
    rules = CropRules()
    g = p.add_argument_group("detect mode (no metadata): face tubes and the official crop rules")
    g.add_argument("--detect", action="store_true", help="find face clips instead of reading --metadata")
    g.add_argument("--detector", choices=DETECTORS, default="dlib",
                   help="s3fd (face-alignment; needs its weight file) or dlib's HOG / CNN (offline)")
    g.add_argument("--detector-weights", default=None, help="an explicit S3FD weight file")
    g.add_argument("--min-size", type=int, default=rules.min_size, help=f"min face tube side (default {rules.min_size})")
    g.add_argument("--min-frames", type=int, default=rules.min_frames, help=f"default {rules.min_frames}")
    g.add_argument("--max-frames", type=int, default=rules.max_frames, help=f"default {rules.max_frames}")
    g.add_argument("--max-gap", type=int, default=rules.max_gap,
                   help="frames without a detection a face tube bridges with interpolated boxes (default 0: a "
                        "missed frame ends the tube, as the official crop does)")
    g.add_argument("--out-of-frame", choices=OUT_OF_FRAME, default=rules.out_of_frame,
                   help="an enlarged face box that leaves the frame: drop the clip (default, official), shift the "
                        "box inside, or pad the missing pixels (pad-constant: --pad-value, pad-replicate: edge)")
    g.add_argument("--pad-value", type=int, default=0, help="grey level of pad-constant (default 0)")
    g.add_argument("--split", default="train", help="split of the detected clips (default train)")
    g.add_argument("--splits", default=None, help="csv video_id,split[,person_id] per video file")


def _vox_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metadata", default=None, help="vox-metadata.csv "
                   "(video_id,start,end,bbox,fps,width,height,partition,person_id)")
    _detect_args(p)
    _download_args(p)


def _taichi_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metadata", required=True, help="taichi-metadata.csv "
                   "(video_id,start,end,bbox,fps,width,height,partition)")
    _download_args(p)


def _fashion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-list", default=None, help="fashion_train.txt (URLs or file names)")
    p.add_argument("--test-list", default=None, help="fashion_test.txt")
    g = p.add_argument_group("download (optional, needs `pip install yt-dlp`)")
    g.add_argument("--download", action="store_true", help="fetch listed URLs missing from --src")


def _folder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default=None, help="put every video in this split (flat folders)")
    p.add_argument("--splits", default=None, help="csv video_id,split[,person_id] (flat folders)")
    p.add_argument("--boxes", default=None, help="csv video_id,bbox[,width,height]: crop box per video")
    p.add_argument("--frame-width", type=int, default=None, help="strips: width of one frame (default: height)")
    p.add_argument("--pad", action="store_true", help="pad frames to a square before resizing")


def _synthetic_args(p: argparse.ArgumentParser) -> None:
    pass


_RECIPE_ARGS = {"vox": _vox_args, "taichi": _taichi_args, "fashion": _fashion_args, "folder": _folder_args,
                "synthetic": _synthetic_args}


def plan_and_config(args: argparse.Namespace):
    """The units and PrepConfig an argument namespace asks for."""
    from prep import recipes as r
    from prep.units import PrepConfig

    name = args.recipe
    if name == "vox":
        units = r.vox.plan(args.src, args.metadata, detect=args.detect, split=args.split, splits=args.splits,
                           url_template=args.url_template, download=args.download)
    elif name == "taichi":
        units = r.taichi.plan(args.src, args.metadata, url_template=args.url_template, download=args.download)
    elif name == "fashion":
        units = r.fashion.plan(args.src, train_list=args.train_list, test_list=args.test_list)
    elif name == "folder":
        units = r.folder.plan(args.src, split=args.split, splits=args.splits, boxes=args.boxes,
                              frame_width=args.frame_width)
    else:
        units = r.synthetic.plan(args.src)
    config = PrepConfig(recipe=name, size=args.size, pad=args.pad, pad_value=args.pad_value,
                        encode=EncodeOptions(args.image_format, args.jpeg_quality, args.png_compression),
                        row_group_size=args.row_group_size, decoder=args.decoder,
                        download=getattr(args, "download", False))
    if getattr(args, "detect", False):
        config.detector, config.detector_weights = args.detector, args.detector_weights
        config.rules = CropRules(min_size=args.min_size, min_frames=args.min_frames, max_frames=args.max_frames,
                                 max_gap=args.max_gap, out_of_frame=args.out_of_frame)
    return units, config


def run_command(args: argparse.Namespace) -> int:
    """`animbench prep RECIPE`: plan, run, print done / skipped / failed by reason; a run that stores no video
    at all is an error (exit 2) that gives the reasons."""
    from plumbing.errors import AnimbenchError
    from prep.pipeline import run_prep

    units, config = plan_and_config(args)
    summary = run_prep(units, args.out, config, workers=args.workers, address=args.address, resume=args.resume,
                       overwrite=args.overwrite, retry_failed=args.retry_failed, timeout=args.timeout,
                       retries=args.retries, progress=not args.no_progress, source=str(args.src))
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
