"""The `animbench` console script: thin argument parsing; each package registers its own commands."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from plumbing.errors import AnimbenchError


def build_parser() -> argparse.ArgumentParser:
    """Assemble the parser from each package's `register(subparsers)`."""
    from bench import commands as bench_commands
    from methods import cli as methods_cli
    from prep import cli as prep_cli
    from prep.poses import cli as pose_cli
    from reports import cli as reports_cli
    from reports import compare_cli

    parser = argparse.ArgumentParser(
        prog="animbench",
        description="Dataset preparation and benchmark harness for image animation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (prep_cli, pose_cli, methods_cli, bench_commands, reports_cli, compare_cli):
        module.register(sub)
    return parser


SIGPIPE_EXIT = 141  # what a shell reports for a command killed by SIGPIPE (`yes | head -1`)


def os_error_line(exc: OSError) -> str:
    """One line for a filesystem error on a path the user named: the path, what is wrong, what was expected."""
    path = Path(exc.filename) if exc.filename is not None else None
    if path is not None and isinstance(exc, (FileExistsError, NotADirectoryError)):
        # the path, or one of its parents, is a file where a directory was expected: name that file
        for candidate in (path, *path.parents):
            if candidate.exists() and not candidate.is_dir():
                return f"{candidate} is a file, expected a directory (or a path that does not exist yet)"
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return f"{where}{exc.strerror or exc}"


INTERNAL_ERROR = 3  # a crash: not a user error (2), not a command's own result (0/1)


def _stdout_gone() -> int:
    """The reader of our output left (`animbench ... | head -1`): send what remains to /dev/null, as Python's
    documentation advises, so the interpreter's final flush cannot fail again; exit as SIGPIPE would."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return SIGPIPE_EXIT


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one command; user errors print one line and exit 2, a closed output pipe exits 141
    quietly, and a filesystem error on a user's path is one line too (exit 2), never a traceback; anything
    else is a bug: its traceback and exit 3."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe must show here, not in the interpreter's exit
    except AnimbenchError as exc:
        print(f"animbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _stdout_gone()
    except KeyboardInterrupt:
        print("animbench: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a real fault, keep its traceback
            return _internal_error()
        print(f"animbench: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - a bug: its traceback, and a code no command uses for a result
        return _internal_error()
    return int(code or 0)


def _internal_error() -> int:
    """A fault that is not the user's: the traceback, a line saying so, exit 3 (so that, e.g., `animbench
    compare` in CI can tell a crash from a regression, which exits 1)."""
    traceback.print_exc()
    print("animbench: internal error (a bug, not your input: please report it with the traceback above)",
          file=sys.stderr)
    return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
