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


def _file_size_limit(size: int):
    """A child process whose files cannot grow past `size` bytes: a full disk, as the kernel
    reports it (EFBIG; SIGXFSZ ignored, so the write fails instead of killing the job)."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


WRITERS = {  # each writes about 400 KB through files.atomic_path or atomic_dir
    "parquet": "import numpy as np, pyarrow as pa; from lesion import files; "
               "files.write_table(pa.table({'x': np.random.rand(50000)}), OUT, "
               "kind=files.TableKind('test', 'none', ()))",
    "safetensors": "import torch; from lesion import tensorfiles; "
                   "tensorfiles.save_tensors({'w': torch.rand(100000)}, OUT, {})",
    "directory": "from lesion import files\n"
                 "with files.atomic_dir(OUT) as tmp: (tmp / 'a.bin').write_bytes(bytes(400000))",
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_an_output_that_does_not_fit_is_a_disk_full_error_and_leaves_nothing(tmp_path, writer):
    import subprocess
    import sys

    out = tmp_path / "out" / "result"
    code = f"OUT = {str(out)!r}\n" + WRITERS[writer] + "\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          preexec_fn=_file_size_limit(20_000), check=False)
    assert proc.returncode == 1
    assert "lesion.files.DiskFullError" in proc.stderr and f"{out}: the disk is full" in proc.stderr
    assert list((tmp_path / "out").iterdir()) == []  # no partial output, no temporary


def test_a_step_on_a_full_disk_says_so_in_one_line_and_resumes_when_there_is_room(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "raw" / "digits.safetensors"
    step = [sys.executable, "-m", "lesion", "data", "export", "--dataset", "digits", "--out", str(out)]
    proc = subprocess.run(step, capture_output=True, text=True, check=False,
                          preexec_fn=_file_size_limit(20_000))
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("lesion data export: error: "), proc.stderr
    assert f"{out}: the disk is full" in errors[0] and "run the study again" in errors[0]
    assert list(out.parent.iterdir()) == []
    subprocess.run(step, check=True, capture_output=True)  # room again: the step resumes
    fresh = tmp_path / "fresh.safetensors"
    subprocess.run([*step[:-1], str(fresh)], check=True, capture_output=True)
    from lesion import tensorfiles  # the same tensors and metadata (stored in any order)

    assert tensorfiles.load_metadata(out) == tensorfiles.load_metadata(fresh)
    ours, theirs = tensorfiles.load_tensors(out), tensorfiles.load_tensors(fresh)
    assert ours.keys() == theirs.keys() and all(ours[k].equal(theirs[k]) for k in ours)
