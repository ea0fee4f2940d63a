"""One progress bar for every long step (prep, train, bench, animate): tqdm with a count, a rate and an ETA.

`--no-progress` (enabled=False) gives a bar that does nothing, so logs stay clean; with `log_every` it writes
instead one plain line at most that often (and one at the end), so a run of hours still shows it is alive.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class _Silent:
    """The disabled bar: the same methods, no output."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _LogLines(_Silent):
    """The disabled bar for logs: `desc: done/total unit (percent), postfix, rate, ETA` lines on stderr, at most
    one every `every` seconds, and a last one on close."""

    def __init__(self, total: int | None, desc: str, unit: str, every: float, initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.every, self.n = total, desc, unit, every, initial
        self.postfix, self.closed = "", False
        self.t0 = self._last = time.monotonic()

    def line(self) -> str:
        """The status line as it stands now."""
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = self.n / elapsed
        done = f"{self.n} {self.unit}s"
        eta = ""
        if self.total:
            done = f"{self.n}/{self.total} {self.unit}s ({self.n / self.total:.0%})"
            eta = f", ETA {_hms((self.total - self.n) / rate)}" if rate > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done}{extra}, {rate:.2f} {self.unit}s/s, elapsed {_hms(elapsed)}{eta}"

    def _maybe(self) -> None:
        if not self.closed and time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            print(self.line(), file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._maybe()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s
        self._maybe()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            print(self.line(), file=sys.stderr, flush=True)


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool = True, initial: int = 0,
                 log_every: float | None = None) -> Any:
    """A progress bar on stderr showing `desc`, done/total `unit`s, rate and ETA; when disabled, a silent one,
    or with `log_every` seconds one that writes a plain status line at most that often and when it closes."""
    if not enabled:
        if log_every is not None:
            return _LogLines(total, desc, unit, log_every, initial)
        bar = _Silent()
        bar.n = initial
        return bar
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, smoothing=0.1,
                file=sys.stderr)
