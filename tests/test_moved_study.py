"""A built study moved to another directory (a project moved, a cluster's shared filesystem
mounted elsewhere) with its results/, resources/ and .snakemake/ has nothing to do: the
rules' code inputs are named relative to the working directory (common.smk's LESION_SRC),
so Snakemake's records of every job still match."""

from __future__ import annotations

import shutil

from test_workflow import planned_jobs


def test_a_moved_study_has_nothing_to_do(built_study, tmp_path):
    here = built_study("faults")
    elsewhere = tmp_path / "mounted" / "elsewhere" / "project"
    shutil.copytree(here, elsewhere, symlinks=True)  # copy2: the files keep their times
    assert planned_jobs(elsewhere) == []
