"""A refused identifier is named once in its message, whichever rule it breaks."""

from __future__ import annotations

import pytest

from plumbing.errors import AnimbenchError
from plumbing.ids import check_id, safe_join


@pytest.mark.parametrize("value", ["..", ".", " pad", ".hidden", "a/b", "x" * 200])
def test_check_id_names_the_value_once(value):
    with pytest.raises(AnimbenchError) as err:
        check_id(value, field="frame name", where="poses.csv line 3")
    msg = str(err.value)
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    assert msg.startswith(f"poses.csv line 3: frame name {shown} ") and msg.count(shown) == 1, msg
    assert "\n" not in msg


def test_dot_dot_says_what_it_is_without_repeating_it(tmp_path):
    with pytest.raises(AnimbenchError) as err:
        check_id("..", field="frame name", where="f.csv line 2")
    assert str(err.value).startswith("f.csv line 2: frame name '..' is not a name (")
    with pytest.raises(AnimbenchError) as err:
        safe_join(tmp_path, "..")
    assert str(err.value).count("'..'") == 1
