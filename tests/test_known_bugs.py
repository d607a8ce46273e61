"""tests/known_bugs.py plants bugs by replacing a text of a module: each text must still be
there, or the list has gone stale and a planted bug would plant nothing (a refactor that
renames a variable is enough)."""

from __future__ import annotations

import pytest

from known_bugs import BUGS, SRC


@pytest.mark.parametrize("what,module,text", [b[:3] for b in BUGS], ids=[b[0] for b in BUGS])
def test_every_planted_bug_finds_its_text(what, module, text):
    assert (SRC / module).read_text().count(text) == 1, f"{module}: {text!r} not found once"
