"""What the benchmark scripts share: peak memory and writing a report (printed, and atomically to --out)."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

from plumbing.files import atomic_write_text


def maxrss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit_report(report: dict[str, Any], out: Path | None) -> None:
    """Print the report as JSON and, with --out, write it there atomically (its folder made first)."""
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(text + "\n", out)
