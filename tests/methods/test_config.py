"""Config loading: the official FOMM / Monkey-Net YAML files as they are, ours, and clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from methods.registry import load_config
from plumbing.errors import AnimbenchError

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


# --- unknown keys: a typo in any section is an error naming the key, the section, the file and the choices ---

MONKEY_TINY = REPO / "configs" / "monkey_net-tiny.yaml"


def test_every_project_config_loads():
    files = sorted((REPO / "configs").glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        assert load_config(path)["_meta"]["path"] == str(path)


@pytest.mark.parametrize(
    "base,dotted,typo,expected",
    [
        (TINY, "animate_params.normalization_params", "use_relative_movment", "use_relative_movement"),
        (TINY, "animate_params", "num_pair", "num_pairs"),
        (TINY, "train_params", "lr_generatr", "lr_generator"),
        (TINY, "train_params", "checkpoint_frequency", "checkpoint_freq"),
        (TINY, "train_params.loss_weights", "equivariance_values", "equivariance_value"),
        (TINY, "train_params.transform_params", "sigma_afine", "sigma_affine"),
        (TINY, "dataset_params", "frame_size", "frame_shape"),
        (TINY, "dataset_params.augmentation_params.flip_param", "horizontal_flp", "horizontal_flip"),
        (TINY, "reconstruction_params", "num_video", "num_videos"),
        (TINY, "model_params.common_params", "estimate_jacobians", "estimate_jacobian"),
        (TINY, "model_params.generator_params", "estimate_occlusion", "estimate_occlusion_map"),
        (TINY, "model_params", "kp_detector_param", "kp_detector_params"),
        (TINY, "", "visualiser_params", "visualizer_params"),
        (MONKEY_TINY, "transfer_params.normalization_params", "move_locaton", "move_location"),
        (MONKEY_TINY, "train_params", "detach_kp_generatr", "detach_kp_generator"),
        (MONKEY_TINY, "train_params.log_params", "cpk_freq_epochs", "cpk_freq_epoch"),
        (MONKEY_TINY, "model_params.generator_params.kp_embedding_params", "norm_cnst", "norm_const"),
        (MONKEY_TINY, "", "animate_params", "transfer_params"),
    ],
)
def test_unknown_key_in_any_section_is_one_line_error(tmp_path, base, dotted, typo, expected):
    cfg = yaml.safe_load(base.read_text())
    node = cfg
    for part in filter(None, dotted.split(".")):
        node = node[part]
    node[typo] = node.pop(expected, True) if expected in node else True
    path = _write(tmp_path, cfg)
    with pytest.raises(AnimbenchError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert f"{dotted + '.' if dotted else ''}{typo}" in message  # the key and its section
    assert f"did you mean {expected!r}" in message
    assert "expected one of" in message and expected in message


def test_unknown_key_in_a_dict_config_is_an_error():
    raw = yaml.safe_load(TINY.read_text())
    raw["train_params"]["max_step"] = 3
    with pytest.raises(AnimbenchError, match=r"<dict>: unknown key train_params.max_step"):
        load_config(raw)


def test_a_section_that_is_not_a_mapping_is_an_error(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["animate_params"]["normalization_params"] = "relative"
    with pytest.raises(AnimbenchError, match=r"animate_params.normalization_params: expected a mapping"):
        load_config(_write(tmp_path, cfg))


def _keys(schema: dict, dotted: str) -> set[str]:
    node = schema
    for part in dotted.split("."):
        node = node[part]
    return set(node)


def test_model_params_schema_equals_what_the_networks_accept():
    import inspect

    from methods import fomm, monkey_net
    from methods.monkey_net_keypoints import normalize_kp

    f = fomm.CONFIG_SCHEMA
    assert _keys(f, "model_params.kp_detector_params") == fomm._KP_KEYS
    assert _keys(f, "model_params.generator_params") == fomm._GEN_KEYS
    assert _keys(f, "model_params.generator_params.dense_motion_params") == fomm._DM_KEYS
    assert _keys(f, "model_params.discriminator_params") == fomm._DISC_KEYS

    def accepted(fn, filled=frozenset()):
        return set(inspect.signature(fn).parameters) - monkey_net.FILLED_BY_CODE - filled

    m = monkey_net.CONFIG_SCHEMA
    assert _keys(m, "model_params.kp_detector_params") == accepted(monkey_net.KPDetector)
    assert _keys(m, "model_params.generator_params") == accepted(monkey_net.MotionTransferGenerator)
    assert _keys(m, "model_params.generator_params.dense_motion_params") == accepted(monkey_net.DenseMotionModule)
    assert _keys(m, "model_params.generator_params.dense_motion_params.mask_embedding_params") == accepted(
        monkey_net.MovementEmbeddingModule, {"add_bg_feature_map"})
    assert _keys(m, "model_params.generator_params.kp_embedding_params") == accepted(
        monkey_net.MovementEmbeddingModule)
    assert _keys(m, "model_params.discriminator_params") == accepted(monkey_net.Discriminator)
    assert _keys(m, "transfer_params.normalization_params") == accepted(normalize_kp, {"kp_driving", "kp_source"})


# --- config names: the registry's dataset names and official file names resolve from a search path ---

OFFICIAL = "data/official-configs"


@pytest.fixture
def no_user_configs(tmp_path, monkeypatch):
    """No $ANIMBENCH_CONFIGS and an empty ~/.cache: only the project's configs/ can answer."""
    monkeypatch.delenv("ANIMBENCH_CONFIGS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_project_configs_by_dataset_name_and_file_name(no_user_configs):
    assert load_config("tiny", method="fomm")["_meta"]["path"] == str(TINY)
    assert load_config("fomm-tiny.yaml", method="fomm")["_meta"]["path"] == str(TINY)
    assert load_config("tiny", method="monkey_net")["_meta"]["path"] == str(MONKEY_TINY)


def test_official_configs_from_animbench_configs(no_user_configs, shared_dir, monkeypatch):
    monkeypatch.setenv("ANIMBENCH_CONFIGS", str(shared_dir / OFFICIAL))  # its fomm/ and monkeynet/ folders
    vox = shared_dir / OFFICIAL / "fomm" / "vox-256.yaml"
    assert load_config("vox", method="fomm")["_meta"]["path"] == str(vox)
    assert load_config("vox-256.yaml", method="fomm")["_meta"]["path"] == str(vox)
    assert load_config("vox", method="monkey_net")["_meta"]["path"] == str(shared_dir / OFFICIAL / "monkeynet/vox.yaml")
    assert load_config("taichi-adv", method="fomm")["_meta"]["method"] == "fomm"


def test_official_configs_from_the_user_cache(no_user_configs, shared_dir):
    cache = no_user_configs / "home" / ".cache" / "animbench" / "configs"
    cache.mkdir(parents=True)
    (cache / "vox-256.yaml").write_bytes((shared_dir / OFFICIAL / "fomm" / "vox-256.yaml").read_bytes())
    assert load_config("vox", method="fomm")["_meta"]["path"] == str(cache / "vox-256.yaml")


def test_a_missing_official_config_says_where_to_place_it(no_user_configs):
    with pytest.raises(AnimbenchError) as err:
        load_config("vox", method="fomm")
    message = str(err.value)
    assert "\n" not in message
    assert "config file not found" in message and "vox-256.yaml" in message
    assert "first-order-model" in message  # where the official file comes from
    assert "ANIMBENCH_CONFIGS" in message and "~/.cache/animbench/configs" in message


def test_an_explicit_path_wins_over_a_name(no_user_configs):
    local = no_user_configs / "tiny"
    local.write_text(TINY.read_text())
    assert load_config("tiny", method="fomm")["_meta"]["path"] == "tiny"
