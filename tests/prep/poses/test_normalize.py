"""EDN's global pose normalisation on hand-made ankle tracks; expected numbers computed here by hand."""

import numpy as np
import pytest

from plumbing.errors import AnimbenchError
from prep.poses.format import PoseFrame
from prep.poses.normalize import NormParams, fit_norm_params, normalize_poses, pose_stats
from tests.prep.poses.helpers import standing


def video(rows: dict[float, float], repeat: int = 1000) -> list[PoseFrame]:
    """`repeat` frames at each toe row -> height; so many that random draws hit every row and the median."""
    return [standing(toe, height) for toe, height in rows.items() for _ in range(repeat)]


def test_pose_stats_rules():
    assert pose_stats(standing(700, 250)) == (250.0, 700.0, 700.0)
    assert pose_stats(standing(700, 250, left_ear=False)) is None  # the left ear is required, as coded


def test_fit_gives_the_hand_computed_scales_and_rows():
    # target: far row 880 (median 900 - 20 < 0.5 * (1000 - 900)), median 900, closest 1000
    target = video({880.0: 440.0, 900.0: 450.0, 1000.0: 500.0})
    source = video({590.0: 200.0, 600.0: 230.0, 700.0: 250.0})
    params = fit_norm_params(target, source)
    # source range 700 - 590 = 110 < target range 1000 - 880 = 120: the target range shrinks about 940 to +-55
    assert (params.t_max, params.t_hor) == (700.0, 590.0)
    assert (params.m_max, params.m_hor) == (995.0, 885.0)
    # heights within 0.05 * 110 = 5.5 rows of the closest / farthest rows: target 500 / 440, source 250 / 200
    assert params.s_close == pytest.approx(500 / 250)
    assert params.s_far == pytest.approx(440 / 200)


def test_normalize_applies_the_interpolated_scale_and_shift():
    params = NormParams(s_close=2.0, s_far=2.2, m_max=995.0, m_hor=885.0, t_max=700.0, t_hor=590.0)
    source = [None, standing(650, 240, left_ear=False), standing(700, 250), standing(645, 240),
              standing(600, 230, left_ear=False)]
    out = normalize_poses(source, params, median_window=1)
    assert out[0] is None and out[1] is None  # nothing before the first valid frame
    anchor_x, anchor_y = 960.0, 700.0  # frame width // 2, lower ankle of the first valid frame
    # frame 2: toe 700 -> p = 1, s = 2.0, b = 885 + 110 - 700 = 295
    s, b = 2.0, 295.0
    np.testing.assert_allclose(out[2].body[10, :2], [s * 950 + anchor_x - s * anchor_x,
                                                     s * 700 + anchor_y - s * anchor_y + b])
    assert out[2].body[10, 1] == pytest.approx(995.0)  # the anchor ankle lands on the target's closest row
    # frame 3: toe 645 -> p = 0.5, s = 2.2 + 0.5 * (2.0 - 2.2) = 2.1, b = 885 + 55 - 645 = 295
    s, b = 2.1, 295.0
    np.testing.assert_allclose(out[3].body[18, :2], [s * 960 + anchor_x - s * anchor_x,
                                                     s * (645 - 240) + anchor_y - s * anchor_y + b], rtol=1e-6)
    assert out[3].body[18, 2] == pytest.approx(0.9)
    # frame 4 has no valid stats (left ear): it reuses frame 3's s and b
    np.testing.assert_allclose(out[4].body[15, :2], [s * 970 + anchor_x - s * anchor_x,
                                                     s * 600 + anchor_y - s * anchor_y + b], rtol=1e-6)
    assert (out[3].body[0] == 0).all()  # undetected points stay (0, 0, 0)


def test_median_window_stands_at_its_centre_and_ignores_unconfident_points():
    params = NormParams(1.0, 1.0, 700.0, 590.0, 700.0, 590.0)  # identity: s = 1, b = 0
    frames = [standing(700, 250 + i) for i in range(9)]
    body = frames[4].body.copy()
    body[18, 2] = 0  # nose missed in frame 4 (its position must not enter the median)
    body[18, 1] = -5000
    frames[4] = PoseFrame(body, frames[4].face, frames[4].hand_left, frames[4].hand_right)
    out = normalize_poses(frames, params)
    assert [o is None for o in out] == [True] * 3 + [False] * 3 + [True] * 3
    # frame 3's window: frames 0..6, noses at 700 - 250 - i; confident ones i = 0,1,2,3,5,6 -> median of
    # rows 450, 449, 448, 447, 445, 444 = (448 + 447) / 2
    assert out[3].body[18, 1] == pytest.approx(447.5)


def test_norm_params_round_trip(tmp_path):
    params = NormParams(1.0 / 3.0, 2.2, 995.0, 885.25, 700.0, 590.125)
    params.save(tmp_path / "norm_params.txt")
    lines = (tmp_path / "norm_params.txt").read_text().splitlines()
    assert len(lines[0].split()) == 2 and len(lines[1].split()) == 4  # the official layout
    assert NormParams.load(tmp_path / "norm_params.txt") == params
    (tmp_path / "official.txt").write_text("1.25 0.5\n900.0 800.0 700.0 600.0")  # no final newline, as EDN
    assert NormParams.load(tmp_path / "official.txt") == NormParams(1.25, 0.5, 900.0, 800.0, 700.0, 600.0)
    (tmp_path / "bad.txt").write_text("1.25 0.5\n900.0 800.0 x 600.0\n")
    with pytest.raises(AnimbenchError, match=r"bad.txt: line 2: expected 4 numbers"):
        NormParams.load(tmp_path / "bad.txt")


def test_subject_without_back_and_forth_motion_is_an_error():
    still = video({700.0: 250.0}, repeat=10)
    with pytest.raises(AnimbenchError, match="source poses: no toe row"):
        fit_norm_params(still, still)


def test_a_wrong_norm_params_file_gets_a_short_line(tmp_path):
    (tmp_path / "poses_keypoints.json").write_text('{"people": [' + ", ".join(["1.5"] * 500) + "]}")
    with pytest.raises(AnimbenchError) as info:
        NormParams.load(tmp_path / "poses_keypoints.json")
    message = str(info.value)
    assert "poses_keypoints.json: line 1: expected 2 numbers (s_close s_far)" in message and len(message) < 300
