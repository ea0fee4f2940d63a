"""`animbench bench`: a thin wrapper over bench.runner.run_bench.

`animbench leaderboard` lives in reports/cli.py: imports follow the data (bench -> reports), and printing
tables is what reports does.
"""

from __future__ import annotations

import argparse

from bench.protocols import PROTOCOLS

METHODS_HELP = ("methods to bench, comma-separated or the option repeated: [LABEL:]NAME[=CHECKPOINT][@CONFIG], "
                "e.g. 'fomm=vox-cpk.pth.tar@vox-256.yaml,copy-source,oracle'; LABEL names the rows when one "
                "method appears twice ('fomm-ep50:fomm=ep50.pth.tar@vox-256.yaml')")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bench`."""
    p = sub.add_parser("bench", help="run methods over a frame store under a protocol and score them",
                       description="Run registered methods over a frame store split (reconstruction: FOMM's "
                                   "protocol; animation: cross-identity pairs; pose-transfer: Everybody Dance "
                                   "Now's, each posed frame generated from its own pose; reenactment: latent-pose "
                                   "reenactment's, every identity driven by every driver, identity error on "
                                   "cross-driving and pose error on self-driving pairs), score every frame, and write "
                                   "per-frame / per-video Parquet tables, bootstrap CIs and paired comparisons.")
    p.add_argument("--methods", action="append", required=True, metavar="SPECS", help=METHODS_HELP)
    p.add_argument("--store", required=True, help="frame store directory (animbench prep ...)")
    p.add_argument("--protocol", choices=PROTOCOLS, required=True,
                   help="reconstruction, animation and reenactment run video-driven methods, pose-transfer "
                        "pose-driven ones")
    p.add_argument("--protocol-variant", choices=("legacy", "clean"), default="legacy",
                   help="legacy keeps the published evaluation code's quirks (default), clean fixes them")
    p.add_argument("--metrics", required=True, help="comma-separated metric names (animbench metrics lists them)")
    p.add_argument("--out", required=True, help="results directory to create")
    p.add_argument("--split", default="test")
    p.add_argument("--pairs", help="animation pairs CSV (distance,source,driving,frame as FOMM's taichi256.csv); "
                                   "default: seeded random cross-identity pairs")
    p.add_argument("--num-pairs", type=int, help="random pairs to draw (default: one per video)")
    p.add_argument("--skip-missing-pairs", action="store_true",
                   help="drop pairs naming videos the split lacks (FOMM does) instead of failing")
    p.add_argument("--identity-frames", type=int, metavar="K",
                   help="reenactment: the first K frames of each test video are its identity images (default 8)")
    p.add_argument("--driver-frames", type=int, metavar="D",
                   help="reenactment: the last D frames of each test video are its driver frames (default 32)")
    p.add_argument("--limit-videos", type=int,
                   help="bench only the first N videos (or pairs; reenactment: N identities, N^2 pairs)")
    p.add_argument("--workers", type=int,
                   help="parallel Ray workers (default: GPUs, else CPU cores); 1 runs in this process")
    p.add_argument("--address", help="join this Ray cluster (HOST:PORT) instead of starting a local one; the store "
                                     "and --out must be on a filesystem every node sees")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seeds generation, random pairs and the bootstrap")
    p.add_argument("--batch-size", type=int, default=16, help="frames per generator call")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples over videos")
    p.add_argument("--sample-videos", type=int, default=4, help="videos whose sample frames are saved as PNG")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results directory")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (for logs); by default a bar with an ETA counts videos on stderr")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from bench.results import Results, interval_is_shown
    from bench.runner import parse_method_spec, run_bench

    methods = [parse_method_spec(s) for group in args.methods for s in group.split(",") if s.strip()]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    manifest = run_bench(methods, args.store, args.protocol, metrics, args.out, split=args.split, device=args.device,
                         workers=args.workers, address=args.address, seed=args.seed, limit_videos=args.limit_videos,
                         variant=args.protocol_variant, pairs=args.pairs, num_pairs=args.num_pairs,
                         skip_missing_pairs=args.skip_missing_pairs, identity_frames=args.identity_frames,
                         driver_frames=args.driver_frames, sample_videos=args.sample_videos,
                         batch_size=args.batch_size, n_boot=args.n_boot, overwrite=args.overwrite,
                         progress=args.progress)
    run = manifest["run"]
    print(f"benched {len(run['methods'])} method(s) on {run['store']['videos']} video(s) in {run['seconds']:.1f} s "
          f"({run['executor']}, {run['workers']} worker(s), {run['device']}) -> {args.out}")
    board = Results(args.out).leaderboard("frame")
    for _, r in board.iterrows():
        # the leaderboard's rule: no bootstrap interval over fewer than MIN_VIDEOS_FOR_CI videos
        ci = ("" if r["weighting"] == "set" else f" [{r['ci_low']:.4g}, {r['ci_high']:.4g}]"
              if interval_is_shown(r["n_videos_used"]) else f" (n = {int(r['n_videos_used'])} videos: no interval)")
        print(f"  {r['method']:<20} {r['metric']:<16} {r['mean']:.4g}{ci}")
    print(f"full table: animbench leaderboard {args.out}   report: animbench report {args.out} --out DIR")
    return 0
