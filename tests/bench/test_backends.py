"""Metric backends: state_dict layouts equal the reference dumps, the real loading paths work with weight files
made here (random init under the standard names), and missing or wrong files fail with a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.backends import load_exact
from bench.backends.openface import OpenFaceEmbedder, OpenFaceNet, PortLRN
from bench.backends.reid import FtNet, ReidEmbedder
from bench.backends.rtpose import RtPoseKeypoints, RtPoseNet
from plumbing import weights
from plumbing.errors import AnimbenchError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- weight files the tests create (session-scoped: each network is built and saved once) ----------------
@pytest.fixture(scope="session")
def weights_root(tmp_path_factory) -> Path:
    """Root of a fake weights layout: animbench/, torch/hub/checkpoints/, insightface/models/."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture
def weights_env(weights_root: Path, monkeypatch) -> Path:
    """Point ANIMBENCH_WEIGHTS / TORCH_HOME / INSIGHTFACE_HOME at the test's weights root."""
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(weights_root / "animbench"))
    monkeypatch.setenv("TORCH_HOME", str(weights_root / "torch"))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(weights_root / "insightface"))
    return weights_root


def _randomise_bn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def _save(state: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def openface_file(weights_root: Path) -> Path:
    """Random nn4.small2 saved as animbench/openface.pth, without num_batches_tracked (as the 2017 file)."""
    torch.manual_seed(0)
    state = _randomise_bn(OpenFaceNet(), 1).state_dict()
    return _save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
                 weights_root / "animbench" / "openface.pth")


@pytest.fixture(scope="session")
def reid_file(weights_root: Path) -> Path:
    """Random ft_net(751) at the pinned layout saved as animbench/reid_model.pth."""
    torch.manual_seed(0)
    return _save(_randomise_bn(FtNet(), 2).state_dict(), weights_root / "animbench" / "reid_model.pth")


@pytest.fixture(scope="session")
def rtpose_file(weights_root: Path) -> Path:
    """Random rtpose VGG19 saved as animbench/pose_model.pth (last heatmap conv scaled so peaks pass 0.1)."""
    torch.manual_seed(0)
    state = RtPoseNet().state_dict()
    state["model6_2.12.weight"] *= 10
    return _save(state, weights_root / "animbench" / "pose_model.pth")


@pytest.fixture(scope="session")
def fan_files(weights_root: Path) -> dict[str, Path]:
    """Random 2D-FAN-4 and S3FD saved under face-alignment 1.5's hash-named files in torch/hub/checkpoints."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch.manual_seed(0)
    hub = weights_root / "torch" / "hub" / "checkpoints"
    return {"fan": _save(FAN(4).state_dict(), hub / "2DFAN4-11f355bf06.pth.tar"),
            "s3fd": _save(s3fd().state_dict(), hub / "s3fd-619a316812.pth")}


class _TinyRecogniser(torch.nn.Module):
    def __init__(self, size: int, dim: int):
        super().__init__()
        self.conv, self.fc, self.size = torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.Linear(8, dim), size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def export_onnx(path: Path, size: int = 112, dim: int = 512) -> Path:
    """A tiny 1x3xSxS -> 1xD ONNX graph (insightface reads 112 -> 512 graphs as ArcFace recognisers)."""
    import warnings

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_TinyRecogniser(size, dim).eval(), torch.rand(1, 3, size, size), str(path),
                          input_names=["data"], output_names=["embedding"],
                          dynamic_axes={"data": {0: "n"}, "embedding": {0: "n"}}, dynamo=False)
    return path


@pytest.fixture(scope="session")
def arcface_file(weights_root: Path) -> Path:
    """A tiny ONNX recogniser saved as insightface/models/buffalo_l/w600k_r50.onnx."""
    return export_onnx(weights_root / "insightface" / "models" / "buffalo_l" / "w600k_r50.onnx")


# --- layouts equal the reference dumps -------------------------------------------------------------------
def _dump(shared_dir: Path, name: str) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for line in (shared_dir / "reference" / "state-dicts" / f"{name}.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        out.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return out


def _layout(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", ["openface_nn4_small2", "reid_ft_net", "rtpose_vgg19", "fan_2dfan4", "s3fd"])
def test_state_dict_layout_equals_reference_dump(shared_dir: Path, name: str):
    if name in ("fan_2dfan4", "s3fd"):
        from face_alignment.detection.sfd.net_s3fd import s3fd
        from face_alignment.models import FAN

        model = FAN(4) if name == "fan_2dfan4" else s3fd()
    else:
        model = {"openface_nn4_small2": OpenFaceNet, "reid_ft_net": FtNet, "rtpose_vgg19": RtPoseNet}[name]()
    assert _layout(model) == _dump(shared_dir, name)


def test_parameter_counts_match_the_published_networks():
    count = {n: sum(p.numel() for p in m().parameters()) for n, m in
             (("openface", OpenFaceNet), ("reid", FtNet), ("rtpose", RtPoseNet))}
    assert count == {"openface": 3_733_968, "reid": 24_943_407, "rtpose": 52_311_446}


# --- OpenFace ---------------------------------------------------------------------------------------------
def test_port_lrn_keeps_the_channel0_bug():
    x = torch.rand(2, 8, 3, 3) * 50
    sq = x**2
    out = PortLRN()(x)
    # c=1: plain window 0..3; c=5: window 3..7 plus the stale channel-0 square
    expect1 = x[:, 1] * (1 + 2e-5 * sq[:, 0:4].sum(1)) ** -0.75
    expect5 = x[:, 5] * (1 + 2e-5 * (sq[:, 3:8].sum(1) + sq[:, 0])) ** -0.75
    torch.testing.assert_close(out[:, 1], expect1)
    torch.testing.assert_close(out[:, 5], expect5)
    if hasattr(torch.nn, "CrossMapLRN2d"):  # torch's legacy LRN is the same algorithm
        torch.testing.assert_close(out, torch.nn.CrossMapLRN2d(5, 1e-4, 0.75, 1)(x))
    correct = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1)(x)
    assert not torch.allclose(out[:, 5], correct[:, 5])
    torch.testing.assert_close(out[:, :3], correct[:, :3])


def test_openface_loads_the_file_and_returns_unit_embeddings(weights_env, openface_file):
    emb = OpenFaceEmbedder("legacy")
    saved = torch.load(openface_file)
    torch.testing.assert_close(emb.net.layer25.weight, saved["layer25.weight"])
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    e = emb.embed(frames)
    assert e.shape == (3, 128) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb.embed(frames[1:2]), e[1:2], atol=1e-5)  # eval mode: batch-independent


def test_missing_weight_file_names_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(tmp_path / "nowhere"))
    for build, name in ((OpenFaceEmbedder, "openface.pth"), (ReidEmbedder, "reid_model.pth"),
                        (RtPoseKeypoints, "pose_model.pth")):
        with pytest.raises(AnimbenchError) as err:
            build()
        assert name in str(err.value) and str(tmp_path / "nowhere") in str(err.value)


def test_wrong_file_content_is_a_clear_error(tmp_path, monkeypatch):
    folder = tmp_path / "w"
    folder.mkdir()
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(folder))
    (folder / "openface.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AnimbenchError, match="openface.pth: not a torch checkpoint"):
        OpenFaceEmbedder()
    state = OpenFaceNet().state_dict()
    state["layer25.weight"] = torch.zeros(10, 736)
    del state["layer1.bias"]
    torch.save(state, folder / "openface.pth")
    with pytest.raises(AnimbenchError, match=r"openface.pth: keys do not match OpenFaceNet: 1 missing .*layer1.bias"):
        OpenFaceEmbedder()


# --- re-id ------------------------------------------------------------------------------------------------
def test_reid_loads_pinned_and_2022_layouts(weights_env, reid_file, tmp_path):
    emb = ReidEmbedder("clean")
    saved = torch.load(reid_file)
    torch.testing.assert_close(emb.net.model.layer4[2].conv3.weight, saved["model.layer4.2.conv3.weight"])
    assert isinstance(emb.net.model.fc, torch.nn.Sequential) and len(emb.net.model.fc) == 0  # heads stripped
    # the 2022 layout (ClassBlock, torchvision's 1000-way fc kept): same trunk, different heads
    later = {k: v for k, v in saved.items() if not k.startswith(("model.fc.", "classifier."))}
    later.update({"model.fc.weight": torch.zeros(1000, 2048), "model.fc.bias": torch.zeros(1000),
                  "classifier.add_block.0.weight": torch.zeros(512, 2048),
                  "classifier.classifier.0.weight": torch.zeros(751, 512)})
    net = FtNet()
    load_exact(net, later, "later.pth", ignore_prefixes=("model.fc.", "classifier."))
    torch.testing.assert_close(net.model.conv1.weight, saved["model.conv1.weight"])


def test_reid_legacy_is_train_mode_per_image_and_differs_from_eval(weights_env, reid_file):
    from bench.backends.reid import preprocess

    legacy, clean = ReidEmbedder("legacy"), ReidEmbedder("clean")
    frames = np.random.default_rng(1).integers(0, 256, (2, 48, 32, 3), dtype=np.uint8)
    before = legacy.net.model.bn1.running_mean.clone()
    e = legacy.embed(frames)
    assert e.shape == (2, 2048)
    torch.testing.assert_close(legacy.net.model.bn1.running_mean, before)  # loaded statistics untouched
    x = preprocess(frames[1:], "legacy")
    with torch.no_grad():
        eval_feat = clean.net.eval()(x).numpy()
        # the original: the stripped net left in train mode, one image per batch; equal to frame 1's legacy
        # feature, so the feature of a frame does not depend on the other frames of the call
        train_feat = clean.net.train()(x).numpy()
    np.testing.assert_allclose(e[1:], train_feat, rtol=1e-4, atol=1e-5)
    assert np.abs(eval_feat - train_feat).max() > 1e-2  # eval mode is a different function


# --- rtpose -----------------------------------------------------------------------------------------------
def test_rtpose_keypoints_through_the_real_loading_path(weights_env, rtpose_file):
    from bench.backends.rtpose import joints_from_heatmaps

    kp = RtPoseKeypoints(boxsize=32)  # 368 in the protocol; a small box keeps the CPU test fast
    saved = torch.load(rtpose_file)
    torch.testing.assert_close(kp.net.model6_2[12].weight, saved["model6_2.12.weight"])
    frame = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    heat = kp.heatmaps(frame)
    assert heat.shape == (40, 48, 19) and heat.dtype == np.float64
    joints = kp.keypoints(frame[None])
    assert joints.shape == (1, 18, 2)
    np.testing.assert_array_equal(joints[0], joints_from_heatmaps(heat))
    with pytest.raises(AnimbenchError, match="multiple of 8"):
        RtPoseKeypoints(boxsize=60)


# --- face-alignment ---------------------------------------------------------------------------------------
def test_face_alignment_loads_hash_named_files_from_torch_home(weights_env, fan_files):
    from bench.backends.fan import FanLandmarks

    fan = FanLandmarks("sfd", verify_hash=False)
    saved = torch.load(fan_files["s3fd"])
    torch.testing.assert_close(fan.fa.face_detector.face_detector.conv1_1.weight, saved["conv1_1.weight"])
    saved = torch.load(fan_files["fan"])
    torch.testing.assert_close(fan.fa.face_alignment_net.conv1.weight, saved["conv1.weight"])
    assert fan.fa.flip_input is False
    # dlib detection needs only the FAN file; a frame without a face gives None (skipped by AKD)
    dlib_fan = FanLandmarks("dlib", verify_hash=False)
    assert dlib_fan.landmarks(np.full((64, 64, 3), 128, np.uint8)) is None


def test_face_alignment_checks_the_hash_in_the_file_name(weights_env, fan_files):
    from bench.backends.fan import FanLandmarks

    with pytest.raises(AnimbenchError, match="does not start with 11f355bf06"):
        FanLandmarks("dlib")


def test_face_alignment_missing_file(tmp_path, monkeypatch):
    from bench.backends.fan import FanLandmarks

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(AnimbenchError) as err:
        FanLandmarks("sfd")
    assert "2DFAN4-11f355bf06.pth.tar" in str(err.value)
    assert str(tmp_path / "hub" / "checkpoints") in str(err.value)


def test_manifest_declares_the_metric_files():
    for name, folder in (("openface.pth", "animbench"), ("reid_model.pth", "animbench"),
                         ("pose_model.pth", "animbench"), ("s3fd-619a316812.pth", "torch_hub"),
                         ("2DFAN4-11f355bf06.pth.tar", "torch_hub"), ("w600k_r50.onnx", "insightface:buffalo_l")):
        assert weights.get(name).folder == folder
    assert weights.get("s3fd-619a316812.pth").sha256_prefix == "619a316812"
    assert weights.get("openface.pth").sha256 is None  # unknown: never invented


# --- ArcFace ----------------------------------------------------------------------------------------------
def test_arcface_reads_the_buffalo_l_recogniser(weights_env, arcface_file):
    from bench.backends.arcface import ArcFaceEmbedder

    emb = ArcFaceEmbedder(verify_hash=False)
    assert Path(emb.weight_path) == arcface_file
    faces = np.random.default_rng(3).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    e = emb.embed_faces(faces)
    assert e.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb.embed_faces(faces[1:]), e[1:], atol=1e-5)


def test_arcface_rejects_a_graph_that_is_not_a_recogniser(tmp_path, monkeypatch):
    from bench.backends.arcface import ArcFaceEmbedder

    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    export_onnx(tmp_path / "models" / "buffalo_l" / "w600k_r50.onnx", size=100, dim=16)
    with pytest.raises(AnimbenchError, match="w600k_r50.onnx: insightface reads it as"):
        ArcFaceEmbedder()
    os.remove(tmp_path / "models" / "buffalo_l" / "w600k_r50.onnx")
    with pytest.raises(AnimbenchError, match=r"w600k_r50.onnx: place it in .*buffalo_l"):
        ArcFaceEmbedder()
