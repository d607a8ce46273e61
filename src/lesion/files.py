"""Files every step writes and reads, torch-free: atomic writes, Parquet, errors.

Every output goes to a temporary name in the target directory and is renamed
into place when complete, so a killed job never leaves a file that looks done;
the temporaries a killed job leaves are removed when its output is rewritten.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class InputFileError(ValueError):
    """An input file is missing, unreadable or not what the step expects."""


class OutputPathError(ValueError):
    """An output cannot be written where it was asked for."""


class DiskFullError(RuntimeError):
    """An output did not fit: the disk (or the quota, or a file size limit) is full."""


# What a full disk looks like: OSError's errno, or the text of a writer that wraps it
# (safetensors' Rust writer: "File too large (os error 27)"; pyarrow's: "[errno 28] ...").
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_FULL_TEXT = tuple(f"os error {n}" for n in _FULL) + tuple(os.strerror(n) for n in _FULL)


def _disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in _FULL:
        return True
    text = str(err).lower()
    return any(marker.lower() in text for marker in _FULL_TEXT)


def _full(path: Path, err: BaseException) -> DiskFullError:
    return DiskFullError(
        f"{path}: the disk is full ({err}); the device holding {path.parent} has no room for "
        "this output (or a quota or file size limit was reached) and nothing was written under "
        "its name; expected free space: make some, then run the study again (it resumes)")


def check_output(path: str | os.PathLike) -> None:
    """Raise OutputPathError if a file stands where a directory of `path` must be.

    Cheap: steps call it for their outputs before any work, so a long job
    does not find out at its end that it cannot write.
    """
    path = Path(path)
    for ancestor in (path.parent, *path.parent.parents):
        if ancestor.is_dir():
            break
        if ancestor.exists() or ancestor.is_symlink():
            raise OutputPathError(f"{path}: cannot be written, {ancestor} is not a directory; "
                                  "expected a directory there (move the file away)")


def _make_parent(path: Path) -> None:
    """Create `path`'s directory; a file standing where a directory must be is named."""
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)


def _remove_leftovers(path: Path) -> None:
    """Delete temporaries of `path` that a killed writer left (one writer per path at a time)."""
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def _umask() -> int:
    """The process's umask (read by setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: str | Path, mode: int) -> None:
    """Give a finished temporary the mode a plainly created file would have.

    mkstemp and mkdtemp create private (0600, 0700) entries; outputs must be
    readable by whoever the umask allows, e.g. colleagues on a shared cluster
    file system.
    """
    os.chmod(tmp, mode & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    The content is flushed to disk (fsync) before the rename, so that after a
    power cut the name points to the whole file, not to an empty one.
    """
    path = Path(path)
    _make_parent(path)
    _remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        _publish(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _disk_full(err):
            raise _full(path, err) from err
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `path`; rename it onto `path` on success.

    A directory already at `path` (an earlier run's) is replaced: it is
    renamed aside first, as a leftover temporary, and removed after.
    """
    path = Path(path)
    _make_parent(path)
    _remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _publish(tmp, 0o777)
        if path.is_dir() and not path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
            os.replace(path, old)  # onto the empty directory just made
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(err):
            raise _full(path, err) from err
        raise


@dataclass(frozen=True)
class TableKind:
    """A kind of table a step writes: its name, the step that writes it, the columns
    readers rely on. Defined beside the code that owns the table (lesion.kinds for
    the engine's), passed to write_table and read_table."""

    name: str
    step: str        # e.g. "sweep variants", run as `python -m lesion sweep variants`
    columns: tuple[str, ...]

    def describe(self) -> str:
        return f"a {self.name} table (written by `python -m lesion {self.step}`)"


# The schema metadata every table carries: its kind and the step that wrote it.
KIND_KEY, STEP_KEY = b"lesion.table", b"lesion.step"


def write_table(table: pa.Table, path: str | os.PathLike, metadata: dict[str, str] | None = None,
                *, kind: TableKind) -> None:
    """Write a Parquet table atomically, stamped with its kind, `metadata` added to its schema's.

    The stamp lets every reader refuse the wrong kind of table by name
    (read_table) instead of failing on a missing column deep inside a step.
    """
    missing = [c for c in kind.columns if c not in table.column_names]
    if missing:  # a writer and its kind disagree: a bug in lesion, not a user mistake
        raise AssertionError(f"{kind.name} table without columns {missing}")
    stamp = {KIND_KEY: kind.name.encode(), STEP_KEY: kind.step.encode()}
    table = table.replace_schema_metadata({
        **(table.schema.metadata or {}), **stamp,
        **{k.encode(): v.encode() for k, v in (metadata or {}).items()}})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike, kind: TableKind | None = None) -> pa.Table:
    """Read a Parquet table; a missing, corrupt or (given `kind`) wrong kind of file
    raises InputFileError naming the file, what it is and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise InputFileError(f"{path}: not a readable Parquet file ({err})") from err
    if kind is not None:
        check_kind(table, path, kind)
    return table


def check_kind(table: pa.Table, path: str | os.PathLike, kind: TableKind) -> None:
    """Raise InputFileError unless `table` (read from `path`) is a `kind` table."""
    meta = table.schema.metadata or {}
    found = meta.get(KIND_KEY, b"").decode()
    if found != kind.name:
        what = (f"{TableKind(found, meta.get(STEP_KEY, b'?').decode(), ()).describe()}"
                if found else "a table without the kind stamp of a lesion step (written by another "
                "tool, or by an older lesion: rebuild it)")
        raise InputFileError(f"{path}: {what}; expected {kind.describe()}")
    missing = [c for c in kind.columns if c not in table.column_names]
    if missing:
        raise InputFileError(f"{path}: {kind.name} table without columns {missing}; expected "
                             f"{kind.describe()} with columns {list(kind.columns)}")
