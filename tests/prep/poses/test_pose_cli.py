"""`animbench pose render|normalize` end to end (in-process CLI main): outputs equal the library's."""

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from animbench.cli import main
from prep.poses.normalize import NormParams, fit_norm_params, normalize_poses
from prep.poses.openpose import read_openpose_folder
from prep.poses.render import face_box, render_label
from tests.prep.poses.helpers import edn_sample, standing, write_json


def _read(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_render_cli_writes_the_library_maps(shared_dir, tmp_path, capsys):
    train = edn_sample(shared_dir) / "train"
    src = tmp_path / "keypoints"
    shutil.copytree(train / "keypoints", src)
    pose = read_openpose_folder(src).frames["frame020001"]
    write_json(src / "crowd_keypoints.json", pose, pose)
    out = tmp_path / "data" / "train_label"
    assert main(["pose", "render", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rendered 3 label maps" in printed and "crowd: 2 people detected" in printed
    poses = read_openpose_folder(src).frames
    assert sorted(p.name for p in out.iterdir()) == [f"{n}.png" for n in sorted(poses)]
    for name, pose in poses.items():
        np.testing.assert_array_equal(_read(out / f"{name}.png"), render_label(pose))
        box = (tmp_path / "data" / "train_facetexts128" / f"{name}.txt").read_text()
        assert box == (train / "train_facetexts128" / f"{name}.txt").read_text().strip()
        assert box == " ".join(map(str, face_box(pose)))
    # a non-empty --out is refused without --overwrite, kept with it
    assert main(["pose", "render", str(src), "--out", str(out), "--size", "512x256", "--no-facetexts"]) == 2
    assert "not empty" in capsys.readouterr().err
    # without face boxes, the earlier 1024x512 boxes beside it would be paired with the new maps: refused
    assert main(["pose", "render", str(src), "--out", str(out), "--size", "512x256", "--overwrite",
                 "--no-facetexts"]) == 2
    err = capsys.readouterr().err
    assert "train_facetexts128 exists beside --out" in err and err.count("\n") == 1
    assert _read(out / "frame020005.png").shape == (512, 1024, 3)  # nothing replaced
    (out / "notes.odt").write_text("mine")  # not what render writes: --overwrite keeps its hands off
    assert main(["pose", "render", str(src), "--out", str(out), "--size", "512x256", "--overwrite"]) == 2
    assert "holds 'notes.odt', which `animbench pose` never writes" in capsys.readouterr().err
    (out / "notes.odt").unlink()
    assert main(["pose", "render", str(src), "--out", str(out), "--size", "512x256", "--overwrite"]) == 0
    assert _read(out / "frame020005.png").shape == (256, 512, 3)
    assert (tmp_path / "data" / "train_facetexts128" / "frame020005.txt").read_text() == " ".join(
        map(str, face_box(poses["frame020005"], out_size=(512, 256))))


@pytest.mark.parametrize("args, message", [
    (["--size", "big"], "--size 'big': expected WIDTHxHEIGHT"),
    (["--frame-size", "0x5"], "--frame-size '0x5'"),
    (["--size", "64x32"], "--size 64x32: the 128 px face boxes do not fit (pass --no-facetexts"),
    ([], "bad_pose.yml: line 5: pose_0.data: 'x' is not a finite number"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    (tmp_path / "bad_pose.yml").write_text("%YAML:1.0\npose_0: !!opencv-nd-matrix\n   sizes: [ 1, 1, 3 ]\n"
                                           "   dt: f\n   data: [ 1., x, 3. ]\n")
    assert main(["pose", "render", str(tmp_path), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing half-written


def _folder(path, poses):
    path.mkdir()
    for i, pose in enumerate(poses):
        write_json(path / f"frame{i:06d}_keypoints.json", pose)
    return path


def test_normalize_cli_writes_the_library_output_and_reuses_norm_params(tmp_path, capsys):
    rows = [(880.0, 440.0), (900.0, 450.0), (1000.0, 500.0)]
    target_poses = [standing(toe, h) for toe, h in rows for _ in range(30)]
    source_poses = [standing(toe, h, x=700.0) for toe, h in [(590.0, 200.0), (600.0, 230.0), (700.0, 250.0)] * 3]
    target, source = _folder(tmp_path / "target", target_poses), _folder(tmp_path / "source", source_poses)
    out = tmp_path / "norm"
    assert main(["pose", "normalize", "--target", str(target), "--source", str(source), "--out", str(out),
                 "--calculate", "--size", "512x256"]) == 0
    assert "rendered 3 label maps" in capsys.readouterr().out  # 9 frames, window 7
    params = fit_norm_params(target_poses, source_poses, seed=0)
    assert NormParams.load(out / "norm_params.txt") == params
    smoothed = normalize_poses(source_poses, params)
    expected = [p for p in smoothed if p is not None]
    assert len(expected) == 3
    with open(out / "frames.csv") as f:
        assert [r["source"] for r in csv.DictReader(f)] == ["frame000003", "frame000004", "frame000005"]
    for i, pose in enumerate(expected):
        np.testing.assert_array_equal(_read(out / "test_label" / f"frame{i:06d}.png"),
                                      render_label(pose, out_size=(512, 256)))
        assert (out / "test_facetexts128" / f"frame{i:06d}.txt").read_text() == " ".join(
            map(str, face_box(pose, out_size=(512, 256))))
    again = tmp_path / "again"
    assert main(["pose", "normalize", "--source", str(source), "--out", str(again),
                 "--norm-params", str(out / "norm_params.txt"), "--size", "512x256"]) == 0
    for i in range(3):
        name = f"test_label/frame{i:06d}.png"
        np.testing.assert_array_equal(_read(again / name), _read(out / name))
    assert main(["pose", "normalize", "--source", str(source), "--out", str(tmp_path / "x")]) == 2
    assert "--target is required" in capsys.readouterr().err


def test_normalize_reports_unwritten_frames_and_refuses_an_empty_result(tmp_path, capsys):
    rows = [(880.0, 440.0), (900.0, 450.0), (1000.0, 500.0)]
    target = _folder(tmp_path / "target", [standing(toe, h) for toe, h in rows for _ in range(30)])
    source_poses = [standing(toe, h, x=700.0) for toe, h in [(590.0, 200.0), (600.0, 230.0), (700.0, 250.0)] * 3]
    source = _folder(tmp_path / "source", [standing(600, 230, left_ear=False), *source_poses])
    assert main(["pose", "normalize", "--target", str(target), "--source", str(source), "--out",
                 str(tmp_path / "norm"), "--size", "512x256"]) == 0
    # 10 frames: the first has no left ear (before the first valid one), 3 + 3 stand outside window 7's centres
    assert "not written: 7 of 10 source frames" in capsys.readouterr().out
    # a window longer than the video leaves nothing to write: an error, and no folder that looks finished
    out = tmp_path / "long"
    assert main(["pose", "normalize", "--target", str(target), "--source", str(source), "--out", str(out),
                 "--median-window", "11"]) == 2
    err = capsys.readouterr().err
    assert "no frame to write" in err and "--median-window 11" in err and err.count("\n") == 1
    assert not out.exists()


def test_normalize_median_fracs_are_flags_and_the_error_names_them(tmp_path, capsys):
    rows = [(880.0, 440.0), (900.0, 450.0), (1000.0, 500.0)]
    target = _folder(tmp_path / "target", [standing(toe, h) for toe, h in rows for _ in range(30)])
    # source median 600, closest 700: the far row 500 is 100 rows from the median, not below 0.5 * 100
    source = _folder(tmp_path / "source", [standing(toe, h, x=700.0) for toe, h in
                                           [(500.0, 200.0), (600.0, 230.0), (700.0, 250.0)] * 4])
    args = ["pose", "normalize", "--target", str(target), "--source", str(source), "--size", "512x256"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "try a larger --source-median-frac" in err and err.count("\n") == 1
    assert main([*args, "--out", str(tmp_path / "b"), "--source-median-frac", "1.5"]) == 0
    params = NormParams.load(tmp_path / "b" / "norm_params.txt")
    assert (params.t_max, params.t_hor) == (700.0, 500.0)
    assert main([*args, "--out", str(tmp_path / "c"), "--target-median-frac", "0"]) == 2
    assert "--target-median-frac 0.0: expected a number > 0" in capsys.readouterr().err


def test_render_with_every_frame_skipped_is_an_error_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a_keypoints.json").write_text('{"version": 1.3, "people": []}')
    pose = standing(700, 250)
    write_json(src / "b_keypoints.json", pose, pose)
    out = tmp_path / "labels"
    assert main(["pose", "render", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "every frame was skipped (2 of 2)" in err and "a: no person detected" in err and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "labels_facetexts128").exists()


@pytest.mark.parametrize("command", ["render", "normalize"])
def test_overwrite_never_replaces_the_input_folders(tmp_path, capsys, command):
    src = tmp_path / "data" / "keypoints"
    src.mkdir(parents=True)
    for i in range(3):
        write_json(src / f"f{i}_keypoints.json", standing(700, 250))
    before = sorted(p.name for p in src.iterdir())
    for out in (src, tmp_path / "data"):
        args = ["pose", "render", str(src)] if command == "render" else \
            ["pose", "normalize", "--source", str(src), "--target", str(src)]
        assert main([*args, "--out", str(out), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"would replace the input folder {src}" in err and err.count("\n") == 1
        assert sorted(p.name for p in src.iterdir()) == before
