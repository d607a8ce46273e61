"""The Snakemake DAG end to end: a tiny real study, built once, then changed.

The unit tests check the library; only running the workflow checks the DAG
itself: that every target is wired to the rule that makes it, that a finished
study is left alone, and that an edit reruns exactly the jobs it concerns (a
module through the `code(...)` inputs, a sweep through its params) and
nothing upstream of them, since a needless retrain is what makes a lesion
study slow.

The workflow (Snakefile, workflow/, src/, envs/, profiles/) is copied into a
temporary directory so that its source files can be edited there; `workflow.
basedir` is then that copy and the `code(...)` inputs point into it, while the
jobs still run the installed `lesion` package. The tests share that study and
run in file order: build, nothing to do, an edited module, a changed config.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

import jobserver
from lesion import tensorfiles

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]


def tiny_config(name: str) -> dict:
    """A config of `.test/`: the tiny studies the tests build (snakemake-workflows' convention)."""
    return yaml.safe_load((REPO / ".test" / f"{name}.yaml").read_text())


# Small enough for 2 cores: 17 jobs, about 45 s.
CONFIG = tiny_config("workflow")
DATASET = CONFIG["dataset"]["name"]
MODEL = next(iter(CONFIG["models"]))
LAYERS = CONFIG["models"][MODEL]["layers"]
FIGURES = ["performances", "weight_diffs", "num_weights"]
LEVELS = CONFIG["perturbations"]["gaussian"]["levels"]
DRAWS = CONFIG["perturbations"]["gaussian"]["draws"]
PERTURBATIONS = list(CONFIG["perturbations"])
# Snakemake's own words (snakemake.common.NOTHING_TO_BE_DONE_MSG in 9.27.1).
NOTHING_TO_BE_DONE = "Nothing to be done (all requested files are present and up to date)."


def write_config(root: Path, config: dict) -> None:
    (root / "config").mkdir(exist_ok=True)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def study_copy(root: Path, config: dict) -> None:
    """The workflow and the library copied into `root`, with `config` as its study."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copy2(REPO / "Snakefile", root / "Snakefile")
    for name in ("workflow", "src", "envs", "profiles"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    write_config(root, config)


def snakemake(root: Path, *args: str, timeout: float = 300, expect_failure: bool = False) -> str:
    """Run Snakemake on the study in `root`; its whole output (it logs to stderr)."""
    bindir = str(Path(sys.executable).parent)  # the rules call `python -m lesion`
    launch, forked = jobserver.command(["snakemake"])  # Snakemake and its jobs forked warm
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), **forked}
    proc = subprocess.run(
        [*launch, "--snakefile", str(root / "Snakefile"),
         "--directory", str(root), "--cores", "2", *args],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout, check=False,
    )
    if expect_failure:
        assert proc.returncode != 0, f"snakemake {' '.join(args)} succeeded:\n{proc.stdout[-6000:]}"
    else:
        assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{proc.stdout[-6000:]}"
    return proc.stdout


def planned_jobs(root: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    """The jobs a dry run schedules, as (rule, wildcards), one per job.

    A dry run prints one block per job, `rule NAME:` (or `localrule NAME:`)
    followed by indented `key: value` lines, `wildcards: a=1, b=2` among them,
    then a "Job stats" table of job counts per rule. Of Snakemake 9's other
    views, --summary/--detailed-summary list output files (not jobs, no
    wildcards) and --list-changes names files, not the jobs that follow from
    them; only the per-job blocks say which job of a rule reruns. They are
    text meant for people, so the blocks are checked against the job-stats
    table: if Snakemake ever prints them differently, the parse fails loudly
    here instead of finding no jobs and passing.
    """
    out = snakemake(root, "--dry-run", *args)
    if NOTHING_TO_BE_DONE in out:
        return []
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in out.splitlines():
        if match := re.fullmatch(r"(?:local)?(?:rule|checkpoint) (\w+):", line.strip()):
            jobs.append((match[1], {}))
        elif (match := re.fullmatch(r"\s+wildcards: (.*)", line)) and jobs:
            jobs[-1][1].update(item.split("=", 1) for item in match[1].split(", "))
    stats = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\ntotal\s+(\d+)\n", out, re.DOTALL)
    assert stats, f"no job-stats table in the dry run:\n{out[-6000:]}"
    counts = {rule: int(n) for rule, n in (row.split() for row in stats[1].splitlines())}
    assert Counter(rule for rule, _ in jobs) == counts, out[-6000:]
    assert len(jobs) == int(stats[2])
    return jobs


def model_dir(root: Path) -> Path:
    return root / "results" / DATASET / MODEL


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The tiny study, built once by the real workflow in a copy of it."""
    root = tmp_path_factory.mktemp("study")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copy2(REPO / "Snakefile", root / "Snakefile")
    # envs/: Snakemake records each rule's conda file in its metadata even
    # without --use-conda; profiles/: run with the defaults users get.
    for name in ("workflow", "src", "envs", "profiles"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    write_config(root, CONFIG)
    snakemake(root)
    return root


def test_the_study_builds_every_target(study):
    out = model_dir(study)
    expected = [
        "weights.safetensors", "training.parquet", "metrics.parquet",
        "checkpoints/epoch2.safetensors",
        "metrics_summary.parquet", "metrics_summary.csv", "predictions/none.parquet",
        "fragility.csv",
        *(f"{kind}/{perturbation}.parquet" for kind in ("variants", "predictions")
          for perturbation in PERTURBATIONS),
        *(f"figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")),
    ]
    missing = [path for path in expected if not (out / path).is_file()]
    assert not missing
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    assert len(pd.read_parquet(out / "training.parquet")) > 0
    fragility = pd.read_csv(out / "fragility.csv")  # one row per swept (operator, layer)
    assert len(fragility) == len(PERTURBATIONS) * len(LAYERS)
    assert fragility["auc"].between(0, 1).all()


def test_metrics_table_holds_every_variant_and_the_clean_model(study):
    metrics = pd.read_parquet(model_dir(study) / "metrics.parquet")
    assert list(metrics.columns) == ["dataset", "model", "testset", "perturbation", "layer", "level",
                                     "draw", "variant", "metric", "value"]
    assert set(metrics["metric"]) == {"top1", "top5", "loss", "agreement", "nonfinite"}
    assert set(metrics["dataset"]) == {DATASET} and set(metrics["model"]) == {MODEL}
    assert metrics["value"].notna().all()

    clean = metrics[metrics["perturbation"] == "none"]
    assert len(clean) == 5 and clean["variant"].nunique() == 1
    assert (clean["level"] == 0).all() and (clean["layer"] == "none").all()
    # values, not only shapes: the clean network is far above chance (10 classes),
    # and its top-1 is what training counted on the same test split by another path
    clean_value = clean.set_index("metric")["value"]
    assert clean_value["top1"] > 0.5
    assert clean_value["agreement"] == 1.0 and clean_value["nonfinite"] == 0.0
    trained = tensorfiles.load_metadata(model_dir(study) / "weights.safetensors")
    assert clean_value["top1"] == pytest.approx(trained["test_accuracy"], abs=1e-9)

    variants = metrics[metrics["perturbation"] != "none"]
    per_variant = variants.groupby("variant")["metric"].nunique()
    assert (per_variant == 5).all()
    assert len(per_variant) == len(PERTURBATIONS) * len(LAYERS) * len(LEVELS) * DRAWS
    assert set(variants["perturbation"]) == set(PERTURBATIONS)
    assert set(variants["layer"]) == set(LAYERS)
    assert sorted(set(variants["level"])) == LEVELS
    assert set(variants["draw"]) == set(range(DRAWS))

    for perturbation in PERTURBATIONS:  # one table per operator: its layers in forward order
        table = pd.read_parquet(model_dir(study) / "variants" / f"{perturbation}.parquet")
        assert table["layer"].tolist() == [layer for layer in LAYERS for _ in range(len(LEVELS) * DRAWS)]
        assert table["level"].tolist() == [lv for _ in LAYERS for lv in LEVELS for _ in range(DRAWS)]

    summary = pd.read_csv(model_dir(study) / "metrics_summary.csv")
    assert (summary.loc[summary["perturbation"] != "none", "n"] == DRAWS).all()


def test_a_finished_study_has_nothing_to_do(study):
    assert planned_jobs(study) == []


def test_touching_a_module_without_changing_it_reruns_nothing(study):
    # Snakemake 9 records the checksums of small inputs: a newer mtime with the
    # same content is not a change (so `touch` does not force a rerun).
    plots = study / "src" / "lesion" / "studies" / "perturbation" / "plots.py"
    later = plots.stat().st_mtime + 3600
    os.utime(plots, (later, later))
    assert planned_jobs(study) == []


SWEEPS = len(PERTURBATIONS)  # one sweep job per operator, every layer in it
# Module edited -> the jobs that must rerun, by rule: those whose step imports
# it (at any depth), and what is downstream of them. Written out by hand from
# what each step does, not from lesion.sources.
RERUNS = {
    "studies/perturbation/plots.py": {"perturbation_figures": 1},
    # the claims step loads each study's claims function by name: its code counts too
    "studies/perturbation/claims.py": {"claims": 1},
    "claims.py": {"claims": 1},
    "metrics.py": {"metrics": 1, "perturbation_figures": 1, "claims": 1},
    "predict.py": {"sweep": SWEEPS, "predict_clean": 1, "metrics": 1, "perturbation_figures": 1,
                   "claims": 1},
    # the crash masks: the predict step runs them, and training with dropout
    "activations.py": {"train": 1, "sweep": SWEEPS, "predict_clean": 1, "metrics": 1,
                       "perturbation_figures": 1, "claims": 1},
    "data.py": {"export_dataset": 1, "tensors": 1, "train": 1, "sweep": SWEEPS,
                "predict_clean": 1, "metrics": 1, "perturbation_figures": 1, "claims": 1},
}
# Modules that no job of this study runs, edited all at once: nothing may rerun.
RUN_BY_NO_JOB = [
    # the fault study's science: this study has no fault section
    "studies/faults/bounds.py", "studies/faults/plots.py",
    # nor an adversarial section: the attacks and the study's code run nothing here
    "attacks.py", "pretrain.py", "studies/adversarial/tables.py", "studies/adversarial/plots.py",
    # the weight-space study's: this study has no zoo section
    "studies/zoo/grouped.py", "studies/zoo/meta.py",
    # the claims of studies this one does not run are read by no job
    "studies/faults/claims.py", "studies/adversarial/claims.py",
]


def planned_after_editing(study: Path, modules: list[str]) -> list[tuple[str, dict[str, str]]]:
    """The jobs a dry run plans with `modules` edited; the edits are undone after it."""
    paths = [study / "src" / "lesion" / module for module in modules]
    originals = [path.read_bytes() for path in paths]
    try:
        for path, original in zip(paths, originals, strict=True):
            path.write_bytes(original + b"\n# an edit the jobs have not seen\n")
        return planned_jobs(study)
    finally:
        for path, original in zip(paths, originals, strict=True):
            path.write_bytes(original)  # same checksum again: the study is up to date


@pytest.mark.parametrize("module", RERUNS)
def test_editing_a_module_reruns_exactly_the_jobs_whose_steps_import_it(study, module):
    jobs = planned_after_editing(study, [module])
    assert Counter(rule for rule, _ in jobs) == {**RERUNS[module], "all": 1}


def test_editing_modules_no_job_runs_reruns_nothing(study):
    assert all((study / "src" / "lesion" / module).is_file() for module in RUN_BY_NO_JOB)
    assert planned_after_editing(study, RUN_BY_NO_JOB) == []
    # and undoing an edit leaves the study up to date (checksums, not mtimes)
    assert planned_after_editing(study, []) == []


# A setting edited -> the jobs it reruns (besides `all`). Batching and the cache bound
# change speed, not tables (tests/test_predict.py): they rerun nothing.
DOWNSTREAM_OF_TRAINING = {"sweep": SWEEPS, "predict_clean": 1, "metrics": 1,
                          "perturbation_figures": 1, "claims": 1}
SETTING_RERUNS = [
    ("evaluate", "cache_gb", 0.5, {}),
    ("evaluate", "variants_per_pass", 3, {}),
    ("evaluate", "batch_size", 100, DOWNSTREAM_OF_TRAINING),
    # one operator's draws: its sweep, not the other operator's
    ("perturbations", "gaussian", {"levels": LEVELS, "draws": DRAWS + 1},
     {"sweep": 1, "metrics": 1, "perturbation_figures": 1, "claims": 1}),
    ("train", "learning_rate", 0.01, {"train": 1, **DOWNSTREAM_OF_TRAINING}),
    ("dataset", "test_fraction", 0.3, {"tensors": 1, "train": 1, **DOWNSTREAM_OF_TRAINING}),
    # the layers a model's sweeps cover: every operator's sweep (each holds every layer),
    # and what reads them all
    ("models", MODEL, {"layers": [*LAYERS, "fc2"]},
     {"sweep": len(PERTURBATIONS), "metrics": 1, "perturbation_figures": 1, "claims": 1}),
]


@pytest.mark.parametrize("section,key,value,reruns", SETTING_RERUNS,
                         ids=[f"{s}.{k}" for s, k, _, _ in SETTING_RERUNS])
def test_editing_a_setting_reruns_exactly_the_jobs_it_changes(study, section, key, value, reruns):
    (study / "edit.yaml").write_text(yaml.safe_dump({section: {key: value}}))
    jobs = planned_jobs(study, "--configfile", "config/config.yaml", "edit.yaml")
    expected = {**reruns, "all": 1} if reruns else {}
    assert Counter(rule for rule, _ in jobs) == expected


def canonical_twin(config: dict) -> str:
    """`config` written as another person would: keys in another order, other
    indentation, every default spelled out, integers as floats where YAML allows."""
    spelled = {**config, "device": config["device"], "seed": float(config["seed"]),
               "evaluate": {"cache_gb": 4, "variants_per_pass": 8, "batch_size": 512.0},
               "train": {**config["train"], "epochs": float(config["train"]["epochs"]),
                         "batch_size": 64, "learning_rate": 1e-3, "weight_decay": 0},
               "dataset": {**config["dataset"], "test_fraction": 0.25},
               "models": {m: {"layers": v["layers"], "train": {}} for m, v in config["models"].items()}}
    reordered = dict(reversed(list(spelled.items())))
    return yaml.safe_dump(reordered, sort_keys=True, indent=4, default_flow_style=False)


def test_a_reordered_reformatted_config_with_defaults_spelled_out_reruns_nothing(study):
    config = study / "config" / "config.yaml"
    original = config.read_text()
    try:
        config.write_text(canonical_twin(CONFIG))
        assert config.read_text() != original
        assert planned_jobs(study) == []
    finally:
        config.write_text(original)


def test_a_fine_tuned_model_trains_from_its_init_file_with_frozen_layers(study):
    start = study / "resources" / "start.safetensors"
    shutil.copy2(model_dir(study) / "checkpoints" / "epoch2.safetensors", start)
    overlay = study / "fine-tune.yaml"
    overlay.write_text(yaml.safe_dump({"models": {MODEL: {"layers": LAYERS, "train": {
        "init": "resources/start.safetensors", "freeze": ["fc1"]}}}}))
    try:
        layered = ("--configfile", "config/config.yaml", "fine-tune.yaml")
        jobs = Counter(rule for rule, _ in planned_jobs(study, *layered))
        assert jobs["train"] == 1 and jobs["sweep"] == SWEEPS  # retrained, and all after it
        out = snakemake(study, "-n", "-p", *layered)
        assert "--init resources/start.safetensors --freeze fc1" in out
        assert "--checkpoint-epochs 2 --checkpoints-dir results/digits/mlp/checkpoints" in out
    finally:
        start.unlink()


def test_a_study_left_out_of_the_config_plans_none_of_its_jobs(study):
    faults_only = {k: v for k, v in CONFIG.items() if k != "perturbations"}
    faults_only["faults"] = {"models": [MODEL], "levels": [0.1], "repetitions": 2}
    (study / "faults-only.yaml").write_text(yaml.safe_dump(faults_only))
    jobs = Counter(rule for rule, _ in planned_jobs(study, "--configfile", "faults-only.yaml"))
    # the network is built; the claims table now judges the fault study's claims
    assert jobs == {"fault_bounds": 1, "fault_figure": 1, "claims": 1, "all": 1}


def outputs_of(root: Path) -> dict[Path, int]:
    """Every file the study wrote (results, logs, benchmarks, resources), with its mtime."""
    return {path: path.stat().st_mtime_ns for top in ("results", "logs", "benchmarks", "resources")
            for path in (root / top).rglob("*") if path.is_file()}


def test_a_named_study_in_the_same_checkout_writes_apart_from_the_default(study):
    # Issue 16, item 7: the same dataset and model with fewer layers and draws;
    # unnamed, it would replace the default study's files.
    other = {**CONFIG, "study": "other", "train": {"epochs": 1, "checkpoints": [1]},
             "models": {MODEL: {"layers": ["fc1"]}},
             "perturbations": {"gaussian": {"levels": [0.5], "draws": 1}}}
    (study / "other.yaml").write_text(yaml.safe_dump(other))
    before = outputs_of(study)
    snakemake(study, "--configfile", "other.yaml")
    written = set(outputs_of(study)) - set(before)
    roots = [study / top / "other" for top in ("results", "logs", "benchmarks")]
    assert written and all(any(root in p.parents for root in roots) for p in written), sorted(
        p for p in written if not any(root in p.parents for root in roots))
    assert {p: outputs_of(study)[p] for p in before} == before  # nothing of the default touched
    assert planned_jobs(study) == []
    variants = pd.read_parquet(study / "results" / "other" / DATASET / MODEL / "variants"
                               / "gaussian.parquet")
    assert len(variants) == 1
    assert len(pd.read_parquet(model_dir(study) / "variants" / "gaussian.parquet")) == (
        len(LAYERS) * len(LEVELS) * DRAWS)


def test_changing_one_operators_levels_in_an_overlay_reruns_only_its_sweeps(study):
    # Last in the file: it rebuilds the study under a changed config for good
    # (restoring it would cost a second rebuild). The change is an overlay:
    # a file naming only what changes, merged onto the study's config.
    new_levels = [0.2, 0.8]
    overlay = study / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"perturbations": {"gaussian": {"levels": new_levels}}}))
    layered = ("--configfile", "config/config.yaml", "overlay.yaml")
    untouched = [model_dir(study) / "weights.safetensors",
                 *(model_dir(study) / kind / "synapse_knockout.parquet"
                   for kind in ("variants", "predictions"))]
    before = {path: path.stat().st_mtime_ns for path in untouched}

    jobs = planned_jobs(study, *layered)
    assert Counter(rule for rule, _ in jobs) == {
        "sweep": 1, "metrics": 1, "perturbation_figures": 1, "claims": 1, "all": 1}
    [swept] = [w for rule, w in jobs if rule == "sweep"]
    assert swept == {"dataset": DATASET, "model": MODEL, "perturbation": "gaussian"}

    snakemake(study, *layered)
    assert planned_jobs(study, *layered) == []
    assert {path: path.stat().st_mtime_ns for path in untouched} == before
    metrics = pd.read_parquet(model_dir(study) / "metrics.parquet")
    levels = metrics.groupby("perturbation")["level"].unique()
    assert sorted(levels["gaussian"]) == new_levels
    assert sorted(levels["synapse_knockout"]) == LEVELS
    draws = metrics.loc[metrics["perturbation"] == "gaussian", "draw"]
    assert set(draws) == set(range(DRAWS))  # kept from the config under the overlay


def test_an_overlay_is_checked_after_merging(study):
    overlay = study / "bad-overlay.yaml"
    overlay.write_text(yaml.safe_dump({"perturbations": {"gaussian": {"draws": 0}}}))
    out = snakemake(study, "-n", "--configfile", "config/config.yaml", "bad-overlay.yaml",
                    expect_failure=True)
    assert "perturbations.gaussian.draws = 0" in out and ">= 1" in out
