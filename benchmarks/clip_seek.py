"""Seconds to decode a 30-frame clip at the start, middle and end of a 5-minute 720p h264 video, per backend,
decoding from frame 0 (PyAV's path before clip seeking) and seeking to the key frame before the clip.

    .venv/bin/python benchmarks/clip_seek.py --out bench_out/clip_seek.json

The video (1280x720, 25 fps, GOP 250 with B-frames, a panning synthetic pattern) is made once with PyAV and
kept in --cache (default $BENCH_CACHE or bench_out/cache); making it takes about two minutes. Each figure is
the median of --repeats runs and includes opening the file (decord indexes every packet when it opens).
Must show (issue 13): with seeking, the end clip costs within 2x of the start clip, for both backends.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import emit_report  # noqa: E402

from plumbing.files import atomic_path  # noqa: E402
from plumbing.provenance import package_versions  # noqa: E402
from prep.decode import open_source  # noqa: E402

CLIP = 30


def cache_dir(given: str | None) -> Path:
    """Where generated benchmark videos are kept: --cache, else $BENCH_CACHE, else bench_out/cache."""
    return Path(given or os.environ.get("BENCH_CACHE") or REPO / "bench_out" / "cache")


def long_video(folder: Path, seconds: int, fps: int = 25, width: int = 1280, height: int = 720, gop: int = 250
               ) -> Path:
    """A cached h264 mp4 of a panning pattern with a moving square: fixed GOP, 2 B-frames, no scene cuts."""
    import av

    path = folder / f"pan_{width}x{height}_{seconds}s_{fps}fps_gop{gop}.mp4"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:2 * height, 0:2 * width].astype(np.float32)
    bank = np.clip(np.stack([127 + 90 * np.sin(x / (23 + 5 * c) + y / (31 + 3 * c)) + 30 * np.sin((x + y) / (5 + c))
                             for c in range(3)], -1), 0, 255).astype(np.uint8)
    del x, y
    t = time.perf_counter()
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={
            "crf": "23", "preset": "ultrafast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            ox, oy = (7 * i) % width, (3 * i) % height
            frame = np.ascontiguousarray(bank[oy:oy + height, ox:ox + width])
            s = 40 + i % 200
            frame[s:s + 60, 2 * s:2 * s + 60] = (255, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    print(f"made {path.name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def clip_seconds(path: Path, backend: str, lo: int, from_zero: bool) -> float:
    """Open the video, decode frames [lo, lo + CLIP) (from frame 0 when `from_zero`), close; wall seconds."""
    t = time.perf_counter()
    source = open_source(path, backend=backend)
    try:
        got = [i for i, _ in source.frames(0 if from_zero else lo, lo + CLIP) if i >= lo]
    finally:
        source.close()
    seconds = time.perf_counter() - t
    if got != list(range(lo, lo + CLIP)):
        raise RuntimeError(f"{backend}: clip at {lo} gave frames {got[:3]}...")
    return seconds


def clip_starts(num_frames: int, gop: int) -> dict[str, dict[str, int]]:
    """Clip starts per position (start, middle, end of the video) and phase in the GOP: on its key frame (the
    cheapest place to seek to) and ending on the next key frame (the most frames to decode past)."""
    last = (num_frames - CLIP) // gop * gop
    keys = {"start": 0, "middle": num_frames // 2 // gop * gop, "end": last}
    return {pos: {"on key frame": k, "GOP end": min(k + gop - CLIP, num_frames - CLIP)} for pos, k in keys.items()}


def main() -> int:
    """Make (or reuse) the video, time the clips, print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON result file")
    ap.add_argument("--cache", default=None, help="folder for the generated video ($BENCH_CACHE, bench_out/cache)")
    ap.add_argument("--seconds", type=int, default=300, help="video length")
    ap.add_argument("--gop", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=5, help="seek timings per clip (the median counts)")
    ap.add_argument("--backends", nargs="+", default=["decord", "pyav"])
    ap.add_argument("--no-from-zero", action="store_true", help="skip the decode-from-frame-0 baseline")
    args = ap.parse_args()

    path = long_video(cache_dir(args.cache), args.seconds, gop=args.gop)
    probe = open_source(path, backend="pyav")
    num_frames = probe.num_frames
    probe.close()
    starts = clip_starts(num_frames, args.gop)
    seek: dict[str, dict[str, dict[str, list[float]]]] = {
        b: {pos: {ph: [] for ph in phases} for pos, phases in starts.items()} for b in args.backends}
    for _ in range(args.repeats):  # interleaved, so load drifting on a shared machine hits every cell alike
        for backend in args.backends:
            for pos, phases in starts.items():
                for phase, lo in phases.items():
                    seek[backend][pos][phase].append(clip_seconds(path, backend, lo, from_zero=False))
    from_zero = {} if args.no_from_zero else {
        b: {pos: clip_seconds(path, b, phases["on key frame"], from_zero=True) for pos, phases in starts.items()}
        for b in args.backends}

    rows, ratios = [], {}
    for backend in args.backends:
        med = {pos: {ph: statistics.median(v) for ph, v in phases.items()} for pos, phases in seek[backend].items()}
        for pos in starts:
            for phase, lo in starts[pos].items():
                rows.append({"backend": backend, "position": pos, "phase": phase, "first_frame": lo,
                             "seek_s": round(med[pos][phase], 4),
                             "from_zero_s": round(from_zero[backend][pos], 4) if from_zero and phase ==
                             "on key frame" else None})
        ratios[backend] = {
            "end_over_start_same_phase": round(max(med["end"][ph] / med["start"][ph] for ph in med["end"]), 2),
            "end_gop_end_over_start_on_key": round(med["end"]["GOP end"] / med["start"]["on key frame"], 2)}
        if from_zero:
            ratios[backend]["from_zero_end_over_start"] = round(from_zero[backend]["end"] / from_zero[backend]["start"],
                                                                2)

    print(f"\n{path.name}: {num_frames} frames; a {CLIP}-frame clip, open + decode + close, median of "
          f"{args.repeats} (seek) / 1 (from frame 0), seconds", file=sys.stderr)
    print(f"{'backend':8} {'position':8} {'phase':14} {'frames':>13} {'seek':>8} {'from 0':>8}", file=sys.stderr)
    for r in rows:
        zero = f"{r['from_zero_s']:8.3f}" if r["from_zero_s"] is not None else f"{'':8}"
        span = f"[{r['first_frame']}, {r['first_frame'] + CLIP})"
        print(f"{r['backend']:8} {r['position']:8} {r['phase']:14} {span:>13} {r['seek_s']:8.3f} {zero}",
              file=sys.stderr)
    for backend, r in ratios.items():
        print(f"{backend}: end/start (same GOP phase) {r['end_over_start_same_phase']}x (must be <= 2); end clip "
              f"at GOP end / start clip on key frame {r['end_gop_end_over_start_on_key']}x (a GOP's pre-roll)"
              + (f"; from frame 0 end/start {r['from_zero_end_over_start']}x" if from_zero else ""), file=sys.stderr)
    report = {"benchmark": "clip_seek", "video": {"name": path.name, "frames": num_frames, "gop": args.gop},
              "clip_frames": CLIP, "repeats": args.repeats, "rows": rows, "ratios": ratios,
              "must_show_end_within_2x": all(r["end_over_start_same_phase"] <= 2 for r in ratios.values()),
              "versions": package_versions(["av", "decord", "numpy"]), "cpus": os.cpu_count()}
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
