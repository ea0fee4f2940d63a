"""FOMM and Monkey-Net outputs on fixed seeds and inputs (tiny configs): keypoints, reconstructions, animations and
one training step's losses. `test_golden.py` checks today's code reproduces the saved arrays bit for bit, so a
refactor that should not change behaviour cannot change it silently.

Regenerate (only when a change of behaviour is intended, and say so in the commit):
    .venv/bin/python -m tests.methods.golden_outputs
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden")
CONFIGS = {"fomm": REPO / "configs/fomm-tiny.yaml", "monkey_net": REPO / "configs/monkey_net-tiny.yaml"}


def _flat(prefix: str, value, out: dict[str, np.ndarray]) -> None:
    if isinstance(value, dict):
        for k in sorted(value):
            _flat(f"{prefix}.{k}", value[k], out)
    elif isinstance(value, torch.Tensor):
        out[prefix] = value.detach().cpu().numpy()


def outputs(method: str) -> dict[str, np.ndarray]:
    """Every saved output of one method (call with one torch thread for bit-reproducible CPU kernels)."""
    from methods.infer import animate_video
    from methods.registry import load_config, load_model
    from methods.train import make_optimizers, train_step

    torch.manual_seed(0)
    model, _ = load_model(method, config=CONFIGS[method])
    gen = torch.Generator().manual_seed(1)
    source = torch.rand(2, 3, 64, 64, generator=gen)
    driving = torch.rand(2, 3, 64, 64, generator=gen)
    video = torch.rand(3, 3, 64, 64, generator=gen)
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        kp_input = source.unsqueeze(2) if method == "monkey_net" else source  # Monkey-Net works on (B, C, T, H, W)
        _flat("kp_source", dict(model.kp_detector(kp_input)), out)
        out["reconstruct"] = model.reconstruct(source, driving).numpy()
        out["animate"] = animate_video(model, source[0].permute(1, 2, 0).numpy(),
                                       video.permute(0, 2, 3, 1).numpy()).astype(np.float32)
    model.train()
    optimizers = make_optimizers(model, load_config(CONFIGS[method]))
    torch.manual_seed(5)
    for name, value in train_step(model, optimizers, source, driving).items():
        out[f"loss.{name}"] = np.asarray(value, dtype=np.float64)
    torch.manual_seed(6)
    for name, value in train_step(model, optimizers, source, driving).items():
        out[f"loss2.{name}"] = np.asarray(value, dtype=np.float64)
    return out


def bench_table(work: Path) -> dict[str, np.ndarray]:
    """Per-frame bench scores (reconstruction; l1, psnr, ssim) of seeded FOMM and Monkey-Net checkpoints and
    copy-source on a tiny store, as arrays keyed `method/metric/weighting`, videos and values sorted."""
    from bench.results import Results
    from bench.runner import MethodSpec, run_bench
    from methods.checkpoints import save_checkpoint
    from methods.registry import load_model
    from tests.methods.tiny_store import make_store

    store = make_store(work / "store", train=1, test=2, frames=4)
    specs = [MethodSpec("copy-source")]
    for method, config in CONFIGS.items():
        torch.manual_seed(0)
        model, _ = load_model(method, config=config)
        ckpt = save_checkpoint(work / f"{method}.pth.tar", model, None, epoch=0)
        specs.append(MethodSpec(method, str(ckpt), str(config)))
    run_bench(specs, store, "reconstruction", ["l1", "psnr", "ssim"], work / "results", workers=1, n_boot=50,
              progress=False)
    frames = Results(work / "results").frames().sort_values(["method", "metric", "video_id", "frame_index"])
    return {f"{m}/{k}": g["value"].to_numpy(np.float64) for (m, k), g in frames.groupby(["method", "metric"])}


def main() -> None:
    import tempfile

    torch.set_num_threads(1)
    GOLDEN.mkdir(exist_ok=True)
    for method in CONFIGS:
        np.savez_compressed(GOLDEN / f"{method}.npz", **outputs(method))
        print(f"wrote {GOLDEN / f'{method}.npz'}")
    with tempfile.TemporaryDirectory() as tmp:
        np.savez_compressed(GOLDEN / "bench.npz", **bench_table(Path(tmp)))
    print(f"wrote {GOLDEN / 'bench.npz'}")


if __name__ == "__main__":
    main()
