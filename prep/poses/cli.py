"""`animbench pose render|normalize`: EDN's label maps and global pose normalisation from OpenPose folders."""

from __future__ import annotations

import argparse
import re

from plumbing.errors import AnimbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `pose` command group."""
    pose = sub.add_parser("pose", help="render OpenPose keypoints as EDN label maps; normalise poses")
    psub = pose.add_subparsers(dest="pose_command", required=True, metavar="ACTION")

    p = psub.add_parser("render", help="label maps (and 128 px face boxes) from a folder of OpenPose outputs")
    p.add_argument("src", help="folder of <name>_pose.yml (+ _face/_hand_left/_hand_right.yml) or "
                               "<name>_keypoints.json")
    p.add_argument("--out", required=True, help="label folder: <name>.png; face boxes go beside it "
                                                "(train_label -> train_facetexts128, else <out>_facetexts128)")
    p.add_argument("--size", default="1024x512", help="label map size WxH (default 1024x512)")
    p.add_argument("--frame-size", default="1920x1080",
                   help="size WxH of the frames the keypoints refer to; others are letterboxed (default 1920x1080)")
    p.add_argument("--facetexts", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the 128x128 face boxes (default on)")
    p.add_argument("--overwrite", action="store_true", help="replace non-empty output folders")
    p.set_defaults(func=_render)

    p = psub.add_parser("normalize", help="normalise source poses to a target subject (EDN graph_posenorm.py)")
    p.add_argument("--source", required=True, help="folder of the source video's OpenPose outputs")
    p.add_argument("--out", required=True,
                   help="writes test_label/, test_facetexts128/ (frames renumbered frame000000...), "
                        "norm_params.txt and frames.csv")
    p.add_argument("--target", help="folder of the target subject's OpenPose outputs (to fit the normalisation)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--calculate", action="store_true", help="fit the normalisation from --target (the default)")
    how.add_argument("--norm-params", help="reuse a norm_params.txt instead of fitting")
    p.add_argument("--seed", type=int, default=0, help="seed of the random frame draws of the statistics")
    p.add_argument("--size", default="1024x512", help="label map size WxH (default 1024x512)")
    p.add_argument("--frame-size", default="1920x1080",
                   help="target frame size WxH: the canvas, whose centre column anchors the scaling")
    for who in ("target", "source"):
        p.add_argument(f"--{who}-median-frac", type=float, default=0.5,
                       help=f"the {who}'s farthest toe row is searched within this fraction of the median's "
                            "distance to the closest row (default 0.5, as the official script)")
    p.add_argument("--median-window", type=int, default=7, help="frames in the median smoothing (default 7)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=_normalize)


def parse_size(text: str, flag: str) -> tuple[int, int]:
    """'1024x512' -> (1024, 512)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise AnimbenchError(f"{flag} {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1024x512")
    return int(match.group(1)), int(match.group(2))


def _render(args: argparse.Namespace) -> int:
    from prep.poses.folders import render_folder

    summary = render_folder(args.src, args.out, size=parse_size(args.size, "--size"),
                            frame_size=parse_size(args.frame_size, "--frame-size"), facetexts=args.facetexts,
                            overwrite=args.overwrite)
    print("\n".join(summary.lines()))
    return 0


def _normalize(args: argparse.Namespace) -> int:
    from prep.poses.folders import normalize_folder

    summary = normalize_folder(args.source, args.out, target=args.target, norm_params=args.norm_params,
                               seed=args.seed, size=parse_size(args.size, "--size"),
                               frame_size=parse_size(args.frame_size, "--frame-size"),
                               median_window=args.median_window, overwrite=args.overwrite,
                               target_median_frac=args.target_median_frac,
                               source_median_frac=args.source_median_frac)
    print("\n".join(summary.lines()))
    return 0
