"""CLI commands of the bench package (`bench`, `metrics`, `weights`), registered into `animbench` by animbench.cli."""

from __future__ import annotations

import argparse
import json

from plumbing import weights
from plumbing.errors import AnimbenchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands."""
    from bench import bench_cli

    bench_cli.register(sub)  # `animbench bench` (bench/bench_cli.py)

    p = sub.add_parser("metrics", help="list the registered metrics (kind, direction, backend, weight files)")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter on names (default: all)")
    p.add_argument("--describe", action="store_true",
                   help="print each metric's provenance as JSON (built when its weight files are present; "
                        "otherwise the registry's entry, with the missing files named)")
    p.set_defaults(func=_metrics)

    p = sub.add_parser("weights", help="the pretrained files metrics and losses need: list, verify, install")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    q = wsub.add_parser("list", help="every manifest file: status (ok / missing / hash mismatch), users, folder")
    q.set_defaults(func=_weights_list)
    q = wsub.add_parser("verify", help="check files and hashes; exit 1 when any is missing or mismatched")
    q.add_argument("names", nargs="*", metavar="NAME",
                   help="file names or users (e.g. metric:fid) to check (default: every manifest file)")
    q.set_defaults(func=_weights_verify)
    q = wsub.add_parser("install", help="copy manifest files found in DIR to where their libraries look")
    q.add_argument("--from", dest="src", required=True, metavar="DIR", help="folder searched recursively")
    q.set_defaults(func=_weights_install)


def select_weights(names: list[str]) -> list[weights.WeightFile]:
    """Manifest entries by file name or by user tag ('metric:lpips'); all of them for an empty list."""
    if not names:
        return [weights.WEIGHTS[n] for n in sorted(weights.WEIGHTS)]
    chosen: dict[str, weights.WeightFile] = {}
    for name in names:
        hits = [w for w in weights.WEIGHTS.values() if w.name == name or name in w.users]
        if not hits:
            raise AnimbenchError(f"weights: {name!r} is neither a manifest file nor a user of one "
                                 "(see `animbench weights list`)")
        chosen.update((w.name, w) for w in hits)
    return [chosen[n] for n in sorted(chosen)]


def _status_word(name: str) -> str:
    s = weights.status(name)
    return s if s in ("ok", "missing") else "hash mismatch"


def _weights_list(args: argparse.Namespace) -> int:
    # users last, unpadded: a file several metrics and options load has a long list
    rows = [(_status_word(w.name), w.name, str(weights.folder_path(w.folder)), ",".join(w.users))
            for w in select_weights([])]
    header = ("STATUS", "NAME", "FOLDER", "USERS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for r in [header, *rows]:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:3])) + "  " + r[3])
    return 0


def _weights_verify(args: argparse.Namespace) -> int:
    counts = {"ok": 0, "missing": 0, "hash mismatch": 0}
    for w in select_weights(args.names):
        word = _status_word(w.name)
        counts[word] += 1
        if word != "ok":
            try:
                weights.locate(w.name)  # the same one-line message a metric would raise
            except AnimbenchError as exc:
                print(f"{word}: {exc}")
    print("weights verify: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 1 if counts["missing"] or counts["hash mismatch"] else 0


def _weights_install(args: argparse.Namespace) -> int:
    done = weights.install_from(args.src)
    for name, dest in done:
        print(f"installed {name} -> {dest}")
    if not done:
        print(f"weights install: no manifest file found in {args.src} (see `animbench weights list` for names)")
        return 1
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from bench.metrics import list_metrics, metric_spec
    from bench.metrics.registry import describe_metric

    names = list_metrics(args.pattern)
    if args.describe:
        print(json.dumps({n: describe_metric(n) for n in names}, indent=2, default=str))
        return 0
    width = max([16, *map(len, names)])
    for n in names:
        s = metric_spec(n)
        files = ", ".join(f"{f} ({_status_word(f)})" for f in s.needs) or "-"
        arrow = "higher is better" if s.higher_is_better else "lower is better"
        print(f"{n:{width}s} {s.kind:6s} {arrow:16s} {s.backend:16s} weights: {files}")
        if s.summary:
            print(f"{'':{width}s} {s.summary}")
    return 0
