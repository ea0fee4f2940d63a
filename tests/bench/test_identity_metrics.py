"""Identity metrics: AED arithmetic and skipped frames, the legacy input quirks (BGR into OpenFace, no
anti-aliasing, the re-id double /255), LPD identity error, and the dlib models on real faces."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from bench.backends.dlib_face import SAME_PERSON_THRESHOLD, DlibFace
from bench.metrics import get_metric
from bench.metrics.identity import aed_from_embeddings, identity_error_from_embeddings
from bench.metrics.pose import akd_from_keypoints
from plumbing.errors import AnimbenchError
from tests.bench import test_backends

# session fixtures shared with the backend tests: random weights saved under the standard names
weights_root, weights_env = test_backends.weights_root, test_backends.weights_env
pytestmark = pytest.mark.usefixtures("one_torch_thread")
openface_file, reid_file, arcface_file = test_backends.openface_file, test_backends.reid_file, test_backends.arcface_file


def test_aed_is_squared_l2_in_legacy_and_euclidean_in_clean():
    e_gt = np.array([[1.0, 0.0], [0.0, 0.0], [0.6, 0.8]])
    e_gen = [np.array([0.0, 1.0]), None, np.array([0.6, 0.8])]
    values, skipped = aed_from_embeddings(e_gt, e_gen, "legacy")
    assert skipped.tolist() == [False, True, False]
    np.testing.assert_allclose(values[[0, 2]], [2.0, 0.0])
    values, _ = aed_from_embeddings(e_gt, e_gen, "clean")
    np.testing.assert_allclose(values[[0, 2]], [np.sqrt(2.0), 0.0])
    with pytest.raises(AnimbenchError, match="differ in shape"):
        aed_from_embeddings(e_gt[:2], e_gen)


def test_identity_error_reference_is_the_mean_unit_descriptor():
    identity = np.array([[2.0, 0.0], [0.0, 3.0]])  # unit vectors (1,0), (0,1): mean (0.5, 0.5)
    gen = np.array([[5.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(identity_error_from_embeddings(identity, gen, "legacy"),
                               [1 - 0.5, 1 - np.sqrt(2) / 2])  # reference not re-normalised (LPD)
    np.testing.assert_allclose(identity_error_from_embeddings(identity, gen, "clean"),
                               [1 - np.sqrt(2) / 2, 0.0], atol=1e-12)  # 1 - cosine
    with pytest.raises(AnimbenchError, match="identity embeddings"):
        identity_error_from_embeddings(np.zeros((0, 2)), gen)


# --- legacy input quirks --------------------------------------------------------------------------------
def test_openface_legacy_feeds_bgr_without_anti_aliasing(weights_env, openface_file):
    from bench.backends.openface import OpenFaceEmbedder, preprocess

    red = np.zeros((1, 256, 256, 3), np.uint8)
    red[..., 0] = 255
    x = preprocess(red, "legacy")
    assert x[0, 0].max() == 0.0 and x[0, 2].min() == 1.0  # R lands in the third input channel
    assert preprocess(red, "clean")[0, 0].min() == 1.0
    legacy = OpenFaceEmbedder("legacy")
    bgr = torch.zeros(1, 3, 96, 96)
    bgr[:, 2] = 1.0
    with torch.no_grad():
        expect, as_rgb = legacy.net(bgr)[0].numpy(), legacy.net(bgr.flip(1))[0].numpy()
    got = legacy.embed(red)
    np.testing.assert_allclose(got, expect, atol=1e-6)
    assert np.abs(got - as_rgb).max() > 1e-5  # RGB order: a different embedding, well outside that tolerance
    # scikit-image 0.14 resize (no anti-aliasing) == plain bilinear interpolation, at 256 -> 96
    frame = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    plain = F.interpolate(torch.from_numpy(frame[..., ::-1].copy()).permute(0, 3, 1, 2).double() / 255,
                          size=(96, 96), mode="bilinear", align_corners=False, antialias=False)
    np.testing.assert_allclose(preprocess(frame, "legacy").numpy(), plain.numpy(), atol=1e-6)
    assert np.abs(preprocess(frame, "clean").numpy() - plain.flip(1).numpy()).max() > 0.05


def test_reid_legacy_divides_by_255_twice():
    from bench.backends.reid import IMAGENET_MEAN, IMAGENET_STD, preprocess

    white = np.full((1, 20, 10, 3), 255, np.uint8)
    legacy, clean = preprocess(white, "legacy"), preprocess(white, "clean")
    assert legacy.shape == (1, 3, 288, 144)
    for c in range(3):
        assert legacy[0, c, 100, 50].item() == pytest.approx((1 / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], 1e-5)
        assert clean[0, c, 100, 50].item() == pytest.approx((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], 1e-5)


# --- metric objects through the registry -----------------------------------------------------------------
def test_aed_face_metric(weights_env, openface_file):
    metric = get_metric("aed_face", variant="legacy")
    frames = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    same = metric(frames, frames)
    np.testing.assert_allclose(same.values, 0.0, atol=1e-10)
    scores = metric(frames[::-1].copy(), frames)
    e = metric.backend.embed(frames)
    np.testing.assert_allclose(scores.values, ((e[::-1] - e) ** 2).sum(1), rtol=1e-5, atol=1e-9)
    info = metric.describe()
    assert info["variant"] == "legacy" and "BGR" in info["variant_differences"]["legacy"]
    assert info["weights"][0]["name"] == "openface.pth"


def test_aed_body_metric_legacy(weights_env, reid_file):
    metric = get_metric("aed_body")
    rng = np.random.default_rng(2)
    a, b = (rng.integers(0, 256, (1, 48, 32, 3), dtype=np.uint8) for _ in range(2))
    scores = metric(a, b)
    assert scores.n_valid == 1 and scores.values[0] > 0
    assert metric.describe()["variant"] == "legacy"


def test_identity_error_metric(weights_env, arcface_file):
    metric = get_metric("identity_error", variant="clean", verify_hash=False)
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    scores = metric(frames[:1], frames[:1])
    assert scores.values[0] == pytest.approx(0.0, abs=1e-6)  # the identity's own frame
    assert scores.fields["fallback_crop"].tolist() == [True]  # noise has no face: LPD's central crop
    legacy = get_metric("identity_error", variant="legacy", verify_hash=False)
    # identity of two different frames: |reference| < 1, so legacy's 1 - |ref| cos exceeds 1 - cos
    two, two_clean = legacy(frames[:1], frames), metric(frames[:1], frames)
    assert two.values[0] > two_clean.values[0] + 1e-6
    assert legacy.describe()["variant"] == "legacy"


# --- dlib models on real faces --------------------------------------------------------------------------
ASTRONAUT_EYES = np.array([[202.0, 102.0], [247.0, 102.0]])  # hand-labelled pupil centres
ASTRONAUT_MOUTH = np.array([225.0, 145.0])


@pytest.fixture(scope="module")
def faces() -> DlibFace:
    """The dlib models shipped in face-recognition-models (real weights)."""
    return DlibFace()


@pytest.fixture(scope="module")
def grace_hopper() -> np.ndarray:
    """A second real face from installed test data (matplotlib's sample image), 256x256 around the face."""
    from matplotlib import cbook

    img = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    return np.asarray(img.crop((120, 100, 420, 400)).resize((256, 256), Image.BILINEAR))


def test_dlib_detects_the_astronaut_and_places_landmarks_on_her_face(faces):
    image = skimage.data.astronaut()
    x1, y1, x2, y2, score = faces.detect(image)[0]
    for x, y in (*ASTRONAUT_EYES, ASTRONAUT_MOUTH):
        assert x1 < x < x2 and y1 < y < y2
    lm = faces.landmarks(image)
    assert lm.shape == (68, 2)
    w, h = x2 - x1, y2 - y1  # dlib's box is tight: the jaw line may reach a little outside it
    assert ((lm >= [x1 - 0.25 * w, y1 - 0.25 * h]) & (lm <= [x2 + 0.25 * w, y2 + 0.25 * h])).all()
    np.testing.assert_allclose([lm[36:42].mean(0), lm[42:48].mean(0)], ASTRONAUT_EYES, atol=8)
    assert faces.landmarks(np.zeros((64, 64, 3), np.uint8)) is None


def test_dlib_embedding_separates_people(faces, grace_hopper):
    image = skimage.data.astronaut()
    e = faces.embedding(image)
    assert e.shape == (128,)
    np.testing.assert_array_equal(faces.embedding(image), e)
    moved = np.asarray(Image.fromarray(image[20:420, 60:460]).resize((300, 300), Image.BILINEAR))
    assert np.linalg.norm(faces.embedding(moved) - e) < SAME_PERSON_THRESHOLD
    assert np.linalg.norm(faces.embedding(grace_hopper) - e) > SAME_PERSON_THRESHOLD


def test_dlib_metrics_on_real_faces(grace_hopper):
    astronaut = skimage.data.astronaut()
    gt = np.stack([astronaut[0:256, 100:356], astronaut[0:256, 100:356], np.zeros((256, 256, 3), np.uint8)])
    shifted = astronaut[0:256, 105:361]  # the face moves 5 px left
    pred = np.stack([shifted, grace_hopper, astronaut[0:256, 100:356]])
    aed = get_metric("aed_face_dlib", variant="clean")(pred, gt)
    assert aed.skipped.tolist() == [False, False, True]  # no face in the third GT frame
    assert aed.values[0] < SAME_PERSON_THRESHOLD < aed.values[1]
    metric = get_metric("akd_face_dlib", variant="clean")
    akd = metric(pred[:1], gt[:1])
    assert akd.values[0] == pytest.approx(5.0, abs=1.5) and akd.fields["gen_missing"].tolist() == [False]
    legacy, _ = akd_from_keypoints(metric.landmarks(gt[:1]), metric.landmarks(pred[:1]), "legacy")
    assert legacy[0] == pytest.approx(2.5, abs=1.0)  # mean of |dx| ~ 5 and |dy| ~ 0
