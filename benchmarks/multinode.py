"""A real multi-node prep: two raylets on this machine (a head and a second node joined to it, one CPU each, own
temp dirs), `animbench prep vox ... --address` run against them, and the per-node rate checked against the
per-core rate the projection uses (benchmarks/prep_projection.py), measured in the same run.

    .venv/bin/python benchmarks/multinode.py --out bench_out/multinode.json

Per node: frames/s (the frames of the units that node ran over run_prep's wall time less the Ray connect
time) and frames per core-second (those frames over the CPU seconds of the worker processes under that node's
raylet, sampled from /proc, so a loaded machine does not bend it; the workers start cold, so their imports
count, which a long job amortises). Both nodes must have run units (the manifest
records node ids). The cluster is stopped afterwards by killing exactly the processes this script started
(`ray stop` would also stop every other Ray session on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import emit_report  # noqa: E402
from benchmarks.prep_projection import measure  # noqa: E402
from benchmarks.prep_throughput import footage  # noqa: E402
from benchmarks.proc_cpu import cpu_by_role  # noqa: E402
from plumbing.ray_session import ray_session  # noqa: E402
from prep.pipeline import release_workers  # noqa: E402
from prep.recipes import vox  # noqa: E402

BIN = Path(sys.executable).parent
# a local test cluster: no token authentication, 127.0.0.1 only, no usage reports
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], temp: str) -> int:
    """`ray start ...` with one CPU in its own process group; return the group id."""
    proc = subprocess.Popen([str(BIN / "ray"), "start", *args, "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                             "--temp-dir", temp, "--disable-usage-stats"], env=ENV, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed:\n{out.decode()[-2000:]}")
    return proc.pid


def _pids_naming(text: str) -> list[int]:
    """Processes whose command line contains `text` (a temp dir of this script's cluster)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(proc.name))
            except OSError:
                continue
    return out


def _raylet(temp: str) -> int:
    return next(p for p in _pids_naming(temp)
                if "raylet/raylet" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace"))


def _node_id(temp: str) -> str:
    """The node id the raylet of the node with this temp dir was started with."""
    cmd = Path(f"/proc/{_raylet(temp)}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return next(a.split("=", 1)[1] for a in cmd if a.startswith(("--node-id=", "--node_id=")))


def _run_sampling(cmd: list[str], raylets: list[int]) -> tuple[subprocess.CompletedProcess, list[tuple[float, float, dict]]]:
    """Run cmd while sampling, every 0.2 s, the processes under each raylet; return its result and, per node,
    the CPU seconds its prep workers and all its processes used meanwhile (workers end with the job, so their
    last sample counts: up to 0.2 s of a worker's time may be missed)."""
    first = [cpu_by_role(r) for r in raylets]
    last = [dict(f) for f in first]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        for seen, raylet in zip(last, raylets, strict=True):
            seen.update(cpu_by_role(raylet))
        time.sleep(0.2)
    out, err = proc.communicate()
    used = []
    for f, seen in zip(first, last, strict=True):
        delta = {pid: (r, s - f.get(pid, (r, 0.0))[1]) for pid, (r, s) in seen.items()}
        roles: dict[str, float] = {}
        for r, s in delta.values():
            r = "raylet" if r == "driver" else r  # the root of the walk
            roles[r] = round(roles.get(r, 0.0) + s, 2)
        # the node's worker processes: the prep actors (and any worker Ray had idle or just renamed)
        workers = sum(roles.get(r, 0.0) for r in ("workers", "idle_workers", "other_ray"))
        used.append((round(workers, 2), round(sum(roles.values()), 2), roles))
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), used


def _stop(groups: list[int], temps: list[str]) -> None:
    """Stop what this script started: its process groups, then any process still naming its temp dirs."""
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for temp in temps:
        for pid in _pids_naming(temp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main() -> int:
    """Start the cluster, run the prep on it, stop it; print and write the per-node figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON report file")
    ap.add_argument("--videos", type=int, default=16, help="videos of the cached 720p footage (default 16)")
    ap.add_argument("--frames", type=int, default=192, help="frames per video (default 192)")
    args = ap.parse_args()

    data = footage(args.videos, args.frames, 1280, 720)
    work = Path(tempfile.mkdtemp(prefix="abmn-", dir=REPO / "bench_out"))
    # the projection's per-core rate, measured now on the same footage (a local 1-worker session)
    with ray_session(1):
        local = measure(vox.plan(data / "videos", data / "metadata.csv", url_template=None), work, "png",
                        decode_core_s=0.0)  # only the total per-core rate is compared here
        release_workers()
    temps = [tempfile.mkdtemp(prefix="abmn-head-", dir="/tmp"), tempfile.mkdtemp(prefix="abmn-node-", dir="/tmp")]
    groups: list[int] = []
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        t = time.perf_counter()
        groups.append(_ray_start(["--head", "--port", str(port), "--include-dashboard=false"], temps[0]))
        groups.append(_ray_start(["--address", address], temps[1]))
        start_s = time.perf_counter() - t
        cmd = [str(BIN / "animbench"), "prep", "vox", "--src", str(data / "videos"), "--metadata",
               str(data / "metadata.csv"), "--out", str(work / "store"), "--address", address, "--no-progress"]
        t = time.perf_counter()
        done, cpu = _run_sampling(cmd, [_raylet(temp) for temp in temps])
        wall = time.perf_counter() - t
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            return 1
        manifest = json.loads((work / "store" / "manifest.json").read_text())
        nodes = manifest["run"]["nodes"]  # node id -> units run there
        node_ids = [_node_id(temp) for temp in temps]
    finally:
        _stop(groups, temps)
        time.sleep(0.5)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)
    frames, units = manifest["num_frames"], sum(nodes.values())
    busy = manifest["timings"]["wall_s"] - manifest["timings"]["ray_start_s"]  # run_prep's time on the cluster
    per_node = []
    for i, ((worker_cpu, node_cpu, roles), node) in enumerate(zip(cpu, node_ids, strict=True)):
        share = nodes.get(node, 0) / units  # the synthetic videos are equally long, so frames follow units
        per_node.append({"node": "head" if i == 0 else "second", "node_id": node, "units": nodes.get(node, 0),
                         "frames_per_s": round(frames * share / busy, 1),
                         "worker_cpu_s": round(worker_cpu, 2), "node_cpu_s": round(node_cpu, 2), "cpu_s_by_role": roles,
                         "frames_per_core_s": round(frames * share / max(worker_cpu, 1e-9), 1)})
    shutil.rmtree(work, ignore_errors=True)
    report = {"cluster": {"nodes": 2, "cpus_per_node": 1, "start_s": round(start_s, 2), "address": address},
              "command": " ".join(cmd), "frames": frames, "wall_s": round(wall, 2),
              "ray_connect_s": manifest["timings"]["ray_start_s"], "per_node": per_node,
              "both_nodes_ran_units": len(nodes) == 2 and all(n["units"] > 0 for n in per_node),
              "projection_frames_per_core_s": local["frames_per_core_s"],
              "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    emit_report(report, args.out)
    print(f"\nprojection's per-core rate (1 local worker, same footage): {local['frames_per_core_s']} frames/core-s")
    print("| node | units | frames/s | frames per core-second | vs projection |\n|---|---:|---:|---:|---:|")
    for n in per_node:
        print(f"| {n['node']} | {n['units']} | {n['frames_per_s']} | {n['frames_per_core_s']} | "
              f"{n['frames_per_core_s'] / local['frames_per_core_s']:.2f} |")
    return 0 if report["both_nodes_ran_units"] else 1


if __name__ == "__main__":
    sys.exit(main())
