"""Safety: nothing is unpickled, and no config can make a study write outside
the project's results/, resources/, logs/ and benchmarks/.

Unpickling runs code from the file; weights are safetensors, tables Parquet,
manifests JSON. The source is scanned with `ast`, so a new `torch.load`
without `weights_only=True` or a stray `pickle` import fails here, not in a
review. Paths: names from the config become file names, so they must be
plain names (lesion.config.check_paths); every output, log and benchmark of
the default study's DAG lies inside the four roots.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lesion.config import OUTPUT_ROOTS, ConfigError, check_paths, confined

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "src" / "lesion").rglob("*.py"))
RULES = [REPO / "Snakefile", *sorted((REPO / "workflow").rglob("*.smk"))]
UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loads(source: str) -> list[str]:
    """Every way `source` could unpickle something, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom)
                                                   and node.module else [])
            bad = [n for n in names if n.split(".")[0] in UNPICKLERS]
            if bad:
                found.append(f"{node.lineno}: imports {bad[0]}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            if name == "load" and owner == "torch" and not _is_true(_keyword(node, "weights_only")):
                found.append(f"{node.lineno}: torch.load without weights_only=True")
            elif name == "load" and owner in ("np", "numpy") and _is_true(_keyword(node, "allow_pickle")):
                found.append(f"{node.lineno}: numpy.load with allow_pickle=True")
            elif name in ("read_pickle", "to_pickle"):
                found.append(f"{node.lineno}: {name}")
            elif name in ("load", "load_all") and owner == "yaml":
                loader = _keyword(node, "Loader")
                if loader is None or "Safe" not in ast.unparse(loader):
                    found.append(f"{node.lineno}: yaml.{name} without a SafeLoader")
            elif name in ("eval", "exec") and not owner:
                found.append(f"{node.lineno}: {name}")
    return found


def test_the_scan_finds_what_it_looks_for():
    source = ("import pickle\nimport torch\nimport numpy as np\nimport yaml\n"
              "torch.load('w.pt')\ntorch.load('w.pt', weights_only=False)\n"
              "np.load('a.npy', allow_pickle=True)\nyaml.load(open('c'))\n"
              "torch.load('w.pt', weights_only=True)\nyaml.load(open('c'), Loader=yaml.SafeLoader)\n")
    assert [line.split(":")[0] for line in unsafe_loads(source)] == ["1", "5", "6", "7", "8"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_module_unpickles_anything(path):
    assert unsafe_loads(path.read_text()) == []


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.name)
def test_no_rule_unpickles_anything(path):
    text = path.read_text()
    assert not re.search(r"\bpickle\b|torch\.load\(", text), path


@pytest.mark.parametrize("path", [
    "results/digits/cnn/metrics.parquet", "resources/imagenet/weights", "logs/x.log",
    "benchmarks/a/b.tsv", "results/./digits/../digits/x",
])
def test_paths_inside_the_project_roots_are_confined(path):
    assert confined(path)


@pytest.mark.parametrize("path", [
    "../../etc", "/etc/passwd", "results/../../etc/passwd", "results/..", "~/results",
    "src/lesion/config.py", "", ".", "C:\\results", "results/../src/lesion",
])
def test_paths_outside_the_project_roots_are_refused(path):
    assert not confined(path)


@pytest.mark.parametrize("config,key", [
    ({"dataset": {"name": "../../etc"}}, "dataset.name"),
    ({"dataset": {"name": "digits"}, "models": {"/etc": {}}}, "models"),
    ({"dataset": {"name": "digits"}, "models": {"mlp": {"layers": ["fc1", "../../fc2"]}}},
     "models.mlp.layers[1]"),
    ({"dataset": {"name": "digits"}, "perturbations": {"x/../../y": {}}}, "perturbations"),
    ({"faults": {"models": ["..", "mlp"]}}, "faults.models[0]"),
    ({"faults": {"regimes": {"../dropout": {}}}}, "faults.regimes"),
])
def test_names_that_would_leave_results_are_refused_with_their_key(config, key):
    with pytest.raises(ConfigError, match=re.escape(key)) as err:
        check_paths(config)
    assert "plain name" in str(err.value)


def test_every_output_log_and_benchmark_of_the_default_study_is_inside_the_roots(tmp_path):
    """Every job of the default study's DAG (forced, so none is skipped)."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-F", "--cores", "1", "--snakefile",
         str(REPO / "Snakefile"), "--configfile", str(REPO / "config" / "config.yaml"),
         "--directory", str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    paths = [p.strip() for line in proc.stdout.splitlines()
             if (m := re.match(r"\s+(output|log|benchmark): (.*)", line))
             for p in m[2].split(",")]
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert len(paths) > 3 * len(config["models"])
    outside = [p for p in paths if not confined(p, OUTPUT_ROOTS)]
    assert not outside, outside
