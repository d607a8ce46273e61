"""The cluster profiles' retry policy (docs/cluster.md): a failed job is run again
`retries` times (2), and the third failure stops the study with the job's log named.
Snakemake's scheduler applies `retries` alike for every executor, so a local run with the
profile's value shows what a cluster run does (tests/test_slurm.py cancels a SLURM job
and sees it resubmitted)."""

from __future__ import annotations

import shutil

import yaml

from test_workflow import REPO, snakemake


def test_a_job_that_fails_three_times_stops_the_study_naming_its_log(built_study, tmp_path):
    retries = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())["retries"]
    assert retries == yaml.safe_load((REPO / "profiles" / "lsf" / "config.yaml").read_text())["retries"]
    root = tmp_path / "study"
    shutil.copytree(built_study("faults"), root, symlinks=True)
    # a sweep's predictions gone bad after they were written: the metrics job reading them
    # fails every time it runs
    (root / "results/digits/mlp/predictions/crash.parquet").write_bytes(b"not a parquet file")
    out = snakemake(root, "--retries", str(retries), "results/digits/mlp/metrics.parquet",
                    expect_failure=True)
    assert out.count("Trying to restart job") == retries, out[-4000:]
    assert out.count("Error in rule metrics") == retries + 1, out[-4000:]
    assert "log: logs/metrics/digits/mlp.log" in out, out[-4000:]
    assert "crash.parquet" in (root / "logs/metrics/digits/mlp.log").read_text()
