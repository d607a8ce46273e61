"""Interrupted studies resume to the same numbers; a study is reproducible.

A study that runs for days must survive being killed outright (SIGKILL: the
OOM killer, a cluster's time limit, a power cut) at any moment. Here a tiny
study with the default study's structure (train, variants, predict, metrics,
figures) is killed, Snakemake and its jobs together, at three points: while
a network trains, while sweeps are drawn and predicted, while metrics and
figures are made. After each kill every output on disk must be complete
(atomic writes); then the documented command, `make study`, resumes it
(lesion.tools.run removes the lock the killed Snakemake left, the default
profile's rerun-incomplete reruns the killed jobs). Its final tables must
equal, value for value, those of a study that ran without interruption:
since both started from scratch, that is also the determinism check, along
with regenerating every variant from its row and meeting its recorded sha256.

The runs that are never killed (the uninterrupted study, the last resume)
fork their jobs from the tests' job server, as the other workflow tests do;
the runs that are killed start every job as a real process.

While the study runs (frozen with SIGSTOP, so that nothing moves), a second
`snakemake` and a second `make study` must fail fast, say why, and change
nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import jobserver
from test_workflow import tiny_config

pytestmark = [pytest.mark.workflow,
              pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make (make study)")]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "mlp"
CONFIG = tiny_config("resume")
assert MODEL in CONFIG["models"]
RESULTS = Path("results") / "digits" / MODEL
LOCKED = "Directory cannot be locked"


def make_study_dir(root: Path) -> Path:
    """A copy of the project in `root` (its own results/, .snakemake/), using this .venv.

    The copy's .venv holds only a link to this interpreter's bin/ and its own
    install stamp, newer than the copy's pyproject.toml: make must never
    reinstall (`pip install -e .` from the copy would repoint the shared
    environment's `lesion` at it, and `make -o` does not reach the sub-make
    that builds the report).
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    root.mkdir(parents=True)
    for name in ("Snakefile", "Makefile", "pyproject.toml"):
        shutil.copy2(REPO / name, root / name)
    os.utime(root / "pyproject.toml", (0, 0))
    for name in ("workflow", "src", "envs", "profiles"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    (root / ".venv").mkdir()
    for entry in BIN.parent.iterdir():  # bin/, lib/, pyvenv.cfg, ...: the same environment
        if entry.name != ".installed-stamp":
            (root / ".venv" / entry.name).symlink_to(entry)
    (root / ".venv" / ".installed-stamp").touch()
    return root


def environment(*, forked: bool = False) -> dict[str, str]:
    """The study's environment; `forked`: its `python -m lesion` jobs forked from the tests'
    job server (tests/jobserver.py), for runs that are never killed (a SIGKILL must reach
    every job of a run that is)."""
    env = {**os.environ, "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", "")}
    return {**env, **jobserver.environment()} if forked else env


# `make study` exactly as documented (see make_study_dir for its .venv).
MAKE_STUDY = ["make", "--no-print-directory", "study"]
SNAKEMAKE = [str(BIN / "snakemake")]


def start(root: Path, command: list[str], log: Path) -> subprocess.Popen:
    """Start a command in its own process group (so one signal reaches all its jobs)."""
    return subprocess.Popen(command, cwd=root, env=environment(), stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def finish(root: Path, command: list[str], timeout: float = 300) -> str:
    proc = subprocess.run(command, cwd=root, env=environment(forked=True), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout[-5000:]}"
    return proc.stdout


def wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the study ended (status {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL Snakemake and every job it started; wait until none is left."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "processes of the killed study are still alive"
        time.sleep(0.05)


def exists(root: Path, pattern: str):
    return lambda: any(root.glob(pattern))


def outputs(root: Path) -> list[Path]:
    return sorted(p for top in ("results", "resources") if (root / top).is_dir()
                  for p in (root / top).rglob("*") if p.is_file())


def assert_every_output_is_whole(root: Path) -> None:
    """Whatever a kill left in place under its final name reads back completely."""
    import pyarrow.parquet as pq

    from lesion import tensorfiles

    for path in outputs(root):
        if path.name.startswith("."):  # a temporary of a killed writer: never read
            continue
        if path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".safetensors":
            tensorfiles.load_tensors(path)
        elif path.suffix == ".png":
            assert path.read_bytes().startswith(b"\x89PNG"), path
        elif path.suffix == ".pdf":
            assert path.read_bytes().rstrip().endswith(b"%%EOF"), path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file of the study but Snakemake's own logs, with size and mtime."""
    files = [p for p in root.rglob("*") if p.is_file() and ".snakemake/log" not in str(p)]
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


def tables(root: Path) -> dict[str, pd.DataFrame]:
    found = {str(p.relative_to(root)): pd.read_parquet(p) for p in (root / "results").rglob("*.parquet")}
    found.update({str(p.relative_to(root)): pd.read_csv(p) for p in (root / "results").rglob("*.csv")})
    return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = make_study_dir(tmp_path_factory.mktemp("study") / "uninterrupted")
    finish(root, SNAKEMAKE)
    return root


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict:
    """The same study from scratch, killed at three points, resumed by `make study`."""
    root = make_study_dir(tmp_path_factory.mktemp("study") / "interrupted")
    log = root / "runs.log"
    report: dict = {"root": root, "kills": []}

    def kill_at(ready, what: str, *, probe=None) -> None:
        proc = start(root, MAKE_STUDY, log)
        wait_for(proc, ready, what)
        if probe is not None:
            os.killpg(proc.pid, signal.SIGSTOP)  # frozen: nothing moves while probed
            try:
                report["probe"] = probe()
            finally:
                kill_group(proc)
        else:
            kill_group(proc)
        report["kills"].append((what, not (root / RESULTS / "metrics_summary.csv").exists()))
        assert_every_output_is_whole(root)

    def second_runs() -> dict:
        before = snapshot(root)
        runs = {}
        for name, command in (("snakemake", SNAKEMAKE), ("make study", MAKE_STUDY)):
            started = time.monotonic()
            proc = subprocess.run(command, cwd=root, env=environment(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
            runs[name] = (proc.returncode, proc.stdout, time.monotonic() - started)
        runs["unchanged"] = snapshot(root) == before
        return runs

    kill_at(exists(root, f"logs/train/digits/{MODEL}.log"), "training")
    kill_at(exists(root, f"logs/sweep/digits/{MODEL}/*.log"), "sweeps (variants, predict)",
            probe=second_runs)
    kill_at(exists(root, f"logs/metrics/digits/{MODEL}.log"), "metrics and figures")
    report["stale lock"] = any((root / ".snakemake" / "locks").glob("*.lock"))
    report["resume"] = finish(root, MAKE_STUDY)
    return report


def test_a_killed_study_leaves_only_whole_files_and_resumes_with_make_study(interrupted):
    kills = interrupted["kills"]
    assert [what for what, _ in kills] == ["training", "sweeps (variants, predict)",
                                           "metrics and figures"]
    assert all(unfinished for _, unfinished in kills), "a kill came after the study had finished"
    # The killed Snakemake left its lock; `make study` removed it and went on.
    assert interrupted["stale lock"]
    assert "removing the lock a killed run left" in interrupted["resume"]
    root = interrupted["root"]
    assert (root / "results" / "report.html").is_file()
    leftovers = [p for p in outputs(root) if p.name.endswith(".tmp")]
    assert not leftovers, f"temporaries of killed jobs were left: {leftovers}"
    assert "Nothing to be done" in finish(root, SNAKEMAKE + ["--dry-run"])


def test_a_second_run_while_one_runs_fails_fast_and_changes_nothing(interrupted):
    probe = interrupted["probe"]
    status, out, seconds = probe["snakemake"]
    assert status != 0 and LOCKED in out and "--unlock" in out, out[-3000:]
    assert seconds < 30
    status, out, seconds = probe["make study"]
    assert status != 0 and "a study is already running" in out and "Nothing was changed" in out, out
    assert seconds < 30
    assert probe["unchanged"], "a refused second run changed the study's files"


def test_a_resumed_study_equals_an_uninterrupted_one_value_for_value(uninterrupted, interrupted):
    """Both began from scratch, so this is also the CPU determinism check."""
    from lesion import tensorfiles

    expected, got = tables(uninterrupted), tables(interrupted["root"])
    assert sorted(got) == sorted(expected)
    assert any(name.endswith("metrics.parquet") for name in got)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, check_exact=True, obj=name)
    for path in (uninterrupted / "results").rglob("*.safetensors"):
        other = interrupted["root"] / path.relative_to(uninterrupted)
        digest = tensorfiles.tensors_sha256
        assert digest(tensorfiles.load_tensors(path)) == digest(tensorfiles.load_tensors(other))
        assert tensorfiles.load_metadata(path) == tensorfiles.load_metadata(other)


def test_every_variant_regenerates_to_its_recorded_sha256(uninterrupted):
    from lesion import data, files, models, sweeps

    spec = data.get("digits")
    model = models.load_weights(uninterrupted / RESULTS / "weights.safetensors",
                                num_classes=spec.num_classes, input_shape=spec.input_shape)
    checked = 0
    for table in sorted((uninterrupted / RESULTS / "variants").rglob("*.parquet")):
        for row in files.read_table(table).to_pylist():
            base = models.layer_tensors(model, row["layer"])
            sweeps.regenerate(row, base)  # raises VariantMismatchError on any other hash
            checked += 1
    assert checked == sum(len(s["levels"]) * s["draws"] for s in CONFIG["perturbations"].values())
