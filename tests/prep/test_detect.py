"""Detect mode: IoU tubes and the official crop rules at their thresholds, and dlib finding a real face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from plumbing.errors import AnimbenchError
from prep.config import PrepConfig
from prep.detect import S3FD_FILE, CropRules, enlarge, iou, locate_s3fd, track_tubes, tube_clips
from prep.pipeline import run_prep
from prep.recipes import vox
from prep.store import FrameStore
from tests.prep import prep_helpers
from tests.prep.prep_helpers import assert_scaled_alike, decode_all, decode_exact, make_video

ray_session = prep_helpers.ray_session  # the one local Ray session of the prep tests


def _box(x: float, y: float, side: float = 100.0) -> tuple[float, float, float, float]:
    return (x, y, x + side, y + side)


def test_tube_cut_at_iou_threshold():
    """A face drifting right is cut exactly when IoU with the tube's first box falls below 0.25."""
    # a 100 px box shifted by d: IoU = (100 - d) / (100 + d): 0.25 at d = 60, 0.242 at d = 61
    assert iou(_box(0, 0), _box(60, 0)) == pytest.approx(0.25)
    tubes = track_tubes([[_box(d, 0)] for d in range(100)], CropRules())
    assert [(t.start, t.last) for t in tubes] == [(0, 60), (61, 99)]
    assert tubes[0].union == (0, 0, 160, 100)


def test_tube_rules_min_frames_min_size_max_frames():
    """64 frames pass and 63 do not; a 256 px box passes and 255 does not; tubes stop at max_frames."""
    rules = CropRules()
    frames = [[_box(300, 300, 256)]] * 64 + [[]] + [[_box(300, 300, 256)]] * 63
    clips, dropped = tube_clips(track_tubes(frames, rules), 1280, 720, rules)
    assert [(s, e) for s, e, _ in clips] == [(0, 64)] and dropped["too_short"] == 1
    frames = [[_box(100, 100, 256)]] * 64 + [[]] + [[_box(700, 100, 255)]] * 64
    clips, dropped = tube_clips(track_tubes(frames, rules), 1280, 720, rules)
    assert [(s, e) for s, e, _ in clips] == [(0, 64)] and dropped["too_small"] == 1
    small = CropRules(max_frames=100)
    tubes = track_tubes([[_box(300, 300, 256)]] * 250, small)
    assert [(t.start, t.last) for t in tubes] == [(0, 99), (100, 199), (200, 249)]


def test_enlarge_and_leaving_the_frame():
    """Boxes grow 10% per side, the shorter side more (square-ish); a box that then leaves the frame is dropped."""
    assert enlarge((100, 100, 200, 200), 0.1) == pytest.approx((90, 90, 210, 210))
    tall = enlarge((100, 100, 150, 200), 0.1)  # 50 x 100 -> 120 x 120
    assert (tall[2] - tall[0], tall[3] - tall[1]) == pytest.approx((120, 120))
    rules = CropRules(min_frames=2, min_size=64)
    inside = [[(20.0, 20.0, 120.0, 120.0)]] * 3  # enlarged: 10..130
    edge = [[(5.0, 20.0, 105.0, 120.0)]] * 3  # enlarged left edge at -5
    assert len(tube_clips(track_tubes(inside, rules), 200, 200, rules)[0]) == 1
    clips, dropped = tube_clips(track_tubes(edge, rules), 200, 200, rules)
    assert clips == [] and dropped["leaves_frame"] == 1


def _astronaut_video() -> tuple[list[np.ndarray], dict[str, tuple[int, int, int, int]]]:
    """A video from a real photo: framing A drifting (70 frames), a cut to a zoomed framing B (66 frames),
    then A again for 30 frames (too short). Returns the frames and the true face box of each framing."""
    photo = skimage.data.astronaut()  # face at about (179, 83)-(266, 170) in the 512 x 512 photo
    frames = [np.ascontiguousarray(photo[60:316, 150 - i // 7:406 - i // 7]) for i in range(70)]
    for i in range(66):
        window = photo[40:232, 120 + i // 11:312 + i // 11]
        frames.append(cv2.resize(window, (256, 256), interpolation=cv2.INTER_AREA))
    frames += [np.ascontiguousarray(photo[60:316, 150:406])] * 30
    faces = {"A": (29, 23, 126, 110), "B": (72, 57, 195, 173)}
    return frames, faces


def test_detect_mode_with_dlib_finds_the_face_and_cuts(tmp_path, ray_session):
    """dlib's HOG finds the astronaut; the cut makes two clips at the framing change; the third framing is
    too short; a video with no face is a failure row; crops equal the decoded frames cut by the stored box."""
    frames, faces = _astronaut_video()
    make_video(tmp_path / "raw" / "astro.mp4", frames=frames)
    make_video(tmp_path / "raw" / "noface.mp4", 20, 96, 64)
    units = vox.plan(tmp_path / "raw", detect=True, split="test")
    config = PrepConfig("vox", size=64, rules=CropRules(min_size=64))
    summary = run_prep(units, tmp_path / "store", config, workers=2, progress=False)
    store = FrameStore(tmp_path / "store")
    assert store.videos() == ["astro#000000#000070", "astro#000070#000136"]
    [row] = summary.failures
    assert (row["video_id"], row["stage"], row["error"]) == ("noface", "detect", "NoClips")
    decoded = decode_exact(tmp_path / "raw" / "astro.mp4")
    for vid, face in zip(store.videos(), (faces["A"], faces["B"]), strict=True):
        info = store.info(vid)
        left, top, right, bot = (int(v) for v in info["crop_box"])
        # the crop holds the whole face, with margin, and is square-ish
        assert left < face[0] and top < face[1] and right > face[2] and bot > face[3]
        assert abs((right - left) - (bot - top)) <= 0.15 * (right - left)
        assert info["split"] == "test" and info["num_frames"] == info["end"] - info["start"]
        got = store.read(vid, [0, info["num_frames"] - 1])
        for k, index in enumerate((info["start"], info["end"] - 1)):
            want = cv2.resize(decoded[index][top:bot, left:right], (64, 64), interpolation=cv2.INTER_AREA)
            assert_scaled_alike(got[k], want)  # the box is right: cut in YUV, it matches the RGB cut


def test_s3fd_weights_are_located_and_hash_checked(tmp_path, monkeypatch):
    """S3FD loads face-alignment's standard file from $TORCH_HOME/hub/checkpoints and checks the hash in its
    name; an explicit file loads as given and runs (random weights here: no download is possible)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(AnimbenchError, match=f"{S3FD_FILE} missing"):
        locate_s3fd()
    torch = pytest.importorskip("torch")
    from face_alignment.detection.sfd.net_s3fd import s3fd

    from prep.detect import S3FDDetector

    path = tmp_path / "torch" / "hub" / "checkpoints" / S3FD_FILE
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), path)
    with pytest.raises(AnimbenchError, match="expected 619a316812"):
        locate_s3fd()
    detector = S3FDDetector(weights=path)
    boxes = detector(np.zeros((64, 64, 3), np.uint8))
    assert isinstance(boxes, list) and all(len(b) == 4 for b in boxes)


def test_missing_detector_weights_fail_before_the_run(tmp_path, monkeypatch):
    """--detector s3fd without its weight file is a one-line error before any work starts."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    make_video(tmp_path / "raw" / "a.mp4", 4, 64, 64)
    config = PrepConfig("vox", detector="s3fd")
    with pytest.raises(AnimbenchError, match="s3fd detector: weight file"):
        run_prep(vox.plan(tmp_path / "raw", detect=True), tmp_path / "store", config, progress=False)
    assert not (tmp_path / "store").exists()


def test_gaps_up_to_max_gap_are_bridged_with_interpolated_boxes():
    """Official rules (max_gap 0): each missed frame splits the face track. With max_gap the tube goes on
    through gaps of at most that many frames, with boxes interpolated; a longer gap still ends it."""
    def face(i: int) -> list:
        return [_box(100 + i // 2, 50, 120)]  # drifts slowly: IoU with frame 0 stays above 0.4

    missed = {20, 45, 46, 70, 71, 72}
    frames = [[] if i in missed else face(i) for i in range(100)]
    official = track_tubes(frames, CropRules())
    assert [(t.start, t.last) for t in official] == [(0, 19), (21, 44), (47, 69), (73, 99)]
    bridged = track_tubes(frames, CropRules(max_gap=2))
    assert [(t.start, t.last, t.bridged) for t in bridged] == [(0, 69, 3), (73, 99, 0)]
    tube = bridged[0]
    assert len(tube.boxes) == tube.length == 70
    assert tube.boxes[20] == pytest.approx(_box(109.5, 50, 120))  # halfway between frames 19 and 21
    assert tube.boxes[45] == pytest.approx(_box(122 + 1 / 3, 50, 120))  # a third of the way from 44 to 47
    assert tube.union == (100, 50, 254, 170)  # interpolated boxes lie inside the detections' union
    assert [(t.start, t.last) for t in track_tubes(frames, CropRules(max_gap=3))] == [(0, 99)]
    # a gap at the end of the video is not part of the tube; max_frames counts bridged frames too
    assert [(t.start, t.last) for t in track_tubes([face(0), face(1), [], []], CropRules(max_gap=5))] == [(0, 1)]
    capped = track_tubes([face(0), [], face(2), face(3)], CropRules(max_gap=1, min_frames=1, max_frames=3))
    assert [(t.start, t.last) for t in capped] == [(0, 2), (3, 3)]


def test_boxes_leaving_the_frame_are_dropped_shifted_or_padded():
    """drop (official) loses the clip; shift moves the box inside at the same size; pad keeps the box."""
    edge = [[(5.0, 20.0, 105.0, 120.0)]] * 3  # enlarged: (-5, 10, 115, 130)
    clip = {}
    for mode in ("drop", "shift", "pad-replicate"):
        rules = CropRules(min_frames=2, min_size=64, out_of_frame=mode)
        clips, counts = tube_clips(track_tubes(edge, rules), 200, 200, rules)
        clip[mode] = clips[0][2] if clips else None
        assert counts["leaves_frame"] == (mode == "drop")
    assert clip["drop"] is None
    assert clip["shift"] == (0, 10, 120, 130) and clip["pad-replicate"] == (-5, 10, 115, 130)
    rules = CropRules(min_frames=2, min_size=64, out_of_frame="shift")  # larger than the frame: cannot shift
    clips, counts = tube_clips(track_tubes([[(0.0, 0.0, 100.0, 100.0)]] * 3, rules), 100, 100, rules)
    assert clips == [] and counts["leaves_frame"] == 1
    with pytest.raises(AnimbenchError, match="--out-of-frame 'crop'"):
        CropRules(out_of_frame="crop")


def _still(top: int, n: int, black: set[int] = frozenset()) -> list[np.ndarray]:
    photo = np.ascontiguousarray(skimage.data.astronaut()[top:top + 256, 150:406])
    return [np.zeros_like(photo) if i in black else photo for i in range(n)]


def test_detect_run_bridges_missed_frames_and_fails_loudly_without(tmp_path, ray_session, capsys):
    """Two frames where the detector finds nothing split the face track, so by the official rules no clip is
    long enough: the run exits non-zero and says why and what helps. --max-gap 2 makes one 50-frame clip."""
    from animbench.cli import main as cli_main

    make_video(tmp_path / "raw" / "talk.mp4", frames=_still(60, 50, black={20, 21}))
    argv = ["prep", "vox", "--src", str(tmp_path / "raw"), "--detect", "--min-size", "64", "--min-frames", "40",
            "--size", "64", "--workers", "2", "--no-progress", "--out", str(tmp_path / "store")]
    assert cli_main(argv) == 2
    out, err = capsys.readouterr()
    assert "done     0 video(s)" in out and err.count("\n") == 1
    assert "no video was stored" in err and "too_short 2" in err and "--max-gap" in err
    assert cli_main([*argv, "--overwrite", "--max-gap", "2"]) == 0
    store = FrameStore(tmp_path / "store")
    assert store.videos() == ["talk#000000#000050"] and store.num_frames("talk#000000#000050") == 50


def test_detect_run_keeps_a_face_at_the_edge_by_padding_or_shifting(tmp_path, ray_session):
    """A face near the top edge: the enlarged box leaves the frame, so the official rule drops the clip;
    pad-replicate keeps the box and fills the rows above the frame with the top row; shift moves it down."""
    make_video(tmp_path / "raw" / "edge.mp4", frames=_still(84, 12))
    units = vox.plan(tmp_path / "raw", detect=True)
    boxes = {}
    for mode in ("drop", "pad-replicate", "shift"):
        config = PrepConfig("vox", size=0, rules=CropRules(min_size=64, min_frames=10, out_of_frame=mode))
        summary = run_prep(units, tmp_path / mode, config, workers=2, progress=False)
        if mode == "drop":
            assert summary.videos == 0 and "leaves_frame 1" in summary.failures[0]["message"]
            continue
        store = FrameStore(tmp_path / mode)
        [vid] = store.videos()
        boxes[mode] = store.info(vid)["crop_box"]
        frames = store.read(vid, [0])
        decoded = decode_all(tmp_path / "raw" / "edge.mp4")[0]
        left, top, right, bot = boxes[mode]
        if mode == "shift":
            want = decoded[top:bot, left:right]
        else:
            want = cv2.copyMakeBorder(decoded[0:bot, left:right], -top, 0, 0, 0, cv2.BORDER_REPLICATE)
        assert np.array_equal(frames[0], want)
    padded, shifted = boxes["pad-replicate"], boxes["shift"]
    assert padded[1] < 0 and shifted[1] == 0
    assert shifted[3] - shifted[1] == padded[3] - padded[1] and shifted[0] == padded[0]
