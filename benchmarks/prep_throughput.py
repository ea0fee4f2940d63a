"""Prep throughput on 720p h264 footage: raw decode, the pipeline at 1 and 2 workers (lossless PNG, the default
encoder), where the cores go (workers, driver, Ray's own processes), and bytes per frame of every format.

    .venv/bin/python benchmarks/prep_throughput.py --out bench_out/prep_throughput.json

The footage (8 synthetic face videos x 96 frames, 1280x720, libx264) is made once and cached under
bench_out/cache/. Runs are interleaved in rounds (raw decode, 1 worker, 2 workers, ...) so that a drifting load
on a shared machine hits every figure alike; the median round counts. Goals (issue 13): PNG at 1 worker >= 70%
of raw decode, 2 workers >= 1.8x one worker. Raw decode is decoding to RGB frames (what every Python decoder
hands out); decoding without the RGB conversion is printed beside it. Each round also runs one worker with
`--scaler opencv` (whole-frame RGB + cv2.INTER_AREA, the stores' path before the YUV scaler): the before figure. The pipeline rate counts the frames written over the wall time of
`run_prep` with the workers already started; it includes decode, crop, anti-aliased resize to 256, encoding,
Parquet writes, stats files and the final hashing of every shard. Core use is read from /proc: CPU seconds of
each process of the session over the run's wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import emit_report  # noqa: E402
from benchmarks.proc_cpu import cores_used, cpu_by_role, ray_cores  # noqa: E402
from plumbing.errors import AnimbenchError  # noqa: E402
from plumbing.provenance import package_versions  # noqa: E402
from plumbing.ray_session import ray_session  # noqa: E402
from prep.config import PrepConfig  # noqa: E402
from prep.imagecodec import EncodeOptions  # noqa: E402
from prep.pipeline import release_workers, run_prep  # noqa: E402
from prep.recipes import vox  # noqa: E402
from prep.synth import make_synthetic  # noqa: E402

CACHE = REPO / "bench_out" / "cache"


def footage(videos: int, frames: int, width: int, height: int, data: Path | None = None) -> Path:
    """The cached synthetic h264 set (made on first use): OUT/videos/*.mp4 + OUT/metadata.csv (vox format); the
    set's ground-truth masks and keypoints are dropped."""
    data = data or CACHE / f"faces-{width}x{height}-{videos}x{frames}"
    if not (data / "synth.json").is_file():
        t = time.perf_counter()
        make_synthetic(data, kind="faces", num_videos=videos, num_frames=frames, width=width, height=height, seed=0)
        print(f"footage: {videos} x {frames} frames at {width}x{height} in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)
        for truth in ("masks", "keypoints"):  # ground truth the vox recipe never reads (masks: ~90 MB a video)
            shutil.rmtree(data / truth, ignore_errors=True)
    return data


def raw_decode_rate(videos: list[Path], backend: str = "auto", rgb: bool = True) -> dict:
    """Sequential full decode to RGB (rgb=False: decode only, frames left in the codec's YUV) with the decoder
    the pipeline uses (prep.decode.open_source: PyAV first, one thread), pinned to one core: one worker's raw
    decode speed. Unpinned, a decoder may spread over more than a core, which no worker of a full machine gets."""
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    try:
        return _decode_all(videos, backend, rgb)
    finally:
        os.sched_setaffinity(0, affinity)


def _decode_all(videos: list[Path], backend: str, rgb: bool) -> dict:
    from prep.decode import open_source

    t, cpu = time.perf_counter(), time.process_time()
    frames, used = 0, set()
    for path in videos:
        source = open_source(path, backend=backend)
        used.add(source.backend)
        try:
            for _ in (source.frames() if rgb else source.decoded()):
                frames += 1
        finally:
            source.close()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"frames": frames, "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 1),
            "frames_per_cpu_s": round(frames / cpu, 1), "decoder": sorted(used)}


def store_bytes_per_frame(store: Path, frames: int) -> float:
    """Bytes of the store's frame shards per stored frame (the encoded images plus Parquet's small overhead)."""
    return round(sum(p.stat().st_size for p in (store / "frames").glob("*.parquet")) / max(frames, 1), 1)


def timed_run(units, store: Path, config: PrepConfig, workers: int) -> dict:
    """One pipeline run with warm workers: frames/s, cores by role, the summary's manifest facts."""
    before, t = cpu_by_role(), time.perf_counter()
    summary = run_prep(units, store, config, workers=workers, progress=False, overwrite=True)
    wall = time.perf_counter() - t
    used = cores_used(before, cpu_by_role(), wall)
    return {"workers": workers, "wall_s": round(wall, 3), "frames": summary.frames, "decoded": summary.decoded,
            "frames_per_s": round(summary.frames / wall, 1), "cores": used, "ray_cores": ray_cores(used),
            "timings": summary.manifest["timings"], "content_hash": summary.manifest["content_hash"],
            "encode": summary.manifest.get("encoding"), "bytes_per_frame": store_bytes_per_frame(store, summary.frames),
            "scaled": summary.manifest["run"].get("scaled_frames")}


def accepted_formats() -> list[str]:
    """The image formats EncodeOptions accepts in this build (jxl only where the codec engineer's encoder is)."""
    out = []
    for fmt in ("png", "jpeg", "jxl"):
        try:
            EncodeOptions(fmt)
        except AnimbenchError:
            continue
        out.append(fmt)
    return out


def _median_round(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["frames_per_s"])[len(runs) // 2]


def main() -> int:
    """Run the benchmark, print the figures, write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON report file")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median counts)")
    ap.add_argument("--data", type=Path, default=None, help="footage folder (default: cached in bench_out/cache)")
    args = ap.parse_args()

    data = footage(args.videos, args.frames, args.width, args.height, args.data)
    units = vox.plan(data / "videos", data / "metadata.csv", url_template=None)
    videos = sorted((data / "videos").glob("*.mp4"))
    work = REPO / "bench_out" / "prep_throughput"
    config = PrepConfig("vox", size=256)  # the default EncodeOptions: lossless PNG with the default encoder
    t = time.perf_counter()
    with ray_session(max(args.workers)):
        ray_start = time.perf_counter() - t
        for w in sorted(args.workers, reverse=True):  # start the workers once; later runs find them warm
            run_prep(units[:w], work / "warm", config, workers=w, progress=False, overwrite=True)
        raws, yuvs, runs, before = [], [], {w: [] for w in args.workers}, []
        opencv = PrepConfig("vox", size=256, scaler="opencv")  # the baseline: whole-frame RGB + cv2.INTER_AREA
        for r in range(args.rounds):
            raws.append(raw_decode_rate(videos))
            yuvs.append(raw_decode_rate(videos, rgb=False))
            for w in args.workers:
                runs[w].append(timed_run(units, work / f"png-{w}", config, w))
                print(f"round {r + 1}: {w} worker(s) {runs[w][-1]['frames_per_s']} frames/s, raw decode "
                      f"{raws[-1]['frames_per_s']} frames/s ({yuvs[-1]['frames_per_s']} without RGB)",
                      file=sys.stderr)
            before.append(timed_run(units, work / "opencv-1", opencv, 1))
            print(f"round {r + 1}: 1 worker, --scaler opencv {before[-1]['frames_per_s']} frames/s", file=sys.stderr)
        formats = {}
        for fmt in accepted_formats():  # bytes (and a 1-worker rate) of every format the encoder offers
            fconfig = PrepConfig("vox", size=256, encode=EncodeOptions(fmt))
            formats[fmt] = timed_run(units, work / f"fmt-{fmt}", fconfig, 1)
        release_workers()
    shutil.rmtree(work, ignore_errors=True)  # the stores (tens of MB each); the footage stays cached
    raw_fps = statistics.median(r["frames_per_s"] for r in raws)
    raw_cpu = statistics.median(r["frames_per_cpu_s"] for r in raws)
    yuv_fps = statistics.median(r["frames_per_s"] for r in yuvs)
    opencv_run = _median_round(before)
    median = {w: _median_round(rs) for w, rs in runs.items()}
    first = median[args.workers[0]]
    first_cpu_rate = first["frames_per_s"] / max(first["cores"].get("workers", 0.0), 1e-9)
    rows = []
    for w, run in median.items():
        worker_cores = run["cores"].get("workers", 0.0)
        rows.append({
            "workers": w, "frames_per_s": run["frames_per_s"],
            "per_worker_vs_raw_decode": round(run["frames_per_s"] / w / raw_fps, 3),
            "per_worker_vs_decode_without_rgb": round(run["frames_per_s"] / w / yuv_fps, 3),
            "speedup_vs_first": round(run["frames_per_s"] / first["frames_per_s"], 3),
            # the load-robust view: frames per CPU-second the workers actually got, against the first count
            "frames_per_worker_cpu_s": round(run["frames_per_s"] / max(worker_cores, 1e-9), 1),
            "per_worker_cpu_s_vs_raw_decode_cpu_s": round(run["frames_per_s"] / max(worker_cores, 1e-9) / raw_cpu, 3),
            # what an idle machine would give: the cores left by the driver and Ray's processes, at the
            # frames per worker CPU-second measured, against one worker on a full core
            "idle_machine_speedup_estimate": round(
                min(w, (os.cpu_count() or w) - run["cores"].get("driver", 0.0) - run["ray_cores"])
                * run["frames_per_s"] / max(worker_cores, 1e-9) / first_cpu_rate, 3),
            "workers_cores": worker_cores, "driver_cores": run["cores"].get("driver", 0.0),
            "ray_processes_cores": run["ray_cores"], "cores_by_role": run["cores"],
            "stage_timings_s": run["timings"], "content_hash": run["content_hash"],
            "all_rounds_frames_per_s": [x["frames_per_s"] for x in runs[w]],
        })
    report = {
        "system": {"cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                   "platform": platform.platform(), "versions": package_versions()},
        "footage": {"videos": args.videos, "frames_per_video": args.frames, "width": args.width,
                    "height": args.height, "codec": "h264 (libx264, yuv420p)", "folder": str(data)},
        "ray_start_s": round(ray_start, 3),
        "raw_decode_frames_per_s": raw_fps, "raw_decode_frames_per_cpu_s": raw_cpu, "raw_decode_rounds": raws,
        "decode_without_rgb_frames_per_s": yuv_fps, "decode_without_rgb_rounds": yuvs,
        "scaler": config.scaler, "scaled_frames": first.get("scaled"),
        "before_opencv_scaler_1_worker": {
            "frames_per_s": opencv_run["frames_per_s"], "vs_raw_decode": round(opencv_run["frames_per_s"] / raw_fps, 3),
            "all_rounds_frames_per_s": [x["frames_per_s"] for x in before], "stage_timings_s": opencv_run["timings"],
            "speedup_of_ffmpeg_scaler": round(first["frames_per_s"] / opencv_run["frames_per_s"], 3)},
        "png_encoder_recorded": first["encode"],
        "runs": rows,
        "same_store_at_every_worker_count": len({r["content_hash"] for r in rows}) == 1,
        "formats": {f: {"bytes_per_frame": r["bytes_per_frame"], "frames_per_s_1_worker": r["frames_per_s"],
                        "encode": r["encode"]} for f, r in formats.items()},
    }
    emit_report(report, args.out)
    decoder = "/".join(raws[0]["decoder"])
    print(f"\nraw decode ({decoder}, 1 thread, 1 core): {raw_fps:.1f} frames/s to RGB, {yuv_fps:.1f} frames/s "
          f"without the RGB conversion; {raw_cpu:.1f} frames per CPU-s; PNG encoder: {first['encode']}; load average "
          f"at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"scaler {config.scaler} (frames by scaler: {first.get('scaled')}); before, --scaler opencv at 1 worker: "
          f"{opencv_run['frames_per_s']:.1f} frames/s = {opencv_run['frames_per_s'] / raw_fps:.0%} of raw decode "
          f"(ffmpeg scaler {first['frames_per_s'] / opencv_run['frames_per_s']:.2f}x that)")
    print("| workers | frames/s | per worker vs raw decode (vs decode without RGB) | speed-up | frames per worker CPU-s (vs raw) "
          "| idle-machine speed-up (estimate) | workers' cores | driver cores | Ray processes' cores |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['workers']} | {row['frames_per_s']:.1f} | {row['per_worker_vs_raw_decode']:.0%} "
              f"({row['per_worker_vs_decode_without_rgb']:.0%}) | "
              f"{row['speedup_vs_first']:.2f} | {row['frames_per_worker_cpu_s']:.1f} "
              f"({row['per_worker_cpu_s_vs_raw_decode_cpu_s']:.0%}) | {row['idle_machine_speedup_estimate']:.2f} "
              f"| {row['workers_cores']:.2f} "
              f"| {row['driver_cores']:.3f} | {row['ray_processes_cores']:.3f} |")
    print("\n| format | bytes per frame (256 px) | frames/s, 1 worker |\n|---|---:|---:|")
    for fmt, f in report["formats"].items():
        print(f"| {fmt} | {f['bytes_per_frame']:,.0f} | {f['frames_per_s_1_worker']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
