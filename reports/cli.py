"""CLI commands of this package (registered into `animbench` by bench.cli)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands."""
