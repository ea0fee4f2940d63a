"""Several results directories read as one: the leaderboard of several runs, each row naming the run it came from.

`load_results(dirs, allow_mixed=False)` is the one entry point the reports use (tables, HTML, plots, compare).
It returns a `MergedResults`, which has the interface of `bench.results.Results`, so every renderer takes
either:

    root                 Path of the first directory (roots: all of them, in the order given)
    manifest             a merged manifest: the first run's, with run.methods / run.method_order /
                         run.metric_order / run.metrics covering every run (method labels as below), plus
                         manifest["runs"]: [{"run": label, "root": str, "manifest": that run's own manifest}]
    frames(), videos(), aggregates(), comparisons()
                         the tables of every run concatenated, each with an extra column `run` (the run label);
                         comparisons are recomputed over the merged per-video rows when the runs share store,
                         split and protocol (paired over the videos both methods scored), otherwise (allow_mixed)
                         only the pairs within one run are kept
    methods, metrics     labels in run order (first run's methods first)
    leaderboard(by)      as Results.leaderboard, rows from every run (column `run` included)
    sample_frames(method, video_id), sample_videos()
                         sample PNGs, looked up in the run the method label belongs to
    runs                 list of RunInfo(label, root, manifest)
    run_of(method)       the run label of a method label
    coverage()           bench.results.Coverage of the test list or None (see bench.results.coverage)
    mixed                True when allow_mixed merged runs whose store/split/protocol differ

Method labels: a label that appears in one run only is kept as is; a label that appears in several runs becomes
`label@run` in every one of them (e.g. `fomm@r1`, `fomm@r2`), so no two rows share a label. Run labels are the
directory names, made unique by prefixing parent folders when two directories share a name.

Merging refuses (one-line AnimbenchError naming the differing field, the two values and both directories)
when the runs differ in store fingerprint (`run.store.fingerprint`), split (`run.store.split`), protocol
(`run.protocol.name`) or protocol variant (`run.protocol.variant`): their numbers are not comparable. With
allow_mixed=True they merge anyway and `mixed` is True; the tables then show the run column and the footnotes
name each run's store, split and protocol. A single directory gives a MergedResults of one run (labels
unchanged), so callers need only this one path.
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results import (
    DATASET_NAMES,
    POOLINGS,
    Coverage,
    Results,
    compare_methods,
    coverage,
    coverage_of,
    leaderboard_of,
)
from plumbing.errors import AnimbenchError

# (what a message calls it, where it is in manifest["run"]): runs that differ in one of these do not compare
MERGE_FIELDS = (("store fingerprint", ("store", "fingerprint")), ("split", ("store", "split")),
                ("protocol", ("protocol", "name")), ("protocol variant", ("protocol", "variant")))


@dataclass(frozen=True)
class RunInfo:
    """One results directory of a merge: its label (the `run` column), root and own manifest."""

    label: str
    root: Path
    manifest: dict[str, Any]


def _field(manifest: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = manifest.get("run", {})
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def run_labels(roots: list[Path]) -> list[str]:
    """Directory names, with parent folders prefixed until they are unique (an index as the last resort)."""
    parts = [Path(os.path.abspath(r)).parts for r in roots]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{p[-1]}#{i + 1}" for i, p in enumerate(parts)]


class MergedResults:
    """Several results directories as one Results-like object (see the module docstring)."""

    def __init__(self, dirs: list[str | os.PathLike], allow_mixed: bool = False,
                 official_list: str | os.PathLike | None = None) -> None:
        if not dirs:
            raise AnimbenchError("results: give at least one results directory")
        self.roots = [Path(d) for d in dirs]
        if len({os.path.realpath(r) for r in self.roots}) < len(self.roots):
            raise AnimbenchError("results: the same directory is given twice")
        self.root = self.roots[0]
        self._parts = [Results(r) for r in self.roots]
        self.runs = [RunInfo(label, r.root, r.manifest)
                     for label, r in zip(run_labels(self.roots), self._parts, strict=True)]
        self.mixed = False
        first = self.runs[0]
        for run in self.runs[1:]:
            for name, path in MERGE_FIELDS:
                a, b = _field(first.manifest, path), _field(run.manifest, path)
                if a != b:
                    if not allow_mixed:
                        raise AnimbenchError(
                            f"results {run.root}: {name} {b} differs from {first.root} ({a}); their numbers do "
                            "not compare (pass --allow-mixed to merge them anyway, rows labelled by run)")
                    self.mixed = True
        labels_by_run = [list(dict.fromkeys(p.methods + sorted(set(p.aggregates()["method"]))))
                         for p in self._parts]
        counts = Counter(m for labels in labels_by_run for m in labels)
        # per run: original label -> merged label; merged label -> (run index, original label)
        self._rename = [{m: (f"{m}@{run.label}" if counts[m] > 1 else m) for m in labels}
                        for run, labels in zip(self.runs, labels_by_run, strict=True)]
        self._origin = {new: (i, old) for i, ren in enumerate(self._rename) for old, new in ren.items()}
        self.official_list = official_list
        self._cache: dict[str, pd.DataFrame] = {}
        self.manifest = self._merged_manifest()

    # ------------------------------------------------------------------------------------------ manifest
    def _merged_manifest(self) -> dict[str, Any]:
        m = copy.deepcopy(self.runs[0].manifest)
        run = m.setdefault("run", {})
        methods, metrics, metric_order = {}, {}, []
        hib, pooling = {}, {}
        for i, r in enumerate(self.runs):
            rr = r.manifest.get("run", {})
            for old, info in rr.get("methods", {}).items():
                methods[self._rename[i].get(old, old)] = {**info, "run": r.label}
            for name, info in rr.get("metrics", {}).items():
                metrics.setdefault(name, info)
            metric_order += [k for k in self._parts[i].metrics if k not in metric_order]
            hib.update(r.manifest.get("higher_is_better", {}))
            pooling.update(r.manifest.get("pooling", {}))
        run["methods"] = methods
        run["metrics"] = metrics
        run["method_order"] = [self._rename[i][old] for i, p in enumerate(self._parts) for old in p.methods]
        run["metric_order"] = metric_order
        m["higher_is_better"] = hib
        m["pooling"] = pooling
        m["runs"] = [{"run": r.label, "root": str(r.root), "manifest": r.manifest} for r in self.runs]
        m["mixed"] = self.mixed
        return m

    # ------------------------------------------------------------------------------------------ tables
    def _concat(self, name: str) -> pd.DataFrame:
        if name not in self._cache:
            parts = []
            for i, (run, part) in enumerate(zip(self.runs, self._parts, strict=True)):
                df = getattr(part, name)()
                for col in ("method", "method_a", "method_b", "better"):
                    if col in df.columns:
                        df[col] = df[col].map(lambda v, ren=self._rename[i]: ren.get(v, v))
                df.insert(0, "run", run.label)
                parts.append(df)
            self._cache[name] = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        return self._cache[name].copy()

    def frames(self) -> pd.DataFrame:
        """Per-frame rows of every run (column `run`)."""
        return self._concat("frames")

    def videos(self) -> pd.DataFrame:
        """Per-video rows of every run (column `run`)."""
        return self._concat("videos")

    def aggregates(self) -> pd.DataFrame:
        """Per (method, metric, weighting) rows of every run, with their bootstrap CIs (column `run`)."""
        return self._concat("aggregates")

    def comparisons(self) -> pd.DataFrame:
        """Paired comparisons: across runs when they compare (recomputed), else within each run only."""
        if len(self.runs) == 1 or self.mixed:
            return self._concat("comparisons")
        if "comparisons_merged" not in self._cache:
            boot = self.manifest.get("bootstrap", {})
            names = {desc: key for key, desc in POOLINGS.items()}
            pooling = {k: names.get(v, "mean") for k, v in self.manifest.get("pooling", {}).items()}
            c = compare_methods(self.videos(), higher_is_better=self.manifest.get("higher_is_better", {}),
                                n_boot=int(boot.get("n_boot", 1000)), level=float(boot.get("ci_level", 0.95)),
                                seed=int(boot.get("seed", 0)), pooling=pooling)
            c.insert(0, "run", [self._pair_run(a, b) for a, b in zip(c["method_a"], c["method_b"], strict=True)])
            self._cache["comparisons_merged"] = c
        return self._cache["comparisons_merged"].copy()

    def _pair_run(self, a: str, b: str) -> str:
        ra, rb = self.run_of(a), self.run_of(b)
        return ra if ra == rb else f"{ra} vs {rb}"

    @property
    def methods(self) -> list[str]:
        """Method labels in run order (the first directory's first)."""
        return list(self.manifest["run"]["method_order"])

    @property
    def metrics(self) -> list[str]:
        """Metric names in run order."""
        return list(self.manifest["run"]["metric_order"])

    def run_of(self, method: str) -> str:
        """The label of the run a (merged) method label came from."""
        if method not in self._origin:
            raise AnimbenchError(f"results: no method {method!r} (known: {', '.join(self.methods)})")
        return self.runs[self._origin[method][0]].label

    def leaderboard(self, by: str = "frame") -> pd.DataFrame:
        """Aggregates of one weighting ('frame' or 'video'; set metrics always join), in run order."""
        return leaderboard_of(self.aggregates(), self.methods, self.metrics, by)

    # ------------------------------------------------------------------------------------------ samples
    def sample_frames(self, method: str, video_id: str) -> list[Path]:
        """Sample PNGs of a method ('_source' / '_driving': the first run that has them) and video."""
        if method.startswith("_"):
            for part in self._parts:
                found = part.sample_frames(method, video_id)
                if found:
                    return found
            return []
        i, old = self._origin.get(method, (0, method))
        return self._parts[i].sample_frames(old, video_id)

    def sample_file(self, method: str, video_id: str, name: str) -> Path:
        """The path a method's sample frame `name` (e.g. '0000003.png') has, whichever run it came from."""
        from bench.results import SAMPLES_DIR, sample_dir_name

        i, old = self._origin.get(method, (0, method)) if not method.startswith("_") else (0, method)
        return self._parts[i].root / SAMPLES_DIR / old / sample_dir_name(video_id) / name

    def sample_videos(self) -> list[str]:
        """Videos that have sample frames in any run."""
        return sorted({v for p in self._parts for v in p.sample_videos()})

    # ------------------------------------------------------------------------------------------ coverage
    def coverage(self) -> Coverage | None:
        """Coverage of the official test list: from `official_list`, else from the metadata csv the store's
        manifest records (when the store is reachable), else None."""
        metadata, recipe = self.official_list, None
        store = self.manifest.get("run", {}).get("store", {})
        store_manifest = Path(str(store.get("path", ""))) / "manifest.json"
        if store.get("path") and store_manifest.is_file():
            try:
                sm = json.loads(store_manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                sm = {}
            cfg = sm.get("config", {}) if isinstance(sm.get("config"), dict) else {}
            recipe = cfg.get("recipe")
            if metadata is None:
                metadata = cfg.get("metadata") or (cfg.get("config") or {}).get("metadata")
        present = set(self.videos()["video_id"])
        plan = store.get("plan") or {}
        if not metadata and plan.get("clips"):  # the test list the store's prep run planned (bench records it)
            recipe = store.get("recipe") or recipe
            dataset = DATASET_NAMES.get(str(recipe))
            source = f"the store's prep plan ({recipe} recipe)"
            return coverage_of(present, plan["clips"], str(store.get("split") or "test"),
                               dataset or f"planned {recipe or 'store'}", source)
        if not metadata:
            return None
        return coverage(present, metadata, str(store.get("split") or "test"),
                        DATASET_NAMES.get(str(recipe)) or _dataset_of_csv(metadata))


def _dataset_of_csv(metadata: str | os.PathLike) -> str | None:
    """'VoxCeleb' for the official vox-metadata.csv (and taichi likewise), so `--official-list` on a store whose
    recipe is unknown still names the dataset; None (the file name is used) for any other csv."""
    stem = Path(metadata).stem.lower()
    return next((name for key, name in DATASET_NAMES.items() if stem.startswith(key)), None)


def load_results(dirs: list[str | os.PathLike] | str | os.PathLike, allow_mixed: bool = False,
                 official_list: str | os.PathLike | None = None) -> MergedResults:
    """One or several results directories as one MergedResults (refuses runs that do not compare, unless
    allow_mixed); `official_list` is a metadata csv whose test partition the coverage line counts."""
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    return MergedResults(list(dirs), allow_mixed=allow_mixed, official_list=official_list)
