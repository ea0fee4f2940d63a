"""One progress bar for every long step (prep, train, bench, animate): tqdm with a count, a rate and an ETA.

`--no-progress` (enabled=False) gives a bar that does nothing, so logs stay clean.
"""

from __future__ import annotations

import sys
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


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool = True, initial: int = 0) -> Any:
    """A progress bar on stderr showing `desc`, done/total `unit`s, rate and ETA; a silent one when disabled."""
    if not enabled:
        bar = _Silent()
        bar.n = initial
        return bar
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, smoothing=0.1,
                file=sys.stderr)
