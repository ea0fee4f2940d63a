"""The `animbench compare` subcommand (registered by animbench.cli): the regression gate, a thin wrapper over
reports.compare.compare_results. Exit 0: pass; 1: a regression (or a missing method/metric); 2: bad input."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `compare` subcommand."""
    p = sub.add_parser(
        "compare", help="regression gate: compare results directories against a baseline (exit 1 on a regression)",
        description="Compare NEW against --baseline per method and metric: baseline, new, the signed change, the "
                    "tolerance and the bootstrap interval of the difference (paired when both runs scored the same "
                    "videos: same store, split and protocol). Exit 1 when any metric got worse beyond its "
                    "tolerance or a method/metric of the baseline is missing from NEW, 0 otherwise, 2 on bad input.")
    p.add_argument("new", nargs="+", help="results directories under test (written by `animbench bench`; several "
                                          "merge into one leaderboard as for `report`)")
    p.add_argument("--baseline", required=True, nargs="+", metavar="OLD",
                   help="results directories to compare against (several merge likewise)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="merge runs of one side whose store, split or protocol differ (rows labelled by run) "
                        "instead of refusing")
    p.add_argument("--tolerance", default=None, metavar="METRIC=VALUE,...",
                   help="how much worse each metric may get: absolute (l1=0.002) or percent of the baseline "
                        "(psnr=1%%); *=VALUE for every metric not named; default 0: any worsening fails")
    p.add_argument("--tolerance-ci", action="store_true",
                   help="a regression is an interval of new - baseline wholly on the worse side of 0 (more than "
                        "bootstrap noise); metrics without an interval (FID, fewer than 5 videos) use --tolerance")
    p.add_argument("--by", choices=("frame", "video"), default="frame",
                   help="frame-weighted (FOMM, default) or video-weighted (Monkey-Net) means")
    p.add_argument("--allow-missing", action="store_true",
                   help="a method or metric of the baseline that NEW lacks is listed but does not fail the gate")
    p.add_argument("--format", choices=("md", "text"), default="md",
                   help="md (default; pastes into a pull request) or text")
    p.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from reports.compare import compare_results, to_markdown, to_text

    result = compare_results(args.new, args.baseline, tolerance=args.tolerance, tolerance_ci=args.tolerance_ci,
                             by=args.by, allow_missing=args.allow_missing, allow_mixed=args.allow_mixed)
    print((to_markdown if args.format == "md" else to_text)(result), end="")
    return 0 if result.passed else 1
