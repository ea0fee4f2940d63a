"""The bench runner: reference baselines over a tiny store, provenance on every row, determinism, Ray, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from animbench.cli import main
from bench import protocols
from bench import results as R
from bench.metrics.pixel import PSNR_CAP_DB
from bench.metrics.registry import FrameScores, base_description, register_metric
from bench.results import sample_indices
from bench.runner import MethodSpec, parse_method_spec, run_bench
from plumbing.errors import AnimbenchError
from prep.store import FrameStore, FrameStoreWriter
from tests.prep.prep_helpers import flip_frame_byte

REPO = Path(__file__).resolve().parents[2]
SIZE, FRAMES = 32, 5
BASELINES = [MethodSpec("copy-source"), MethodSpec("oracle")]


def _video(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    frames = []
    for t in range(n):  # a bright square moving over a noise background: every frame differs from frame 0
        f = base.copy()
        f[4:12, 2 + 3 * t:10 + 3 * t] = 255
        frames.append(f)
    return frames


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FrameStore:
    root = tmp_path_factory.mktemp("store") / "s"
    with FrameStoreWriter(root, {"recipe": "test"}) as w:
        for i, (split, person) in enumerate([("test", "p0"), ("test", "p1"), ("test", "p2"), ("train", "p3")]):
            w.add_video(f"vid{i}", _video(i, FRAMES + i % 2), split=split, person_id=person)
    return FrameStore(root)


@pytest.fixture(scope="module")
def baseline_run(store, tmp_path_factory) -> R.Results:
    out = tmp_path_factory.mktemp("runs") / "a"
    run_bench(BASELINES, store.root, "reconstruction", ["l1", "psnr", "ssim"], out, workers=1, n_boot=200)
    return R.Results(out)


def test_reconstruction_scores_every_frame_against_its_ground_truth(store, baseline_run):
    f = baseline_run.frames()
    n_frames = sum(store.num_frames(v) for v in store.videos("test"))
    assert len(f) == 2 * 3 * n_frames  # methods x metrics x frames; frame 0 is driven too
    oracle = f[f["method"] == "oracle"].pivot_table(index="metric", values="value", aggfunc=["min", "max"])
    assert oracle.loc["l1"].tolist() == [0.0, 0.0]  # floor(255 * k/255) == k: quantisation is exact
    assert oracle.loc["psnr"].tolist() == [PSNR_CAP_DB, PSNR_CAP_DB]  # identical frames: the stated cap, not inf
    assert oracle.loc["ssim"].tolist() == [1.0, 1.0]
    cs = f[(f["method"] == "copy-source") & (f["metric"] == "l1")].set_index(["video_id", "frame_index"])["value"]
    for vid in store.videos("test"):
        gt = store.read(vid).astype(np.int16)
        expected = np.abs(gt - gt[0]).reshape(len(gt), -1).mean(axis=1) / 255.0
        # l1 scores the float output in float32, as FOMM did: equal to the exact value to float32 precision
        np.testing.assert_allclose(cs.loc[vid].to_numpy(), expected, rtol=0, atol=1e-7)
    assert cs.xs(0, level="frame_index").eq(0).all() and (cs.drop(0, level="frame_index") > 0).all()


def test_every_row_carries_its_provenance(store, baseline_run):
    m = baseline_run.manifest
    for table in (baseline_run.frames(), baseline_run.videos(), baseline_run.aggregates()):
        for col in R.PROVENANCE_COLUMNS:
            assert table[col].notna().all(), col
            assert col == "config_path" or (table[col].astype(str) != "").all(), col
        assert set(table["store_fingerprint"]) == {store.fingerprint}
        assert set(table["protocol"]) == {"reconstruction"} and set(table["protocol_variant"]) == {"legacy"}
        assert set(table["quantisation"]) == {protocols.QUANTISATION}
        assert set(table["versions_id"]) <= set(m["versions"])
        assert set(table["checkpoint_sha256"]) == {"none"}  # the baselines load no checkpoint
    backend = baseline_run.frames().groupby("metric")["metric_backend"].first()
    assert backend["l1"].startswith("numpy ") and backend["ssim"].startswith("torch ")
    assert set(baseline_run.frames()["metric_weights_sha256"]) == {"none"}  # pixel metrics load no weights
    assert "torch" in m["versions"][next(iter(m["versions"]))]
    assert m["run"]["method_order"] == ["copy-source", "oracle"] and m["run"]["executor"] == "in-process"
    assert m["run"]["metrics"]["ssim"]["describe"]["settings"]["win_size"] == 11
    assert m["run"]["methods"]["oracle"]["provenance"]["method"] == "oracle"


def test_aggregates_and_comparisons_favour_the_oracle(baseline_run):
    a = baseline_run.aggregates().set_index(["method", "metric", "weighting"])
    assert a.loc[("oracle", "l1", "frame"), "mean"] == 0
    assert a.loc[("oracle", "psnr", "video"), "mean"] == pytest.approx(PSNR_CAP_DB, rel=1e-12)
    cs = a.loc[("copy-source", "l1", "frame")]
    assert 0 < cs["ci_low"] <= cs["mean"] <= cs["ci_high"] and cs["n_videos"] == 3
    c = baseline_run.comparisons().set_index(["metric", "weighting"])
    assert set(c.loc[["l1", "ssim", "psnr"], "better"]) == {"oracle"}
    # copy-source reproduces frame 0 exactly, yet its PSNR is finite (PSNR of the per-video mean squared error)
    # and so is every paired comparison
    assert 0 < a.loc[("copy-source", "psnr", "frame"), "mean"] < 60
    assert np.isfinite(c.loc["psnr", ["mean_a", "mean_b", "diff", "ci_low", "ci_high"]].to_numpy()).all()


def test_sample_frames_are_saved_for_reports(store, baseline_run):
    vid = store.videos("test")[0]
    frames = baseline_run.sample_frames("oracle", vid)
    assert [p.name for p in frames] == [f"{t:07d}.png" for t in sample_indices(store.num_frames(vid), 4)]
    from prep.imagecodec import decode_image

    t = int(frames[-1].stem)
    assert np.array_equal(decode_image(frames[-1].read_bytes()), store.read(vid, [t])[0])
    assert len(baseline_run.sample_frames("_source", vid)) == 1 and baseline_run.sample_videos() == store.videos("test")


def test_two_runs_give_identical_tables(store, baseline_run, tmp_path):
    again = run_bench(BASELINES, store.root, "reconstruction", ["l1", "psnr", "ssim"], tmp_path / "b", workers=1,
                      n_boot=200)
    assert again["tables"] == baseline_run.manifest["tables"]  # same sha256 for every table


@pytest.mark.slow  # Ray start-up and two workers importing torch: 15-40 s on a busy 2-core box
def test_ray_with_two_workers_matches_the_in_process_run(store, baseline_run, tmp_path):
    manifest = run_bench(BASELINES, store.root, "reconstruction", ["l1", "psnr", "ssim"], tmp_path / "ray",
                         workers=2, n_boot=200)
    assert manifest["run"]["executor"] == "ray" and manifest["run"]["workers"] == 2
    pd.testing.assert_frame_equal(R.Results(tmp_path / "ray").frames(), baseline_run.frames())
    assert manifest["tables"] == baseline_run.manifest["tables"]


# A set metric and an identity metric registered here exercise the animation path without network weights.
@register_metric("fid_test_colour", kind="set", higher_is_better=False, backend="numpy")
class ColourFD:
    """Frechet distance between the mean-colour distributions of two frame sets (a test stand-in for FID)."""

    def __init__(self, spec, device: str = "cpu"):
        self.spec = spec

    def features(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame mean RGB and mean of squares: (N, 6)."""
        x = frames.reshape(len(frames), -1, 3).astype(np.float64) / 255
        return np.concatenate([x.mean(1), (x * x).mean(1)], axis=1)

    def distance(self, a, b) -> float:
        """Squared distance of means plus trace difference (enough to order two sets)."""
        return float(((a.mu - b.mu) ** 2).sum() + abs(np.trace(a.sigma) - np.trace(b.sigma)))

    def describe(self) -> dict:
        """Provenance."""
        return base_description(self.spec)


@register_metric("identity_test_colour", kind="paired", higher_is_better=False, backend="numpy")
def identity_test_colour(pred: np.ndarray, gt: np.ndarray) -> FrameScores:
    """Per-frame distance of mean colours to the reference frames (a test stand-in for an identity metric)."""
    d = np.abs(pred.reshape(len(pred), -1, 3).mean(1) - gt.reshape(len(gt), -1, 3).mean(1)).sum(1)
    return FrameScores(d)


def test_animation_uses_pairs_and_compares_identity_with_the_source(store, tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("distance,source,driving,frame\n1.5,vid0.mp4,vid1.mp4,0\n2.0,vid2,vid0.mp4,1\n")
    run_bench(BASELINES, store.root, "animation", ["identity_test_colour", "fid_test_colour"], tmp_path / "an",
              workers=1, pairs=str(pairs), n_boot=100)
    res = R.Results(tmp_path / "an")
    v = res.videos().set_index(["method", "video_id"])
    assert list(v.loc["copy-source"].index) == ["pair-0000", "pair-0001"]
    assert v.loc[("copy-source", "pair-0001"), ["source_video", "source_frame", "driving_video"]].tolist() == \
        ["vid2", 1, "vid0"]
    assert (v.loc["copy-source", "mean"] == 0).all() and (v.loc["oracle", "mean"] > 0).all()
    a = res.aggregates().set_index(["method", "metric", "weighting"])
    n_driving = store.num_frames("vid1") + store.num_frames("vid0")
    assert a.loc[("oracle", "fid_test_colour", "set"), "mean"] == pytest.approx(0, abs=1e-12)
    assert a.loc[("copy-source", "fid_test_colour", "set"), "mean"] > 0
    assert a.loc[("oracle", "fid_test_colour", "set"), "n_frames"] == n_driving
    assert res.manifest["run"]["protocol"]["pairs"] == str(pairs)


def test_animation_refuses_metrics_that_need_ground_truth(store, tmp_path):
    with pytest.raises(AnimbenchError, match="no ground truth"):
        run_bench(BASELINES, store.root, "animation", ["l1"], tmp_path / "x", workers=1)
    assert not (tmp_path / "x").exists()


def test_pairs_naming_unknown_videos_fail_or_are_skipped(store, tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("distance,source,driving,frame\n0,vid0.mp4,vid9.mp4,0\n0,vid1.mp4,vid2.mp4,0\n")
    with pytest.raises(AnimbenchError, match=r"line 2: video 'vid9.mp4' is not in split 'test'"):
        protocols.read_pairs_csv(pairs, store)
    items, skipped = protocols.read_pairs_csv(pairs, store, skip_missing=True)
    assert skipped == 1 and [(i.source_video, i.driving_video) for i in items] == [("vid1", "vid2")]


def test_random_pairs_are_seeded_and_cross_identity(store):
    a, b = protocols.random_pairs(store, seed=3), protocols.random_pairs(store, seed=3)
    assert a == b and len(a) == 3
    assert all(i.source_video != i.driving_video for i in a)
    assert protocols.random_pairs(store, seed=4, num_pairs=7) != protocols.random_pairs(store, seed=3, num_pairs=7)


def test_quantisation_floors_like_the_official_png_writer():
    from methods.infer import quantise  # the one quantisation function, the bench's too

    pred = np.array([0.0, 0.999, 1 / 255, 0.5, 1.0, 1.7, -0.2], np.float32).reshape(1, 1, 7, 1).repeat(3, 3)
    assert quantise(pred)[0, 0, :, 0].tolist() == [0, 254, 1, 127, 255, 255, 0]


def test_method_spec_syntax():
    assert parse_method_spec("fomm=ck.pth.tar@vox-256.yaml") == MethodSpec("fomm", "ck.pth.tar", "vox-256.yaml")
    assert parse_method_spec("ep50:fomm=/a/b.tar") == MethodSpec("fomm", "/a/b.tar", None, "ep50")
    assert parse_method_spec("oracle").key == "oracle"
    with pytest.raises(AnimbenchError, match="expected"):
        parse_method_spec(":fomm")


def test_cli_bench_then_leaderboard(store, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["bench", "--methods", "copy-source", "--methods", "oracle", "--store", str(store.root),
                 "--protocol", "reconstruction", "--metrics", "l1,psnr", "--out", str(out), "--workers", "1",
                 "--n-boot", "50", "--limit-videos", "2"])
    printed = capsys.readouterr().out
    assert code == 0 and "oracle" in printed
    # the summary follows the leaderboard's rule: 2 videos, n stated, no interval
    assert "(n = 2 videos: no interval)" in printed and "[" not in printed.split("->")[1]
    assert R.Results(out).videos()["video_id"].nunique() == 2
    assert main(["leaderboard", str(out), "--by", "video"]) == 0
    text = capsys.readouterr().out
    # 2 videos: n stated, no interval (fewer than reports' minimum of 5 videos)
    assert "| oracle | 2 | **0** | **100** |" in text and "video-weighted" in text
    assert "inf" not in text


def test_cli_errors_are_one_line_exit_2(store, tmp_path, capsys):
    assert main(["bench", "--methods", "oracle,oracle", "--store", str(store.root), "--protocol",
                 "reconstruction", "--metrics", "l1", "--out", str(tmp_path / "o"), "--workers", "1"]) == 2
    assert "appears twice" in capsys.readouterr().err
    assert main(["bench", "--methods", "nosuch", "--store", str(store.root), "--protocol", "reconstruction",
                 "--metrics", "l1", "--out", str(tmp_path / "o2"), "--workers", "1"]) == 2
    assert "unknown method 'nosuch'" in capsys.readouterr().err
    assert main(["leaderboard", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_a_real_network_with_checkpoint_and_config_is_deterministic_and_traced(tmp_path):
    """FOMM (tiny config, random weights saved in the official layout): provenance columns name the files."""
    import torch

    from methods.checkpoints import save_checkpoint
    from methods.registry import load_model
    from prep.store import sha256_file

    config = str(REPO / "configs" / "fomm-tiny.yaml")
    torch.manual_seed(0)
    model, _ = load_model("fomm", config=config)
    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", model, None, epoch=3)
    with FrameStoreWriter(tmp_path / "s64", {"recipe": "test"}) as w:
        for i in range(2):
            w.add_video(f"v{i}", [np.kron(f, np.ones((2, 2, 1), np.uint8)) for f in _video(i, 3)], split="test")
    spec = [parse_method_spec(f"fomm={ckpt}@{config}")]
    runs = [run_bench(spec, tmp_path / "s64", "reconstruction", ["l1"], tmp_path / f"r{k}", workers=1, n_boot=50)
            for k in range(2)]
    assert runs[0]["tables"] == runs[1]["tables"]
    f = R.Results(tmp_path / "r0").frames()
    assert set(f["checkpoint_sha256"]) == {sha256_file(ckpt)} and set(f["config_sha256"]) == {sha256_file(config)}
    assert set(f["config_path"]) == {config} and f["value"].between(0, 1).all() and len(f) == 6
    assert runs[0]["run"]["methods"]["fomm"]["provenance"]["checkpoint"]["epoch"] == 3
    an = run_bench(spec, tmp_path / "s64", "animation", ["identity_test_colour"], tmp_path / "an", workers=1,
                   n_boot=50)
    assert an["run"]["methods"]["fomm"]["provenance"]["animation"]["relative"] is True  # fomm-tiny animate_params


def test_missing_weights_fail_before_any_output(store, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    with pytest.raises(AnimbenchError, match="missing weight file alexnet-owt-7be5be79.pth"):
        run_bench(BASELINES, store.root, "reconstruction", ["lpips"], tmp_path / "out", workers=1)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ one model, one number; failures; progress
def _fomm_tiny_checkpoint(root: Path) -> tuple[str, str]:
    import torch

    from methods.checkpoints import save_checkpoint
    from methods.registry import load_model

    config = str(REPO / "configs" / "fomm-tiny.yaml")  # frame_shape 64x64
    torch.manual_seed(0)
    model, _ = load_model("fomm", config=config)
    return str(save_checkpoint(root / "tiny.pth.tar", model, None, epoch=0)), config


def test_bench_and_reconstruct_give_one_number_when_the_store_size_differs_from_the_config(tmp_path):
    """A 64 px config on a 96 px store: both commands resize to the config's frame shape (the official
    loader's frame_shape) and score there, so they report the same L1, and both record the choice."""
    from methods.infer import reconstruct
    from tests.methods.tiny_store import make_store

    ckpt, config = _fomm_tiny_checkpoint(tmp_path)
    store = make_store(tmp_path / "s96", train=1, test=2, frames=4, size=96)
    rec = reconstruct("fomm", store, tmp_path / "rec", checkpoint=ckpt, config=config, batch_size=3)
    manifest = run_bench([MethodSpec("fomm", ckpt, config)], store, "reconstruction", ["l1"], tmp_path / "bench",
                         workers=1, n_boot=20, batch_size=3)
    res = R.Results(tmp_path / "bench")
    per_video = res.videos().set_index("video_id")["mean"]
    assert sorted(per_video.index) == sorted(r["video_id"] for r in rec["videos"])
    for row in rec["videos"]:
        assert per_video[row["video_id"]] == pytest.approx(row["l1"], rel=1e-12, abs=0)
    a = res.aggregates().set_index("weighting")["mean"]
    assert a["frame"] == pytest.approx(rec["l1"], rel=1e-12, abs=0)
    assert a["video"] == pytest.approx(rec["l1_video_weighted"], rel=1e-12, abs=0)
    evaluation = manifest["run"]["methods"]["fomm"]["evaluation"]
    assert evaluation == rec["evaluation"]
    assert evaluation["frame_size"] == [64, 64] and evaluation["store_frame_sizes"] == [[96, 96]]
    assert "resize" in evaluation["rule"] and evaluation["resized"] is True
    # the predictions reconstruct stored are at the size that was scored
    assert FrameStore(tmp_path / "rec" / "predictions").read(rec["videos"][0]["video_id"]).shape[1:3] == (64, 64)
    # animation runs the model at its frame shape too (source and driving resized alike), recorded the same way
    an = run_bench([MethodSpec("fomm", ckpt, config)], store, "animation", ["identity_test_colour"],
                   tmp_path / "an", workers=1, n_boot=20)
    assert an["run"]["methods"]["fomm"]["evaluation"]["resized"] is True
    assert R.Results(tmp_path / "an").frames()["value"].notna().all()


@pytest.fixture(scope="module")
def corrupt_store(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corrupt") / "s"
    with FrameStoreWriter(root, {"recipe": "test"}) as w:
        for i in range(3):
            w.add_video(f"vid{i}", _video(i, FRAMES), split="test")
    return root, flip_frame_byte(root, "vid2", 3)


def test_a_corrupt_store_fails_in_one_line_naming_the_frame_and_leaves_no_output(corrupt_store, tmp_path, capsys):
    root, shard = corrupt_store
    out = tmp_path / "res"
    args = ["bench", "--methods", "copy-source", "--store", str(root), "--protocol", "reconstruction",
            "--metrics", "l1", "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(root) in err and shard.name in err and "'vid2'" in err and "frame 3" in err
    assert not out.exists()  # nothing that blocks the rerun (samples/ used to stay behind)
    out.mkdir()  # an empty folder the user made stays, and stays empty
    assert main(args) == 2 and out.is_dir() and not any(out.iterdir())


@pytest.mark.slow  # Ray start-up: 15-40 s on a busy 2-core box
def test_a_corrupt_store_under_ray_fails_with_the_same_message(corrupt_store, tmp_path, capsys):
    root, shard = corrupt_store
    out = tmp_path / "res"
    assert main(["bench", "--methods", "copy-source,oracle", "--store", str(root), "--protocol", "reconstruction",
                 "--metrics", "l1", "--out", str(out), "--workers", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("animbench: error: ") and shard.name in err and "'vid2'" in err and "frame 3" in err
    assert not out.exists()


def test_a_truncated_checkpoint_fails_in_one_line_and_the_rerun_works(store, tmp_path, capsys):
    ckpt, config = _fomm_tiny_checkpoint(tmp_path)
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(Path(ckpt).read_bytes()[:50_000])
    out = tmp_path / "res"
    args = ["--store", str(store.root), "--protocol", "reconstruction", "--metrics", "l1", "--out", str(out),
            "--workers", "1", "--no-progress", "--limit-videos", "1"]
    assert main(["bench", "--methods", f"copy-source,fomm={truncated}@{config}", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"checkpoint {truncated}" in err
    assert not out.exists()
    assert main(["bench", "--methods", f"copy-source,fomm={ckpt}@{config}", *args]) == 0  # no --overwrite needed
    assert set(R.Results(out).frames()["method"]) == {"copy-source", "fomm"}


def test_bench_shows_progress_with_an_eta_unless_told_not_to(store, tmp_path, capsys):
    common = ["bench", "--methods", "copy-source,oracle", "--store", str(store.root), "--protocol",
              "reconstruction", "--metrics", "l1", "--workers", "1"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "bench" in err and "6/6" in err and "video" in err and "<" in err  # tqdm: done/total [elapsed<eta]
    assert main([*common, "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


HOSTILE_IDS = ["../../evil", "..", ".", "", "a/b", "/abs/path", "a\\b", "nul\x00byte", "x" * 300, ".hidden",
               "tab\tid", "line\nbreak", "ünïcødé#clip", "%2E%2E", "a%2Fb", " padded ", "..%2F..%2Fevil",
               "\u202eevil", "C:\\win"]


@pytest.mark.parametrize("video_id", HOSTILE_IDS)
def test_sample_paths_stay_inside_the_results_folder(tmp_path, video_id):
    """Whatever a store's video id holds, a sample is written under OUT/samples/<method>/ or refused in one line."""
    root = tmp_path / "res"
    try:
        path = R.sample_path(root, "copy-source", video_id, 7)
    except AnimbenchError as exc:
        assert "\n" not in str(exc)
        return
    samples = (root / R.SAMPLES_DIR / "copy-source").resolve()
    assert path.parent.parent.resolve() == samples and path.name == "0000007.png"
    assert R.sample_dir_name(video_id) == path.parent.name
    from urllib.parse import unquote

    assert unquote(path.parent.name) == video_id  # reports map the folder back to the id


def test_an_id_that_cannot_name_a_samples_folder_fails_before_any_output(tmp_path):
    root = tmp_path / "long"
    try:
        with FrameStoreWriter(root, {"recipe": "test"}) as w:
            w.add_video("x" * 300, _video(0, 3), split="test")
    except AnimbenchError:
        pytest.skip("the store writer refuses such ids itself (checked where they enter)")
    with pytest.raises(AnimbenchError, match="300 bytes long") as err:
        run_bench(BASELINES, root, "reconstruction", ["l1"], tmp_path / "out", workers=1)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_hostile_ids_in_a_store_write_nothing_outside_out(tmp_path):
    """A store holding ids with separators and dots (a store someone else made): bench writes under --out only."""
    ids = ["../escape", "a/b", ".hidden", "50%"]
    root = tmp_path / "hostile"
    try:
        with FrameStoreWriter(root, {"recipe": "test"}) as w:
            for i, vid in enumerate(ids):
                w.add_video(vid, _video(i, 3), split="test")
    except AnimbenchError:
        pytest.skip("the store writer refuses these ids itself (checked where they enter)")
    out = tmp_path / "deep" / "res"
    run_bench(BASELINES, root, "reconstruction", ["l1"], out, workers=1, n_boot=10)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(out)
               and not p.is_relative_to(root)]
    assert outside == []
    assert sorted(R.Results(out).sample_videos()) == sorted(ids)


def test_method_labels_must_be_plain_names(store, tmp_path):
    for label in ("../x", "a\\b", "nul\x00"):
        with pytest.raises(AnimbenchError, match="label"):
            run_bench([MethodSpec("oracle", label=label)], store.root, "reconstruction", ["l1"], tmp_path / "o",
                      workers=1)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ checks from the method cards, before Ray
POSE2IMG_TINY = str(REPO / "configs" / "pose2img-tiny.yaml")


def test_a_method_under_the_wrong_protocol_is_refused_before_ray_starts(store, tmp_path, monkeypatch):
    import bench.runner as runner

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started before the method/protocol check")

    monkeypatch.setattr(runner, "ray_session", no_ray)
    with pytest.raises(AnimbenchError, match="method pose2img is driven by poses and cannot run under the "
                                             "reconstruction protocol"):
        run_bench([MethodSpec("pose2img", None, POSE2IMG_TINY)], store.root, "reconstruction", ["l1"],
                  tmp_path / "a", workers=2)
    with pytest.raises(AnimbenchError, match="method copy-source is driven by video and cannot run under the "
                                             "pose-transfer protocol"):
        run_bench([MethodSpec("copy-source")], store.root, "pose-transfer", ["l1"], tmp_path / "b", workers=2)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_run_folder_is_a_checkpoint_where_the_family_reads_folders(tmp_path):
    """pose2img reads the official per-network files a training run folder also holds; a family that loads one
    file is told which file of the folder to pass."""
    import torch

    from bench.runner import _check_methods, _load
    from methods.registry import load_model
    from methods.train import LAST_CHECKPOINT

    torch.manual_seed(0)
    model, _ = load_model("pose2img", config=POSE2IMG_TINY)
    run = tmp_path / "run"
    run.mkdir()
    for name, state in model.official_files().items():
        torch.save(state, run / name)
    spec = MethodSpec("pose2img", str(run), POSE2IMG_TINY)
    _check_methods([spec], "pose-transfer")
    loaded, provenance = _load(spec, "cpu")
    assert provenance["checkpoint"]["path"] == str(run)
    assert all(torch.equal(a, b) for a, b in zip(loaded.generator.state_dict().values(),
                                                 model.generator.state_dict().values(), strict=True))
    fomm_run = tmp_path / "fomm-run"
    fomm_run.mkdir()
    with pytest.raises(AnimbenchError) as err:
        _check_methods([MethodSpec("fomm", str(fomm_run))], "reconstruction")
    assert str(err.value) == (f"method fomm: checkpoint {fomm_run} is a folder; method fomm loads a checkpoint file "
                              f"(e.g. {fomm_run / LAST_CHECKPOINT} of a training run)")
    (fomm_run / LAST_CHECKPOINT).write_bytes(b"x")
    with pytest.raises(AnimbenchError, match=f"loads a checkpoint file \\(e.g. {fomm_run / LAST_CHECKPOINT}\\)$"):
        _check_methods([MethodSpec("fomm", str(fomm_run))], "reconstruction")
    with pytest.raises(AnimbenchError, match="checkpoint .*nothing does not exist"):
        _check_methods([MethodSpec("fomm", str(tmp_path / "nothing"))], "reconstruction")
