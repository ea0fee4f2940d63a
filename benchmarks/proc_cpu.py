"""Where the cores go during a run: CPU seconds of this process and every process below it (Ray's GCS, raylet,
agents, log monitor, workers), grouped by role, read from /proc (Linux; no psutil needed).

    before = cpu_by_role(); ...run...; used = cores_used(before, cpu_by_role(), wall_s)
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids[ppid].append(int(proc.name))
    return kids


def role(cmdline: str) -> str:
    """A short role name for a process of a Ray session, from its command line."""
    for needle, name in (("gcs_server", "gcs"), ("raylet/raylet", "raylet"), ("DashboardAgent", "dashboard_agent"),
                         ("RuntimeEnvAgent", "runtime_env_agent"), ("dashboard/dashboard.py", "dashboard_head"),
                         ("log_monitor", "log_monitor"), ("autoscaler/_private/monitor.py", "autoscaler_monitor"),
                         ("ray::_Worker", "workers"), ("ray::IDLE", "idle_workers"),
                         ("default_worker.py", "idle_workers"), ("ray::", "other_ray")):
        if needle in cmdline:
            return name
    return "other"


def cpu_by_role(root_pid: int | None = None, extra_pids: tuple[int, ...] = ()) -> dict[int, tuple[str, float]]:
    """pid -> (role, user+system CPU seconds) for root_pid (default: this process, role 'driver') and all its
    descendants, plus extra_pids (and theirs)."""
    root_pid = root_pid or os.getpid()
    kids = _children()
    out: dict[int, tuple[str, float]] = {}
    stack = [root_pid, *extra_pids]
    while stack:
        pid = stack.pop()
        if pid in out:
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        seconds = (int(stat[11]) + int(stat[12])) / _TICK  # utime, stime
        out[pid] = ("driver" if pid == root_pid else role(cmd), seconds)
        stack.extend(kids.get(pid, []))
    return out


def cores_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
               wall_s: float) -> dict[str, float]:
    """Cores each role used between two snapshots (CPU seconds / wall seconds); processes that ended between
    them are lost, processes that started count from zero."""
    used: dict[str, float] = defaultdict(float)
    for pid, (name, seconds) in after.items():
        used[name] += seconds - before.get(pid, (name, 0.0))[1]
    return {k: round(v / max(wall_s, 1e-9), 3) for k, v in sorted(used.items())}


def ray_cores(used: dict[str, float]) -> float:
    """The cores Ray's own processes used: everything but the driver and the prep workers."""
    return round(sum(v for k, v in used.items() if k not in ("driver", "workers")), 3)
