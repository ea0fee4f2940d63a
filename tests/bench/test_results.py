"""The results format: aggregation, bootstrap CIs, paired comparisons, and complete-or-nothing directories."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench import results as R
from plumbing.errors import AnimbenchError
from plumbing.provenance import package_versions

VERSIONS = package_versions()
VID = R.versions_id(VERSIONS)


def rows(method: str, metric: str, per_video: dict[str, list[float | None]]) -> pd.DataFrame:
    """Hand-made per-frame rows; None marks a skipped frame (e.g. AKD without a detection)."""
    out = []
    for video, values in per_video.items():
        for t, v in enumerate(values):
            out.append({
                "method": method, "video_id": video, "frame_index": t, "source_video": video, "source_frame": 0,
                "driving_video": video, "metric": metric, "value": math.nan if v is None else v,
                "skipped": v is None, "method_name": method, "checkpoint_sha256": "none", "config_path": "",
                "config_sha256": "none", "store_fingerprint": "f" * 64, "split": "test", "metric_backend": "numpy",
                "metric_weights_sha256": "none", "protocol": "reconstruction", "protocol_variant": "legacy",
                "quantisation": "floor(255*pred)", "versions_id": VID,
            })
    return pd.DataFrame(out)


def write(tmp_path, frames: pd.DataFrame, *, seed: int = 0, name: str = "res", hib=None) -> R.Results:
    out = R.prepare_results_dir(tmp_path / name)
    R.write_results(out, frames, run={"method_order": sorted(frames["method"].unique())},
                    versions={VID: VERSIONS}, higher_is_better=hib or {"l1": False, "psnr": True}, seed=seed,
                    n_boot=500)
    return R.Results(out)


def agg(res: R.Results, method: str, metric: str, weighting: str) -> pd.Series:
    a = res.aggregates()
    return a[(a["method"] == method) & (a["metric"] == metric) & (a["weighting"] == weighting)].iloc[0]


def test_frame_weighted_and_video_weighted_means_differ_as_the_papers_do(tmp_path):
    # a long video of 1s and a short one of 3s (plus one skipped frame): FOMM pools frames, Monkey-Net videos
    res = write(tmp_path, rows("m", "l1", {"long": [1, 1, 1, 1], "short": [3, None]}))
    frame, video = agg(res, "m", "l1", "frame"), agg(res, "m", "l1", "video")
    assert frame["mean"] == pytest.approx(7 / 5)
    assert video["mean"] == pytest.approx(2.0)
    assert (frame["n_frames"], frame["n_valid"], frame["n_skipped"], frame["n_videos"]) == (6, 5, 1, 2)
    v = res.videos().set_index("video_id")
    assert v.loc["short", "mean"] == 3 and v.loc["short", "n_skipped"] == 1 and v.loc["long", "n_frames"] == 4
    f = res.frames()
    assert f["skipped"].sum() == 1 and f.loc[f["skipped"], "value"].isna().all()


def test_a_video_with_every_frame_skipped_is_counted_but_enters_no_mean(tmp_path):
    res = write(tmp_path, rows("m", "l1", {"a": [2, 2], "b": [None, None]}))
    a = agg(res, "m", "l1", "video")
    assert a["mean"] == 2 and a["n_videos"] == 2 and a["n_videos_used"] == 1 and a["n_skipped"] == 2


def test_an_interval_does_not_depend_on_the_method_label_or_the_row_order(tmp_path):
    """One model on one store gives one interval whatever it is called and whichever methods ran beside it."""
    rng = np.random.default_rng(2)
    data = {f"v{i:02d}": list(rng.uniform(0, 1, size=4)) for i in range(12)}
    other = {k: [x + 0.1 for x in v] for k, v in data.items()}
    alone = write(tmp_path, rows("fomm", "l1", data), name="a")
    renamed = write(tmp_path, pd.concat([rows("other", "l1", other), rows("my-fomm", "l1", dict(reversed(
        list(data.items()))))]), name="b")
    for weighting in ("frame", "video"):
        a, b = agg(alone, "fomm", "l1", weighting), agg(renamed, "my-fomm", "l1", weighting)
        assert (a["mean"], a["ci_low"], a["ci_high"]) == (b["mean"], b["ci_low"], b["ci_high"])


def test_bootstrap_ci_contains_the_mean_and_is_seeded(tmp_path):
    rng = np.random.default_rng(1)
    data = {f"v{i:02d}": list(rng.uniform(0, 1, size=rng.integers(3, 9))) for i in range(20)}
    frames = rows("m", "l1", data)
    r1, r2 = write(tmp_path, frames, name="a"), write(tmp_path, frames, name="b")
    r3 = write(tmp_path, frames, name="c", seed=7)
    for weighting in ("frame", "video"):
        a = agg(r1, "m", "l1", weighting)
        assert a["ci_low"] < a["mean"] < a["ci_high"]
        assert a["ci_high"] - a["ci_low"] < 0.4  # 20 videos of U(0,1) frames: a CI of about +-0.1
        assert a.equals(agg(r2, "m", "l1", weighting))
        assert a["ci_low"] != agg(r3, "m", "l1", weighting)["ci_low"]  # the seed is what fixes it
    pd.testing.assert_frame_equal(r1.comparisons(), r2.comparisons())


def test_single_video_ci_collapses_to_the_mean():
    est, lo, hi = R.bootstrap_ci(np.array([6.0]), np.array([3.0]), "frame", rng=np.random.default_rng(0))
    assert est == lo == hi == 2.0


def test_paired_comparison_names_the_better_method_for_either_direction(tmp_path):
    rng = np.random.default_rng(0)
    vids = [f"v{i}" for i in range(12)]
    base = {v: list(rng.uniform(0.1, 0.2, 5)) for v in vids}
    good = {v: [x - 0.05 for x in base[v]] for v in vids}
    frames = pd.concat([rows("bad", "l1", base), rows("good", "l1", good),
                        rows("bad", "psnr", {v: [20.0] * 3 for v in vids}),
                        rows("good", "psnr", {v: [25.0 + i % 2] * 3 for i, v in enumerate(vids)})])
    comps = write(tmp_path, frames).comparisons().set_index(["metric", "weighting"])
    for weighting in ("frame", "video"):
        c = comps.loc[("l1", weighting)]
        assert (c["method_a"], c["method_b"]) == ("bad", "good")
        assert c["diff"] == pytest.approx(0.05) and c["ci_low"] > 0 and c["better"] == "good"
        assert c["p_boot"] == 0.0 and c["n_videos"] == 12
        p = comps.loc[("psnr", weighting)]
        assert p["diff"] < 0 and p["better"] == "good"


def test_paired_comparison_of_equal_methods_is_a_tie(tmp_path):
    data = {"a": [0.1, 0.2], "b": [0.3]}
    comps = write(tmp_path, pd.concat([rows("x", "l1", data), rows("y", "l1", data)])).comparisons()
    assert set(comps["better"]) == {"tie"} and set(comps["p_boot"]) == {1.0}


def test_paired_comparison_with_a_noisy_difference_is_not_confident():
    rng = np.random.default_rng(3)
    a = pd.DataFrame({"video_id": list("abcdefgh"), "metric": "l1", "sum": rng.normal(0, 1, 8), "n_valid": 1})
    b = a.assign(sum=rng.normal(0, 1, 8))
    c = R.paired_comparison(a, b, "video", higher_is_better=False, names=("a", "b"), rng=np.random.default_rng(0))
    assert c["ci_low"] < 0 < c["ci_high"] and c["p_boot"] > 0.05


def test_identical_frames_give_infinite_psnr_that_survives_aggregation(tmp_path):
    frames = pd.concat([rows("oracle", "psnr", {"a": [math.inf] * 3, "b": [math.inf]}),
                        rows("copy", "psnr", {"a": [20.0, 21, 22], "b": [30.0]})])
    res = write(tmp_path, frames)
    o = agg(res, "oracle", "psnr", "frame")
    assert o["mean"] == math.inf and o["ci_low"] == math.inf
    c = res.comparisons().iloc[0]
    assert c["better"] == "oracle" and c["p_boot"] == 0.0


def test_psnr_pools_mean_squared_errors_so_one_identical_frame_does_not_win(tmp_path):
    """Copy-source reproduces frame 0 exactly (PSNR at the cap) and is poor elsewhere; a method 5 dB better on
    every other frame must lead the board, and every number must be finite."""
    cap = R.PSNR_CAP_DB
    vids = [f"v{i}" for i in range(6)]
    frames = pd.concat([rows("copy-source", "psnr", {v: [cap, 20.0, 20.0, 20.0] for v in vids}),
                        rows("method", "psnr", {v: [30.0, 25.0, 25.0, 25.0] for v in vids}),
                        rows("oracle", "psnr", {v: [cap] * 4 for v in vids})])
    out = R.prepare_results_dir(tmp_path / "r")
    R.write_results(out, frames, run={"method_order": ["copy-source", "method", "oracle"]},
                    versions={VID: VERSIONS}, higher_is_better={"psnr": True}, pooling={"psnr": "psnr"}, n_boot=200)
    res = R.Results(out)
    a = res.aggregates()
    assert np.isfinite(a[["mean", "ci_low", "ci_high"]].to_numpy()).all()
    copy = agg(res, "copy-source", "psnr", "frame")["mean"]
    # PSNR of the mean squared error over the video: frame 0 adds an MSE of ~0, it does not add 100 dB
    assert copy == pytest.approx(10 * math.log10(1 / (3 * 10 ** -2 / 4)))
    assert agg(res, "method", "psnr", "frame")["mean"] > copy + 4
    assert agg(res, "oracle", "psnr", "video")["mean"] == pytest.approx(cap)
    v = res.videos()
    assert v.loc[v["method"] == "copy-source", "mean"].to_numpy() == pytest.approx(copy)
    c = res.comparisons()
    assert np.isfinite(c[["mean_a", "mean_b", "diff", "ci_low", "ci_high"]].to_numpy()).all()
    c = c.set_index(["method_a", "method_b", "weighting"])
    assert c.loc[("copy-source", "method", "frame"), "better"] == "method"
    assert res.manifest["pooling"]["psnr"].startswith("psnr")


def test_a_run_without_manifest_does_not_open(tmp_path):
    res = write(tmp_path, rows("m", "l1", {"a": [1.0]}))
    assert R.verify_results(res.root) == []
    (res.root / R.MANIFEST_FILE).unlink()  # what a run that died before its last write leaves
    with pytest.raises(AnimbenchError, match="manifest.json is missing"):
        R.Results(res.root)
    assert "missing" in R.verify_results(res.root)[0]


def test_a_table_changed_after_the_run_is_reported(tmp_path):
    res = write(tmp_path, rows("m", "l1", {"a": [1.0, 2.0]}))
    R._atomic_table(res.frames().iloc[:1], res.root / R.FRAMES_FILE)
    with pytest.raises(AnimbenchError, match="row count"):
        R.Results(res.root)
    assert any("frames.parquet" in p for p in R.verify_results(res.root))


def test_a_finished_run_is_not_overwritten_by_accident(tmp_path):
    res = write(tmp_path, rows("m", "l1", {"a": [1.0]}))
    with pytest.raises(AnimbenchError, match="not empty"):
        R.prepare_results_dir(res.root)
    out = R.prepare_results_dir(res.root, overwrite=True)
    assert not (out / R.MANIFEST_FILE).exists() and (out / R.SAMPLES_DIR).is_dir()


def test_rows_must_name_known_versions(tmp_path):
    out = R.prepare_results_dir(tmp_path / "r")
    with pytest.raises(ValueError, match="versions ids"):
        R.write_results(out, rows("m", "l1", {"a": [1.0]}), run={}, versions={}, higher_is_better={})
    assert not (out / R.MANIFEST_FILE).exists()


def test_leaderboard_orders_methods_as_the_run_listed_them(tmp_path):
    frames = pd.concat([rows("zeta", "l1", {"a": [0.1]}), rows("alpha", "l1", {"a": [0.2]})])
    out = R.prepare_results_dir(tmp_path / "r")
    R.write_results(out, frames, run={"method_order": ["zeta", "alpha"], "metric_order": ["l1"]},
                    versions={VID: VERSIONS}, higher_is_better={"l1": False})
    board = R.Results(out).leaderboard("video")
    assert list(board["method"]) == ["zeta", "alpha"] and set(board["weighting"]) == {"video"}
    with pytest.raises(AnimbenchError, match="--by"):
        R.Results(out).leaderboard("pixel")


def test_intervals_need_a_minimum_number_of_videos_and_p_boot_zero_reads_less_than_one_over_b():
    assert R.MIN_VIDEOS_FOR_CI == 5
    assert not R.interval_is_shown(4) and R.interval_is_shown(5)
    assert R.p_boot_text(0.0, 1000) == "< 1/1000"
    assert R.p_boot_text(0.0123, 1000) == "0.0123" and R.p_boot_text(math.nan, 1000) == "–"


def test_coverage_counts_an_official_partition_named_as_prep_names_clips(tmp_path):
    csv = tmp_path / "taichi-metadata.csv"
    csv.write_text("video_id,start,end,bbox,fps,width,height,partition\n"
                   "a,5,70,0-0-1-1,25,9,9,test\nb,0,64,0-0-1-1,25,9,9,test\nc,0,64,0-0-1-1,25,9,9,train\n")
    assert R.official_clip_ids(csv) == ["a#000005#000070", "b#000000#000064"]
    cov = R.coverage(["a#000005#000070", "elsewhere"], csv, "test", "TaiChi-HD")
    assert (cov.expected, cov.present, cov.missing) == (2, 1, ["b#000000#000064"])
    assert cov.summary().startswith("1 of 2 TaiChi-HD test clips; 1 unavailable (test list sha256 ")
    # the fingerprint is of the list, not of what was present
    assert R.coverage([], csv).fingerprint == cov.fingerprint


def test_a_bad_official_list_is_a_one_line_error_naming_it(tmp_path):
    bad = tmp_path / "list.csv"
    bad.write_text("name,split\nx,test\n")
    with pytest.raises(AnimbenchError, match=r"official list .*list.csv: expected a metadata csv with columns"):
        R.official_clip_ids(bad)
    with pytest.raises(AnimbenchError, match="cannot read"):
        R.official_clip_ids(tmp_path / "missing.csv")
    bad.write_text("video_id,start,end,partition\nx,zero,5,test\n")
    with pytest.raises(AnimbenchError, match="line 2: start/end must be integers"):
        R.official_clip_ids(bad)


def test_overwrite_never_deletes_a_frame_store(tmp_path):
    """`bench --out STORE --overwrite` (a slip of the keyboard): the store's manifest says it is no results
    directory, so nothing is deleted; an earlier results directory is still replaced."""
    from prep.store import FrameStore, verify_store
    from tests.methods.tiny_store import make_store

    store = make_store(tmp_path / "store", train=1, test=1, frames=3, person_ids=False)
    with pytest.raises(AnimbenchError, match="holds a animbench-frame-store manifest, not results"):
        R.prepare_results_dir(store, overwrite=True)
    assert verify_store(store) == [] and FrameStore(store).videos()
    old = write(tmp_path, rows("m", "l1", {"a": [1.0]}), name="old")
    assert R.prepare_results_dir(old.root, overwrite=True) == old.root and not (old.root / R.MANIFEST_FILE).exists()
