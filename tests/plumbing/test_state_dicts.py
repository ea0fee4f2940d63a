"""User-placed .pth files load strictly or fail in one line naming the file and what does not match."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plumbing.errors import AnimbenchError
from plumbing.state_dicts import load_exact, read_state_dict


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)


def test_a_dataparallel_file_loads_exactly(tmp_path):
    src = Tiny()
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "w.pth")
    state = read_state_dict(tmp_path / "w.pth")
    assert set(state) == set(src.state_dict())
    dst = Tiny()
    load_exact(dst, state, tmp_path / "w.pth")
    torch.testing.assert_close(dst.conv.weight, src.conv.weight)


def test_old_files_without_num_batches_tracked_and_ignored_heads_load():
    src, dst = Tiny(), Tiny()
    own_head = dst.head.weight.detach().clone()
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["head.weight"] = torch.zeros(1000, 4)  # a head of another shape, thrown away
    load_exact(dst, state, "old.pth", ignore_prefixes=("head.",))
    torch.testing.assert_close(dst.bn.running_var, src.bn.running_var)
    torch.testing.assert_close(dst.head.weight, own_head)  # the ignored head is left as the model has it


def test_mismatches_are_one_line_naming_file_and_keys(tmp_path):
    state = Tiny().state_dict()
    del state["conv.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["head.weight"] = torch.zeros(3, 4)
    with pytest.raises(AnimbenchError) as err:
        load_exact(Tiny(), state, tmp_path / "w.pth")
    msg = str(err.value)
    assert msg.startswith(f"weight file {tmp_path / 'w.pth'}: keys do not match Tiny: ") and "\n" not in msg
    assert "1 missing (e.g. conv.bias)" in msg and "1 unexpected (e.g. extra.weight)" in msg
    assert "1 shape (e.g. head.weight (3, 4) != (2, 4))" in msg


def test_files_that_are_not_state_dicts_are_refused(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AnimbenchError, match=r"junk.pth: not a torch checkpoint \("):
        read_state_dict(tmp_path / "junk.pth")
    torch.save({"a": 1}, tmp_path / "dict.pth")
    with pytest.raises(AnimbenchError, match=r"dict.pth: expected a state_dict \(name -> tensor\), got dict"):
        read_state_dict(tmp_path / "dict.pth")
    with pytest.raises(AnimbenchError, match="missing.pth: not a torch checkpoint"):
        read_state_dict(tmp_path / "missing.pth")
