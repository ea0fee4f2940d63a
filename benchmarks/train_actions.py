"""Train Monkey-Net, FOMM, MRAA and TPSMM on the real 64x64 "actions" clips for a stated step budget; report reconstruction L1.

The strips in ../shared/data/monkeynet/actions/{train,test} (57 / 15 clips) become a frame store through prep's
folder recipe (`animbench prep folder`). Each method trains with its actions64 config (configs/) for `--steps`
optimiser steps, then runs FOMM's reconstruction protocol on the test split (source = frame 0, absolute
keypoints). The same protocol runs for the copy-source baseline (prediction = frame 0) and for each method's
untrained initialisation, so the numbers can be read against both. L1 is on [0, 1]; `l1` is frame-weighted
(FOMM), `l1_video_weighted` video-weighted (Monkey-Net).

    python benchmarks/train_actions.py --steps 300 --out bench_out/train_actions   # CPU, minutes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from methods.infer import reconstruct  # noqa: E402
from methods.train import find_last_checkpoint, train  # noqa: E402
from prep.store import FrameStore  # noqa: E402

DEFAULT_SRC = REPO.parent / "shared/data/monkeynet/actions"
CONFIGS = {m: REPO / f"configs/{m}-actions64.yaml" for m in ("fomm", "monkey_net", "mraa", "tpsmm")}


def build_store(src: Path, out: Path) -> Path:
    """The strips as a frame store via prep's folder recipe (reused when already complete)."""
    try:
        FrameStore(out)
        return out
    except Exception:  # absent or incomplete: (re)build it
        pass
    cmd = [sys.executable, "-m", "animbench", "prep", "folder", "--src", str(src), "--out", str(out),
           "--workers", "1", "--no-progress", "--overwrite"]
    subprocess.run(cmd, check=True, cwd=REPO)
    return out


def _l1(summary: dict) -> dict:
    return {k: summary[k] for k in ("l1", "l1_video_weighted", "l1_quantised", "num_videos", "num_frames",
                                    "frames_per_s")}


def main() -> None:
    """Build the store, train each method for the budget, reconstruct the test split, write results.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=str(DEFAULT_SRC))
    p.add_argument("--out", required=True, help="working folder: store/, runs/, reconstructions/, results.json")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps per method (the budget)")
    p.add_argument("--batch-size", type=int, default=None, help="override the configs' batch size (8)")
    p.add_argument("--methods", default="fomm,monkey_net,mraa,tpsmm")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    out = Path(args.out)
    store = build_store(Path(args.src), out / "store")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = {"src": args.src, "store": {"path": str(store), "fingerprint": FrameStore(store).fingerprint},
               "device": device, "torch_threads": torch.get_num_threads(), "budget_steps": args.steps,
               "load_average_start": os.getloadavg(), "methods": {}}
    results["copy-source"] = _l1(reconstruct("copy-source", store, out / "reconstructions/copy-source",
                                             overwrite=True))
    for method in args.methods.split(","):
        config = CONFIGS[method]
        run_dir = out / "runs" / method
        resume = find_last_checkpoint(run_dir) is not None if run_dir.is_dir() else False
        t0 = time.perf_counter()
        summary = train(method, store, config, run_dir, max_steps=args.steps, batch_size=args.batch_size,
                        device=device, seed=args.seed, resume=resume, log_every=25)
        train_s = time.perf_counter() - t0
        torch.manual_seed(args.seed)  # the initialisation train() started from
        initial = reconstruct(method, store, out / "reconstructions" / f"{method}-init", config=str(config),
                              device=device, overwrite=True)
        trained = reconstruct(method, store, out / "reconstructions" / method, config=str(config),
                              checkpoint=str(find_last_checkpoint(run_dir)), device=device, overwrite=True)
        results["methods"][method] = {
            "config": str(config.relative_to(REPO)), "steps": summary["steps"],
            "batch_size": summary["schedule"]["batch_size"], "epochs_run": summary["last_epoch"] + 1,
            "train_wall_s": round(train_s, 1), "steps_per_s": summary["steps_per_s"],
            "final_losses": summary["final_losses"], "perceptual_loss": summary["perceptual_loss"],
            "test_trained": _l1(trained), "test_untrained": _l1(initial),
        }
        print(method, json.dumps(results["methods"][method], indent=2), flush=True)
    results["load_average_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"copy-source": results["copy-source"]["l1"],
                      **{m: r["test_trained"]["l1"] for m, r in results["methods"].items()}}, indent=2))


if __name__ == "__main__":
    main()
