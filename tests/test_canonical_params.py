"""Same values, same jobs: every shipped config, rewritten as another person would
write it, leaves a finished study with nothing to do.

Snakemake reruns a job when the text of its params changes; lesion passes
params from the canonical config (lesion.config.canonical), so key order,
indentation, `40.0` for `40` and defaults spelled out must not matter. A
real ImageNet or MNIST study cannot be built here, so each study is
"finished" the way Snakemake itself allows: every output is created empty and
`snakemake --touch` records the jobs' metadata (params included) as if they
had run. The dry run then compares the recorded params with the rewritten
config's, by Snakemake's own rules. `--touch` sleeps 0.1 s per job
(snakemake.executors.touch): a study of more than LARGE outputs (none of the
shipped configs since a sweep job covers every layer of a model and operator:
the ImageNet study has 57 jobs; with one sweep job per layer it had some 750)
is sampled, one output per rule and directory and every job upstream of them,
leaving out the rules that read every sweep of a model or of the study (the
claims table), which would bring the whole study back.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import jobserver
from lesion.config import load_schema

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
NOTHING_TO_BE_DONE = "Nothing to be done (all requested files are present and up to date)."
LARGE = 300  # outputs; a study with more is sampled (the module docstring)
READS_EVERY_SWEEP = {"metrics", "perturbation_figures", "claims"}
CONFIGS = sorted((REPO / "config").glob("*.yaml"))


# `snakemake --touch` without its 0.1 s sleep before each job's outputs (snakemake.executors.
# touch.Executor.SLEEPING_TIME): 13-16 s of every config's 130-250 jobs. It touches jobs in
# the DAG's order, and what the test reads, the params each job records, does not depend on it.
TOUCH_WITHOUT_SLEEP = ("import sys; from snakemake.executors import touch; "
                       "touch.Executor.SLEEPING_TIME = 0; from snakemake.cli import main; "
                       "sys.exit(main())")


def snakemake(workdir: Path, config: Path, *args: str) -> str:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    if "--touch" in args:
        launch = [sys.executable, "-c", TOUCH_WITHOUT_SLEEP]
    else:  # a summary or dry run: forked from the job server, Snakemake imported already
        launch, forked = jobserver.command(["snakemake"])
        env |= forked
    proc = subprocess.run(
        [*launch, "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(config), "--cores", "2", *args],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return proc.stdout


def finished_study(workdir: Path, config: Path) -> list[str]:
    """Every output of `config`'s study created empty, and the targets (all of them, or a
    sample of a large study) recorded by Snakemake as if built."""
    name = yaml.safe_load(config.read_text())["dataset"]["name"]
    # a decoded ImageNet cache stands for the images (the workflow checks them only without it)
    cache = workdir / "results" / name / "tensors" / "test.safetensors"
    cache.parent.mkdir(parents=True)
    cache.touch()
    summary = snakemake(workdir, config, "--summary")
    outputs: dict[str, str] = {}  # path -> rule
    for line in summary.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) < 3 or not fields[0].startswith(("results/", "resources/")):
            continue
        path = workdir / fields[0]
        if fields[2] == "download":  # a directory() output
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        outputs[fields[0]] = fields[2]
    assert len(set(outputs.values())) >= 5, summary[-3000:]  # the parse found the rules
    targets = list(outputs)
    if len(outputs) > LARGE:
        sample: dict[tuple[str, str], str] = {}  # one per rule and directory
        for path, rule in outputs.items():
            if rule not in READS_EVERY_SWEEP:
                sample.setdefault((rule, str(Path(path).parent)), path)
        targets = list(sample.values())
    # --forceall: record every job, not only those whose empty outputs look out of date
    snakemake(workdir, config, "--touch", "--forceall", "--quiet", "--scheduler", "greedy",
              "--max-jobs-per-timespan", "10000/1s", *targets)
    return targets


def spelled_out(config: dict) -> dict:
    """The same study written differently: the schema's top-level defaults written in,
    integers written as floats, and keys in reverse order (dumped sorted, indent 4)."""
    out = copy.deepcopy(config)
    props = SCHEMA["properties"]
    out.setdefault("seed", props["seed"]["default"])
    out.setdefault("device", props["device"]["default"])
    out["seed"] = float(out["seed"])
    evaluate = out.setdefault("evaluate", {})
    for key, sub in props["evaluate"]["properties"].items():
        evaluate.setdefault(key, sub["default"])
    evaluate["batch_size"] = float(evaluate["batch_size"])
    train = out.setdefault("train", {})
    for key, sub in SCHEMA["$defs"]["train"]["properties"].items():
        train.setdefault(key, sub["default"])
    train["epochs"] = float(train["epochs"])
    for sweep in out.get("perturbations", {}).values():
        if isinstance(sweep, dict):  # not the lists `models` and `testsets`
            sweep["draws"] = float(sweep["draws"])
    return dict(reversed(list(out.items())))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_a_rewritten_shipped_config_leaves_its_finished_study_with_nothing_to_do(tmp_path, path):
    targets = finished_study(tmp_path, path)
    if path.stem == "config":  # the control, once
        assert NOTHING_TO_BE_DONE in snakemake(tmp_path, path, "--dry-run", *targets)
    rewritten = tmp_path / "rewritten.yaml"
    rewritten.write_text(yaml.safe_dump(spelled_out(yaml.safe_load(path.read_text())),
                                        sort_keys=True, indent=4))
    assert rewritten.read_text() != path.read_text()
    out = snakemake(tmp_path, rewritten, "--dry-run", *targets)
    assert NOTHING_TO_BE_DONE in out, out[-5000:]
    # and a real change is seen: the test can fail (checked once, on the default)
    if path.stem != "config":
        return
    changed = yaml.safe_load(rewritten.read_text())
    changed["seed"] = 1
    rewritten.write_text(yaml.safe_dump(changed))
    assert "params have changed" in snakemake(tmp_path, rewritten, "--dry-run", *targets).lower()
