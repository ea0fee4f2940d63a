"""`animbench weights list | verify | install` and `animbench metrics`: what a user sees about weight files."""

from __future__ import annotations

from pathlib import Path

import pytest

from animbench.cli import main

ALEX = "alexnet-owt-7be5be79.pth"
OPENFACE = "openface.pth"  # the manifest knows no hash for it, so any bytes count as "ok"


@pytest.fixture
def homes(tmp_path, monkeypatch) -> dict[str, Path]:
    """Empty weight folders for every library, so the test sees only what it places."""
    out = {"torch_hub": tmp_path / "torch" / "hub" / "checkpoints", "animbench": tmp_path / "animbench",
           "insightface": tmp_path / "insightface" / "models"}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(out["animbench"]))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))
    return out


def _place(folder: Path, name: str, data: bytes = b"not the real weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def _line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if f" {name} " in f" {line} ")


def test_list_shows_status_users_and_folder_of_every_file(homes, capsys):
    _place(homes["animbench"], OPENFACE)
    _place(homes["torch_hub"], ALEX)
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert _line(out, OPENFACE).startswith("ok ") and str(homes["animbench"]) in _line(out, OPENFACE)
    assert _line(out, ALEX).startswith("hash mismatch") and "metric:lpips" in _line(out, ALEX)
    fid = _line(out, "pt_inception-2015-12-05-6726825d.pth")
    assert fid.startswith("missing") and "metric:fid" in fid and str(homes["torch_hub"]) in fid


def test_verify_exits_1_and_names_each_problem(homes, capsys):
    _place(homes["torch_hub"], ALEX)
    assert main(["weights", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"missing: missing weight file {OPENFACE}: place it in {homes['animbench']}" in out
    assert f"hash mismatch: weight file {homes['torch_hub'] / ALEX}: sha256" in out
    assert "does not start with 7be5be79" in out


def test_verify_selected_files_or_users(homes, capsys):
    _place(homes["animbench"], OPENFACE)
    assert main(["weights", "verify", OPENFACE]) == 0
    assert main(["weights", "verify", "metric:aed_face"]) == 0
    assert "1 ok, 0 missing, 0 hash mismatch" in capsys.readouterr().out
    assert main(["weights", "verify", "metric:fid"]) == 1
    assert main(["weights", "verify", "no-such.pth"]) == 2
    assert "'no-such.pth' is neither a manifest file nor a user" in capsys.readouterr().err


def test_install_copies_found_files_after_hash_checks(homes, tmp_path, capsys):
    src = tmp_path / "downloads"
    _place(src / "nested", OPENFACE, b"openface bytes")
    _place(src, "unrelated.bin")
    assert main(["weights", "install", "--from", str(src)]) == 0
    assert (homes["animbench"] / OPENFACE).read_bytes() == b"openface bytes"
    assert f"installed {OPENFACE} -> {homes['animbench'] / OPENFACE}" in capsys.readouterr().out

    bad = tmp_path / "bad"
    _place(bad, ALEX)
    assert main(["weights", "install", "--from", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("animbench: error: weights install:") and "7be5be79" in err and err.count("\n") == 1
    assert not (homes["torch_hub"] / ALEX).exists()
    assert main(["weights", "install", "--from", str(tmp_path / "empty_dir_missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["weights", "install", "--from", str(tmp_path / "empty")]) == 1


def test_a_metric_with_missing_weights_is_described_with_the_one_line_reason(homes, capsys):
    import json

    assert main(["metrics", "lpips", "--describe"]) == 0
    status = json.loads(capsys.readouterr().out)["lpips"]["status"]
    assert status == (f"not built: missing weight file {ALEX}: place it in {homes['torch_hub']} (needed by "
                      f"metric:lpips, metric:lpips_body, metric:lpips_face; get it from https://download.pytorch.org/models/{ALEX}; "
                      "or run `animbench weights install --from DIR`)")


def test_metrics_lists_and_describes(homes, capsys):
    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    assert _line(out, "fid").split()[1] == "set"
    assert "lower is better" in _line(out, "l1") and f"{ALEX} (missing)" in _line(out, "lpips")
    assert main(["metrics", "ssim", "--describe"]) == 0
    assert '"win_size": 11' in capsys.readouterr().out


def test_metrics_describe_works_on_a_fresh_install(homes, capsys):
    """Describing a metric does not need its weight file: every metric is described, missing files named."""
    import json

    from bench.metrics import list_metrics

    assert main(["metrics", "--describe"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert sorted(described) == list_metrics()
    lpips = described["lpips"]
    assert lpips["weights"] == [{"name": ALEX, "path": str(homes["torch_hub"] / ALEX), "sha256": "missing"}]
    assert ALEX in lpips["status"] and "animbench weights install" in lpips["status"]
    assert lpips["protocol_notes"].startswith("LPIPS v0.1")
    assert described["ssim"]["settings"]["win_size"] == 11 and "status" not in described["ssim"]
    assert main(["metrics", "fid", "--describe"]) == 0
    assert "pt_inception-2015-12-05-6726825d.pth" in json.loads(capsys.readouterr().out)["fid"]["status"]


def test_list_names_every_user_of_the_pose_files(homes, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    rtpose = _line(out, "pose_model.pth")
    for user in ("metric:akd_body", "metric:mkr", "metric:pose_distance_body", "metric:missed_detections_body",
                 "prep:poses-rtpose", "animate:pose-backend-rtpose"):
        assert user in rtpose
    dwpose = _line(out, "dw-ll_ucoco_384.onnx")
    assert dwpose.startswith("missing") and str(homes["animbench"]) in dwpose
    for user in ("prep:poses-dwpose", "animate:pose-backend-dwpose", "metric:pose_distance_dwpose",
                 "metric:missed_detections_dwpose"):
        assert user in dwpose
    assert "metric:lpips_body" in _line(out, ALEX) and "metric:lpips_face" in _line(out, ALEX)
    assert main(["weights", "verify", "metric:pose_distance_dwpose_hands"]) == 1
    assert "missing weight file dw-ll_ucoco_384.onnx" in capsys.readouterr().out


def test_the_manifest_alone_declares_every_file():
    """`weights list` needs no backend imported: plumbing.weights declares the DWPose file itself."""
    import subprocess
    import sys

    code = "from plumbing import weights; print(sorted(weights.WEIGHTS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert "dw-ll_ucoco_384.onnx" in out and "pose_model.pth" in out


def test_every_metric_weight_file_names_the_metric_among_its_users():
    from bench.metrics import list_metrics, metric_spec
    from plumbing import weights

    for name in list_metrics():
        for file in metric_spec(name).needs:
            assert f"metric:{name}" in weights.get(file).users, (name, file)
