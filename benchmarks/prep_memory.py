"""Peak memory of one prep worker preparing a 1-minute and a 5-minute 720p source: bounded, not growing with
the video (frames stream through decode, crop/resize and PNG encoding into the shard).

    .venv/bin/python benchmarks/prep_memory.py --out bench_out/prep_memory.json

Each case runs in a fresh process (the worker's code path, `UnitProcessor.run`, without Ray) that reports its
peak RSS (ru_maxrss) and its RSS after imports. Cases: one clip spanning the whole video (the longest a clip
can be), and two clips overlapping on 60% of the video (before lanes, overlapping clips were buffered whole).
The videos are the cached ones of benchmarks/clip_seek.py ($BENCH_CACHE or bench_out/cache; made on first
use). Must show: the 5-minute source's peak within 1.2x of the 1-minute source's, per backend and case.

decord is measured only when asked (`--backends decord --seconds 30 60`): its decoder thread runs ahead of a
slow consumer into an unbounded queue (1.2-1.9 GB for a 1-minute source; on a 5-minute one it can hold most of
the video, several GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from clip_seek import cache_dir, long_video  # noqa: E402
from common import emit_report, maxrss_mb  # noqa: E402

CASES = ("whole video", "overlapping 60%")


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(video: Path, backend: str, case: str) -> dict:
    """Prepare the case's clips of `video` into a temp shard as a worker does; report memory and time."""
    from prep.config import PrepConfig
    from prep.decode import open_source
    from prep.recipes import Clip, Unit
    from prep.worker import UnitProcessor

    source = open_source(video, backend="pyav")
    n, h, w = source.num_frames, *next(source.frames(0, 1))[1].shape[:2]
    source.close()
    box = (w // 3, h // 8, w // 3 + h * 3 // 4, h * 7 // 8)  # a face-sized square, 540 px at 720p
    spans = [(0, n)] if case == "whole video" else [(0, n * 4 // 5), (n // 5, n)]
    clips = tuple(Clip(f"clip{k}", "train", start=lo, end=hi, bbox=box) for k, (lo, hi) in enumerate(spans))
    before = rss_mb()
    with tempfile.TemporaryDirectory(prefix="prep-memory-") as tmp:
        t = time.perf_counter()
        result = UnitProcessor(PrepConfig("vox", size=256, decoder=backend)).run(
            Unit(key="m", source=str(video), clips=clips), Path(tmp) / "shard.parquet")
        seconds = time.perf_counter() - t
    if result["failures"]:
        raise RuntimeError(f"prep failed: {result['failures']}")
    return {"frames_stored": result["frames"], "frames_decoded": result["decoded"], "seconds": round(seconds, 2),
            "rss_after_imports_mb": round(before, 1), "peak_rss_mb": round(maxrss_mb(), 1)}


def main() -> int:
    """Run every (length, backend, case) in its own process; print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON result file")
    ap.add_argument("--cache", default=None, help="folder for the generated videos ($BENCH_CACHE, bench_out/cache)")
    ap.add_argument("--seconds", type=int, nargs=2, default=[60, 300], help="the short and the long source")
    ap.add_argument("--backends", nargs="+", default=["pyav"], help="pyav, decord (see above)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--child", nargs=3, metavar=("VIDEO", "BACKEND", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1], args.child[2])))
        return 0

    videos = {s: long_video(cache_dir(args.cache), s) for s in args.seconds}
    rows = []
    for backend in args.backends:
        for case in args.cases:
            for seconds, video in videos.items():
                out = subprocess.run([sys.executable, __file__, "--child", str(video), backend, case],
                                     capture_output=True, text=True, check=True)
                rows.append({"backend": backend, "case": case, "source_s": seconds,
                             **json.loads(out.stdout.strip().splitlines()[-1])})
                print(f"{backend:7} {case:16} {seconds:4d} s: {rows[-1]}", file=sys.stderr)
    short, long = args.seconds
    ratios = {}
    for backend in args.backends:
        for case in args.cases:
            peak = {r["source_s"]: r["peak_rss_mb"] for r in rows if r["backend"] == backend and r["case"] == case}
            ratios[f"{backend} / {case}"] = round(peak[long] / peak[short], 3)

    print(f"\npeak RSS of one worker process (MB), 720p source -> 256x256 PNG frames; {long} s over {short} s",
          file=sys.stderr)
    print(f"{'backend':8} {'case':17} {'source':>7} {'frames':>7} {'decoded':>8} {'imports':>8} {'peak':>8} "
          f"{'seconds':>8}", file=sys.stderr)
    for r in rows:
        print(f"{r['backend']:8} {r['case']:17} {r['source_s']:6d}s {r['frames_stored']:7d} {r['frames_decoded']:8d} "
              f"{r['rss_after_imports_mb']:8.0f} {r['peak_rss_mb']:8.0f} {r['seconds']:8.1f}", file=sys.stderr)
    for name, ratio in ratios.items():
        print(f"{name}: peak {long} s / {short} s = {ratio}x (must be <= 1.2)", file=sys.stderr)
    report = {"benchmark": "prep_memory", "videos": {s: v.name for s, v in videos.items()}, "rows": rows,
              "ratios_long_over_short": ratios, "must_show_bounded": all(v <= 1.2 for v in ratios.values()),
              "cpus": os.cpu_count()}
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
