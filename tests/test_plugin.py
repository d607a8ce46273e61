"""A sixth study moves in by itself: tests/plugin/lesion_census, a package outside lesion
that registers through the entry-point group `lesion.studies`, is found by the registry,
checked with the config, given a CLI group, and built end to end by the workflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

from lesion import registry, sources
from lesion.config import ConfigError, check, load_schema

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "plugin"
SCHEMA_FILE = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture
def installed(monkeypatch):
    """The plugin on sys.path (as `pip install` would put it), the registry read afresh."""
    monkeypatch.syspath_prepend(str(PLUGIN))
    registry.studies.cache_clear()
    yield
    registry.studies.cache_clear()
    for name in [m for m in sys.modules if m.startswith("lesion_census")]:
        del sys.modules[name]


def census_config() -> dict:
    from test_workflow import tiny_config

    return tiny_config("census")


def test_without_the_plugin_its_section_is_an_unknown_key():
    with pytest.raises(ConfigError, match="unknown key 'census' in the top level"):
        check(census_config(), load_schema(SCHEMA_FILE))


def test_the_registry_finds_the_plugin_through_its_entry_point(installed):
    found = {s.section: s for s in registry.studies()}
    assert {"perturbations", "faults", "adversarial", "zoo", "filtering", "census"} == set(found)
    census = found["census"]
    assert census.package == "lesion_census" and census.cli == "lesion_census.cli"
    schema = load_schema(SCHEMA_FILE)
    assert schema["properties"]["census"]["x-study"] is True
    check(census_config(), schema)


def test_the_plugins_model_lists_and_checks_run_with_the_config(installed, tmp_path):
    schema = load_schema(SCHEMA_FILE)
    bad = census_config()
    bad["census"]["models"] = ["mpl"]
    with pytest.raises(ConfigError, match=r"census.models\[0\] = 'mpl' is not a model of this "
                                          r"study; expected one of \['mlp'\]"):
        check(bad, schema)
    bad = census_config()
    bad["census"]["near"] = -1
    with pytest.raises(ConfigError, match=r"census.near = -1 is out of range"):
        check(bad, schema)
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    imported = census_config()
    imported["models"]["mlp"] = {"source": "torchvision:resnet18", "weights": str(weights)}
    with pytest.raises(ConfigError, match="census.models: 'mlp' is imported with its weights"):
        check(imported, schema)


def test_the_plugins_step_is_a_cli_group_whose_sources_are_its_own_files(installed):
    assert registry.step_groups()["census"] == "lesion_census.cli"
    files = {Path(p).relative_to(REPO).as_posix() for p in sources.step_sources("census", "count")}
    assert {"tests/plugin/lesion_census/cli.py", "tests/plugin/lesion_census/kinds.py",
            "tests/plugin/lesion_census/__init__.py", "src/lesion/files.py",
            "src/lesion/cli/args.py"} <= files
    assert "tests/plugin/lesion_census/settings.py" not in files  # config checks rerun no job


def test_every_study_package_of_lesion_is_registered():
    """An in-tree study is found through lesion's own entry points: one left out of
    pyproject.toml would be silently missing."""
    packages = {p.name for p in (REPO / "src" / "lesion" / "studies").iterdir()
                if "STUDY = Study(" in ((p / "__init__.py").read_text()
                                        if (p / "__init__.py").exists() else "")}
    registered = {s.package.removeprefix("lesion.studies.") for s in registry.studies()
                  if s.package.startswith("lesion.studies.")}
    assert packages == registered and len(packages) == 5


def test_an_installation_without_its_metadata_is_named_as_such(monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    registry.studies.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"no study is registered \(entry-point group "
                                               r"lesion.studies\); expected lesion installed"):
            registry.studies()
    finally:
        monkeypatch.undo()
        registry.studies.cache_clear()


def test_two_studies_with_one_section_are_refused(installed, tmp_path, monkeypatch):
    twin = tmp_path / "twin-0.1.dist-info"
    twin.mkdir()
    (twin / "METADATA").write_text("Metadata-Version: 2.1\nName: twin\nVersion: 0.1\n")
    (twin / "entry_points.txt").write_text("[lesion.studies]\ntwin = lesion_census:STUDY\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.studies.cache_clear()
    with pytest.raises(ValueError, match="two studies declare section 'census'"):
        registry.studies()


@pytest.mark.workflow
def test_the_plugin_study_builds_end_to_end(tmp_path):
    from test_workflow import study_copy

    study_copy(tmp_path, census_config())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=tmp_path,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "census_count" in proc.stdout
    model = tmp_path / "results" / "digits" / "mlp"
    table = pq.read_table(model / "census.parquet")
    assert table.schema.metadata[b"lesion.table"] == b"census"
    # the reference: the trained weights read here, counted with numpy
    weights = load_file(model / "weights.safetensors")
    expected = {name: (t.size, int((np.abs(t) <= 0.01).sum())) for name, t in weights.items()}
    got = {r["tensor"]: (r["parameters"], r["near_zero"]) for r in table.to_pylist()}
    assert got == expected
    assert sum(n for n, _ in got.values()) == 64 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    again = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "-n"], cwd=tmp_path,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=300, check=False)
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]
