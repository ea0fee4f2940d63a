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
    card = get_method(name)
    config = TINY.get(name) or (card.configs.get("tiny") if card.needs_config else None)
    return load_model(name, config=config)[0]


VIDEO_DRIVEN = [n for n in list_methods() if get_method(n).driven_by == "video"]
POSE_DRIVEN = [n for n in list_methods() if get_method(n).driven_by == "poses"]


@pytest.mark.parametrize("name", VIDEO_DRIVEN)
def test_every_method_implements_the_interface(name):
    model = _model(name)
    assert isinstance(model, Method) and type(model).card is get_method(name)
    mode = model.animation_mode()
    assert isinstance(mode, AnimationMode) and mode.as_dict()["relative"] == mode.relative
    source, video = torch.rand(3, 64, 64), torch.rand(2, 3, 64, 64)
    assert model.animate(source, video, mode).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("name", POSE_DRIVEN)
def test_every_pose_driven_method_generates_from_label_maps(name):
    import numpy as np

    model = _model(name)
    assert isinstance(model, Method) and type(model).card is get_method(name) and model.driven_by == "poses"
    width, height = model.label_size
    label = np.full((height, width, 3), 255, np.uint8)
    labels = torch.stack([model.label_tensor(label)] * 2)
    h, w = labels.shape[-2:]
    assert (w, h) == tuple(model.generator_size) and 0 <= labels.min() <= labels.max() <= 1
    boxes = torch.full((2, 4), -1, dtype=torch.int64) if model.needs_face_boxes else None
    outputs, previous = model.generate(labels, boxes)
    assert outputs.shape == (2, 3, h, w) and previous.shape == (1, 3, h, w)
    assert model.pose_target(np.zeros((height, width, 3), np.uint8)).shape == (h, w, 3)
    with pytest.raises(AnimbenchError, match="label"):
        model.label_tensor(label[..., 0])


@pytest.mark.parametrize("name", VIDEO_DRIVEN)
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
    """Training, inference and the bench runner ask the interface, never which family a model is."""
    from methods.registry import METHODS

    families = "|".join(sorted(METHODS))
    paths = ["methods/train.py", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "methods").glob("infer*.py")),
             "bench/runner.py", "bench/pose_transfer.py"]
    assert len(paths) >= 6
    for path in paths:
        for number, line in enumerate((REPO / path).read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not re.search(rf"isinstance\(model, |[=!]= [\"']({families})[\"']", code), f"{path}:{number}: {line}"


def test_the_registry_finds_family_files_without_a_list():
    from methods import registry

    assert {"methods.fomm", "methods.monkey_net", "methods.baselines"} <= set(registry._family_modules())
    assert "methods.train" not in registry._family_modules()


@pytest.mark.parametrize("method", ["fomm", "monkey_net", "mraa", "tpsmm"])
def test_align_corners_set_on_the_model_reaches_every_sampling_module(method):
    """One switch: every submodule that samples with its own align_corners follows the model's value."""
    model, _ = load_model(method, config=REPO / f"configs/{method}-tiny.yaml")
    samplers = [m for m in model.modules() if m is not model and "align_corners" in vars(m)]
    assert samplers
    for value in (not model.align_corners, model.align_corners):
        model.align_corners = value
        assert model.align_corners is value and all(m.align_corners is value for m in samplers)
