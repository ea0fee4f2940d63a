"""Lossless frame encoders on real 256x256 video frames: encode ms, bytes, decode ms, pixel-exact readers, upkeep.

Frames: 256x256 crops of the real footage in `../shared/data/edn-sample` (1080p video frames and 1024x512
training images): native-resolution crops and whole regions resized to 256 with INTER_AREA, as the prep recipes
crop and resize. Synthetic faces are too easy for a PNG encoder to be a fair test. Every candidate runs one
thread; rounds are interleaved so load on a shared machine hits every encoder alike; the median round counts.
Candidates whose package is missing are listed as such (install them to include them, e.g.
`pip install pyspng-seunglab pillow-jxl-plugin`).

    python benchmarks/png_encoders.py [--src DIR] [--rounds 7] [--out bench_out/png_encoders.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prep.imagecodec import EncodeOptions, decode_image, encode_image  # noqa: E402

cv2.setNumThreads(1)

# Upkeep as checked on PyPI when this benchmark was written (2026-11): latest release, maintainer, and whether
# binary wheels exist for CPython 3.11 on manylinux x86_64 and aarch64 (an sdist needs a C++ compiler).
UPKEEP = {
    "opencv-python-headless": "5.0.0.93, 2026-07; OpenCV team; wheels x86_64+aarch64",
    "pillow": "13.0.0, 2026-10; Pillow team; wheels x86_64+aarch64",
    "imagecodecs": "2026.10.10, 2026-10 (py>=3.12; 2026.3.6 is the last for py3.11); C. Gohlke, active; wheels "
                   "x86_64+aarch64",
    "pyspng-seunglab": "1.1.3, 2026-03; W. Silversmith (seung-lab fork of pyspng); wheels x86_64+aarch64",
    "fpng": "0.1.0, 2024-12, one release; KEUM Myungchul (py-fpng-nb, nanobind) over R. Geldreich's fpng "
            "(stable C++); wheels x86_64+aarch64 (SIMD on x86 only)",
    "fpng-py / fpng-py-fix": "0.0.3, 2022-07 / 2026-02; sdist only (no wheels): not evaluated, same fpng core",
}


@dataclass
class Candidate:
    name: str
    package: str  # distribution name for the version and upkeep
    encode: Callable[[np.ndarray], bytes]
    fmt: str = "png"


def _pil_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _cv2_png(level: int, rle: bool) -> Callable[[np.ndarray], bytes]:
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    if rle:
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    return lambda rgb: cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), params)[1].tobytes()


def candidates() -> tuple[list[Candidate], list[str]]:
    """The encoders whose packages import here, and the names of those that do not."""
    found = [
        Candidate("opencv zlib-1 rle (baseline)", "opencv-python-headless",
                  lambda a: encode_image(a, EncodeOptions("png", png_compression=1))),
        Candidate("opencv zlib-1 default strategy", "opencv-python-headless", _cv2_png(1, rle=False)),
        Candidate("opencv zlib-0 (stored)", "opencv-python-headless", _cv2_png(0, rle=False)),
        Candidate("pillow compress_level=1", "pillow", _pil_png),
    ]
    missing = []
    try:
        import imagecodecs as ic

        found += [
            Candidate("imagecodecs libpng level 1", "imagecodecs", lambda a: bytes(ic.png_encode(a, 1))),
            Candidate("imagecodecs libpng 1 sub+rle", "imagecodecs",
                      lambda a: bytes(ic.png_encode(a, 1, strategy=3, filter=16))),
            Candidate("imagecodecs spng level 1", "imagecodecs", lambda a: bytes(ic.spng_encode(a, 1))),
        ]
    except ImportError:
        missing.append("imagecodecs")
    try:
        import pyspng

        found.append(Candidate("pyspng-seunglab level 1", "pyspng-seunglab",
                               lambda a: pyspng.encode(a, compress_level=1)))
    except ImportError:
        missing.append("pyspng-seunglab")
    try:
        import fpng  # noqa: F401

        found.append(Candidate("fpng (animbench default)", "fpng", lambda a: encode_image(a, EncodeOptions())))
    except ImportError:
        missing.append("fpng")
    if "imagecodecs" not in missing:
        for effort in (1, 2):
            found.append(Candidate(f"jxl lossless effort {effort}", "imagecodecs",
                                   lambda a, e=effort: encode_image(a, EncodeOptions("jxl", jxl_effort=e)), "jxl"))
    return found, missing


def load_frames(src: Path) -> list[np.ndarray]:
    """256x256 RGB crops of every image under src (labels skipped): two native crops and one resized region."""
    frames = []
    for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        if "label" in path.parent.name:
            continue  # rendered label maps, not footage
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or min(img.shape[:2]) < 256:
            continue
        rgb = img[..., ::-1]
        h, w = rgb.shape[:2]
        for y, x in ((h // 2 - 128, w // 2 - 128), (h // 3, w // 2)):
            frames.append(np.ascontiguousarray(rgb[y:y + 256, x:x + 256]))
        side = min(h, w, 720)
        y0, x0 = (h - side) // 2, (w - side) // 2
        region = np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side])
        frames.append(cv2.resize(region, (256, 256), interpolation=cv2.INTER_AREA))
    return frames


def readers(fmt: str) -> dict[str, Callable[[bytes], np.ndarray | None]]:
    """RGB decoders to try on this format (OpenCV too for JPEG XL, to show whether it opens it)."""
    import imageio.v3 as iio
    from PIL import Image

    def pil(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def cv2_rgb(data: bytes) -> np.ndarray | None:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return None if bgr is None else bgr[..., ::-1]

    out: dict[str, Callable[[bytes], np.ndarray | None]] = {"cv2": cv2_rgb}
    if fmt == "png":
        out["pil"] = pil
        out["imageio"] = lambda d: iio.imread(d, extension=".png")
        return out
    out["imagecodecs"] = decode_image
    try:
        import pillow_jxl  # noqa: F401  (registers JPEG XL with Pillow; imageio reads through Pillow)

        out["pil+pillow-jxl-plugin"] = pil
        out["imageio+pillow-jxl-plugin"] = lambda d: iio.imread(d, plugin="pillow")
    except ImportError:
        pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(REPO.parent / "shared" / "data" / "edn-sample"))
    ap.add_argument("--rounds", type=int, default=7, help="interleaved measurement rounds")
    ap.add_argument("--out", default="bench_out/png_encoders.json")
    args = ap.parse_args()
    src = Path(args.src)
    frames = load_frames(src) if src.is_dir() else []
    if not frames:
        print(f"benchmark skipped: no real frames of at least 256x256 under {src} (pass --src)", file=sys.stderr)
        return 0
    cands, missing = candidates()
    encoded = {c.name: [c.encode(f) for f in frames] for c in cands}  # also warms every encoder
    enc_s: dict[str, list[float]] = {c.name: [] for c in cands}
    dec_s: dict[str, list[float]] = {c.name: [] for c in cands}
    for _ in range(args.rounds):
        for c in cands:
            t = time.perf_counter()
            for f in frames:
                c.encode(f)
            enc_s[c.name].append(time.perf_counter() - t)
            t = time.perf_counter()
            for data in encoded[c.name]:
                decode_image(data)
            dec_s[c.name].append(time.perf_counter() - t)
    base = cands[0].name
    base_ms = statistics.median(enc_s[base]) / len(frames) * 1e3
    base_bytes = float(np.mean([len(b) for b in encoded[base]]))
    rows = []
    for c in cands:
        outs = encoded[c.name]
        exact = {name: all(np.array_equal(read(d), f) for d, f in zip(outs, frames, strict=True))
                 for name, read in readers(c.fmt).items()}
        ms = statistics.median(enc_s[c.name]) / len(frames) * 1e3
        nbytes = float(np.mean([len(b) for b in outs]))
        rows.append({
            "encoder": c.name, "format": c.fmt,
            "version": f"{c.package} {importlib.metadata.version(c.package)}",
            "encode_ms": round(ms, 3), "speedup_vs_zlib1": round(base_ms / ms, 1),
            "decode_ms": round(statistics.median(dec_s[c.name]) / len(frames) * 1e3, 3),
            "kib_per_frame": round(nbytes / 1024, 1), "bytes_vs_zlib1": round(nbytes / base_bytes, 2),
            "deterministic": all(c.encode(f) == d for f, d in zip(frames, outs, strict=True)),
            "pixel_exact": exact,
        })
    result = {"source": str(src), "frames": len(frames), "size": "256x256", "rounds": args.rounds,
              "threads": 1, "decoder": "prep.imagecodec.decode_image (OpenCV for PNG, imagecodecs for JXL)",
              "baseline": base, "encoders": rows, "not_installed": missing, "upkeep": UPKEEP}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(frames)} real 256x256 frames from {src}, {args.rounds} interleaved rounds, 1 thread\n")
    print("| encoder | version | encode ms | x zlib-1 | decode ms | KiB | bytes x zlib-1 | same bytes twice "
          "| pixel-exact in |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ok = ", ".join(k for k, v in r["pixel_exact"].items() if v) or "none"
        bad = [k for k, v in r["pixel_exact"].items() if not v]
        print(f"| {r['encoder']} | {r['version']} | {r['encode_ms']:.3f} | {r['speedup_vs_zlib1']:.1f} | "
              f"{r['decode_ms']:.3f} | {r['kib_per_frame']:.1f} | {r['bytes_vs_zlib1']:.2f} | "
              f"{'yes' if r['deterministic'] else 'NO'} | {ok}{' (NOT ' + ', '.join(bad) + ')' if bad else ''} |")
    if missing:
        print(f"\nnot installed (not measured): {', '.join(missing)}")
    print("\nupkeep (PyPI, 2026-11):")
    for pkg, text in UPKEEP.items():
        print(f"- {pkg}: {text}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
