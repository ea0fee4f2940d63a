"""What preparing the whole of VoxCeleb and TaiChi-HD costs: per-core throughput of the vox recipe measured on
720p h264 footage, projected over every row of the official metadata onto one 16-core machine and a Ray
cluster of N such machines, with every assumption printed.

    .venv/bin/python benchmarks/prep_projection.py --out bench_out/prep_projection.json

The measurement runs `run_prep` (the vox recipe in metadata mode: decode, crop by the metadata box,
anti-aliased resize to 256, encode, Parquet write) with one worker on the cached footage of
benchmarks/prep_throughput.py, once per image format the encoder offers. The metadata mode uses no face
detector (the boxes are in the csv), so no stage is left out. The per-core rate is frames over the CPU
seconds the worker process got (read from /proc), so a loaded machine slows the run but not the figure; the
time is split into decode (per decoded source frame, at the CPU cost of the pipeline's decoder decoding the
same footage on one core, frames left in YUV as the worker leaves them, scaled by the source's pixel count against 720p) and the rest (per stored frame). The footage is
synthetic: real YouTube frames carry more texture and decode slower, so read the hours as a lower bound. Download is not included.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.prep_throughput import (  # noqa: E402
    accepted_formats,
    footage,
    raw_decode_rate,
    store_bytes_per_frame,
)
from benchmarks.proc_cpu import cpu_by_role  # noqa: E402
from plumbing.files import atomic_write_text  # noqa: E402
from plumbing.ray_session import ray_session  # noqa: E402
from prep.config import PrepConfig  # noqa: E402
from prep.imagecodec import EncodeOptions  # noqa: E402
from prep.pipeline import release_workers, run_prep  # noqa: E402
from prep.recipes import vox  # noqa: E402
from prep.worker import SEEK_GAP  # noqa: E402

METADATA = REPO.parent / "shared" / "data" / "metadata"
OFFICIAL_CLIPS = {"vox": 20_075, "taichi": 3_334}  # the row counts the official csvs ship with
REF_PIXELS = 1280 * 720  # the footage the rate is measured on


def read_metadata(path: Path, gop_frames: int) -> dict:
    """Rows, unique clips, source videos, frames stored, frames decoded and decode work (720p-frame units)."""
    rows = list(csv.DictReader(path.open(newline="")))
    by_video: dict[str, set[tuple[int, int]]] = defaultdict(set)
    size: dict[str, int] = {}
    for r in rows:
        by_video[r["video_id"]].add((int(r["start"]), int(r["end"])))
        size[r["video_id"]] = int(r["width"]) * int(r["height"])
    stored = decoded = work = 0.0
    per_video = []
    for vid, clips in by_video.items():
        v_stored = sum(e - s for s, e in clips)
        v_decoded = _decoded_frames(sorted(clips), gop_frames)
        per_video.append((v_stored, v_decoded * size[vid] / REF_PIXELS))
        stored += v_stored
        decoded += v_decoded
        work += v_decoded * size[vid] / REF_PIXELS
    sizes = Counter(f"{r['width']}x{r['height']}" for r in rows)
    return {"rows": len(rows), "clips": sum(len(c) for c in by_video.values()), "videos": len(by_video),
            "duplicate_rows": len(rows) - sum(len(c) for c in by_video.values()),
            "frames_stored": int(stored), "frames_decoded": int(decoded), "decode_work_720p_frames": int(work),
            "resolutions": dict(sizes.most_common(6)), "fps": dict(Counter(r["fps"] for r in rows).most_common(5)),
            "per_video": per_video}


def _decoded_frames(clips: list[tuple[int, int]], gop_frames: int) -> int:
    """Source frames the worker decodes for one video's clips (sorted): clips that do not overlap share a lane;
    within a lane a gap of up to SEEK_GAP frames is decoded through, a longer one is a seek that lands on the key
    frame before the clip (on average half a GOP early); overlapping clips go to another lane and are decoded
    again. The first clip of a lane seeks too (start 0 needs no seek)."""
    lanes: list[list[tuple[int, int]]] = []
    for clip in clips:
        lane = next((ln for ln in lanes if ln[-1][1] <= clip[0]), None)
        (lane.append(clip) if lane is not None else lanes.append([clip]))
    total = 0
    for lane in lanes:
        prev_end = None
        for start, end in lane:
            if prev_end is not None and start - prev_end <= SEEK_GAP:
                total += end - prev_end
            else:
                total += end - start + (min(start, gop_frames // 2) if start else 0)
            prev_end = end
    return total


def measure(units, work: Path, fmt: str, decode_core_s: float) -> dict:
    """One 1-worker run of the vox recipe: per-core seconds per stored frame, bytes per frame; the worker's time
    is split into decode (decode_core_s per decoded frame) and the rest (per stored frame)."""
    config = PrepConfig("vox", size=256, encode=EncodeOptions(fmt))
    run_prep(units[:1], work / "warm", config, workers=1, progress=False, overwrite=True)  # a warm worker
    before, t = cpu_by_role(), time.perf_counter()
    summary = run_prep(units, work / fmt, config, workers=1, progress=False, overwrite=True)
    wall = time.perf_counter() - t
    after = cpu_by_role()
    cpu = sum(s - before.get(pid, (r, 0.0))[1] for pid, (r, s) in after.items() if r == "workers")
    decode_share = min(1.0, decode_core_s * summary.decoded / cpu)
    return {"format": fmt, "encoding": summary.manifest.get("encoding"), "frames": summary.frames,
            "decoded": summary.decoded, "wall_s": round(wall, 3), "worker_cpu_s": round(cpu, 3),
            "frames_per_core_s": round(summary.frames / cpu, 1), "decode_share": round(decode_share, 3),
            "decode_core_s_per_frame": decode_core_s,
            "rest_core_s_per_frame": cpu * (1 - decode_share) / max(summary.frames, 1),
            "bytes_per_frame": store_bytes_per_frame(work / fmt, summary.frames)}


def project(meta: dict, rate: dict, machines: int, cores: int, efficiency: float) -> dict:
    """Wall hours on `machines` x `cores` at `efficiency` of linear scaling; a unit (one source video) runs on
    one core, so the longest video bounds the wall time from below."""
    def video_s(stored: float, work: float) -> float:
        return work * rate["decode_core_s_per_frame"] + stored * rate["rest_core_s_per_frame"]

    total = sum(video_s(s, w) for s, w in meta["per_video"])
    longest = max(video_s(s, w) for s, w in meta["per_video"])
    wall = max(total / (machines * cores * efficiency), longest)
    return {"machines": machines, "cores": machines * cores, "core_hours": round(total / 3600, 1),
            "wall_hours": round(wall / 3600, 2), "bound_by_longest_video": wall == longest}


def main() -> int:
    """Measure, project, print the assumptions and the Markdown table, write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON report file")
    ap.add_argument("--metadata", type=Path, default=METADATA, help="folder of vox- and taichi-metadata.csv")
    ap.add_argument("--cores", type=int, default=16, help="cores per machine (default 16)")
    ap.add_argument("--machines", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--efficiency", type=float, default=0.9,
                    help="share of linear scaling kept across a machine's cores and the cluster (default 0.9)")
    ap.add_argument("--gop-s", type=float, default=2.0, help="key-frame interval of the sources (YouTube: ~2 s)")
    args = ap.parse_args()

    if not args.metadata.is_dir():
        print(f"no metadata folder at {args.metadata} (the ../shared checkout)", file=sys.stderr)
        return 2
    data = footage(8, 96, 1280, 720)
    units = vox.plan(data / "videos", data / "metadata.csv", url_template=None)
    work = REPO / "bench_out" / "prep_projection"
    # pinned to one core: CPU-s per frame; without the RGB conversion, as the worker decodes (it converts only
    # the stored pixels, which the per-stored-frame rest pays for)
    raw = raw_decode_rate(sorted((data / "videos").glob("*.mp4")), rgb=False)
    with ray_session(1):
        rates = {fmt: measure(units, work, fmt, 1 / raw["frames_per_cpu_s"]) for fmt in accepted_formats()}
        release_workers()
    shutil.rmtree(work, ignore_errors=True)
    rate = rates["png"]  # the default lossless output sets the time; the formats differ little in encode cost
    datasets, table = {}, []
    for name, fps in (("vox", 25), ("taichi", 30)):
        meta = read_metadata(args.metadata / f"{name}-metadata.csv", round(args.gop_s * fps))
        projections = [project(meta, rate, m, args.cores, args.efficiency) for m in args.machines]
        tb = {fmt: round(meta["frames_stored"] * r["bytes_per_frame"] / 1e12, 3) for fmt, r in rates.items()}
        datasets[name] = {**{k: v for k, v in meta.items() if k != "per_video"}, "terabytes": tb,
                          "projections": projections}
        for p in projections:
            table.append((name, meta, p, tb))

    print("\n## Assumptions")
    for fmt, r in rates.items():
        print(f"- measured ({fmt}, {r['encoding']}): {r['frames']} frames of 1280x720 h264 -> 256 px in "
              f"{r['worker_cpu_s']:.1f} worker CPU-s = {r['frames_per_core_s']:.1f} frames per core-second "
              f"(decode {r['decode_share']:.0%} of it); {r['bytes_per_frame']:,.0f} bytes per frame")
    print(f"- time model: decode {rate['decode_core_s_per_frame'] * 1e3:.2f} ms per decoded 720p frame "
          f"({'/'.join(raw['decoder'])}, one thread pinned to one core, no RGB conversion: {raw['frames_per_cpu_s']} frames per CPU-s), scaled by "
          f"the source's pixel count (1080p = 2.25x); crop + resize + encode + write "
          f"{rate['rest_core_s_per_frame'] * 1e3:.2f} ms per stored frame (PNG, the default)")
    print(f"- decoded frames: each clip, plus gaps up to {SEEK_GAP} frames between clips decoded through, plus half "
          f"a GOP ({args.gop_s:g} s) per seek; overlapping clips are decoded again")
    print(f"- {args.cores} cores per machine, {args.efficiency:.0%} of linear scaling across cores and machines; "
          "a source video runs on one core (the longest one bounds the wall time)")
    print("- frames stored = end - start of every unique row at the reference fps (the source assumed to run at "
          "it); duplicate rows (same video, start, end) are prepared once")
    print("- bytes per frame measured on synthetic 256 px faces (FOMM's README: ~300 GB of PNG for vox, i.e. "
          "~73 KB a frame with zlib level 6)")
    print("- download, Ray start-up (seconds) and the store's finalize (seconds) are not included")
    for name, d in datasets.items():
        check = "matches" if d["rows"] == OFFICIAL_CLIPS[name] else f"DIFFERS from {OFFICIAL_CLIPS[name]:,}"
        print(f"- {name}: {d['rows']:,} rows ({check} the official count), {d['clips']:,} unique clips "
              f"({d['duplicate_rows']} duplicate rows), {d['videos']:,} source videos, "
              f"{d['frames_stored']:,} frames stored, {d['frames_decoded']:,} decoded; sources {d['resolutions']}; "
              f"fps {d['fps']}")
    fmts = list(rates)
    print("\n| dataset | clips | frames | machines (cores) | wall hours | core hours | "
          + " | ".join(f"{f.upper()} TB" for f in fmts) + " |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(fmts))
    for name, meta, p, tb in table:
        bound = " (longest video)" if p["bound_by_longest_video"] else ""
        print(f"| {name} | {meta['clips']:,} | {meta['frames_stored']:,} | {p['machines']} ({p['cores']}) | "
              f"{p['wall_hours']:.2f}{bound} | {p['core_hours']:.1f} | " + " | ".join(f"{tb[f]:.3f}" for f in fmts)
              + " |")
    report = {"measured": rates, "raw_decode": raw, "assumptions": {"cores_per_machine": args.cores, "efficiency": args.efficiency,
                                                 "gop_s": args.gop_s, "seek_gap_frames": SEEK_GAP,
                                                 "download_included": False},
              "datasets": datasets}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(report, indent=2, default=str) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
