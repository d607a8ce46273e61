"""`make report` writes a report only for a study whose outputs are up to date with its config:
after the config changed (or an overlay rebuilt part of the study), it names what would rerun
and writes nothing (lesion.tools.run.report)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml

import jobserver
from test_workflow import REPO


def run_report(root, *flags: str) -> subprocess.CompletedProcess:
    launch, forked = jobserver.command(["snakemake"])
    env = {**os.environ, **forked, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "lesion.tools.run", "--report", *flags, *launch],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_stale_study_gets_no_report_and_is_told_what_would_rerun(built_study, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(built_study("faults"), root, symlinks=True)
    (root / "results" / "report.html").unlink(missing_ok=True)
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    config["perturbations"]["crash"]["levels"] = [0.1, 0.4]  # an edit nothing was rebuilt for
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    done = run_report(root)
    assert done.returncode == 1, done.stdout + done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("make report: error: the study's outputs are not up to date with its "
                              "config: "), message
    assert "sweep (1)" in message and "metrics (1)" in message, message
    assert not (root / "results" / "report.html").exists()
