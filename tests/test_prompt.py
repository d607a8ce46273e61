"""What a user meets at the prompt: the study run as a new user runs it (issue 27, item 8).

`.venv/bin/snakemake` by its full path, the venv not activated, with another `python`
(one without lesion) first on PATH; the logs a job leaves, read as a user reruns a step
from them. Real processes, not the tests' job server: what is tested is the entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
