"""CLI commands of this package (registered into `animbench` by animbench.cli): `report` and `leaderboard`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands."""
    p = sub.add_parser("report", help="render tables, an HTML report and figures from a results directory",
                       description="Render a results directory (from `animbench bench`) as Markdown, LaTeX, CSV, "
                                   "a self-contained HTML report and PNG figures. Needs no torch.")
    p.add_argument("results", nargs="+", help="results directories written by `animbench bench` (several merge "
                                              "into one leaderboard when store, split and protocol agree)")
    _merge_arguments(p)
    p.add_argument("--out", required=True, help="folder for the report files")
    p.add_argument("--formats", default="md,tex,csv,html,png,pdf",
                   help="comma-separated subset of md,tex,csv,html,png,pdf (default: all)")
    p.add_argument("--by", choices=("frame", "video"), default="frame",
                   help="aggregate weighting: frame (FOMM, default) or video (Monkey-Net)")
    p.set_defaults(func=_report)

    q = sub.add_parser("leaderboard", help="print a results directory's leaderboard with confidence intervals",
                       description="Print the leaderboard (mean [95% bootstrap CI] per method and metric, best in "
                                   "bold; intervals from 5 videos on) and the paired comparisons of one or "
                                   "several results directories, as Markdown.")
    q.add_argument("results", nargs="+", help="results directories written by `animbench bench` (merged as for "
                                              "`report`)")
    _merge_arguments(q)
    q.add_argument("--by", choices=("frame", "video"), default="frame",
                   help="frame-weighted (FOMM, default) or video-weighted (Monkey-Net) means")
    q.set_defaults(func=_leaderboard)


def _merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-mixed", action="store_true",
                   help="merge runs whose store, split or protocol differ (rows labelled by run) instead of refusing")
    p.add_argument("--official-list", default=None, metavar="CSV",
                   help="official metadata csv (vox/taichi format) whose test partition the coverage line counts "
                        "(default: the one the store's manifest records, if any)")


def _report(args: argparse.Namespace) -> int:
    from reports.report import write_report

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    written = write_report(args.results, args.out, formats, args.by, allow_mixed=args.allow_mixed,
                           official_list=args.official_list)
    for fmt, paths in written.items():
        for path in paths:
            print(f"{fmt}\t{path}")
    return 0


def _leaderboard(args: argparse.Namespace) -> int:
    from reports.merge import load_results
    from reports.tables import comparisons_markdown, to_markdown

    results = load_results(args.results, allow_mixed=args.allow_mixed, official_list=args.official_list)
    print(to_markdown(results, args.by))
    print("Paired comparisons\n")
    print(comparisons_markdown(results, args.by), end="")
    return 0
