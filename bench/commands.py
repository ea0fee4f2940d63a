"""CLI commands of the bench package (`bench`, `weights`), registered into `animbench` by bench.cli."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands."""
    from bench import bench_cli

    bench_cli.register(sub)  # `animbench bench` (bench/bench_cli.py)
