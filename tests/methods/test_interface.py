"""The method interface: every family answers the same calls the same way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from methods.interface import AnimationMode, Method, ShapeError
from methods.registry import get_method, list_methods, load_model
from plumbing.errors import AnimbenchError

REPO = Path(__file__).resolve().parents[2]
TINY = {"fomm": REPO / "configs/fomm-tiny.yaml", "monkey_net": REPO / "configs/monkey_net-tiny.yaml"}


def _model(name: str) -> Method:
    return load_model(name, config=TINY.get(name))[0]


@pytest.mark.parametrize("name", list_methods())
def test_every_method_implements_the_interface(name):
    model = _model(name)
    assert isinstance(model, Method) and type(model).card is get_method(name)
    mode = model.animation_mode()
    assert isinstance(mode, AnimationMode) and mode.as_dict()["relative"] == mode.relative
    source, video = torch.rand(3, 64, 64), torch.rand(2, 3, 64, 64)
    assert model.animate(source, video, mode).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("name", list_methods())
def test_bad_shapes_raise_the_same_error_in_every_family(name):
    model = _model(name)
    frames = torch.rand(2, 3, 64, 64)
    with pytest.raises(ShapeError, match=r"^reconstruct: expected source and driving frames of one shape"):
        model.reconstruct(frames, frames[:1])
    with pytest.raises(ShapeError, match=r"^animate: expected source \(1, C, H, W\) and driving \(T, C, H, W\)"):
        model.animate(frames, frames)
    assert issubclass(ShapeError, AnimbenchError)


def test_mode_flags_override_the_config():
    fomm = _model("fomm")
    default = fomm.animation_mode()
    assert fomm.animation_mode(relative=not default.relative).relative is (not default.relative)
    assert default.with_flags(adapt_scale=True).adapt_scale is True
    assert default.with_flags().option("relative_jacobian") == default.option("relative_jacobian")


def test_shared_loops_name_no_method():
    for path in ("methods/train.py", "methods/infer.py"):
        for number, line in enumerate((REPO / path).read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not re.search(r"isinstance\(model, |== \"(fomm|monkey_net)\"", code), f"{path}:{number}: {line}"


def test_the_registry_finds_family_files_without_a_list():
    from methods import registry

    assert {"methods.fomm", "methods.monkey_net", "methods.baselines"} <= set(registry._family_modules())
    assert "methods.train" not in registry._family_modules()
