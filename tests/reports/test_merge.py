"""Several results directories read as one leaderboard (reports.merge), and the CLI that takes several."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from animbench.cli import main
from bench import results as R
from plumbing.errors import AnimbenchError
from plumbing.provenance import package_versions
from reports import tables
from reports.merge import load_results

VERSIONS = package_versions()
VID = R.versions_id(VERSIONS)
HIB = {"l1": False, "psnr": True, "aed_face": False}


def frame_rows(method: str, metric: str, per_video: dict[str, list[float | None]], *,
               store: str = "f" * 64) -> pd.DataFrame:
    """Hand-made per-frame rows; None marks a skipped frame (no detection)."""
    out = []
    for video, values in per_video.items():
        for t, v in enumerate(values):
            out.append({
                "method": method, "video_id": video, "frame_index": t, "source_video": video, "source_frame": 0,
                "driving_video": video, "metric": metric, "value": math.nan if v is None else v,
                "skipped": v is None, "method_name": method, "checkpoint_sha256": "none", "config_path": "",
                "config_sha256": "none", "store_fingerprint": store, "split": "test", "metric_backend": "numpy",
                "metric_weights_sha256": "none", "protocol": "reconstruction", "protocol_variant": "legacy",
                "quantisation": "floor(255*pred)", "versions_id": VID,
            })
    return pd.DataFrame(out)


def make_results(root, methods: dict[str, float], *, n_videos: int = 6, metrics=("l1",), store: str = "f" * 64,
                 protocol: str = "reconstruction", store_path: str = "", seed: int = 0,
                 skip: dict[str, int] | None = None, videos: list[str] | None = None) -> R.Results:
    """A results directory: each method scores `level + noise` on n videos of 4 frames (skip: method -> how many
    of its first video's frames have no detection)."""
    rng = np.random.default_rng(seed)
    parts = []
    videos = videos or [f"vid{i}" for i in range(n_videos)]
    for method, level in methods.items():
        for metric in metrics:
            per_video = {}
            for i, v in enumerate(videos):
                vals: list[float | None] = list(level + 0.01 * i + 0.001 * rng.random(4))
                if i == 0 and skip and method in skip:
                    vals[:skip[method]] = [None] * skip[method]
                per_video[v] = vals
            parts.append(frame_rows(method, metric, per_video, store=store))
    out = R.prepare_results_dir(root)
    run = {"method_order": list(methods), "metric_order": list(metrics),
           "protocol": {"name": protocol, "variant": "legacy", "quantisation": "floor(255*pred)"},
           "store": {"fingerprint": store, "split": "test", "videos": n_videos, "path": store_path},
           "metrics": {m: {"describe": {"backend": "numpy 2.0", "weights": []}} for m in metrics}}
    R.write_results(out, pd.concat(parts, ignore_index=True), run=run, versions={VID: VERSIONS},
                    higher_is_better=HIB, n_boot=200)
    return R.Results(out)


def test_two_runs_merge_into_one_table_whose_rows_name_their_run(tmp_path):
    make_results(tmp_path / "r1", {"fomm": 0.10, "copy-source": 0.20})
    make_results(tmp_path / "r2", {"monkey_net": 0.15}, seed=1)
    merged = load_results([tmp_path / "r1", tmp_path / "r2"])
    assert merged.methods == ["fomm", "copy-source", "monkey_net"]
    lb = merged.leaderboard("frame")
    assert dict(zip(lb["method"], lb["run"], strict=True)) == {"fomm": "r1", "copy-source": "r1", "monkey_net": "r2"}
    md = tables.to_markdown(merged, "frame")
    header = md.splitlines()[0]
    assert header.startswith("| method | run | n |") and md.count("| l1 (") == 1  # one table
    assert "| monkey\\_net | r2 | 6 |" in md and "| fomm | r1 | 6 | **" in md
    # paired comparisons span the runs: the videos are the same store's
    c = merged.comparisons()
    pair = c[(c["method_a"] == "fomm") & (c["method_b"] == "monkey_net") & (c["weighting"] == "frame")].iloc[0]
    assert pair["better"] == "fomm" and pair["n_videos"] == 6 and pair["run"] == "r1 vs r2"
    assert merged.run_of("monkey_net") == "r2" and [r.label for r in merged.runs] == ["r1", "r2"]


def test_a_label_in_two_runs_is_qualified_by_its_run(tmp_path):
    make_results(tmp_path / "a" / "res", {"fomm": 0.10})
    make_results(tmp_path / "b" / "res", {"fomm": 0.12}, seed=2)
    merged = load_results([tmp_path / "a" / "res", tmp_path / "b" / "res"])
    assert merged.methods == ["fomm@a/res", "fomm@b/res"]
    assert merged.manifest["run"]["methods"] == {} or set(merged.manifest["run"]["methods"]) <= set(merged.methods)
    a = merged.aggregates()
    assert set(a["method"]) == {"fomm@a/res", "fomm@b/res"} and set(a["run"]) == {"a/res", "b/res"}


def test_runs_on_different_stores_are_refused_naming_the_field(tmp_path):
    make_results(tmp_path / "r1", {"fomm": 0.10})
    make_results(tmp_path / "r2", {"fomm": 0.10}, store="e" * 64)
    with pytest.raises(AnimbenchError, match=r"store fingerprint e{64} differs from .*r1 \(f{64}\)") as exc:
        load_results([tmp_path / "r1", tmp_path / "r2"])
    assert "\n" not in str(exc.value) and "--allow-mixed" in str(exc.value)
    make_results(tmp_path / "r3", {"fomm": 0.10}, protocol="animation")
    with pytest.raises(AnimbenchError, match="protocol animation differs"):
        load_results([tmp_path / "r1", tmp_path / "r3"])


def test_allow_mixed_merges_with_run_labels_and_keeps_comparisons_within_runs(tmp_path):
    make_results(tmp_path / "r1", {"fomm": 0.10, "copy-source": 0.2})
    make_results(tmp_path / "r2", {"monkey_net": 0.10, "oracle": 0.0}, store="e" * 64)
    merged = load_results([tmp_path / "r1", tmp_path / "r2"], allow_mixed=True)
    assert merged.mixed
    c = merged.comparisons()
    pairs = {frozenset((a, b)) for a, b in zip(c["method_a"], c["method_b"], strict=True)}
    assert pairs == {frozenset(("fomm", "copy-source")), frozenset(("monkey_net", "oracle"))}
    md = tables.to_markdown(merged, "frame")
    assert "Run r1:" in md and "Run r2:" in md and "compare rows of different runs with care" in md


def test_the_cli_takes_several_directories_and_refuses_mismatches_with_exit_2(tmp_path, capsys):
    make_results(tmp_path / "r1", {"fomm": 0.10})
    make_results(tmp_path / "r2", {"oracle": 0.0}, store="e" * 64)
    assert main(["leaderboard", str(tmp_path / "r1"), str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "store fingerprint" in err and len(err.strip().splitlines()) == 1
    assert main(["leaderboard", str(tmp_path / "r1"), str(tmp_path / "r2"), "--allow-mixed"]) == 0
    assert "| oracle | r2 |" in capsys.readouterr().out
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "r1"), str(tmp_path / "r2"), "--allow-mixed", "--out", str(out),
                 "--formats", "md,csv,tex"]) == 0
    csv = pd.read_csv(out / "leaderboard.csv")
    assert list(csv["run"]) == ["r1", "r2"]


def test_one_directory_is_a_merge_of_one_with_labels_unchanged(tmp_path):
    res = make_results(tmp_path / "r1", {"fomm": 0.10, "oracle": 0.0})
    merged = load_results(tmp_path / "r1")
    assert merged.methods == res.methods
    pd.testing.assert_frame_equal(merged.aggregates().drop(columns="run"), res.aggregates())
    pd.testing.assert_frame_equal(merged.comparisons().drop(columns="run"), res.comparisons())


def test_coverage_comes_from_the_test_clips_the_store_planned(tmp_path):
    """A store prepared from official metadata records its planned test clips (prep.pipeline.plan_by_split), the
    bench copies them into the results: the leaderboard counts the scored ones and lists the missing, no csv
    needed."""
    from prep.pipeline import plan_by_split
    from prep.recipes import Clip, Unit

    def clip(name: str, split: str) -> Clip:
        return Clip(video_id=name, split=split, person_id=None, start=0, end=4, ref_fps=25.0, bbox=None,
                    ref_size=(64, 64))

    units = [Unit(key="vox/a", source="a.mp4", clips=(clip("vid0", "test"), clip("vid1", "test"))),
             Unit(key="vox/b", source="b.mp4", clips=(clip("gone", "test"), clip("t0", "train")))]
    plan = plan_by_split(units)
    assert plan["test"]["clips"] == ["gone", "vid0", "vid1"] and "clips" not in plan["train"]
    assert plan["train"]["num_clips"] == 1 and len(plan["test"]["sha256"]) == 64
    res = make_results(tmp_path / "r", {"copy-source": 0.1}, videos=["vid0", "vid1"], n_videos=2)
    manifest = res.root / "manifest.json"
    data = json.loads(manifest.read_text())
    data["run"]["store"].update(recipe="vox", plan=plan["test"])
    manifest.write_text(json.dumps(data))
    cov = load_results(tmp_path / "r").coverage()
    assert cov.summary().startswith("2 of 3 VoxCeleb test clips; 1 unavailable") and cov.missing == ["gone"]
    assert cov.fingerprint == plan["test"]["sha256"]
