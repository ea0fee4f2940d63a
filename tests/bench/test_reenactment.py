"""Latent-pose reenactment's evaluation: the identity and pose error arithmetic on hand-made descriptors and
landmarks, the dlib proxies on real faces, and the reenactment protocol end to end on a tiny synthetic faces
store (copy-source, oracle, a tiny latent-pose model) with the offline dlib metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from animbench.cli import main
from bench import protocols
from bench import results as R
from bench.metrics import get_metric, list_metrics, metric_spec
from bench.metrics.identity import identity_error_from_embeddings
from bench.metrics.pose import scale_shift
from bench.metrics.reenactment import MEAN_FACE, fallback_crop, mean_face, pose_reconstruction_error
from bench.runner import MethodSpec, run_bench
from methods import registry
from methods.interface import Method
from plumbing.errors import AnimbenchError
from prep.store import FrameStore, FrameStoreWriter
from prep.synth_draw import background
from prep.synth_face import FaceSubject, sample_face_look, sample_face_motion

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[2]
SIDE, FRAMES, K, D = 96, 6, 2, 3  # dlib's HOG finds the synthetic faces at 96 px
METRICS = ["identity_error_dlib", "pose_error_dlib", "pose_error_fit_dlib"]


# --- the arithmetic -------------------------------------------------------------------------------------------
def test_identity_error_is_one_minus_the_cosine_to_the_unnormalised_mean_descriptor():
    identity = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # unit descriptors (1,0,0), (0,1,0): mean (.5,.5,0)
    generated = np.array([[3.0, 4.0, 0.0],  # unit (.6, .8, 0)
                          [0.0, 0.0, 5.0]])  # orthogonal to the identity
    legacy = identity_error_from_embeddings(identity, generated, "legacy")
    np.testing.assert_allclose(legacy, [1 - (0.5 * 0.6 + 0.5 * 0.8), 1.0])  # 0.3: |reference| = 0.707 kept
    clean = identity_error_from_embeddings(identity, generated, "clean")
    np.testing.assert_allclose(clean, [1 - 1.4 / np.sqrt(2), 1.0])  # the plain cosine of 1/sqrt(2) (1,1,0)
    # one identity image: a frame at 60 degrees from it has cosine 1/2 in both variants
    at60 = np.array([[np.cos(np.pi / 3), np.sin(np.pi / 3), 0.0]])
    for variant in ("legacy", "clean"):
        assert identity_error_from_embeddings(identity[:1], at60, variant)[0] == pytest.approx(0.5)


def _landmarks() -> np.ndarray:
    lm = np.random.default_rng(0).uniform(0, 64, (68, 2))
    lm[36], lm[45] = (10.0, 20.0), (40.0, 60.0)  # outer eye corners 50 px apart
    return lm


def test_pose_error_normalises_by_the_drivers_inter_ocular_distance():
    gt = _landmarks()
    gen = gt.copy()
    gen[:34] += (6.0, 8.0)  # half the points 10 px off, the other half exact
    values, skipped = pose_reconstruction_error([gt], [gen], (64, 64))
    assert values[0] == pytest.approx(0.5 * 10 / 50) and not skipped[0]
    # the normaliser is the ground truth's: the same offsets on a face with eyes 25 px apart count twice as much
    small = gt.copy()
    small[45] = (25.0, 40.0)
    shifted = small.copy()
    shifted[:34] += (6.0, 8.0)
    assert pose_reconstruction_error([small], [shifted], (64, 64))[0][0] == pytest.approx(0.5 * 10 / 25)
    # eyes on one point: the distance is clamped at 1e-2
    flat = np.zeros((68, 2))
    assert pose_reconstruction_error([flat], [flat + (0.0, 1e-3)], (64, 64))[0][0] == pytest.approx(0.1)


def test_scale_shift_fit_recovers_a_known_transform_exactly():
    gt = _landmarks()
    gen = (gt - (5.0, -2.0)) / 1.7  # gt = 1.7 gen + (5, -2)
    s, t = scale_shift(gen, gt)
    assert s == pytest.approx(1.7, abs=1e-12)
    np.testing.assert_allclose(t, [5.0, -2.0], atol=1e-12)
    assert pose_reconstruction_error([gt], [gen], (64, 64), fit=True)[0][0] == pytest.approx(0.0, abs=1e-12)
    assert pose_reconstruction_error([gt], [gen], (64, 64))[0][0] > 0.1  # the plain variant sees the transform
    # the closed form is the official least squares over rows [x 1 0] and [y 0 1], also on noisy points
    noisy = gen + np.random.default_rng(1).normal(0, 0.5, gen.shape)
    rows = np.zeros((68, 2, 3))
    rows[..., 0] = noisy
    rows[:, 0, 1:], rows[:, 1, 1:] = (1, 0), (0, 1)
    official = np.linalg.lstsq(rows.reshape(-1, 3), gt.reshape(-1), rcond=None)[0]
    s, t = scale_shift(noisy, gt)
    np.testing.assert_allclose([s, *t], official, atol=1e-9)


def test_failed_detection_uses_the_mean_face_in_legacy_and_is_skipped_in_clean():
    np.testing.assert_array_equal(mean_face(256, 256), MEAN_FACE.astype(np.float64))
    # pixel-centre scaling: x' = (x + 0.5) W / 256 - 0.5
    np.testing.assert_allclose(mean_face(128, 64)[0], [(74.0375 + 0.5) / 4 - 0.5, (115.65938 + 0.5) / 2 - 0.5],
                               atol=1e-5)
    template = mean_face(64, 64)
    gen = template + (0.0, 2.0)  # every point 2 px below the template
    inter_ocular = np.linalg.norm(template[36] - template[45])
    legacy, skipped = pose_reconstruction_error([None, None], [gen, None], (64, 64))
    np.testing.assert_allclose(legacy, [2.0 / inter_ocular, 0.0])  # no face on both sides: template vs template
    assert not skipped.any()
    clean, skipped = pose_reconstruction_error([None, None], [gen, None], (64, 64), variant="clean")
    assert skipped.all() and np.isnan(clean).all()


def test_the_fallback_crop_is_lpds_central_crop():
    frame = np.arange(256 * 256 * 3, dtype=np.uint32).reshape(256, 256, 3).astype(np.uint8)
    np.testing.assert_array_equal(fallback_crop(frame, 150), frame[42:256 - 64, 53:256 - 53])  # 150 x 150 as is
    assert fallback_crop(frame[:128, :128], 150).shape == (150, 150, 3)


def test_the_reenactment_metrics_are_registered_with_provenance():
    assert {"identity_error", "identity_error_dlib", "pose_error", "pose_error_dlib", "pose_error_fit_dlib"} <= set(
        list_metrics())
    for name in METRICS:
        spec = metric_spec(name)
        assert spec.kind == "paired" and not spec.higher_is_better and spec.backend == "dlib-bin"
        info = get_metric(name).describe()
        assert info["variant"] == "legacy" and "proxy" in info["protocol_notes"]
        assert all(len(w["sha256"]) == 64 for w in info["weights"])  # the dlib model files, hashed
    assert get_metric("pose_error_fit_dlib").describe()["settings"]["fit_scale_shift"] is True
    assert get_metric("pose_error_dlib").describe()["settings"]["fit_scale_shift"] is False
    assert protocols.reenactment_scope("identity_error_dlib") == "cross"
    assert protocols.reenactment_scope("pose_error_fit_dlib") == "self"


def test_dlib_identity_error_on_real_faces():
    """The astronaut's own (moved) face is close to her reference, a drawn face is not."""
    astronaut = skimage.data.astronaut()
    identity = np.stack([astronaut[0:256, 100:356], astronaut[10:266, 95:351]])
    moved = astronaut[5:261, 105:361][None]
    other = _faces_video(7, 128)[:1]
    metric = get_metric("identity_error_dlib")
    own, stranger = metric(moved, identity), metric(other, identity)
    assert own.fields["fallback_crop"].tolist() == [False]
    assert own.values[0] < 0.05 < stranger.values[0]
    blank = np.full((1, 256, 256, 3), 90, np.uint8)  # no face: LPD's central crop is described instead
    assert metric(blank, identity).fields["fallback_crop"].tolist() == [True]


# --- the protocol end to end ----------------------------------------------------------------------------------
def _faces_video(seed: int, side: int = SIDE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    subject = FaceSubject(sample_face_look(rng), sample_face_motion(rng, side, side, FRAMES / 25), side, side, 25.0,
                          background(rng, side, side))
    return np.stack([subject.render(subject.geometry(t)) for t in range(FRAMES)])


@pytest.fixture(scope="module")
def faces_store(tmp_path_factory) -> FrameStore:
    """Three test identities and one training one, six frames each (synthetic talking heads, 96 px)."""
    root = tmp_path_factory.mktemp("faces") / "store"
    with FrameStoreWriter(root, {"recipe": "tests.reenactment"}) as writer:
        for v, split in enumerate(["test", "test", "test", "train"]):
            writer.add_video(f"face{v}", _faces_video(v), split=split, person_id=f"p{v}", fps=25.0)
    return FrameStore(root)


@pytest.fixture(scope="module")
def runs(faces_store, tmp_path_factory) -> list[R.Results]:
    """copy-source and oracle under the reenactment protocol, twice."""
    out = []
    for name in ("a", "b"):
        path = tmp_path_factory.mktemp("runs") / name
        run_bench([MethodSpec("copy-source"), MethodSpec("oracle")], faces_store.root, "reenactment", METRICS, path,
                  workers=1, n_boot=50, identity_frames=K, driver_frames=D, progress=False)
        out.append(R.Results(path))
    return out


def test_items_pair_every_identity_with_every_driver(faces_store):
    items = protocols.reenactment_items(faces_store, "test", identity_frames=K, driver_frames=D)
    assert [(it.source_video, it.driving_video) for it in items] == [
        (a, d) for a in ("face0", "face1", "face2") for d in ("face0", "face1", "face2")]
    assert [it.video_id for it in items][:4] == ["self-0000", "cross-0001", "cross-0002", "cross-0003"]
    assert sum(it.self_driven for it in items) == 3 and sum(not it.self_driven for it in items) == 6
    assert {it.identity_frames for it in items} == {(0, 1)}  # the first K frames
    assert {it.driving_frames for it in items} == {(3, 4, 5)}  # the last D frames, after the identity frames
    assert all(it.source_frame == 0 for it in items)  # the one source image: the first identity image
    assert len(protocols.reenactment_items(faces_store, "test", limit=2, identity_frames=K, driver_frames=D)) == 4


def test_reenactment_scores_pose_on_self_and_identity_on_cross_pairs_with_provenance(faces_store, runs):
    frames = runs[0].frames()
    for method in ("copy-source", "oracle"):
        rows = frames[frames["method"] == method]
        for metric, kind, n_items in (("identity_error_dlib", "cross", 6), ("pose_error_dlib", "self", 3),
                                      ("pose_error_fit_dlib", "self", 3)):
            m = rows[rows["metric"] == metric]
            assert len(m) == n_items * D, (method, metric)
            assert m["video_id"].str.startswith(f"{kind}-").all()
            assert ((m["source_video"] == m["driving_video"]) == (kind == "self")).all()
            assert sorted(set(m["frame_index"])) == [3, 4, 5] and set(m["source_frame"]) == {0}
    assert set(frames["protocol"]) == {"reenactment"}
    assert set(frames["store_fingerprint"]) == {faces_store.fingerprint}
    assert frames["metric_backend"].str.startswith("dlib-bin ").all()
    assert all(len(part) == 64 for w in set(frames["metric_weights_sha256"]) for part in w.split("+"))
    manifest = json.loads((runs[0].root / R.MANIFEST_FILE).read_text())
    protocol = manifest["run"]["protocol"]
    assert (protocol["identity_frames"], protocol["driver_frames"]) == (K, D)
    assert (protocol["self_driving_items"], protocol["cross_driving_items"]) == (3, 6)
    assert manifest["run"]["methods"]["copy-source"]["provenance"]["animation"] is not None


def test_the_baselines_bound_the_trade_off(runs):
    """oracle (the driver's frames) reconstructs the pose exactly and takes the driver's identity; copy-source (the
    identity image) keeps the identity and ignores the pose."""
    board = runs[0].leaderboard("frame").set_index(["method", "metric"])["mean"]
    assert board["oracle", "pose_error_dlib"] == 0.0 and board["oracle", "pose_error_fit_dlib"] == 0.0
    assert board["copy-source", "pose_error_dlib"] > 0.0
    assert board["copy-source", "identity_error_dlib"] < board["oracle", "identity_error_dlib"]


def test_the_same_bench_gives_the_same_numbers(runs):
    cols = ["method", "video_id", "frame_index", "metric", "value", "skipped"]
    a, b = (r.frames()[cols].sort_values(cols[:4]).reset_index(drop=True) for r in runs)
    assert len(a) == 2 * (6 + 3 + 3) * D
    assert a.equals(b)


def test_a_latent_pose_model_runs_under_the_protocol(faces_store, tmp_path):
    """A tiny latent-pose model (untrained) takes its identity from the first identity image, at its 64 px."""
    spec = MethodSpec("latent_pose", config=str(REPO / "configs" / "latent_pose-tiny.yaml"))
    run_bench([spec], faces_store.root, "reenactment", ["identity_error_dlib", "pose_error_dlib"], tmp_path / "lp",
              workers=1, n_boot=20, identity_frames=K, driver_frames=D, progress=False, limit_videos=2)
    results = R.Results(tmp_path / "lp")
    f = results.frames()
    assert len(f[f["metric"] == "identity_error_dlib"]) == 2 * D and len(f[f["metric"] == "pose_error_dlib"]) == 2 * D
    assert np.isfinite(f["value"]).all()
    manifest = json.loads((results.root / R.MANIFEST_FILE).read_text())
    assert manifest["run"]["methods"]["latent_pose"]["evaluation"]["frame_size"] == [64, 64]


class _SetMean(Method):
    """A family that pools a set of source images: the prediction is their mean image (or, holding a fine-tuned
    identity, refuses sources)."""

    networks = ()
    source_images = "set"
    held = False

    def holds_identity(self) -> bool:
        """True for the 'fine-tuned' variant."""
        return self.held

    def animate_sources(self, sources, driving_video, mode=None):  # noqa: ANN001, ANN201 - the interface's
        """(T, 3, H, W) copies of the mean source image."""
        return sources.mean(0, keepdim=True).expand_as(driving_video).clone()


class _Held(_SetMean):
    held = True


@pytest.fixture()
def set_families(monkeypatch):
    """The two test families, registered for this test only (other modules enumerate the registry)."""
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    for name, cls in (("test-set-mean", _SetMean), ("test-held-identity", _Held)):
        registry.register_method(registry.MethodCard(name=name, paper="test family", family="test", trainable=False,
                                                     needs_config=False, build=lambda cfg, align, c=cls: c()))


def test_a_family_that_pools_a_set_gets_every_identity_image(faces_store, tmp_path, set_families):
    run_bench([MethodSpec("copy-source"), MethodSpec("test-set-mean")], faces_store.root, "reenactment",
              ["identity_error_dlib"], tmp_path / "set", workers=1, n_boot=20, identity_frames=K, driver_frames=D,
              progress=False, limit_videos=2)
    results = R.Results(tmp_path / "set")
    f = results.frames().pivot_table(index=["video_id", "frame_index"], columns="method", values="value")
    assert len(f) == 2 * D and (f["copy-source"] != f["test-set-mean"]).all()  # the mean of K = 2, not the first
    methods = json.loads((results.root / R.MANIFEST_FILE).read_text())["run"]["methods"]
    assert "pooled" in methods["test-set-mean"]["provenance"]["sources"]
    assert "first identity image" in methods["copy-source"]["provenance"]["sources"]
    with pytest.raises(AnimbenchError, match="holds a fine-tuned identity"):
        run_bench([MethodSpec("test-held-identity")], faces_store.root, "reenactment", ["identity_error_dlib"],
                  tmp_path / "held", workers=1, identity_frames=K, driver_frames=D)
    assert not (tmp_path / "held").exists()


def test_wrong_combinations_fail_in_one_line(faces_store, tmp_path):
    base = [MethodSpec("copy-source")]
    with pytest.raises(AnimbenchError, match="paired metrics only"):
        run_bench(base, faces_store.root, "reenactment", ["fid"], tmp_path / "a", workers=1)
    with pytest.raises(AnimbenchError, match="only the reenactment protocol takes"):
        run_bench(base, faces_store.root, "reconstruction", ["l1"], tmp_path / "b", workers=1, identity_frames=K)
    with pytest.raises(AnimbenchError, match="video 'face0' has 6 frames.*needs 40"):
        run_bench(base, faces_store.root, "reenactment", ["pose_error_dlib"], tmp_path / "c", workers=1)
    with pytest.raises(AnimbenchError, match="has one video"):
        run_bench(base, faces_store.root, "reenactment", ["pose_error_dlib"], tmp_path / "d", workers=1,
                  limit_videos=1, identity_frames=K, driver_frames=D)
    with pytest.raises(AnimbenchError, match="--driver-frames 0: expected a positive integer"):
        protocols.reenactment_items(faces_store, "test", identity_frames=K, driver_frames=0)
    pose_method = MethodSpec("pose2img", config=str(REPO / "configs" / "pose2img-tiny.yaml"))
    with pytest.raises(AnimbenchError, match="driven by poses and cannot run under the reenactment protocol"):
        run_bench([pose_method], faces_store.root, "reenactment", ["pose_error_dlib"], tmp_path / "e", workers=1,
                  identity_frames=K, driver_frames=D)
    assert not any((tmp_path / n).exists() for n in "abcde")  # nothing started


def test_cli_reenactment_and_its_errors(faces_store, tmp_path, capsys):
    args = ["bench", "--methods", "copy-source", "--store", str(faces_store.root), "--protocol", "reenactment",
            "--metrics", "pose_error_dlib", "--workers", "1", "--n-boot", "20", "--no-progress", "--limit-videos", "2"]
    assert main([*args, "--out", str(tmp_path / "ok"), "--identity-frames", str(K), "--driver-frames", str(D)]) == 0
    assert "pose_error_dlib" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "short")]) == 2  # the defaults want 8 + 32 frames per video
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs 40" in err
