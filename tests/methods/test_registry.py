"""The method registry: cards, lookup, load_model provenance, the reference baselines, `animbench methods`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from animbench.cli import main
from methods import registry
from methods.baselines import CopySource
from methods.checkpoints import save_checkpoint
from methods.interface import AnimationMode
from methods.registry import MethodCard, get_method, list_methods, load_model, register_method
from plumbing.errors import AnimbenchError

REPO = Path(__file__).resolve().parents[2]
TINY = {"fomm": REPO / "configs/fomm-tiny.yaml", "monkey_net": REPO / "configs/monkey_net-tiny.yaml"}
OFFICIAL_DIR = {"fomm": "fomm", "monkey_net": "monkeynet"}


def test_names_and_patterns():
    assert {"fomm", "monkey_net", "copy-source", "oracle"} <= set(list_methods())
    assert list_methods("monkey*") == ["monkey_net"]
    assert list_methods("nothing*") == []
    with pytest.raises(AnimbenchError, match="unknown method 'fom'"):
        get_method("fom")


def test_fomm_card_names_every_official_checkpoint():
    card = get_method("fomm")
    assert set(card.checkpoints) == {
        "vox-cpk.pth.tar", "vox-adv-cpk.pth.tar", "taichi-cpk.pth.tar", "taichi-adv-cpk.pth.tar",
        "nemo-cpk.pth.tar", "mgif-cpk.pth.tar", "bair-cpk.pth.tar", "fashion.pth.tar"}
    assert card.configs[card.checkpoints["vox-adv-cpk.pth.tar"]] == "vox-adv-256.yaml"
    with pytest.raises(TypeError):
        card.configs["x"] = "y"  # cards are read-only data


@pytest.mark.parametrize("method", ["fomm", "monkey_net"])
def test_every_card_config_exists(method, shared_dir):
    for dataset, name in get_method(method).configs.items():
        path = REPO / name if name.startswith("configs/") else shared_dir / "data/official-configs" / \
            OFFICIAL_DIR[method] / name
        assert path.is_file(), f"{method} {dataset}: {path}"


def test_register_method_decorator(monkeypatch):
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))

    @register_method(name="tmp-copy", paper="p", family="baseline", trainable=False, needs_config=False)
    def build(cfg, align_corners):
        return CopySource()

    assert get_method("tmp-copy").build is build
    model, prov = load_model("tmp-copy")
    assert prov["method"] == "tmp-copy" and prov["num_parameters"] == 0
    with pytest.raises(ValueError, match="twice"):
        register_method(MethodCard(name="tmp-copy", paper="other", family="baseline", build=build))


def test_load_model_provenance(tmp_path):
    model, prov = load_model("fomm", config=TINY["fomm"])
    assert prov["config"]["sha256"] == hashlib.sha256(TINY["fomm"].read_bytes()).hexdigest()
    assert prov["align_corners"] is True and model.align_corners is True  # the official weights' convention
    assert prov["device"] == "cpu" and prov["dtype"] == "float32" and prov["checkpoint"] is None
    assert not model.training
    ckpt = save_checkpoint(tmp_path / "vox-cpk.pth.tar", model, None, epoch=7)
    again, prov2 = load_model("fomm", checkpoint=ckpt, config=TINY["fomm"], align_corners=False)
    assert prov2["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert prov2["checkpoint"]["epoch"] == 7 and prov2["align_corners"] is False
    assert again.generator.align_corners is False
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_load_model_user_errors(tmp_path):
    with pytest.raises(AnimbenchError, match="a config is required"):
        load_model("fomm")
    with pytest.raises(AnimbenchError, match="monkey_net config, expected fomm"):
        load_model("fomm", config=TINY["monkey_net"])
    with pytest.raises(AnimbenchError, match="no weights"):
        load_model("oracle", checkpoint=tmp_path / "x.pth.tar")
    wrong = save_checkpoint(tmp_path / "mnet.pth.tar", load_model("monkey_net", config=TINY["monkey_net"])[0],
                            None, epoch=0)
    with pytest.raises(AnimbenchError, match="does not match the model"):
        load_model("fomm", checkpoint=wrong, config=TINY["fomm"])


def test_baselines_bound_reconstruction():
    source, driving = torch.rand(1, 3, 8, 8), torch.rand(4, 3, 8, 8)
    copy, _ = load_model("copy-source")
    oracle, _ = load_model("oracle")
    assert list(copy.parameters()) == [] and list(oracle.parameters()) == []
    assert torch.equal(copy.reconstruct(source.expand(4, -1, -1, -1), driving), source.expand(4, -1, -1, -1))
    assert torch.equal(oracle.reconstruct(source.expand(4, -1, -1, -1), driving), driving)
    assert torch.equal(copy.animate(source[0], driving), source.expand(4, -1, -1, -1))
    assert torch.equal(oracle.animate(source, driving, AnimationMode(relative=True)), driving)


def test_cli_methods(capsys):
    assert main(["methods", "--json"]) == 0
    cards = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert cards["fomm"]["checkpoints"]["taichi-cpk.pth.tar"] == "taichi"
    assert cards["oracle"]["trainable"] is False
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert "vox-adv-cpk.pth.tar" in text and "First Order Motion Model" in text
    assert main(["methods", "zzz*"]) == 2


def test_load_model_takes_a_dataset_name_and_methods_prints_the_search_path(capsys):
    _, prov = load_model("fomm", config="tiny")
    assert prov["config"]["path"] == str(TINY["fomm"])
    assert main(["methods", "fomm"]) == 0
    assert "ANIMBENCH_CONFIGS" in capsys.readouterr().out
