"""Config loading: the official FOMM / Monkey-Net YAML files as they are, ours, and clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from methods.config import load_config
from prep.errors import AnimbenchError

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "fomm-tiny.yaml"


def test_every_official_fomm_and_monkey_net_config_loads(shared_dir):
    for family, method in (("fomm", "fomm"), ("monkeynet", "monkey_net")):
        files = sorted((shared_dir / "data" / "official-configs" / family).glob("*.yaml"))
        assert len(files) == 8
        for path in files:
            cfg = load_config(path)
            assert cfg["_meta"]["method"] == method
            assert cfg["_meta"]["path"] == str(path)
            assert cfg["_meta"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            assert cfg["model_params"]["common_params"]["num_kp"] in (4, 10)


def test_official_values_are_read_as_written(shared_dir):
    cfg = load_config(shared_dir / "data" / "official-configs" / "fomm" / "mgif-256.yaml")
    assert cfg["model_params"]["kp_detector_params"]["single_jacobian_map"] is True
    assert cfg["train_params"]["lr_generator"] == 2.0e-4
    assert cfg["model_params"]["discriminator_params"]["scales"] == [1]


def test_tiny_config_chooses_a_perceptual_fallback():
    cfg = load_config(TINY)
    assert cfg["_meta"]["method"] == "fomm"
    assert cfg["train_params"]["perceptual_fallback"] == "pixel_l1"


def _write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_missing_field_names_file_and_field(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    del cfg["model_params"]["common_params"]["num_kp"]
    path = _write(tmp_path, cfg)
    with pytest.raises(AnimbenchError, match=rf"{path}: model_params.common_params.num_kp missing"):
        load_config(path)


@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("kp_detector_params", "scale_factor", 0.3, "scale_factor must be 1/n"),
        ("common_params", "num_kp", 10.5, "num_kp must be a positive integer"),
        ("discriminator_params", "scales", [1, 0.3], "scales must be a non-empty list of 1/n"),
    ],
)
def test_invalid_model_values_are_rejected(tmp_path, section, key, value, message):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model_params"][section][key] = value
    with pytest.raises(AnimbenchError, match=message):
        load_config(_write(tmp_path, cfg))


def test_unknown_perceptual_fallback_is_rejected(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["train_params"]["perceptual_fallback"] = "lpips"
    with pytest.raises(AnimbenchError, match="perceptual_fallback must be one of"):
        load_config(_write(tmp_path, cfg))


def test_broken_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_params:\n  common_params: [1, 2\n")
    with pytest.raises(AnimbenchError, match=r"bad.yaml:.* not valid YAML"):
        load_config(bad)
    with pytest.raises(AnimbenchError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(AnimbenchError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")


def test_unknown_method_and_wrong_method(tmp_path):
    with pytest.raises(AnimbenchError, match="cannot tell the method"):
        load_config({"model_params": {}})
    with pytest.raises(AnimbenchError, match="is a fomm config, expected monkey_net"):
        load_config(TINY, method="monkey_net")


def test_dict_configs_get_a_stable_hash():
    raw = yaml.safe_load(TINY.read_text())
    a, b = load_config(raw), load_config(dict(reversed(list(raw.items()))))
    assert a["_meta"]["path"] is None
    assert a["_meta"]["sha256"] == b["_meta"]["sha256"]
    raw["train_params"]["batch_size"] = 3
    assert load_config(raw)["_meta"]["sha256"] != a["_meta"]["sha256"]
