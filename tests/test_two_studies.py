"""Two studies started together in one checkout (`make study CONFIG=a.yaml` and `make study
CONFIG=b.yaml`, different `study:` names) both complete, the shared export in resources/
made once, and their tables equal (lesion.tools.run: a kernel lock per study, the jobs
that write resources/ run first under one lock for the checkout)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import yaml

import jobserver
from test_resume import environment, make_study_dir

CONFIG = {"seed": 0, "device": "cpu", "dataset": {"name": "digits"},
          "models": {"mlp": {"layers": ["fc1"]}}, "train": {"epochs": 1},
          "perturbations": {"gaussian": {"levels": [0.5], "draws": 1}}}


def test_two_studies_started_together_both_complete_sharing_one_export(tmp_path):
    root = make_study_dir(tmp_path / "project")
    for name in ("a", "b"):
        (root / "config" / f"{name}.yaml").write_text(yaml.safe_dump({**CONFIG, "study": name}))
    # what `make study CONFIG=config/NAME.yaml` runs (its report left out), Snakemake and
    # its jobs forked from the tests' job server
    launch, forked = jobserver.command(["snakemake"])
    runs = {name: subprocess.Popen([sys.executable, "-m", "lesion.tools.run", *launch, "--cores", "1",
                                    "--configfile", f"config/{name}.yaml"], cwd=root,
                                   env={**environment(), **forked}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
            for name in ("a", "b")}
    outputs = {name: run.communicate(timeout=300)[0] for name, run in runs.items()}
    for name, run in runs.items():
        assert run.returncode == 0, f"study {name} failed:\n{outputs[name][-5000:]}"
        assert "Directory cannot be locked" not in outputs[name]
    exports = sorted(p.relative_to(root) for p in (root / "logs").glob("*/export_dataset/*.log"))
    assert len(exports) == 1, exports  # one study exported, the other found the file
    tables = sorted(p.relative_to(root / "results/a") for p in (root / "results/a").rglob("*.parquet"))
    assert len(tables) >= 5
    for table in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(root / "results" / "a" / table),
                                      pd.read_parquet(root / "results" / "b" / table),
                                      check_exact=True, obj=str(table))
