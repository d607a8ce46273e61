"""Per-rule conda environments: every rule runs in an env from envs/ that has what it imports.

Conda channels are out of reach here, so the envs are never built in the
tests; what can be checked without building them is checked: the files parse
and pin exactly what pyproject.toml pins, every rule that runs something
declares one, each rule's env provides every third-party module that the code
the rule runs imports (the files of its `python -m lesion GROUP STEP`, found
by lesion.sources from the step's imports), and `snakemake
--lint` finds nothing to say.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from workflow_rules import REPO, workflow_rules

ENVS = REPO / "envs"
# Import name -> conda-forge package, where they differ.
CONDA_NAME = {"torch": "pytorch", "yaml": "pyyaml", "sklearn": "scikit-learn", "PIL": "pillow",
              "skimage": "scikit-image", "cv2": "opencv"}
# conda-forge package -> PyPI distribution, where they differ.
PYPI_NAME = {"pytorch": "torch", "opencv": "opencv-python"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


def conda_packages(env: dict) -> dict[str, str]:
    """conda package -> pinned version (`name=version` or `name==version`), pip excluded."""
    packages = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and dep != "pip":
            name, _, version = re.match(r"([\w.-]+)\s*(=?=?)\s*(.*)", dep).groups()
            packages[_normal(name)] = version
    return packages


def pip_section(env: dict) -> list[str]:
    return next((dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)), [])


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --- following the imports -------------------------------------------------

def third_party_imports(step: tuple[str, str]) -> dict[str, set[str]]:
    """Third-party top-level modules a rule's job imports -> the lesion files importing them.

    The job's lesion files are those its step runs (lesion.sources, the same
    list the rule tracks as its code input): `python -m lesion` itself, the
    step's handler and every lesion module reached from it. Every import of
    those files counts, lazy ones included: any function may run.
    """
    from lesion.sources import step_sources

    found: dict[str, set[str]] = {}
    for path in step_sources(*step):
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "lesion" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(Path(path).name)
    return found


# --- the tests -------------------------------------------------------------

@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_env_file_parses_and_pins_every_package_from_conda_forge(path):
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"], path.name
    unpinned = [name for name, version in conda_packages(env).items() if not version]
    assert not unpinned, f"{path.name}: unpinned {unpinned}"
    assert "pip" in env["dependencies"], f"{path.name}: lesion itself is installed with pip"


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_env_pins_the_same_versions_as_pyproject(path):
    env = conda_packages(yaml.safe_load(path.read_text()))
    project = pyproject()["project"]
    # the dependencies, and the optional extra whose package a rule may import (timm sources)
    deps = [*project["dependencies"], *project["optional-dependencies"]["timm"]]
    pins = {_normal(Requirement(dep).name): Requirement(dep).specifier for dep in deps}
    assert env.get("python"), f"{path.name} pins no python"
    assert env["python"] in SpecifierSet(project["requires-python"])
    for conda_name, version in env.items():
        if conda_name == "python":
            continue
        pypi = _normal(PYPI_NAME.get(conda_name, conda_name))
        assert pypi in pins, f"{path.name}: {conda_name} is not a dependency in pyproject.toml"
        assert str(pins[pypi]) == f"=={version}", (
            f"{path.name} pins {conda_name}={version}, pyproject.toml {pypi}{pins[pypi]}")


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_env_installs_lesion_from_this_checkout_without_dependencies(path):
    # conda runs pip in the env file's directory: `-e ..` is the repository root.
    pip = pip_section(yaml.safe_load(path.read_text()))
    assert "--no-deps" in pip, f"{path.name}: pip would pull unpinned dependencies past conda"
    editable = [arg.split(None, 1)[1] if " " in arg else pip[pip.index(arg) + 1]
                for arg in pip if arg.startswith("-e")]
    assert editable, f"{path.name} does not install lesion"
    assert (path.parent / editable[0]).resolve() == REPO


def test_every_rule_that_runs_something_declares_a_conda_env_from_envs():
    rules = [rule for rule in workflow_rules().values() if rule.runs_something]
    assert len(rules) >= 8
    for rule in rules:
        assert rule.conda is not None, f"rule {rule.name} declares no conda env"
        assert rule.conda.parent == ENVS and rule.conda.is_file(), (
            f"rule {rule.name}: {rule.conda} is not a file in envs/")


@pytest.mark.parametrize(
    "rule", [r for r in workflow_rules().values() if r.runs_something], ids=lambda r: r.name)
def test_rule_env_provides_every_third_party_module_its_code_imports(rule):
    assert rule.lesion_step, f"rule {rule.name} runs no lesion step"
    env = conda_packages(yaml.safe_load(rule.conda.read_text()))
    imported = third_party_imports(rule.lesion_step)
    assert imported, f"rule {rule.name}: no third-party imports found; is the parse broken?"
    missing = {name: sorted(by) for name, by in imported.items()
               if _normal(CONDA_NAME.get(name, name)) not in env}
    assert not missing, f"rule {rule.name}: {rule.conda.name} lacks modules imported by {missing}"


def test_plotting_rules_run_without_torch():
    # DESIGN: plotting never imports torch, so its env can stay small.
    for rule in workflow_rules().values():
        if rule.conda is not None and rule.conda.name == "analysis.yaml":
            assert "torch" not in third_party_imports(rule.lesion_step), rule.name


def test_snakemake_lint_finds_nothing():
    bindir = str(Path(sys.executable).parent)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(REPO / "Snakefile")],
        cwd=REPO, env={**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0 and "Lints for" not in proc.stdout, proc.stdout[-6000:]
