"""Random training pairs per second: the frame store in every format vs FOMM's png-per-frame layout, one core.

The baseline is what FOMM's FramesDataset does per item: `os.listdir` the video folder, draw two sorted
indices with replacement, `skimage.io.imread` each PNG and `img_as_float32` it. The store path draws the same
pairs and returns the same float32 arrays, from one store per format: PNG by fpng (the default), PNG by zlib
level 1 (the encoder before fpng), JPEG q95 and lossless JPEG XL (effort 1). Bytes on disk are reported as
apparent size, as allocated blocks (a file per frame costs at least one filesystem block) and per frame, with
each store's write time.

    python benchmarks/store_read.py --out bench_out/store_read.json [--src ../shared/data/monkeynet/actions]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prep.export import export_png_layout  # noqa: E402
from prep.store import EncodeOptions, FrameStore, FrameStoreWriter  # noqa: E402


def load_strips(src: Path, frame: int) -> dict[str, tuple[str, np.ndarray]]:
    """Monkey-Net strips (H x T*W, RGBA PNG data) -> {video id: (split, frames uint8 T,H,W,3)}."""
    from skimage.io import imread

    videos = {}
    for split in ("train", "test"):
        for path in sorted((src / split).glob("*")):
            img = imread(path)[..., :3]
            t = img.shape[1] // frame
            videos[path.stem] = (split, np.stack([img[:, i * frame:(i + 1) * frame] for i in range(t)]))
    return videos


# name -> encoding of one store each; the first is the default format
STORES = {
    "store_png": EncodeOptions("png"),
    "store_png_zlib1": EncodeOptions("png", png_compression=1),
    "store_jpeg95": EncodeOptions("jpeg", jpeg_quality=95),
    "store_jxl": EncodeOptions("jxl"),
}


def build_store(root: Path, videos: dict, encode: EncodeOptions) -> float:
    """Write the videos into a store at root; returns the seconds it took."""
    t0 = time.perf_counter()
    with FrameStoreWriter(root, {"recipe": "benchmark"}, encode=encode) as w:
        for vid, (split, frames) in videos.items():
            w.add_video(vid, frames, split=split)
    return time.perf_counter() - t0


def disk_bytes(root: Path) -> tuple[int, int]:
    apparent = allocated = 0
    for p in root.rglob("*"):
        if p.is_file():
            st = p.stat()
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def fomm_pairs(root: Path, n: int, seed: int) -> float:
    """Seconds for n pairs read the way FOMM's FramesDataset reads a png-folder video."""
    from skimage import img_as_float32, io

    rng = np.random.default_rng(seed)
    folders = sorted(p for p in root.glob("*/*") if p.is_dir())
    t0 = time.perf_counter()
    for _ in range(n):
        path = folders[rng.integers(len(folders))]
        frames = os.listdir(path)
        idx = np.sort(rng.choice(len(frames), replace=True, size=2))
        pair = [img_as_float32(io.imread(os.path.join(path, frames[i]))) for i in idx]
        assert pair[0].dtype == np.float32
    return time.perf_counter() - t0


def store_pairs(root: Path, n: int, seed: int) -> float:
    """Seconds for n pairs drawn the same way from a frame store."""
    rng = np.random.default_rng(seed)
    store = FrameStore(root)
    vids = store.videos()
    t0 = time.perf_counter()
    for _ in range(n):
        vid = vids[rng.integers(len(vids))]
        idx = np.sort(rng.choice(store.num_frames(vid), replace=True, size=2))
        pair = store.read(vid, idx).astype(np.float32) / np.float32(255.0)
        assert pair.dtype == np.float32
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(REPO.parent / "shared" / "data" / "monkeynet" / "actions"))
    ap.add_argument("--frame", type=int, default=64, help="frame width in the strips")
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=10, help="interleaved measurement rounds")
    ap.add_argument("--out", default="bench_out/store_read.json")
    args = ap.parse_args()
    src = Path(args.src)
    if not src.is_dir():
        print(f"benchmark skipped: real footage not found at {src} (pass --src)", file=sys.stderr)
        return 0
    import cv2

    cv2.setNumThreads(1)
    videos = load_strips(src, args.frame)
    n_frames = sum(len(f) for _, f in videos.values())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_s = {name: build_store(tmp / name, videos, enc) for name, enc in STORES.items()}
        # The FOMM layout as the official preprocessing writes it: one PNG per frame (skimage/imageio defaults).
        from skimage.io import imsave

        for vid, (split, frames) in videos.items():
            d = tmp / "fomm" / split / f"{vid}.mp4"
            d.mkdir(parents=True)
            for i, f in enumerate(frames):
                imsave(d / f"{i:07d}.png", f, check_contrast=False)
        export_png_layout(tmp / "store_png", tmp / "fomm-from-store")  # sanity: the store exports the same layout
        results = {"source": str(src), "videos": len(videos), "frames": n_frames, "pairs": args.pairs,
                   "rounds": args.rounds, "threads": 1}
        runs = (("fomm_png_files", fomm_pairs, tmp / "fomm"),
                *((name, store_pairs, tmp / name) for name in STORES))
        for _, fn, root in runs:
            fn(root, 200, seed=1)  # warm the page cache and imports
        # Interleaved rounds: load changes on a shared machine then hit every variant alike.
        seconds = {name: 0.0 for name, _, _ in runs}
        per_round = max(1, args.pairs // args.rounds)
        for r in range(args.rounds):
            for name, fn, root in runs:
                seconds[name] += fn(root, per_round, seed=100 + r)
        for name, _, root in runs:
            apparent, allocated = disk_bytes(root)
            results[name] = {"pairs_per_s": round(per_round * args.rounds / seconds[name], 1), "bytes": apparent,
                             "bytes_allocated": allocated, "bytes_per_frame": round(apparent / n_frames, 1)}
        base = results["fomm_png_files"]
        for name, enc in STORES.items():
            r = results[name]
            r["encoding"] = enc.as_dict()
            r["write_frames_per_s"] = round(n_frames / write_s[name], 1)
            r["speedup_vs_fomm"] = round(r["pairs_per_s"] / base["pairs_per_s"], 2)
            r["bytes_ratio_vs_fomm"] = round(r["bytes"] / base["bytes"], 3)
            r["allocated_ratio_vs_fomm"] = round(r["bytes_allocated"] / base["bytes_allocated"], 3)
    results["targets"] = {
        "store_png_speedup>=1.5": results["store_png"]["speedup_vs_fomm"] >= 1.5,
        "store_jpeg95_speedup>=3": results["store_jpeg95"]["speedup_vs_fomm"] >= 3,
        "store_jpeg95_bytes<0.4x": results["store_jpeg95"]["bytes_ratio_vs_fomm"] < 0.4,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"\n{n_frames} frames, {args.pairs} pairs, 1 thread (machine load affects every row alike)")
    print("| layout | pairs/s | x FOMM | bytes/frame | bytes x FOMM | write frames/s |")
    print("|---|---|---|---|---|---|")
    for name in ("fomm_png_files", *STORES):
        r = results[name]
        print(f"| {name} | {r['pairs_per_s']} | {r.get('speedup_vs_fomm', 1.0)} | {r['bytes_per_frame']} | "
              f"{r.get('bytes_ratio_vs_fomm', 1.0)} | {r.get('write_frames_per_s', '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
