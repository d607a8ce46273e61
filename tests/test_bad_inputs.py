"""Bad input, tried as a new user would, through the real entry points.

Every case runs `snakemake` in a subprocess (on a temporary copy of the
workflow, with the bad config) or `python -m lesion <step>` (in this process,
as a fresh one would run it: see run_step); the config cases run through the
config check in this process, and a few of each kind through Snakemake too
(THROUGH_SNAKEMAKE). Each must end with a non-zero exit
status, one message that names the key or file, the bad value and what was
expected (never a Python traceback as the only explanation), and no output
left behind. Config mistakes stop Snakemake while it builds the DAG, so a dry
run (`-n`) shows them as well as a real run would, in a second.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import jobserver
from lesion.catalog import OPERATOR_LEVELS
from lesion.config import load_schema

REPO = Path(__file__).resolve().parents[1]
TRACEBACK = "Traceback (most recent call last)"
SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
OUTPUT_ROOTS = ("results", "resources", "logs", "benchmarks")

# A valid tiny study; every config case breaks one thing in it.
GOOD = {
    "dataset": {"name": "digits"},
    "models": {"mlp": {"layers": ["fc1"]}},
    "perturbations": {"gaussian": {"levels": [0.1, 0.5], "draws": 2},
                      "synapse_knockout": {"levels": [0.5], "draws": 1}},
}


def edited(**changes) -> dict:
    """GOOD with `a__b=value` set (`a__b=DROP` deletes the key)."""
    config = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        if value is DROP:
            del node[last]
        else:
            node[last] = value
    return config


DROP = object()


def renamed(old: str, new: str) -> dict:
    config = copy.deepcopy(GOOD)
    config[new] = config.pop(old)
    return config


# id: (config, or raw text for the file; words the one message must hold)
CONFIG_CASES: dict[str, tuple[dict | str, list[str]]] = {
    "misspelt top-level key": (renamed("perturbations", "perturbation"),
                               ["'perturbation'", "top level", "did you mean 'perturbations'"]),
    "misspelt nested key": (edited(models={"mlp": {"layer": ["fc1"]}}),
                            ["'layer'", "models.mlp", "did you mean 'layers'"]),
    "misspelt sweep key": (edited(perturbations__gaussian={"levels": [0.1], "draw": 2}),
                           ["'draw'", "perturbations.gaussian", "'draws'"]),
    "levels as a string": (edited(perturbations__gaussian__levels="0.1, 0.5"),
                           ["perturbations.gaussian.levels", "'0.1, 0.5'", "expected a list"]),
    "draws as a word": (edited(perturbations__gaussian__draws="five"),
                        ["perturbations.gaussian.draws", "'five'", "expected an integer"]),
    "models as a list": (edited(models=["mlp"]), ["models", "['mlp']", "expected a mapping"]),
    "unknown dataset": (edited(dataset__name="digitz"),
                        ["dataset.name", "'digitz'", "expected one of", "'digits'"]),
    "unknown model": (edited(models={"lenet": {}}), ["models", "'lenet'", "'cnn'", "'mlp'"]),
    "model the dataset cannot feed": (edited(models={"alexnet": {}}),
                                      ["models.alexnet", "'digits'", "['cnn', 'mlp'"]),
    "unknown operator": (edited(perturbations={"gausian": {"levels": [0.1], "draws": 1}}),
                         ["perturbations", "'gausian'", "'node_knockout'", "'gaussian'"]),
    "unknown layer": (edited(models={"mlp": {"layers": ["fc1", "fc4"]}}),
                      ["models.mlp.layers", "'fc4'", "['fc1', 'fc2', 'fc3']"]),
    "layers as a bare name": (edited(models={"mlp": {"layers": "fc1"}}),
                              ["models.mlp.layers", "'fc1'", "\"all\" or a non-empty list"]),
    "synapse knockout above 1": (edited(perturbations__synapse_knockout__levels=[0.5, 1.5]),
                                 ["perturbations.synapse_knockout.levels[1]", "1.5", "<= 1"]),
    "node knockout below 0": (edited(perturbations={"node_knockout": {"levels": [-0.1], "draws": 1}}),
                              ["perturbations.node_knockout.levels[0]", "-0.1", ">= 0"]),
    "redraw above 1": (edited(perturbations={"redraw": {"levels": [2], "draws": 1}}),
                       ["perturbations.redraw.levels[0]", "2", "<= 1"]),
    "negative gaussian noise": (edited(perturbations__gaussian__levels=[-0.5]),
                                ["perturbations.gaussian.levels[0]", "-0.5", ">= 0"]),
    "zero draws": (edited(perturbations__gaussian__draws=0),
                   ["perturbations.gaussian.draws", "= 0", "an integer >= 1"]),
    "negative draws": (edited(perturbations__gaussian__draws=-3),
                       ["perturbations.gaussian.draws", "-3", "an integer >= 1"]),
    "duplicate levels": (edited(perturbations__gaussian__levels=[0.1, 0.5, 0.1]),
                         ["perturbations.gaussian.levels", "[0.1, 0.5, 0.1]", "each value once"]),
    "empty levels": (edited(perturbations__gaussian__levels=[]),
                     ["perturbations.gaussian.levels", "empty", "at least 1"]),
    "empty model list": (edited(models={}), ["models", "empty", "at least 1"]),
    "no study": (edited(perturbations=DROP),
                 ["no study in the config",
                  "['adversarial', 'faults', 'filtering', 'perturbations', 'zoo']"]),
    "unknown device": (edited(device="gpu"), ["device", "'gpu'", "['auto', 'cpu', 'cuda']"]),
    "test fraction of 1": (edited(dataset__test_fraction=1),
                           ["dataset.test_fraction", "= 1", "< 1"]),
    "zero epochs": (edited(train={"epochs": 0}), ["train.epochs", "= 0", ">= 1"]),
    "dataset name escaping results/": (edited(dataset__name="../../etc"),
                                       ["dataset.name", "'../../etc'", "plain name", "results/"]),
    "model name escaping results/": (edited(models={"../mlp": {}}),
                                     ["models", "'../mlp'", "plain name"]),
    "layer name escaping results/": (edited(models={"mlp": {"layers": ["/tmp/fc1"]}}),
                                     ["models.mlp.layers[0]", "'/tmp/fc1'", "plain name"]),
    "accuracy axis upside down": (edited(figures={"accuracy_axis": [0.9, 0.5]}),
                                  ["figures.accuracy_axis", "[0.9, 0.5]", "low < high"]),
    "accuracy axis past 1": (edited(figures={"accuracy_axis": [0.5, 100]}),
                             ["figures.accuracy_axis[1]", "100"]),
    "svg as a word": (edited(figures={"svg": "yes"}), ["figures.svg", "'yes'", "expected true or false"]),
    # Snakemake reads --configfile itself, before the workflow runs: these
    # messages are Snakemake's own (they say what is wrong, not the file name).
    "config not YAML": ("dataset: {name: digits\n  models: [\n",
                        ["Config file is not valid JSON or YAML"]),
    "empty config file": ("", ["Config file must be given as JSON or YAML with keys at top level"]),
}


def copy_workflow(root: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", root / "Snakefile")
    for name in ("workflow", "src", "envs", "profiles", "config"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    return root


def environment() -> dict[str, str]:
    """The environment a step or Snakemake runs in: this one, with this Python's bin/ first."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def run(args: list[str], cwd: Path, timeout: float = 120,
        extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**environment(), **(extra or {})}
    return subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, check=False)


def snakemake(root: Path, *args: str) -> subprocess.CompletedProcess:
    launch, forked = jobserver.command(["snakemake"])  # forked warm (tests/jobserver.py)
    return run([*launch, "--snakefile", str(root / "Snakefile"),
                "--directory", str(root), "--cores", "1", *args], cwd=root, extra=forked)


def run_all(request, test, cases: dict, start, *, workers: int | None = None) -> dict:
    """Run the cases of `test` selected in this session side by side: {case: result}.

    Each subprocess is a fresh Python paying its own start-up, so running two at a
    time halves the suite's time on two cores. `workers=1` runs them one after
    another, in this thread (run_step changes the whole process while it runs).
    """
    class Runs(dict):
        def __missing__(self, case):  # a case the session did not list: run it now
            self[case] = start(case)
            return self[case]

    wanted = [item.callspec.params["case"] for item in request.session.items
              if getattr(item, "originalname", None) == test and hasattr(item, "callspec")]
    if workers == 1:
        return Runs({case: start(case) for case in wanted})
    with ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 1)) as pool:
        return Runs(zip(wanted, pool.map(start, wanted), strict=True))


def assert_refused(proc: subprocess.CompletedProcess, words: list[str], *,
                   traceback_ok: bool = False) -> None:
    out = proc.stdout
    assert proc.returncode != 0, f"exit status 0 for a bad input:\n{out[-3000:]}"
    missing = [w for w in words if w not in out]
    assert not missing, f"{missing} not in the message:\n{out[-3000:]}"
    if not traceback_ok:
        assert TRACEBACK not in out, f"a traceback instead of a message:\n{out[-3000:]}"


# The one line Snakemake prints before reading the workflow, in every run.
PROFILE_NOTICE = "Using workflow specific profile "


def assert_said_alone(proc: subprocess.CompletedProcess, message: str | None = None) -> None:
    """The output is `message` (or one line) and nothing else of ours: no `WorkflowError in
    file ".../common.smk", line N:` around it, no `File ..., in <module>` frame."""
    lines = [line for line in proc.stdout.splitlines()
             if line.strip() and not line.startswith(PROFILE_NOTICE)]
    expected = message.splitlines() if message is not None else lines[:1]
    assert lines == expected, f"not the message alone:\n{proc.stdout[-3000:]}"


def assert_nothing_written(root: Path) -> None:
    written = [r for r in OUTPUT_ROOTS if (root / r).exists()]
    assert not written, f"a refused study left {written} behind"


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("bad-config"))


# The cases that also run through Snakemake: the check is the same function for every
# case (common.smk calls lesion.config.check and re-raises its message as a WorkflowError),
# so one case per kind of check shows the message reaching the user whole: the schema, a
# study's own check across keys, a path check, and Snakemake's own reading of the file.
THROUGH_SNAKEMAKE = ["misspelt top-level key", "model the dataset cannot feed",
                     "layer name escaping results/", "no study", "config not YAML",
                     "empty config file"]


@pytest.fixture(scope="module")
def config_runs(request, workflow_copy) -> dict[str, subprocess.CompletedProcess]:
    def start(case: str) -> subprocess.CompletedProcess:
        config = CONFIG_CASES[case][0]
        path = workflow_copy / f"{case.replace(' ', '_').replace('/', '')}.yaml"
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
        return snakemake(workflow_copy, "-n", "--configfile", str(path))

    return run_all(request, "test_a_bad_config_stops_snakemake_with_one_clear_message",
                   {case: CONFIG_CASES[case] for case in THROUGH_SNAKEMAKE}, start)


def config_message(config: dict) -> str:
    """What lesion.config.check says of `config`, as common.smk calls it (read from YAML
    text, as Snakemake reads a --configfile); '' when it passes."""
    from lesion.config import ConfigError, check

    try:
        check(yaml.safe_load(yaml.safe_dump(config)), SCHEMA)
    except ConfigError as err:
        return str(err)
    return ""


def test_the_unbroken_config_passes_the_same_checks(workflow_copy):
    """The control: the cases below fail because of what they break, nothing else."""
    path = workflow_copy / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    proc = snakemake(workflow_copy, "-n", "--configfile", str(path))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert_nothing_written(workflow_copy)


@pytest.mark.parametrize("case", THROUGH_SNAKEMAKE)
def test_a_bad_config_stops_snakemake_with_one_clear_message(workflow_copy, config_runs, case):
    config, words = CONFIG_CASES[case]
    assert_refused(config_runs[case], words)
    assert_nothing_written(workflow_copy)
    if isinstance(config, dict):  # the message is the config check's, whole and alone
        assert_said_alone(config_runs[case], config_message(config))


@pytest.mark.parametrize("case", [c for c, (config, _) in CONFIG_CASES.items()
                                  if isinstance(config, dict)])
def test_a_bad_config_is_refused_by_the_check_with_one_clear_message(case):
    config, words = CONFIG_CASES[case]
    message = config_message(config)
    missing = [w for w in words if w not in message]
    assert message and not missing, f"{missing} not in the message: {message!r}"
    assert TRACEBACK not in message and len(message.splitlines()) <= 3, message


def test_the_unbroken_config_passes_the_check():
    assert config_message(GOOD) == ""


def test_config_on_the_command_line_reads_values_as_a_config_file_does(workflow_copy):
    """`--config` with a nested value: Snakemake alone leaves draws the string '10'."""
    path = workflow_copy / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    proc = snakemake(workflow_copy, "-n", "-p", "results/digits/mlp/predictions/gaussian.parquet",
                     "--configfile", str(path),
                     "--config", "perturbations={gaussian: {levels: [0.3], draws: 10}}", "seed=7")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "--levels 0.3 --draws 10" in proc.stdout and "--seed 7" in proc.stdout
    assert_nothing_written(workflow_copy)


def test_a_missing_config_file_is_named(workflow_copy):
    # Snakemake opens --configfile before any workflow code runs, and reports
    # a missing one with its own traceback, ending in a line that names it.
    proc = snakemake(workflow_copy, "-n", "--configfile", "no-such-study.yaml")
    assert_refused(proc, ["No such file or directory", "no-such-study.yaml"], traceback_ok=True)
    assert_nothing_written(workflow_copy)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_study_runs_another_config_and_names_a_missing_one():
    proc = run(["make", "study", "CONFIG=config/no-such-study.yaml"], cwd=REPO)
    assert_refused(proc, ["CONFIG=config/no-such-study.yaml", "no such file", "config/config.yaml"])
    planned = run(["make", "-n", "study", "CONFIG=config/mnist.yaml"], cwd=REPO)
    assert "lesion.tools.run" in planned.stdout
    assert "snakemake --configfile config/mnist.yaml" in planned.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_study_takes_several_config_files_as_snakemake_does_and_names_a_missing_one():
    """`make study CONFIG="config/config.yaml my.yaml"`: an overlay on the default."""
    overlay = "config/config.yaml .test/workflow.yaml"
    checked = run(["make", "config-exists", f"CONFIG={overlay}"], cwd=REPO)
    assert checked.returncode == 0, checked.stdout
    planned = run(["make", "-n", "study", f"CONFIG={overlay}"], cwd=REPO)
    assert f"snakemake --configfile {overlay}" in planned.stdout
    proc = run(["make", "config-exists", "CONFIG=config/config.yaml no-such-overlay.yaml"], cwd=REPO)
    assert_refused(proc, ["CONFIG=no-such-overlay.yaml", "no such file", "config/config.yaml"])


def test_a_missing_default_config_is_named(tmp_path):
    """Plain `snakemake` (the documented command) without config/config.yaml."""
    root = copy_workflow(tmp_path / "study")
    (root / "config" / "config.yaml").unlink()
    proc = snakemake(root, "-n")
    assert_refused(proc, ["config/config.yaml"])
    assert_nothing_written(root)


@pytest.mark.parametrize("root_name", ["results", "logs"])
def test_an_output_root_that_is_a_file_stops_the_study_before_any_job(tmp_path, root_name):
    # Tests may run as root, for whom chmod takes nothing away: a regular file
    # in the place of the directory is what no user can write into.
    root = copy_workflow(tmp_path / "study")
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(GOOD))
    (root / root_name).write_text("not a directory\n")
    proc = snakemake(root)
    assert_refused(proc, [root_name, "not a directory", "expected a directory"])
    assert (root / root_name).read_text() == "not a directory\n"
    assert not [r for r in OUTPUT_ROOTS if r != root_name and (root / r).exists()]


# --- Targets the config cannot make (asked for by path) ------------------------

TWO_MODELS = edited(models={"cnn": {"layers": "all"}, "mlp": {"layers": ["fc1", "fc2"]}})
# id: (target, words the one message must hold)
TARGET_CASES: dict[str, tuple[str, list[str]]] = {
    "an operator the config lacks": (
        "results/digits/cnn/predictions/bitflip.parquet",
        ["operator 'bitflip' is not in the config", "['synapse_knockout', 'gaussian']",
         "perturbations:"]),
    "a layer the model lacks": (
        "results/digits/cnn/variant_weights/gaussian/fc3",
        ["'fc3' is not a weight layer of 'cnn'", "['conv1', 'conv2', 'fc1', 'fc2']",
         "models.cnn.layers"]),
    "a layer the config does not sweep": (
        "results/digits/mlp/variant_weights/gaussian/fc3",
        ["'fc3' is not among the layers the config sweeps in 'mlp'", "['fc1', 'fc2']"]),
    "another dataset": ("results/mnist/cnn/variants/gaussian.parquet",
                        ["dataset 'mnist' is not this study's", "results/digits/"]),
    "a test set the config lacks": (
        "results/digits/cnn/testsets/pgd/predictions/gaussian.parquet",
        ["test set 'pgd' is not in the config", "perturbations.testsets"]),
    # Files no rule makes (lesion.targets._unmade: judged by the rules' own patterns)
    "a misspelt file name": (
        "results/digits/cnn/figures/performance.png",
        ["no rule makes 'performance.png'", "did you mean results/digits/cnn/figures/performances.png"]),
    "a model the config lacks": (
        "results/digits/resnet/metrics.parquet",
        ["model 'resnet' is not in the config", "['cnn', 'mlp']", "models:"]),
    "an SVG while the config writes none": (
        "results/digits/cnn/figures/performances.svg",
        ["figures are written as PNG and PDF only", "figures.svg: true"]),
    "a file no rule makes, by no similar name": (
        "results/digits/cnn/notes.txt", ["no rule of this study makes it"]),
    "one layer's table, as sweeps were once written": (
        "results/digits/cnn/predictions/gaussian/fc1.parquet",
        ["one table holds every layer an operator sweeps",
         "expected results/digits/cnn/predictions/gaussian.parquet", "layer 'fc1'"]),
}


@pytest.mark.parametrize("case", TARGET_CASES)
def test_a_target_the_config_cannot_make_is_refused_with_the_reason(workflow_copy, case):
    path = workflow_copy / "two-models.yaml"
    path.write_text(yaml.safe_dump(TWO_MODELS))
    target, words = TARGET_CASES[case]
    proc = snakemake(workflow_copy, "-n", target, "--configfile", str(path))
    assert_refused(proc, [target, *words])
    assert_said_alone(proc)
    assert "InputFunctionException" not in proc.stdout
    assert_nothing_written(workflow_copy)


def test_a_fine_tuning_start_that_does_not_exist_is_refused_before_any_job(workflow_copy):
    """train.init names a file no rule makes: on a built study Snakemake alone would skip the
    missing input and keep the old weights in silence, so the workflow refuses it."""
    path = workflow_copy / "missing-init.yaml"
    path.write_text(yaml.safe_dump(edited(models={"mlp": {"layers": ["fc1"], "train": {
        "init": "resources/mlp-start.safetensors"}}})))
    proc = snakemake(workflow_copy, "-n", "--configfile", str(path))
    assert_refused(proc, ["models.mlp.train.init", "'resources/mlp-start.safetensors'",
                          "no such file", "no rule of this study makes it"])
    assert_said_alone(proc)
    assert_nothing_written(workflow_copy)
    # the control: the same config once the file exists is planned
    (workflow_copy / "resources").mkdir()
    (workflow_copy / "resources" / "mlp-start.safetensors").write_bytes(b"")
    try:
        proc = snakemake(workflow_copy, "-n", "--configfile", str(path))
        assert proc.returncode == 0, proc.stdout[-3000:]
    finally:
        shutil.rmtree(workflow_copy / "resources")


def test_a_sweep_file_the_config_can_make_is_planned(workflow_copy):
    path = workflow_copy / "two-models.yaml"
    path.write_text(yaml.safe_dump(TWO_MODELS))
    proc = snakemake(workflow_copy, "-n", "results/digits/cnn/predictions/gaussian.parquet",
                     "--configfile", str(path))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "sweep" in proc.stdout


def test_files_the_rules_make_are_planned_whether_or_not_they_are_default_targets(workflow_copy):
    """The control of the files no rule makes: a figure, a model's tables and weights, a split."""
    path = workflow_copy / "two-models.yaml"
    path.write_text(yaml.safe_dump(TWO_MODELS))
    targets = ["results/digits/cnn/figures/performances.png", "results/digits/cnn/metrics.parquet",
               "results/digits/mlp/weights.safetensors", "results/digits/tensors/test.safetensors"]
    proc = snakemake(workflow_copy, "-n", *targets, "--configfile", str(path))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert_nothing_written(workflow_copy)


# --- Dataset directories (issue #3: a dataset the user keeps in a directory) --

def _directory_datasets() -> bool:
    # ImageNet read from dataset.path: a built-in dataset of the catalog, a key of the schema.
    from lesion.catalog import DATASET_SOURCES

    return (DATASET_SOURCES.get("imagenet") == "directory"
            and "path" in SCHEMA["properties"]["dataset"]["properties"])


def _make_dir(root: Path, layout: str) -> Path:
    path = root / "imagenet-val"
    if layout == "missing":
        return path
    path.mkdir()
    if layout == "flat":  # the tarball unpacked without sorting into class directories
        for i in range(3):
            (path / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"\xff\xd8\xff")
    elif layout == "few classes":
        for wnid in ("n01440364", "n01443537"):
            (path / wnid).mkdir()
    return path


@pytest.mark.skipif(not _directory_datasets(), reason="EXTEND when issue #3 lands: the schema has "
                    "no imagenet dataset with dataset.path yet")
@pytest.mark.parametrize("layout,words", [
    ("missing", ["dataset.path", "no such directory", "ILSVRC2012"]),
    ("empty", ["dataset.path", "holds 0 class directories", "expected 1000"]),
    ("flat", ["dataset.path", "loose images", "expected 1000"]),
    ("few classes", ["dataset.path", "holds 2 class directories", "expected 1000"]),
])
def test_a_dataset_directory_missing_empty_or_in_the_wrong_layout_is_explained(
        workflow_copy, tmp_path, layout, words):
    config = {"dataset": {"name": "imagenet", "path": str(_make_dir(tmp_path, layout))},
              "models": {"alexnet": {"layers": ["fc3"]}},
              "perturbations": {"gaussian": {"levels": [0.1], "draws": 1}}}
    path = tmp_path / "imagenet.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake(workflow_copy, "-n", "--configfile", str(path))
    assert_refused(proc, words)
    assert_nothing_written(workflow_copy)


# --- `python -m lesion <step>` ------------------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, str]:
    """Good inputs made by the library itself, and bad ones made from them."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import torch

    from lesion import data, files, kinds, metrics, predict, sweeps, tensorfiles, train
    from lesion.studies.faults import bounds

    d = tmp_path_factory.mktemp("inputs")
    p = {name: str(d / name) for name in (
        "raw.safetensors", "train.safetensors", "test.safetensors", "weights.safetensors",
        "curve.parquet", "variants.parquet")}
    data.export("digits", p["raw.safetensors"])
    data.make_tensors("digits", p["raw.safetensors"], p["train.safetensors"],
                      p["test.safetensors"], test_fraction=0.25, seed=0)
    train.train(train.Network("mlp"), "digits", p["train.safetensors"], p["test.safetensors"],
                p["weights.safetensors"], p["curve.parquet"],
                train.Settings(epochs=1, batch_size=64, learning_rate=1e-3, weight_decay=0.0,
                               seed=0))
    sweeps.write_variants("digits", p["weights.safetensors"], "fc1", "gaussian", levels=[0.1, 0.5],
                         draws=2, study_seed=0, out=p["variants.parquet"])

    weights = Path(p["weights.safetensors"]).read_bytes()
    bad = {
        "truncated.safetensors": weights[: len(weights) // 2],
        "text.safetensors": b"these are not the weights you are looking for\n",
        "empty.safetensors": b"",
        "table.parquet.txt": b"variant,sha256\nx,y\n",
    }
    for name, content in bad.items():
        (d / name).write_bytes(content)
        p[name] = str(d / name)
    state = tensorfiles.load_tensors(p["weights.safetensors"])
    state["3.weight"] = torch.zeros(50, 100)  # mlp's fc2 is 100 x 100
    p["wrong-shape.safetensors"] = str(d / "wrong-shape.safetensors")
    tensorfiles.save_tensors(state, p["wrong-shape.safetensors"],
                             tensorfiles.load_metadata(p["weights.safetensors"]))
    p["no-images.safetensors"] = str(d / "no-images.safetensors")
    tensorfiles.save_tensors({"labels": torch.arange(10)}, p["no-images.safetensors"], {})
    table = files.read_table(p["variants.parquet"])
    column = table.schema.get_field_index("sha256")
    tampered = pc.binary_join_element_wise(table.column("sha256"), "0", "")  # one more digit
    p["tampered.parquet"] = str(d / "tampered.parquet")
    files.write_table(table.set_column(column, "sha256", tampered), p["tampered.parquet"],
                      kind=kinds.VARIANTS)
    model_column = table.schema.get_field_index("model")
    p["cnn-variants.parquet"] = str(d / "cnn-variants.parquet")
    files.write_table(table.set_column(model_column, "model", pc.replace_substring(
        table.column("model"), "mlp", "cnn")), p["cnn-variants.parquet"], kind=kinds.VARIANTS)
    p["predictions.parquet"] = str(d / "predictions.parquet")
    predict.predict_clean("digits", p["weights.safetensors"], p["test.safetensors"],
                          p["predictions.parquet"], device="cpu", batch_size=512, precision="ieee")
    # a second sweep (fc2), both sweeps' predictions, the metrics, and a fault study
    for layer in ("fc1", "fc2"):
        p[f"v-{layer}"], p[f"p-{layer}"] = str(d / f"v-{layer}.parquet"), str(d / f"p-{layer}.parquet")
        sweeps.write_variants("digits", p["weights.safetensors"], layer, "gaussian", levels=[0.5],
                             draws=2, study_seed=0, out=p[f"v-{layer}"])
        predict.predict_sweep("digits", p["weights.safetensors"], p["test.safetensors"],
                              p[f"v-{layer}"], p[f"p-{layer}"], device="cpu", batch_size=512,
                              variants_per_pass=8, cache_gb=1, precision="ieee")
    for name in ("metrics.parquet", "summary.parquet", "summary.csv"):
        p[name] = str(d / name)
    metrics.write_metrics("digits", "mlp", clean=p["predictions.parquet"],
                          variants=[p["v-fc1"], p["v-fc2"]], predictions=[p["p-fc1"], p["p-fc2"]],
                          out=p["metrics.parquet"], summary_out=p["summary.parquet"],
                          summary_csv=p["summary.csv"])
    p["errors.parquet"], p["bounds.parquet"] = str(d / "errors.parquet"), str(d / "bounds.parquet")
    bounds.fault_study("digits", p["weights.safetensors"], p["test.safetensors"], layers=["fc1"],
                       levels=[0.1], repetitions=2, study_seed=0, errors_out=p["errors.parquet"],
                       bounds_out=p["bounds.parquet"], device="cpu", batch_size=512,
                       precision="ieee", reps_per_pass=2, inputs=20)
    p["foreign.parquet"] = str(d / "foreign.parquet")  # a variants table's columns, no stamp
    pq.write_table(table.replace_schema_metadata({}), p["foreign.parquet"])
    p["objects.pth"] = str(d / "objects.pth")  # a pickle of more than tensors
    torch.save({"features.0.weight": np.zeros(3)}, p["objects.pth"])
    p["file"] = str(d / "a-file")
    Path(p["file"]).write_text("a file where a directory should be\n")
    return p


VARIANTS = ["sweep", "variants", "--dataset", "digits", "--weights", "{weights.safetensors}",
            "--layers", "fc1", "--perturbation", "gaussian", "--levels", "0.1,0.5", "--draws", "2",
            "--seed", "0", "--threads", "1"]
PREDICT = ["sweep", "predict", "--dataset", "digits", "--weights", "{weights.safetensors}",
           "--test", "{test.safetensors}", "--variants", "{variants.parquet}", "--device", "cpu",
           "--batch-size", "512", "--variants-per-pass", "8", "--cache-gb", "4", "--precision", "ieee",
           "--threads", "1"]
TENSORS = ["data", "tensors", "--dataset", "digits", "--raw", "{raw.safetensors}",
           "--train-out", "{out}/train.safetensors", "--test-fraction", "0.25", "--seed", "0"]


def fill(text: str, names: dict[str, str]) -> str:
    for name, value in names.items():
        text = text.replace("{" + name + "}", value)
    return text


def replaced(argv: list[str], flag: str, value: str) -> list[str]:
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2:]]


PREDICTIONS_TABLE = "a predictions table (written by `python -m lesion sweep predict`)"
METRICS = ["sweep", "metrics", "--dataset", "digits", "--model", "mlp", "--clean",
           "{predictions.parquet}", "--out", "{out}/m.parquet", "--summary-out", "{out}/s.parquet",
           "--summary-csv", "{out}/s.csv"]
TRAIN = ["model", "train", "--model", "mlp", "--dataset", "digits", "--train",
         "{train.safetensors}", "--test", "{test.safetensors}", "--weights-out",
         "{out}/w.safetensors", "--curve-out", "{out}/c.parquet", "--epochs", "1",
         "--batch-size", "64", "--learning-rate", "0.001", "--weight-decay", "0",
         "--seed", "0", "--device", "cpu", "--precision", "ieee", "--threads", "1"]


# id: (argv with {name} for the inputs above and {out} for a fresh output
# directory, words the message must hold); each run writes to {out}/.
CLI_CASES: dict[str, tuple[list[str], list[str]]] = {
    "unknown group": (["swep"], ["invalid choice", "'swep'", "sweep"]),
    "unknown step": (["sweep", "varients"], ["invalid choice", "'varients'", "variants"]),
    "missing arguments": (["sweep", "variants", "--dataset", "digits", "--out", "{out}/v.parquet"],
                          ["required", "--weights", "--layers", "--levels"]),
    "levels not numbers": (replaced(VARIANTS, "--levels", "0.1,lots") + ["--out", "{out}/v.parquet"],
                           ["--levels", "'0.1,lots'", "comma-separated numbers"]),
    "zero draws": (replaced(VARIANTS, "--draws", "0") + ["--out", "{out}/v.parquet"],
                   ["--draws", "'0'", "positive integer"]),
    "negative draws": (replaced(VARIANTS, "--draws", "-2") + ["--out", "{out}/v.parquet"],
                       ["--draws", "'-2'", "positive integer"]),
    "epochs not a number": (["model", "train", "--epochs", "ten"], ["--epochs", "'ten'", "positive integer"]),
    "unknown operator": (replaced(VARIANTS, "--perturbation", "dropout") + ["--out", "{out}/v.parquet"],
                         ["'dropout'", str(sorted(OPERATOR_LEVELS))]),
    "knockout level above 1": (replaced(replaced(VARIANTS, "--perturbation", "synapse_knockout"),
                                        "--levels", "0.5,1.5") + ["--out", "{out}/v.parquet"],
                               ["synapse_knockout", "1.5", "[0.0, 1.0]"]),
    "negative noise level": (replaced(VARIANTS, "--levels", "-0.5") + ["--out", "{out}/v.parquet"],
                             ["gaussian", "-0.5", ">= 0.0"]),
    "duplicate levels": (replaced(VARIANTS, "--levels", "0.1,0.5,0.1") + ["--out", "{out}/v.parquet"],
                         ["[0.1, 0.5, 0.1]", "[0.1]", "each level once"]),
    "unknown layer": (replaced(VARIANTS, "--layers", "fc9") + ["--out", "{out}/v.parquet"],
                      ["'fc9'", "['fc1', 'fc2', 'fc3']"]),
    "unknown layers among known ones": (replaced(VARIANTS, "--layers", "fc8,fc1,fc9")
                                        + ["--out", "{out}/v.parquet"],
                                        ["['fc8', 'fc9']", "not weight layers of 'mlp'",
                                         "['fc1', 'fc2', 'fc3']"]),
    "unknown dataset": (["data", "export", "--dataset", "digitz", "--out", "{out}/raw.safetensors"],
                        ["'digitz'", "'digits'"]),
    "unknown model": (replaced(TRAIN, "--model", "lenet"), ["'lenet'", "['cnn', 'mlp'"]),
    "accuracy axis upside down": (["perturbation", "figures", "--summary", "s.parquet", "--out", "{out}",
                                   "--accuracy-axis", "1,0.5"],
                                  ["--accuracy-axis", "'1,0.5'", "0 <= LOW < HIGH <= 1"]),
    "unknown device": (replaced(TRAIN, "--device", "gpu"),
                       ["--device", "'gpu'", "['auto', 'cpu', 'cuda']"]),
    "checkpoint epoch zero": (TRAIN + ["--checkpoint-epochs", "0,5", "--checkpoints-dir", "{out}"],
                              ["--checkpoint-epochs", "'0,5'", "epochs >= 1"]),
    "checkpoints without a directory": (TRAIN + ["--checkpoint-epochs", "1"],
                                        ["--checkpoint-epochs needs --checkpoints-dir"]),
    "init missing": (TRAIN + ["--init", "{out}/../no-init.safetensors"],
                     ["no-init.safetensors", "not found"]),
    "weights missing": (replaced(VARIANTS, "--weights", "{out}/../nowhere.safetensors")
                        + ["--out", "{out}/v.parquet"], ["nowhere.safetensors", "not found"]),
    "weights truncated": (replaced(VARIANTS, "--weights", "{truncated.safetensors}")
                          + ["--out", "{out}/v.parquet"],
                          ["truncated.safetensors", "not a readable safetensors file"]),
    "weights not safetensors": (replaced(VARIANTS, "--weights", "{text.safetensors}")
                                + ["--out", "{out}/v.parquet"],
                                ["text.safetensors", "not a readable safetensors file"]),
    "weights of the wrong shapes": (replaced(VARIANTS, "--weights", "{wrong-shape.safetensors}")
                                    + ["--out", "{out}/v.parquet"],
                                    ["wrong-shape.safetensors", "do not fit model 'mlp'",
                                     "wrong shape (1): ['3.weight (50, 100) != (100, 100)']"]),
    "variants table with a stale sha256": (replaced(PREDICT, "--variants", "{tampered.parquet}")
                                           + ["--out", "{out}/p.parquet"],
                                           ["tampered.parquet", "mlp-fc1-gaussian0.10-num0",
                                            "recorded", "rebuild the variants table"]),
    "variants table of another model": (replaced(PREDICT, "--variants", "{cnn-variants.parquet}")
                                        + ["--out", "{out}/p.parquet"],
                                        ["cnn-variants.parquet", "variants table of model 'cnn'",
                                         "the weights are 'mlp'"]),
    "a predictions table as variants": (replaced(PREDICT, "--variants", "{predictions.parquet}")
                                        + ["--out", "{out}/p.parquet"],
                                        ["predictions.parquet", PREDICTIONS_TABLE,
                                         "expected a variants table (written by `python -m "
                                         "lesion sweep variants`)"]),
    "variant weights of a layer the table lacks": (
        ["sweep", "variant-weights", "--dataset", "digits", "--weights", "{weights.safetensors}",
         "--variants", "{variants.parquet}", "--layer", "fc3", "--out", "{out}/weights"],
        ["variants.parquet", "no variants of layer 'fc3'", "['fc1']"]),
    "variant weights of a predictions table": (
        ["sweep", "variant-weights", "--dataset", "digits", "--weights", "{weights.safetensors}",
         "--variants", "{predictions.parquet}", "--out", "{out}/weights"],
        ["predictions.parquet", PREDICTIONS_TABLE, "expected a variants table"]),
    "metrics with variants and predictions swapped": (
        METRICS + ["--variants", "{p-fc1}", "{p-fc2}", "--predictions", "{v-fc1}", "{v-fc2}"],
        ["p-fc1.parquet", PREDICTIONS_TABLE, "expected a variants table"]),
    "metrics given the predictions of a sweep not given": (
        METRICS + ["--variants", "{v-fc1}", "--predictions", "{p-fc2}"],
        ["p-fc2.parquet", "predictions of variants no --variants table holds",
         "mlp-fc2-gaussian0.50-num0", "v-fc1.parquet"]),
    "metrics given one sweep's predictions twice": (
        METRICS + ["--variants", "{v-fc1}", "{v-fc2}", "--predictions", "{p-fc1}", "{p-fc1}"],
        ["p-fc1.parquet and", "both are predictions of", "v-fc1.parquet"]),
    "metrics of another model's variants": (
        METRICS + ["--variants", "{cnn-variants.parquet}", "--predictions", "{p-fc1}"],
        ["cnn-variants.parquet", "variants table of model ['cnn']",
         "expected model 'mlp', as --model says"]),
    "metrics under another model's name": (
        replaced(METRICS, "--model", "cnn") + ["--variants", "{v-fc1}", "--predictions", "{p-fc1}"],
        ["predictions.parquet", "the predictions of ['mlp'], but --model is 'cnn'"]),
    "metrics with a variants table as the clean predictions": (
        replaced(METRICS, "--clean", "{v-fc1}") + ["--variants", "{v-fc1}", "--predictions",
                                                   "{p-fc1}"],
        ["v-fc1.parquet", "a variants table (written by `python -m lesion sweep variants`)",
         "expected a predictions table"]),
    "weight figures of predictions tables": (
        ["perturbation", "figures", "--names", "weight_diffs", "--summary", "{summary.parquet}",
         "--variants", "{p-fc1}", "--out", "{out}/figures"],
        ["p-fc1.parquet", PREDICTIONS_TABLE, "expected a variants table"]),
    "a table lesion did not write": (
        replaced(PREDICT, "--variants", "{foreign.parquet}") + ["--out", "{out}/p.parquet"],
        ["foreign.parquet", "without the kind stamp of a lesion step",
         "expected a variants table"]),
    "performances figure of the metrics table": (
        ["perturbation", "figures", "--names", "performances", "--summary", "{metrics.parquet}",
         "--out", "{out}/figures"],
        ["metrics.parquet", "a metrics table (written by `python -m lesion sweep metrics`)",
         "expected a metrics summary table"]),
    "bounds figure with its two tables swapped": (
        ["faults", "figure", "bounds", "--errors", "{bounds.parquet}", "--bounds",
         "{errors.parquet}", "--png", "{out}/b.png", "--pdf", "{out}/b.pdf"],
        ["bounds.parquet", "a fault bounds table (written by `python -m lesion faults bounds`)",
         "expected a fault errors table"]),
    "training on another dataset's tensors": (
        replaced(TRAIN, "--dataset", "mnist"),
        ["train.safetensors", "a split of dataset 'digits'", "expected one of 'mnist'",
         "data tensors --dataset mnist"]),
    "predicting raw data": (
        replaced(PREDICT, "--test", "{raw.safetensors}") + ["--out", "{out}/p.parquet"],
        ["raw.safetensors", "not a train or test split",
         "`python -m lesion data tensors --dataset digits`"]),
    "pretrained weights from a file that is not a checkpoint": (
        ["data", "pretrained", "--model", "alexnet", "--pth", "{text.safetensors}",
         "--out", "{out}/w.safetensors"],
        ["text.safetensors", "not a PyTorch checkpoint", "weights_only=True"]),
    "pretrained weights from a checkpoint holding Python objects": (
        ["data", "pretrained", "--model", "alexnet", "--pth", "{objects.pth}",
         "--out", "{out}/w.safetensors"],
        ["objects.pth", "it holds Python objects", "lesion never unpickles"]),
    "imagenet tensors from a directory that is not there": (
        ["data", "imagenet-tensors", "--path", "{out}/../no-such-dir", "--test-out",
         "{out}/t.safetensors", "--weights", "ResNet18_Weights.IMAGENET1K_V1"],
        ["--path = ", "no-such-dir", "no such directory", "ILSVRC2012"]),
    "fault bounds of a layer the model lacks, after a good one": (
        ["faults", "bounds", "--dataset", "digits", "--weights", "{weights.safetensors}", "--test",
         "{test.safetensors}", "--errors-out", "{out}/e.parquet", "--bounds-out",
         "{out}/b.parquet", "--device", "cpu", "--precision", "ieee", "--batch-size", "512",
         "--layers", "fc1,fc4", "--levels", "0.1", "--repetitions", "2", "--seed", "0",
         "--threads", "1"],
        ["['fc4']", "not weight layers of 'mlp'", "['fc1', 'fc2', 'fc3']"]),
    "a benchmark's config file that is not there": (
        ["bench", "dag", "--configfile", "{out}/../config/mnst.yaml"],
        ["mnst.yaml", "no such config file", "config/config.yaml"]),
    "a group without a step": (["bench"], ["required", "{sweep,dag,jobs,tables,faults,attack,zoo}"]),
    "variants table not parquet": (replaced(PREDICT, "--variants", "{table.parquet.txt}")
                                   + ["--out", "{out}/p.parquet"],
                                   ["table.parquet.txt", "not a readable Parquet file"]),
    "raw data missing": (replaced(TENSORS, "--raw", "{out}/../raw-missing.safetensors")
                         + ["--test-out", "{out}/test.safetensors"],
                         ["raw-missing.safetensors", "not found"]),
    "raw data empty": (replaced(TENSORS, "--raw", "{empty.safetensors}")
                       + ["--test-out", "{out}/test.safetensors"],
                       ["empty.safetensors", "not a readable safetensors file"]),
    "raw data in the wrong layout": (replaced(TENSORS, "--raw", "{no-images.safetensors}")
                                     + ["--test-out", "{out}/test.safetensors"],
                                     ["no-images.safetensors", "['labels']", "'images' and 'labels'"]),
    "test split in the wrong layout": (replaced(PREDICT, "--test", "{no-images.safetensors}")
                                       + ["--out", "{out}/p.parquet"],
                                       ["no-images.safetensors", "no 'images' tensor"]),
    "test fraction above 1": (replaced(TENSORS, "--test-fraction", "1.5")
                              + ["--test-out", "{out}/test.safetensors"],
                              ["--test-fraction", "'1.5'", "between 0 and 1"]),
    "output under a file": (VARIANTS + ["--out", "{file}/v.parquet"],
                            ["a-file/v.parquet", "a-file is not a directory",
                             "expected a directory there"]),
    "unknown figure": (["perturbation", "figures", "--names", "performance", "--summary",
                        "{variants.parquet}", "--out", "{out}/figures"],
                       ["'performance'", "['performances', 'weight_diffs', 'num_weights']"]),
    "unequal metrics inputs": (METRICS + ["--variants", "{variants.parquet}",
                                          "{variants.parquet}", "--predictions", "{variants.parquet}"],
                               ["2 variants tables, 1 clean and 1 sweep predictions",
                                "one predictions table per variants table and test set"]),
}

# Words a case's message must not hold: torch's advice to load unsafely, a wrong
# step or origin, work done before an argument was refused (a progress bar).
FORBIDDEN: dict[str, list[str]] = {
    "pretrained weights from a file that is not a checkpoint": ["weights_only=False"],
    "pretrained weights from a checkpoint holding Python objects": ["weights_only=False",
                                                                    "add_safe_globals"],
    "predicting raw data": ["imagenet-tensors"],
    "imagenet tensors from a directory that is not there": ["config error"],
    "a benchmark's config file that is not there": ["writable"],
    "fault bounds of a layer the model lacks, after a good one": ["%|"],
}


# --- A step run in this process, as `python -m lesion` runs it ----------------
# A fresh `python -m lesion` pays 2-3.5 s to import torch; these cases only need
# what the step prints and its exit status, so they run lesion.cli.main here,
# with what a new process would give it: its own working directory, streams
# (stdout and stderr together, down to the file descriptors, as the pipe took
# them), logging (main's logging.basicConfig installs its handler on a bare root
# logger), warnings printed, and the process-wide state a step may change put
# back as it was when this module was imported.


def _global_state() -> dict:
    """What of the whole process a step may change (lesion.evaluate, lesion.train)."""
    return {
        "sys.path": list(sys.path), "threads": torch.get_num_threads(),
        "dtype": torch.get_default_dtype(), "grad": torch.is_grad_enabled(),
        "deterministic": (torch.are_deterministic_algorithms_enabled(),
                          torch.is_deterministic_algorithms_warn_only_enabled()),
        "matmul": torch.backends.cuda.matmul.fp32_precision,
        "conv": torch.backends.cudnn.conv.fp32_precision,
        "torch rng": torch.get_rng_state(), "numpy rng": np.random.get_state(),
        "python rng": random.getstate(),
    }


def _set_global_state(state: dict) -> None:
    sys.path[:] = state["sys.path"]
    torch.set_num_threads(state["threads"])
    torch.set_default_dtype(state["dtype"])
    torch.set_grad_enabled(state["grad"])
    enabled, warn_only = state["deterministic"]
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cuda.matmul.fp32_precision = state["matmul"]
    torch.backends.cudnn.conv.fp32_precision = state["conv"]
    torch.set_rng_state(state["torch rng"])
    np.random.set_state(state["numpy rng"])
    random.setstate(state["python rng"])


FRESH = _global_state()  # at import: before the inputs fixture (it trains) or any step ran


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _as_a_fresh_process(cwd: Path, env: dict[str, str]):
    saved, saved_cwd, saved_env = _global_state(), os.getcwd(), dict(os.environ)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []  # pytest's capture handlers would make basicConfig a no-op
    root.setLevel(logging.WARNING)
    _set_global_state(FRESH)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with warnings.catch_warnings():  # pytest records warnings; a fresh process prints them
            warnings.simplefilter("default")
            warnings.showwarning = _print_warning
            yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        _set_global_state(saved)
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def _exit_status(code) -> int:
    """The status a `raise SystemExit(code)` ends the interpreter with (printing a message)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_step(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m lesion *argv` in `cwd`: its exit status and its stdout and stderr as one text.

    Run in this process (see above). An exception escaping main() ends it as it
    would end the interpreter: status 1, its traceback in the output.
    """
    from lesion.cli import main

    text = io.StringIO(newline=None)  # "\r" (a progress bar) read as "\n", as text=True pipes do
    with tempfile.TemporaryFile() as fds, _as_a_fresh_process(cwd, environment()):
        kept = [os.dup(1), os.dup(2)]  # what C code writes (torch's own warnings) lands in fds
        os.dup2(fds.fileno(), 1)
        os.dup2(fds.fileno(), 2)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                try:
                    status = _exit_status(main(argv))
                except SystemExit as exit:  # argparse's errors and --help
                    status = _exit_status(exit.code)
                except Exception:
                    status = 1
                    text.write(traceback.format_exc())
        finally:
            for fd, dup in zip((1, 2), kept, strict=True):
                os.dup2(dup, fd)
                os.close(dup)
        fds.seek(0)
        text.write(fds.read().decode(errors="replace"))
    return subprocess.CompletedProcess(["python", "-m", "lesion", *argv], status, text.getvalue())


@pytest.fixture(scope="module")
def cli_runs(request, made, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    def start(case: str) -> tuple[subprocess.CompletedProcess, Path]:
        out = tmp_path_factory.mktemp("out")
        names = {**made, "out": str(out)}
        argv = [fill(a, names) for a in CLI_CASES[case][0]]
        return run_step(argv, cwd=out), out

    return run_all(request, "test_a_bad_step_invocation_fails_with_one_clear_message_and_no_output",
                   CLI_CASES, start, workers=1)


@pytest.mark.parametrize("case", CLI_CASES)
def test_a_bad_step_invocation_fails_with_one_clear_message_and_no_output(made, cli_runs, case):
    proc, out = cli_runs[case]
    assert_refused(proc, [fill(w, {**made, "out": str(out)}) for w in CLI_CASES[case][1]])
    said = [w for w in FORBIDDEN.get(case, []) if w in proc.stdout]
    assert not said, f"{said} in the message:\n{proc.stdout[-3000:]}"
    assert list(out.iterdir()) == [], "a failed step left files behind"
    assert Path(made["file"]).read_text() == "a file where a directory should be\n"


# --- Help ---------------------------------------------------------------------

def every_step():
    """(name, parser) of every `python -m lesion GROUP STEP`."""
    from lesion.cli import parser

    def choices(p):
        return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices

    return [(f"{group} {step}", sub) for group, grouped in choices(parser()).items()
            for step, sub in choices(grouped).items()]


@pytest.mark.parametrize("name,step", every_step(), ids=[n for n, _ in every_step()])
def test_every_option_says_what_it_is_its_default_and_its_values(name, step):
    for action in step._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = "/".join(action.option_strings) or action.dest
        described = step.formatter_class("x")._get_help_string(action)
        assert len((action.help or "").split()) >= 3, f"{name} {flag}: no description"
        if action.option_strings and action.required:
            assert "(required)" in described, f"{name} {flag}: not marked required"
        elif action.option_strings:
            assert "default" in described, f"{name} {flag}: no default said"
        if action.dest == "model" and "name in the study" in described:
            continue  # any model key of a config: an open set, said as such
        if action.dest in ("dataset", "model", "perturbation") or action.choices:
            assert "one of" in described, f"{name} {flag}: its values are not listed"


def test_the_top_level_help_describes_the_tool_not_its_code():
    proc = run([sys.executable, "-m", "lesion", "--help"], cwd=REPO)
    assert proc.returncode == 0
    assert "lesion studies of neural networks" in proc.stdout
    assert "Argument parsing" not in proc.stdout and "argument parsing" not in proc.stdout
