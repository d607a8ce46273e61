"""What a user meets at the prompt: the study run as a new user runs it (issue 27, item 8).

`.venv/bin/snakemake` by its full path, the venv not activated, with another `python`
(one without lesion) first on PATH; the logs a job leaves, read as a user reruns a step
from them. Real processes, not the tests' job server, where the entry point is what is
tested; the logs of every step are read from a tiny study the suite builds anyway
(`built_study`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lesion import tensorfiles
from test_workflow import study_copy, tiny_config

pytestmark = pytest.mark.workflow

BIN = Path(sys.executable).parent  # the venv's bin/: snakemake and the python with lesion
RAW = "resources/digits/raw.safetensors"  # the cheapest job of a digits study (rule export_dataset)


def without_the_venv(tmp: Path) -> dict[str, str]:
    """The environment of a user who did not activate the venv: PATH without its bin/ (nor
    the tests' job server), and first on it a `python` that lacks lesion (the interpreter
    the venv was made from)."""
    other = tmp / "other-python"
    other.mkdir(parents=True)
    (other / "python").symlink_to(os.path.realpath(sys.executable))
    kept = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and Path(d).resolve() != BIN.resolve() and "lesion-jobserver" not in d]
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "LESION_TEST_JOBSERVER")}
    return {**env, "PATH": os.pathsep.join([str(other), *kept])}


@pytest.fixture(scope="module")
def raw_without_the_venv(tmp_path_factory) -> tuple[Path, dict[str, str], subprocess.CompletedProcess]:
    """A digits study's data step run by `.venv/bin/snakemake -c1 TARGET`, the venv not
    activated: (study directory, that environment, Snakemake's run)."""
    root = tmp_path_factory.mktemp("prompt")
    study_copy(root, tiny_config("workflow"))
    env = without_the_venv(root.parent / f"{root.name}-env")
    lacking = subprocess.run(["python", "-c", "import lesion"], env=env, capture_output=True,
                             text=True, check=False)
    assert "No module named 'lesion'" in lacking.stderr, "the other python must lack lesion"
    proc = subprocess.run([str(BIN / "snakemake"), "-c1", RAW], cwd=root, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300, check=False)
    return root, env, proc


def test_snakemake_run_by_its_full_path_runs_the_steps_with_its_own_python(raw_without_the_venv):
    root, _, proc = raw_without_the_venv
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (root / RAW).is_file()
    assert "No module named lesion" not in (root / "logs/export_dataset/digits.log").read_text()


# --- Each job's log starts with the command it ran ---------------------------------

def logged_command(log: Path) -> list[str]:
    """The words of the command line `log` starts with (`$ python -m lesion ...`)."""
    first = log.read_text().splitlines()[0]
    assert first.startswith("$ python -m lesion "), f"{log}: starts with {first!r}"
    return shlex.split(first[2:])


def test_a_jobs_log_starts_with_its_command_which_run_again_remakes_its_output(
        raw_without_the_venv, tmp_path):
    root, env, _ = raw_without_the_venv
    log = root / "logs/export_dataset/digits.log"
    assert logged_command(log) == ["python", "-m", "lesion", "data", "export", "--dataset", "digits",
                                   "--out", RAW]
    (root / RAW).rename(tmp_path / "made.safetensors")
    first = log.read_text().splitlines()[0]
    again = subprocess.run(["bash", "-c", first[2:]], cwd=root, capture_output=True, text=True,
                           env={**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}"}, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    made, remade = tmp_path / "made.safetensors", root / RAW
    assert tensorfiles.load_metadata(remade) == tensorfiles.load_metadata(made)
    ours, theirs = tensorfiles.load_tensors(remade), tensorfiles.load_tensors(made)
    assert ours.keys() == theirs.keys() and all(ours[k].equal(theirs[k]) for k in ours)


def test_every_log_of_a_built_study_starts_with_a_command_the_cli_parses(built_study):
    from lesion.cli import parser

    logs = sorted((built_study("faults") / "logs").rglob("*.log"))
    assert len(logs) >= 10
    steps = set()
    for log in logs:
        words = logged_command(log)
        args = parser().parse_args(words[3:])  # argparse exits on a command it cannot parse
        steps.add((args.group, args.step))
    assert {("sweep", "run"), ("model", "train"), ("faults", "bounds")} <= steps, steps


def test_a_figure_jobs_log_holds_no_font_library_chatter(built_study):
    """The steps log at INFO; fontTools (subsetting fonts into each PDF) and matplotlib's
    mathtext would add hundreds of lines to every figure job's log at that level."""
    logs = [*(built_study("faults") / "logs" / "perturbation_figures").rglob("*.log"),
            *(built_study("faults") / "logs" / "fault_figure").rglob("*.log")]
    assert len(logs) >= 3
    for log in logs:
        chatter = [line for line in log.read_text().splitlines()
                   if " fontTools." in line or " matplotlib." in line]
        assert not chatter, f"{log}: {len(chatter)} lines such as {chatter[0]!r}"
