"""Shared fixtures: small real networks and data, no mocks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from lesion import models


def pytest_configure(config):
    """One thread per process under pytest-xdist (`make test` runs one worker per core) and
    under mutmut (`make mutation` runs one mutant per core): the processes share the cores
    instead of fighting over them. With torch's two threads each, two of mutmut's workers
    ran a surviving mutant's tests four times slower than one thread each."""
    if os.environ.get("PYTEST_XDIST_WORKER") or "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", ""):
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build("cnn", num_classes=10, input_shape=(1, 8, 8)).eval()


@pytest.fixture(scope="session")
def mlp() -> torch.nn.Module:
    torch.manual_seed(1)
    return models.build("mlp", num_classes=10, input_shape=(1, 8, 8)).eval()


@pytest.fixture
def resnet18_bn() -> torch.nn.Module:
    """resnet18 in float64 (eval) with running statistics away from 0 and 1, so that a
    BatchNorm's place in a computation shows; seeded, a fresh copy per test."""
    torch.manual_seed(0)
    resnet = models.build("resnet18", num_classes=10, input_shape=(3, 16, 16)).eval().double()
    for m in resnet.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return resnet


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """A slice of the real digits data, preprocessed as the study does."""
    from lesion import data

    spec = data.get("digits")
    raw = spec.raw()
    return spec.preprocess(raw["images"][:200]), raw["labels"][:200]


# The files that take longest, longest first (`make test`'s --durations summed per file,
# 2026-12-03); test_faults.py builds the study test_report.py reads (built_study), well
# before it. pytest-xdist queues the files with the most tests first and this order only
# breaks ties: queued longest first (--no-loadscope-reorder) the suite took 415 and 425 s,
# against 378 and 402 s as it is (the long files then overlap short ones, not each other).
LONGEST = ["test_workflow.py", "test_resume.py", "test_slurm.py", "test_timm_network.py",
           "test_bad_inputs.py", "test_canonical_params.py", "test_evaluate.py", "test_graph.py",
           "test_models.py", "test_plugin.py", "test_zoo.py", "test_own_data.py",
           "test_own_dataset.py", "test_own_network.py", "test_faults.py", "test_adversarial.py",
           "test_report.py", "test_download.py", "test_predict.py", "test_filtering.py"]


def pytest_collection_modifyitems(config, items):
    """The longest files first, then the other workflow tests, then the rest (under
    pytest-xdist: among files with as many tests)."""
    def rank(item):
        name = item.path.name
        return (LONGEST.index(name) if name in LONGEST else len(LONGEST),
                item.get_closest_marker("workflow") is None)

    items.sort(key=rank)  # stable: the order within a file stays
    _fastest_first_under_mutmut(items)


def _fastest_first_under_mutmut(items) -> None:
    """Under `make mutation`, run a mutant's tests fastest first, by the times mutmut
    measured in its stats run: with `-x` most mutants then die in their first second.

    mutmut 3.8 hands pytest a mutant's tests as an unordered set, so a mutant that the
    fastest test kills often waited for the residual-network tests (5 s each) first;
    this halved `make mutation`'s time (docs/testing.md)."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    stats = Path("mutmut-stats.json")  # mutmut runs the tests from mutants/
    if "__mutmut_" not in mutant or not stats.exists():
        return
    import json

    seconds = json.loads(stats.read_text())["duration_by_test"]
    items.sort(key=lambda item: seconds.get(item.nodeid, float("inf")))


@pytest.fixture(scope="session")
def built_study(tmp_path_factory, worker_id):
    """`built_study(NAME)`: the tiny study `.test/NAME.yaml` built by the real workflow (a
    copy of it, as tests/test_workflow.py makes), once for the whole run and shared by the
    test files that read it; under pytest-xdist the first worker to ask builds it while
    the others wait on a file lock (pytest-xdist's documented pattern). Readers only: a
    test that changes a study builds its own."""
    from filelock import FileLock

    from test_workflow import snakemake, study_copy, tiny_config

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # one directory for all workers

    def build(name: str) -> Path:
        root = shared / "built" / name
        root.parent.mkdir(exist_ok=True)
        with FileLock(f"{root}.lock"):
            if not (root / ".built").is_file():
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir()
                study_copy(root, tiny_config(name))
                snakemake(root)
                (root / ".built").touch()
        return root

    return build
