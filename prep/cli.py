"""CLI commands of the prep package: `synth`, `store info|verify|export`, `prep RECIPE`."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the prep subcommands."""
    p = sub.add_parser("synth", help="make a seeded synthetic video set (h264 mp4 + vox-format metadata)")
    p.add_argument("--kind", choices=["faces", "bodies"], default="faces")
    p.add_argument("--videos", type=int, default=8, help="number of videos")
    p.add_argument("--frames", type=int, default=64, help="frames per video")
    p.add_argument("--identities", type=int, default=None, help="number of identities (default: videos // 2)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of identities in the test split")
    p.add_argument("--held-out-videos", type=int, default=0, metavar="N",
                   help="split by footage instead: each identity's last N videos are its test split (for a "
                        "subject-specific method such as pose2img, scored on held-out footage of its person)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_synth)

    store = sub.add_parser("store", help="inspect, verify or export a frame store")
    ssub = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    p = ssub.add_parser("info", help="summarise a store (videos, frames, splits, encoding, config, poses, masks)")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=_store_info)
    p = ssub.add_parser("verify", help="re-hash every shard and table; name each mismatch")
    p.add_argument("store")
    p.set_defaults(func=_store_verify)
    p = ssub.add_parser("export", help="export to FOMM's png layout or to mp4 files (into a new or empty --out)")
    p.add_argument("store")
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=["png", "mp4"], default="png")
    p.add_argument("--split", action="append", help="only these splits (repeatable)")
    p.add_argument("--fps", type=float, default=None, help="mp4 frame rate (default: the video's fps)")
    p.add_argument("--suffix", default=".mp4",
                   help="suffix of png folder names (FOMM names folders '<id>.mp4'); '' for none")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export at --out (a folder holding anything else is never deleted)")
    p.set_defaults(func=_store_export)

    from prep import pipeline_cli  # `animbench prep <recipe>`: each recipe registers its own arguments

    pipeline_cli.register(sub)


def _synth(args: argparse.Namespace) -> int:
    from prep.synth import make_synthetic

    summary = make_synthetic(
        args.out, kind=args.kind, num_videos=args.videos, num_frames=args.frames, identities=args.identities,
        width=args.width, height=args.height, fps=args.fps, test_fraction=args.test_fraction, seed=args.seed,
        held_out_videos=args.held_out_videos,
    )
    print(json.dumps(summary, indent=2))
    return 0


def _store_info(args: argparse.Namespace) -> int:
    from prep.store import FrameStore

    store = FrameStore(args.store)
    m = store.manifest
    if args.json:
        json.dump(m, sys.stdout, indent=2)
        print()
        return 0
    total_bytes = sum(s["bytes"] for s in m["shards"])
    print(f"store        {store.root}")
    print(f"schema       v{m['schema_version']}  created {m['created_utc']}")
    print(f"videos       {m['num_videos']}  ({', '.join(f'{k}: {v}' for k, v in sorted(m['splits'].items()))})")
    print(f"frames       {m['num_frames']}  in {len(m['shards'])} shard(s), {total_bytes / 1e6:.1f} MB")
    print(f"encoding     {m['encoding']}  row groups of {m['row_group_size']} frames")
    print(f"failures     {m['num_failures']}")
    print(f"fingerprint  {m['content_hash']}")
    recipe = m.get("config", {}).get("recipe")
    if recipe:
        print(f"recipe       {recipe}")
    sizes = store.videos_table.groupby(["height", "width"]).size()
    print("frame sizes  " + ", ".join(f"{h}x{w}: {n}" for (h, w), n in sizes.items()))
    if store.pose_info is not None:
        print("poses        " + pose_summary(store.pose_info))
    if store.mask_info is not None:
        print("masks        " + mask_summary(store.mask_info))
    return 0


def mask_summary(info: dict) -> str:
    """One line about a store's masks table: source, frames with masks, the backend's weights."""
    with_masks = sum(1 for v in info["videos"].values() if int(v["rows"]))
    weights = info.get("weights") or {}
    line = (f"from {info.get('source', 'unknown source')}: {info['num_frames']} frames with masks in {with_masks} of "
            f"{len(info['videos'])} videos")
    if weights:
        line += f" (weights {weights.get('file')}, sha256 {str(weights.get('sha256'))[:12]})"
    return line


def pose_summary(info: dict) -> str:
    """One line about a store's keypoints table: body format, source, frames with poses, skipped frames."""
    with_poses = sum(1 for v in info["videos"].values() if int(v["rows"]))
    line = (f"{info.get('body_format') or 'none'} from {info.get('source', 'unknown source')}: "
            f"{info['num_frames']} frames with poses in {with_poses} of {len(info['videos'])} videos, "
            f"{info['num_skipped']} skipped")
    if info["num_skipped"]:
        vid, frames = next(iter(info["skipped"].items()))
        index, why = next(iter(frames.items()))
        line += f" (e.g. {vid} frame {index}: {why})"
    if info.get("outside_points"):
        line += f", {info['outside_points']} confident points outside their frame"
    return line


def _store_verify(args: argparse.Namespace) -> int:
    from prep.store import verify_store

    problems = verify_store(args.store)
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        print(f"{args.store}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.store}: OK")
    return 0


def _store_export(args: argparse.Namespace) -> int:
    from prep.export import export_mp4, export_png_layout

    common = {"splits": args.split, "overwrite": args.overwrite}
    if args.format == "png":
        n = export_png_layout(args.store, args.out, suffix=args.suffix, **common)
    else:
        n = export_mp4(args.store, args.out, fps=args.fps, **common)
    print(f"exported {n} videos to {args.out}")
    return 0
