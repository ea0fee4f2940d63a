"""The one identifier rule (check_id) and the one safe path function (safe_join)."""

from __future__ import annotations

import os

import pytest

from plumbing.errors import AnimbenchError
from plumbing.ids import MAX_ID_BYTES, NAME_MAX, check_id, id_problem, safe_join


def test_check_id_names_where_and_the_field_on_one_line():
    """A refused id is one line naming the place, the field and the rule; control characters are escaped."""
    assert check_id("id10001", field="person_id", where="m.csv line 2") == "id10001"
    with pytest.raises(AnimbenchError) as err:
        check_id("a\nb/../c", field="video_id", where="m.csv line 7")
    msg = str(err.value)
    assert msg.startswith("m.csv line 7: video_id 'a\\nb/../c' contains") and "\n" not in msg
    assert id_problem("x" * MAX_ID_BYTES) is None and id_problem("x" * (MAX_ID_BYTES + 1))
    assert id_problem("a#b") is None and id_problem("a#b", allow_hash=False)
    assert id_problem("zoë 名前") is None and id_problem("rtl\u202eoverride")  # format characters refused


def test_safe_join_stays_inside_its_root(tmp_path):
    """Plain names up to the filesystem's name limit join; '..', separators and symlinks that lead out do not."""
    assert safe_join(tmp_path, "train", "v" * 200 + ".mp4") == tmp_path / "train" / ("v" * 200 + ".mp4")
    for parts in (("..", "x"), ("a/b",), ("train", "v" * (NAME_MAX + 1)), ("",)):
        with pytest.raises(AnimbenchError, match="refusing to write"):
            safe_join(tmp_path, *parts)
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path, tmp_path / "root" / "link")
    with pytest.raises(AnimbenchError, match="resolves outside"):
        safe_join(tmp_path / "root", "link", "x")
