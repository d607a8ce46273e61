"""Cluster profiles: GPU rules go to the GPU partition/queue with one GPU, all others stay off it.

Where a job runs is the profiles' business (profiles/slurm, profiles/lsf);
the rules only declare `gpu=1`. These tests hold the two together: every rule
that declares a GPU is sent to the GPU partition (SLURM) or queue (LSF) with
that GPU, no other rule is, and no rule names anything cluster-specific.
Snakemake's own dry run with each profile shows the resources every job of a
tiny study would be submitted with (and rejects any setting the executor
plugins do not know). tests/test_slurm.py runs profiles/slurm for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_workflow import tiny_config
from workflow_rules import REPO, workflow_rules

PROFILES = {
    # profile: (where-key, GPU value, CPU value)
    "slurm": ("slurm_partition", "gpu", "main"),
    "lsf": ("lsf_queue", "gpu", "normal"),
}
CONFIG = tiny_config("profiles")


def load(profile: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())


def gpu_rules() -> dict[str, int]:
    return {rule.name: rule.gpus for rule in workflow_rules().values() if rule.gpus}


def test_the_gpu_rules_are_the_ones_the_design_names():
    assert {"train", "predict_clean", "sweep"} <= set(gpu_rules())


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_sends_exactly_the_gpu_rules_to_the_gpu_partition_with_their_gpus(profile):
    key, gpu, cpu = PROFILES[profile]
    settings = load(profile)
    assert settings["executor"] == profile
    assert settings["default-resources"][key] == cpu
    assert "gpu" not in settings["default-resources"]
    per_rule = settings["set-resources"]
    unknown = set(per_rule) - set(workflow_rules())
    assert not unknown, f"profiles/{profile} sets resources of rules that do not exist: {unknown}"
    on_gpu = {rule for rule, resources in per_rule.items() if resources.get(key) == gpu}
    assert on_gpu == set(gpu_rules()), (
        f"profiles/{profile}: rules declaring gpu=1 are {sorted(gpu_rules())}, "
        f"its GPU {key} has {sorted(on_gpu)}")
    for rule, gpus in gpu_rules().items():
        assert per_rule[rule]["gpu"] == gpus
        if profile == "lsf":  # the LSF plugin passes no `gpu` resource to bsub by itself
            assert per_rule[rule]["lsf_extra"] == f"-gpu num={gpus}"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_entry_is_commented(profile):
    lines = (REPO / "profiles" / profile / "config.yaml").read_text().splitlines()
    bare = [line for line in lines if line.strip() and not line.lstrip().startswith("#") and "#" not in line]
    assert not bare, f"profiles/{profile}: entries without a comment: {bare}"


def test_rules_name_nothing_cluster_specific():
    for rule in workflow_rules().values():
        found = re.findall(r"slurm\w*|lsf\w*|partition|queue", rule.text, re.IGNORECASE)
        assert not found, f"rule {rule.name} names {found}: that belongs in profiles/"


def dry_run_resources(tmp_path, profile: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job Snakemake's dry run plans with the profile."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    bindir = str(Path(sys.executable).parent)  # the rules call `python -m lesion`
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
         "--workflow-profile", str(REPO / "profiles" / profile), "--dry-run", "--forceall"],
        cwd=tmp_path, env={**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:]
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in proc.stdout.splitlines():
        if match := re.fullmatch(r"(?:local)?rule (\w+):", line.strip()):
            jobs.append((match[1], {}))
        elif (match := re.fullmatch(r"\s+resources: (.*)", line)) and jobs:
            jobs[-1][1].update(item.split("=", 1) for item in match[1].split(", "))
    return jobs


@pytest.mark.parametrize("profile", PROFILES)
def test_dry_run_submits_gpu_jobs_to_the_gpu_partition_and_the_rest_elsewhere(tmp_path, profile):
    key, gpu, cpu = PROFILES[profile]
    jobs = [(rule, resources) for rule, resources in dry_run_resources(tmp_path, profile) if rule != "all"]
    assert {rule for rule, _ in jobs} >= {"train", "predict_clean", "sweep", "metrics"}
    for rule, resources in jobs:
        if rule in gpu_rules():
            assert resources.get(key) == gpu and resources.get("gpu") == "1", (rule, resources)
        else:
            assert resources.get(key) == cpu and "gpu" not in resources, (rule, resources)
