"""The console script's exit codes: 2 for a user's error, 3 for a bug (a traceback), never 1, which commands
such as `animbench compare` return as their own result (a regression)."""

from __future__ import annotations

import argparse

import pytest

from animbench import cli
from plumbing.errors import AnimbenchError


def _parser_raising(exc: BaseException) -> argparse.ArgumentParser:
    def func(args):
        raise exc

    parser = argparse.ArgumentParser(prog="animbench")
    parser.set_defaults(func=func)
    return parser


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), KeyError("x"), OSError(5, "I/O error")])
def test_a_bug_is_a_traceback_and_exit_3(exc, monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", lambda: _parser_raising(exc))
    assert cli.main([]) == cli.INTERNAL_ERROR == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and type(exc).__name__ in err and "internal error" in err.splitlines()[-1]


def test_a_user_error_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", lambda: _parser_raising(AnimbenchError("x.csv, line 3: bad fps")))
    assert cli.main([]) == 2
    assert capsys.readouterr().err == "animbench: error: x.csv, line 3: bad fps\n"
