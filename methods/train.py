"""One training loop for every family, from frame stores (reference §2); it names no method.

    train("fomm", "stores/vox", "configs/fomm-tiny.yaml", "runs/fomm-vox", max_steps=100)

The loop asks the method (methods/interface.py) for everything family-specific: its training samples
(`training_dataset`: by default FramePairDataset, `num_repeats` pairs per training video or identity, augmented
as the config says), the stage its config trains (`training_stage`), its learning rates for that stage, one step's
losses, the networks frozen in an epoch, its extra checkpoint entries and official files. One step: the
generator-side losses backward jointly, step every optimiser not in `model.discriminators`, then (when the method
trains a GAN) the discriminator losses on the detached predictions and the discriminators' steps; optimisers of
`frozen_networks(cfg, epoch)` skip their step. One optimiser per group of `optimizer_groups` (by default one per
network the stage's learning rates name), of the kind `optimizer_options` says (Adam with betas (0.5, 0.999) by
default, or RAdam); a network without a learning rate is frozen (requires_grad False). After every step
`after_step(step)` (e.g. latent-pose's weight running averages); once, when a run starts (not on resume),
`prepare_training(dataset)` after --init-from. Schedule, per epoch: MultiStepLR
(gamma 0.1 at `epoch_milestones`), or pix2pixHD's when `train_params.niter_decay` is set: the learning rate
constant for `niter` epochs, then linearly down to 0 over `niter_decay` epochs (num_epochs defaults to their sum).

`stage` (`--stage NAME`) picks one of the method's `stages` (default: the one its config trains); the method hears
it (`set_training_stage`) and says which train_params schedule it (`stage_config`: MRAA's AVD stage trains from
train_avd_params, started --init-from the main run). The stage is recorded in run.json and a resume must match it.

`init_from` (`--init-from RUN_OR_CHECKPOINT`) starts from another run's weights: `model.load_pretrained` copies
every tensor whose key and shape match (pix2pixHD's --load_pretrain), as EDN's local stage starts from its global
run and its face stage from the local run; what was loaded is recorded in run.json.

Outputs in `out_dir` (only rank 0 writes): `%08d-checkpoint.pth.tar` in the official layout (plus an `animbench`
entry with the resume position and scheduler states) and `last-checkpoint.pth.tar` (a hard link to the newest),
the method's `official_files()` (e.g. `latest_net_G.pth`, written atomically at every save), TensorBoard logs
under `tb/`, and `run.json` (provenance; `status` is "complete" only once training finished).

Randomness: model initialisation from `seed`; pairs and augmentation from (seed, epoch, index); the global torch
generator (equivariance transforms) is re-seeded from (seed, rank, step) before every step. So a resumed run
continues exactly as an uninterrupted one would, whatever the number of processes that saved it.

Several processes (torchrun): WORLD_SIZE / RANK / LOCAL_RANK select DDP (gloo on CPU, nccl on CUDA); each network
is wrapped in DistributedDataParallel, BatchNorm becomes SyncBatchNorm on CUDA (FOMM's statistics were over the
whole batch), and each rank trains on its shard of every epoch. The config's batch_size is the global batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from methods.checkpoints import checkpoint_sha256, load_into, save_checkpoint
from methods.config import get_path
from methods.data import make_transform
from methods.interface import Method
from methods.registry import DEFAULT_ALIGN_CORNERS, get_method, load_config
from plumbing.errors import AnimbenchError
from plumbing.files import atomic_path, atomic_write_text, sha256_file
from plumbing.ids import safe_join
from plumbing.progress import progress_bar
from plumbing.provenance import package_versions
from prep.store import FrameStore

CHECKPOINT_NAME = "%08d-checkpoint.pth.tar"
LAST_CHECKPOINT = "last-checkpoint.pth.tar"
RUN_FILE = "run.json"


@dataclass
class DistInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    initialised_here: bool = False


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        here = True
    return DistInfo(rank, world, local, dist.get_backend(), here)


def _pick_device(device: str | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AnimbenchError(f"device {device!r}: CUDA is not available on this machine (use --device cpu)")
    if dev.type == "cuda" and dev.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def _amp_dtype(amp: str | bool, device: torch.device) -> torch.dtype | None:
    mode = {True: "bf16", False: "off"}.get(amp, amp) if isinstance(amp, bool) else amp
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if mode == "bf16":
        return torch.bfloat16
    if mode in ("off", "none", "fp32"):
        return None
    raise AnimbenchError(f"amp {amp!r}: expected auto, bf16 or off")


OPTIMIZERS = {"Adam": torch.optim.Adam, "RAdam": torch.optim.RAdam}


def make_optimizers(model: Method, cfg: Mapping[str, Any], stage: str | None = None) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per group of the method's `optimizer_groups` for `stage` (None: the config's
    `training_stage`), of the kind `optimizer_options` names; the method's networks without a learning rate are
    frozen (requires_grad False). A group's networks share one param group (in the group's order) when their
    learning rates are equal, else one param group each. Each optimiser's `networks` attribute lists them."""
    stage = model.training_stage(cfg) if stage is None else stage
    if stage not in model.stages:
        raise AnimbenchError(f"training stage {stage!r}: expected one of {list(model.stages)}")
    rates = model.learning_rates(cfg, stage)
    unknown = sorted(set(rates) - set(model.networks))
    if unknown:
        raise AnimbenchError(f"stage {stage}: learning rate for {unknown[0]!r}, which is not one of the model's "
                             f"networks {list(model.networks)}")
    groups = model.optimizer_groups(cfg, stage)
    grouped = [n for members in groups.values() for n in members]
    if sorted(grouped) != sorted(rates):
        raise AnimbenchError(f"stage {stage}: optimiser groups {dict(groups)} must name each trained network "
                             f"{sorted(rates)} exactly once")
    options = dict(model.optimizer_options(cfg, stage))
    kind = options.pop("kind", "Adam")
    if kind not in OPTIMIZERS:
        raise AnimbenchError(f"stage {stage}: optimiser {kind!r}: expected one of {list(OPTIMIZERS)}")
    for name in model.networks:
        if name not in rates:
            getattr(model, name).requires_grad_(False)
    optimizers = {}
    for group, members in groups.items():
        if len({rates[n] for n in members}) == 1:  # one param group, as the official optimizer_G
            params: Any = [p for n in members for p in getattr(model, n).parameters()]
            optimizer = OPTIMIZERS[kind](params, lr=rates[members[0]], **options)
        else:
            optimizer = OPTIMIZERS[kind]([{"params": list(getattr(model, n).parameters()), "lr": rates[n]}
                                          for n in members], **options)
        optimizer.networks = tuple(members)  # read by train_batch and the scheduler step
        optimizers[group] = optimizer
    return optimizers


def _networks_of(name: str, optimizer: torch.optim.Optimizer) -> tuple[str, ...]:
    """The networks an optimiser steps (its group's, or the network it is named after)."""
    return tuple(getattr(optimizer, "networks", (name,)))


def _is_discriminator_side(model: Method, name: str, optimizer: torch.optim.Optimizer) -> bool:
    return all(n in model.discriminators for n in _networks_of(name, optimizer))


def train_step(model: Method, optimizers: Mapping[str, torch.optim.Optimizer], source: torch.Tensor,
               driving: torch.Tensor, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """One step on a batch of frame pairs (train_batch with inputs (source, driving)); returns the losses."""
    return train_batch(model, optimizers, (source, driving), amp_dtype)


def train_batch(model: Method, optimizers: Mapping[str, torch.optim.Optimizer], inputs: tuple[torch.Tensor, ...],
                amp_dtype: torch.dtype | None = None, frozen: Collection[str] = ()) -> dict[str, float]:
    """One official step on the method's step inputs: the generator-side losses backward jointly and every
    optimiser not in `model.discriminators` steps, then (when the method trains a GAN) the discriminator losses
    and the discriminators' optimisers; optimisers named in `frozen` do not step. Returns the losses."""
    device_type = inputs[0].device.type
    autocast = torch.autocast(device_type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    with autocast:
        losses, outputs = model.generator_step(*inputs)
    total = sum(losses.values())
    if not torch.isfinite(total):
        raise AnimbenchError(f"training diverged: generator loss is {float(total)} "
                             f"({ {k: float(v) for k, v in losses.items()} })")
    generator_side = {n: o for n, o in optimizers.items() if not _is_discriminator_side(model, n, o)}
    discriminator_side = {n: o for n, o in optimizers.items() if _is_discriminator_side(model, n, o)}
    frozen = {n for n, o in optimizers.items() if set(_networks_of(n, o)) & set(frozen)}
    for optimizer in generator_side.values():
        optimizer.zero_grad(set_to_none=True)
    total.backward(retain_graph=model.retains_generator_graph)
    model.after_backward(outputs)
    for name, optimizer in generator_side.items():
        if name not in frozen:
            optimizer.step()
    values = {k: float(v.detach()) for k, v in losses.items()}
    if model.uses_gan and discriminator_side:
        for optimizer in discriminator_side.values():
            optimizer.zero_grad(set_to_none=True)  # drop what the generator's losses left there
        with autocast:
            d_losses = model.discriminator_step(*inputs, outputs)
        if d_losses:
            sum(d_losses.values()).backward()
            for name, optimizer in discriminator_side.items():
                if name not in frozen:
                    optimizer.step()
            values.update({k: float(v.detach()) for k, v in d_losses.items()})
    return values


def linear_decay(niter: int, niter_decay: int):
    """pix2pixHD's learning-rate factor of 0-based epoch e: 1 for the first niter + 1 epochs, then down by
    1 / niter_decay per epoch (its update_learning_rate runs after every epoch past niter), 0 after the last."""

    def factor(epoch: int) -> float:
        return max(0.0, 1.0 - max(0, epoch - niter) / niter_decay)

    return factor


def make_schedulers(optimizers: Mapping[str, torch.optim.Optimizer], cfg: Mapping[str, Any]
                    ) -> tuple[dict[str, torch.optim.lr_scheduler.LRScheduler], dict[str, Any]]:
    """Per-epoch schedulers of the config and their description: pix2pixHD's constant-then-linear decay when
    train_params.niter_decay is set, else MultiStepLR (gamma 0.1 at epoch_milestones)."""
    tp = cfg.get("train_params") or {}
    where = cfg.get("_meta", {}).get("path") or "<config>"
    milestones = list(tp.get("epoch_milestones") or [])
    if tp.get("niter_decay") is None:
        return ({n: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=0.1) for n, o in optimizers.items()},
                {"kind": "multistep", "epoch_milestones": milestones, "gamma": 0.1})
    niter, decay = tp.get("niter"), tp.get("niter_decay")
    for key, value in (("niter", niter), ("niter_decay", decay)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "niter_decay" else 0):
            raise AnimbenchError(f"{where}: train_params.{key}: expected a whole number of epochs"
                                 f"{' >= 1' if key == 'niter_decay' else ''}, got {value!r}")
    if milestones:
        raise AnimbenchError(f"{where}: train_params: epoch_milestones and niter_decay both set; a run has one "
                             "schedule (milestones, or pix2pixHD's constant-then-linear decay)")
    return ({n: torch.optim.lr_scheduler.LambdaLR(o, linear_decay(niter, decay)) for n, o in optimizers.items()},
            {"kind": "linear_decay", "niter": niter, "niter_decay": decay})


class ShardedEpochOrder(Sampler[int]):
    """DistributedSampler's contract, resumable: a (seed, epoch) permutation padded to equal shards, from `skip`."""

    def __init__(self, length: int, rank: int, world_size: int, seed: int, epoch: int, skip: int = 0):
        order = np.random.default_rng([seed, epoch, 0xE90C]).permutation(length)
        per_rank = -(-length // world_size)
        order = np.resize(order, per_rank * world_size)  # pad by wrapping, as DistributedSampler
        self.indices = order[rank::world_size][skip:].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The global torch seed of one step of one rank."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0] >> 1)


def find_last_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of a run directory (last-checkpoint link, else the highest epoch), or None."""
    out = Path(out_dir)
    if (out / LAST_CHECKPOINT).is_file():
        return out / LAST_CHECKPOINT
    found = sorted(p for p in out.glob("*-checkpoint.pth.tar") if p.name[:8].isdigit())
    return found[-1] if found else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", path)


def _link_last(out: Path, target: Path) -> None:
    with atomic_path(out / LAST_CHECKPOINT) as tmp:
        try:
            os.link(target, tmp)
        except OSError:  # no hard links on this filesystem: a copy
            import shutil

            shutil.copyfile(target, tmp)


def _params_sha256(nets: Mapping[str, nn.Module]) -> str:
    h = hashlib.sha256()
    for net in nets.values():  # in the method's network order
        for p in net.parameters():
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _scheduler_state(s: torch.optim.lr_scheduler.LRScheduler) -> dict:
    state = s.state_dict()
    if "milestones" in state:  # MultiStepLR's Counter: not weights_only
        state["milestones"] = {int(k): int(v) for k, v in state["milestones"].items()}
    if "lr_lambdas" in state:  # LambdaLR: the factor is rebuilt from the config, only its position is state
        state["lr_lambdas"] = [None] * len(state["lr_lambdas"])
    return state


def _restore_scheduler(s: torch.optim.lr_scheduler.LRScheduler, saved: Mapping[str, Any]) -> None:
    state = dict(saved)
    if "milestones" in state:
        state["milestones"] = Counter(state["milestones"])
    s.load_state_dict(state)  # LambdaLR: lr_lambdas saved as None, so the factor built from the config stays


def _write_official_files(out: Path, files: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, str]:
    """Each official file (name -> state_dict) written atomically into the run folder; name -> sha256."""
    written = {}
    for name, state in files.items():
        path = safe_join(out, name)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save({k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in state.items()}, f)
            f.flush()
            os.fsync(f.fileno())
        written[name] = sha256_file(path)
    return written


@contextmanager
def _unwrapped(model: Method, nets: Mapping[str, nn.Module]) -> Iterator[Method]:
    """The model with its plain networks (not their DDP wrappers), for the hooks that read state_dicts."""
    wrapped = {name: getattr(model, name) for name in nets}
    for name, net in nets.items():
        setattr(model, name, net)
    try:
        yield model
    finally:
        for name, net in wrapped.items():
            setattr(model, name, net)


def _prune_checkpoints(out: Path, keep: int, names: list[str]) -> list[str]:
    """Delete all but the `keep` newest epoch checkpoints of a run (last-checkpoint links the newest)."""
    found = sorted(p for p in out.glob("*-checkpoint.pth.tar") if p.name[:8].isdigit())
    for old in found[:-keep]:
        old.unlink()
    gone = {p.name for p in found[:-keep]}
    return [n for n in names if n not in gone]


def _check_counts(**flags: int | None) -> None:
    """The counts a user passes (`--batch-size`, `--max-steps`, ...): one-line errors naming the flag, before any
    work (a zero batch size used to end in a ZeroDivisionError traceback)."""
    for name, value in flags.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        least = 0 if name == "workers" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            expected = "zero or more worker processes" if least == 0 else "a positive whole number"
            raise AnimbenchError(f"{flag} {value!r}: expected {expected}")


def train(
    method: str,
    store: str | os.PathLike | FrameStore,
    config: str | os.PathLike | Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    epochs: int | None = None,
    num_repeats: int | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    amp: str | bool = "auto",
    resume: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    log_every: int = 10,
    align_corners: bool | None = None,
    keep_checkpoints: int | None = None,
    progress: bool = True,
    init_from: str | os.PathLike | None = None,
    stage: str | None = None,
) -> dict[str, Any]:
    """Train a registered method on a store's train split; returns the run summary (also written to run.json).

    keep_checkpoints: keep only the N newest epoch checkpoints (None: every one, as the official code).
    progress: a step N of M bar with ETA on stderr (rank 0); the loss log lines go to stdout either way.
    init_from: a checkpoint (or official checkpoint folder) whose matching weights start this run
    (model.load_pretrained; not re-applied on resume, the run's own checkpoint holds them).
    stage: the training stage (one of the method's `stages`; None: `model.training_stage(cfg)`), e.g. MRAA's
    "avd" started --init-from its main run; the method's `stage_config` gives the schedule it trains with.
    """
    t_start = time.perf_counter()
    _check_counts(epochs=epochs, repeats=num_repeats, max_steps=max_steps, batch_size=batch_size,
                  workers=num_workers)
    card = get_method(method)
    if not card.trainable:
        raise AnimbenchError(f"method {method}: not trainable (a reference baseline)")
    if keep_checkpoints is not None and (isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int)
                                         or keep_checkpoints < 1):
        raise AnimbenchError(f"keep_checkpoints: expected a positive number of checkpoints, got {keep_checkpoints!r}")
    cfg = load_config(config, method=method)
    owner = getattr(card.build, "__self__", None)
    fixed = getattr(owner, "grid_convention", None) if isinstance(owner, type) else None
    if fixed is not None and align_corners is not None and bool(align_corners) != fixed:
        raise AnimbenchError(f"--align-corners {str(bool(align_corners)).lower()}: method {method} runs with "
                             f"align_corners={str(fixed).lower()}, the convention its official weights need")
    align = (DEFAULT_ALIGN_CORNERS if fixed is None else fixed) if align_corners is None else bool(align_corners)
    torch.manual_seed(seed)
    model = card.build(cfg, align)
    stage = model.training_stage(cfg) if stage is None else stage
    if stage not in model.stages:
        raise AnimbenchError(f"--stage {stage}: method {method} has the training stages {list(model.stages)}")
    model.set_training_stage(stage)
    stage_cfg = model.stage_config(cfg, stage)
    tp = stage_cfg["train_params"]
    default_epochs = tp.get("num_epochs")
    if default_epochs is None and tp.get("niter_decay") is not None:  # pix2pixHD's: niter + niter_decay
        default_epochs = int(tp.get("niter") or 0) + int(tp["niter_decay"])
    for key, given, known in (("num_epochs", epochs, default_epochs), ("batch_size", batch_size, tp.get("batch_size"))):
        if given is None and known is None:
            raise AnimbenchError(f"{cfg['_meta']['path'] or '<config>'}: train_params.{key} missing")
    num_epochs = int(epochs if epochs is not None else default_epochs)
    repeats = int(num_repeats if num_repeats is not None else tp.get("num_repeats", 1))
    global_batch = int(batch_size if batch_size is not None else tp["batch_size"])
    for key, value in (("num_epochs", num_epochs), ("num_repeats", repeats), ("batch_size", global_batch)):
        if value < 1:  # from the config (the flags were checked above)
            raise AnimbenchError(f"{cfg['_meta']['path'] or '<config>'}: train_params.{key}: expected a positive "
                                 f"whole number, got {value}")
    dev = _pick_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist_info = init_distributed(dev)
    rank, world = dist_info.rank, dist_info.world_size
    if global_batch % world:
        raise AnimbenchError(f"batch size {global_batch} is not divisible by the {world} processes")
    per_rank_batch = global_batch // world
    amp_dtype = _amp_dtype(amp, dev)
    out = Path(out_dir)
    store = store if isinstance(store, FrameStore) else FrameStore(store)

    # --- model, optimisers, schedulers ---
    model = model.to(dev)
    nets = {name: getattr(model, name) for name in model.networks}
    optimizers = make_optimizers(model, cfg, stage=stage)
    schedulers, schedule = make_schedulers(optimizers, stage_cfg)
    backends = model.training_backends()  # e.g. a perceptual network: fails early when its weights are missing

    # --- resume ---
    start_epoch, skip_steps, step, resumed_from = 0, 0, 0, None
    last = find_last_checkpoint(out) if out.is_dir() else None
    if last is not None and not resume:
        raise AnimbenchError(f"{out}: already holds checkpoints ({last.name}); pass --resume to continue that "
                             "run or choose another --out")
    if last is not None:
        previous = json.loads((out / RUN_FILE).read_text()) if (out / RUN_FILE).is_file() else {}
        for key, now in (("method", method), ("config_sha256", cfg["_meta"]["sha256"]),
                         ("store_fingerprint", store.fingerprint), ("stage", stage)):
            if previous.get(key, now) != now:
                raise AnimbenchError(f"{out}/{RUN_FILE}: {key} {previous[key]!r} differs from this run's {now!r}; "
                                     "resume with the same method, config and store")
        ckpt = model.read_checkpoint(last)
        load_into(model, ckpt, strict=True)
        for name, opt in optimizers.items():
            if f"optimizer_{name}" in ckpt:
                opt.load_state_dict(ckpt[f"optimizer_{name}"])
        state = ckpt.get("animbench") or {}
        for name, s in schedulers.items():
            if name in state.get("schedulers", {}):
                _restore_scheduler(s, state["schedulers"][name])
        start_epoch = int(state.get("next_epoch", int(ckpt["epoch"]) + 1))
        skip_steps, step = int(state.get("epoch_step", 0)), int(state.get("step", 0))
        resumed_from = {"checkpoint": str(last), "epoch": start_epoch, "epoch_step": skip_steps, "step": step}
        init_record = previous.get("init_from")
    elif init_from is not None:
        init_record = {"path": str(init_from), "sha256": checkpoint_sha256(init_from),
                       "loaded": model.load_pretrained(init_from)}
    else:
        init_record = None

    # --- data ---
    transform = make_transform(cfg)
    dataset = model.training_dataset(store, cfg, num_repeats=repeats, seed=seed, transform=transform)
    if resumed_from is None:
        model.prepare_training(dataset)  # e.g. a fine-tuning run's identity embedding, from the loaded weights

    if dev.type == "cuda" and world > 1:
        for name in model.networks:
            setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(getattr(model, name)))
        nets = {name: getattr(model, name) for name in model.networks}
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        for name in model.networks:
            setattr(model, name, DDP(nets[name], device_ids=[dev.index] if dev.type == "cuda" else None))
    model.train()

    steps_per_epoch = len(ShardedEpochOrder(len(dataset), rank, world, seed, 0)) // per_rank_batch
    if steps_per_epoch == 0:
        raise AnimbenchError(f"store {store.root}: {len(dataset)} training samples per epoch, fewer than the batch "
                             f"size {global_batch}; lower --batch-size or raise --repeats")
    freq = tp.get("checkpoint_freq") or get_path(stage_cfg, "train_params.log_params.cpk_freq_epoch", None)

    summary: dict[str, Any] = {
        "status": "running", "method": method, "paper": card.paper,
        "config": {"path": cfg["_meta"]["path"], "sha256": cfg["_meta"]["sha256"],
                   "content": {k: v for k, v in cfg.items() if k != "_meta"}},
        "config_sha256": cfg["_meta"]["sha256"],
        "store": {"path": str(store.root), "fingerprint": store.fingerprint, "split": "train",
                  "num_videos": len(getattr(dataset, "videos", None) or store.videos("train")),
                  "items_per_epoch": len(dataset)},
        "store_fingerprint": store.fingerprint,
        "seed": seed, "device": str(dev), "amp": {"requested": str(amp), "dtype": None if amp_dtype is None
                                                  else str(amp_dtype).removeprefix("torch.")},
        "align_corners": align,
        "perceptual_loss": backends,
        "augmentation": transform.describe(),
        "stage": stage, "networks": list(model.networks),
        "frozen_networks": sorted(set(model.networks) - {n for k, o in optimizers.items() for n in _networks_of(k, o)}),
        "optimizers": {k: {"kind": type(o).__name__, "networks": list(_networks_of(k, o))} for k, o in optimizers.items()},
        "init_from": init_record,
        "schedule": {"epochs": num_epochs, "num_repeats": repeats, "max_steps": max_steps,
                     "batch_size": global_batch, "batch_size_per_rank": per_rank_batch,
                     "steps_per_epoch": steps_per_epoch, "epoch_milestones": schedule.get("epoch_milestones", []),
                     "lr_schedule": schedule, "checkpoint_freq": freq, "keep_checkpoints": keep_checkpoints,
                     "learning_rates": model.learning_rates(cfg, stage)},
        "official_files": {},
        "ddp": {"world_size": world, "backend": dist_info.backend,
                "sync_batchnorm": dev.type == "cuda" and world > 1},
        "resumed_from": resumed_from, "package_versions": package_versions(), "checkpoints": [],
    }
    if resumed_from is not None and (out / RUN_FILE).is_file():  # keep the earlier sessions' checkpoint list
        summary["checkpoints"] = list(json.loads((out / RUN_FILE).read_text()).get("checkpoints", []))
    writer = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / RUN_FILE, summary)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=step if resumed_from else None)

    def save(epoch: int, next_epoch: int, epoch_step: int) -> None:
        if rank != 0:
            return
        path = out / (CHECKPOINT_NAME % epoch)
        with _unwrapped(model, nets):
            extra = {**model.checkpoint_entries(step), **model.epoch_entries(epoch)}  # the family's own entries
            official = model.official_files()
        extra["animbench"] = {"step": step, "next_epoch": next_epoch, "epoch_step": epoch_step, "seed": seed,
                              "schedulers": {n: _scheduler_state(s) for n, s in schedulers.items()}}
        save_checkpoint(path, nn.ModuleDict(nets), optimizers, epoch, extra, optimizer_names=optimizers)
        _link_last(out, path)
        summary["official_files"] = _write_official_files(out, official)
        if path.name not in summary["checkpoints"]:
            summary["checkpoints"].append(path.name)
        summary["last_checkpoint"] = path.name
        if keep_checkpoints is not None:
            summary["checkpoints"] = _prune_checkpoints(out, keep_checkpoints, summary["checkpoints"])

    recent: list[dict[str, float]] = []
    t_loop, steps_run, stopped = time.perf_counter(), 0, False
    epoch = start_epoch
    total_steps = num_epochs * steps_per_epoch if max_steps is None else min(max_steps, num_epochs * steps_per_epoch)
    bar = progress_bar(max(total_steps, step), f"train {method}", "step", enabled=progress and rank == 0,
                       initial=step)
    log = getattr(bar, "write", None)  # tqdm's: prints above the bar instead of through it
    for epoch in range(start_epoch, num_epochs):
        if max_steps is not None and step >= max_steps:
            break  # resumed a run that already reached its budget
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        order = ShardedEpochOrder(len(dataset), rank, world, seed, epoch, skip=skip_steps * per_rank_batch)
        loader = DataLoader(dataset, batch_size=per_rank_batch, sampler=order, num_workers=num_workers,
                            drop_last=True, pin_memory=dev.type == "cuda")
        epoch_step = skip_steps
        skip_steps = 0
        frozen = model.frozen_networks(cfg, epoch)
        for batch in loader:
            torch.manual_seed(step_seed(seed, rank, step))
            inputs = tuple(t.to(dev, non_blocking=True) for t in model.step_inputs(batch))
            values = train_batch(model, optimizers, inputs, amp_dtype, frozen=frozen)
            step += 1
            with _unwrapped(model, nets):
                model.after_step(step)
            epoch_step += 1
            steps_run += 1
            bar.update(1)
            bar.set_postfix_str(f"epoch {epoch}", refresh=False)
            recent = (recent + [values])[-max(1, log_every):]
            if writer is not None:
                for k, v in values.items():
                    writer.add_scalar(f"loss/{k}", v, step)
                if log_every and step % log_every == 0:
                    rate = steps_run / (time.perf_counter() - t_loop)
                    line = (f"[{method}] epoch {epoch} step {step}: "
                            + " ".join(f"{k}={v:.4f}" for k, v in values.items()) + f" ({rate:.2f} steps/s)")
                    if log is not None:
                        log(line, file=sys.stdout)
                        sys.stdout.flush()
                    else:
                        print(line, flush=True)
            if max_steps is not None and step >= max_steps:
                stopped = True
                break
        if stopped and epoch_step < steps_per_epoch:
            save(epoch, epoch, epoch_step)  # mid-epoch: resume continues inside this epoch
            break
        for name, s in schedulers.items():
            # an untrained discriminator's schedule stays put
            if not _is_discriminator_side(model, name, optimizers[name]) or model.uses_gan:
                s.step()
        if writer is not None:
            for name, optimizer in optimizers.items():
                writer.add_scalar(f"lr/{name}", optimizer.param_groups[0]["lr"], step)
        if stopped or epoch + 1 == num_epochs or (freq and (epoch + 1) % int(freq) == 0):
            save(epoch, epoch + 1, 0)
        if stopped:
            break

    bar.close()
    digests = [_params_sha256(nets)]
    if world > 1:
        digests = [None] * world
        dist.all_gather_object(digests, _params_sha256(nets))
    loop_s = time.perf_counter() - t_loop
    summary.update(
        status="complete", steps=step, steps_this_run=steps_run, last_epoch=epoch,
        final_losses={k: float(np.mean([r[k] for r in recent])) for k in (recent[-1] if recent else {})},
        final_losses_window=len(recent), wall_s=round(time.perf_counter() - t_start, 3),
        train_loop_s=round(loop_s, 3), steps_per_s=round(steps_run / loop_s, 4) if loop_s > 0 else None,
    )
    summary["ddp"].update(replica_param_sha256=digests, replicas_equal=len(set(digests)) == 1)
    if writer is not None:
        writer.close()
    if rank == 0:
        _write_json(out / RUN_FILE, summary)
    if dist_info.initialised_here:
        dist.destroy_process_group()
    return summary
