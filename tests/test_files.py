"""Atomic outputs are readable as the umask allows, and a directory output can be redone."""

from __future__ import annotations

import os
import stat

import pyarrow as pa
import pytest

from lesion import files

KIND = files.TableKind("test", "test step", ("x",))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_honour_the_umask_not_the_private_temporary_mode(tmp_path, umask_022):
    files.write_table(pa.table({"x": [1]}), tmp_path / "t.parquet", kind=KIND)
    assert mode(tmp_path / "t.parquet") == 0o644
    with files.atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("x")
    assert mode(tmp_path / "d") == 0o755
    os.umask(0o077)
    files.write_table(pa.table({"x": [1]}), tmp_path / "private.parquet", kind=KIND)
    assert mode(tmp_path / "private.parquet") == 0o600


def test_a_directory_output_replaces_an_earlier_one(tmp_path):
    for content in ("first", "second"):
        with files.atomic_dir(tmp_path / "d") as tmp:
            (tmp / content).write_text(content)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["second"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporaries left
