"""The `animbench` console script: thin argument parsing; each package registers its own commands."""

from __future__ import annotations

import argparse
import sys

from prep.errors import AnimbenchError


def build_parser() -> argparse.ArgumentParser:
    """Assemble the parser from each package's `register(subparsers)`."""
    from bench import commands as bench_commands
    from methods import cli as methods_cli
    from prep import cli as prep_cli
    from reports import cli as reports_cli

    parser = argparse.ArgumentParser(
        prog="animbench",
        description="Dataset preparation and benchmark harness for image animation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (prep_cli, methods_cli, bench_commands, reports_cli):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one command; user errors print one line and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except AnimbenchError as exc:
        print(f"animbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("animbench: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
