"""The studies lesion knows: each declares itself once, the engine and the workflow discover it.

A study is a package that sets `STUDY = Study(...)` in its `__init__.py`:
its config section (a schema fragment beside it, `schema.yaml`, and a check
across keys), its CLI group, its Snakemake rules file and its report
category, and names that `Study` under the entry-point group
`lesion.studies` of its distribution. lesion's own studies are registered
so in lesion's pyproject.toml, a study of one's own in its package's
(docs/adding-a-study.md): the engine imports no study. Nothing else in
lesion names a study: the config schema, the config check, `python -m
lesion`'s groups and the Snakefile's includes are all derived from here.

Torch-free: Snakemake reads this while it parses the workflow, and a study's
`__init__.py` imports nothing heavy.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

# The entry-point group through which an installed package adds a study.
ENTRY_POINTS = "lesion.studies"


@dataclass(frozen=True)
class Study:
    """What the engine and the workflow need to know about one study.

    section: its config key; the study runs when the config has it.
    group: its `python -m lesion GROUP` (steps registered by `cli`'s `register`).
    title: its report category, e.g. "Weight space (Eilertsen et al. 2020)".
    here: its package's `__init__.py` (`__file__`): `schema.yaml` lies beside it.
    rules: its Snakemake rules file; a relative path is read from the workflow's
        directory (lesion's own studies live in workflow/rules/).
    cli: the module that registers its steps; default `<package>.cli`.
    check: "module:function", the checks across keys of the canonical config
        (defaults filled in) that the schema cannot say, raising
        lesion.config.ConfigError; named, not imported, so that a study's
        jobs do not depend on the config checks' code.
    model_lists: config keys whose values are model names (`*`, `[]` as in
        lesion.config.PATH_NAMES): each must be a key of `models`.
    path_names: config keys whose values end up in file names.
    claims: "module:function", torch-free, that judges the paper's headline
        claims from the study's tables (name -> path) and returns a list of
        lesion.claims.Claim; the workflow's claims rule gives it the tables
        its rules file names in CLAIM_TABLES.
    atlas: "module:function", torch-free, that measures each layer of one model for the
        layer atlas (lesion.atlas): called with the model's name, its tables (name -> path)
        and the atlas settings, it returns rows of lesion.atlas.COLUMNS; the workflow's
        atlas rule gives it the tables its rules file names in ATLAS_TABLES.
    api: "module:function" names of what the study adds to `import lesion` (e.g.
        "lesion.studies.faults.api:crash" is `lesion.crash`; docs/python.md), each
        built on lesion.api's helpers.
    """

    section: str
    group: str
    title: str
    here: str
    rules: str
    cli: str = ""
    check: str = ""
    model_lists: tuple[str, ...] = ()
    path_names: tuple[str, ...] = ()
    claims: str = ""
    atlas: str = ""
    api: tuple[str, ...] = ()
    package: str = field(init=False)

    def __post_init__(self):
        directory = Path(self.here).resolve().parent
        object.__setattr__(self, "package", _package_of(directory))
        if not self.cli:
            object.__setattr__(self, "cli", f"{self.package}.cli")

    @property
    def schema_file(self) -> Path:
        """Its config section's JSON-schema fragment (YAML)."""
        return Path(self.here).resolve().parent / "schema.yaml"

    def rules_file(self, workflow_dir: str | Path) -> Path:
        return Path(workflow_dir) / self.rules

    def check_config(self, config: Mapping) -> None:
        """Run its `check` on a canonical config that has its section."""
        if self.check:
            named_function(self.check)(config)


def named_function(spec: str):
    """The function a "module:function" string names (a study's check or claims)."""
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def _package_of(directory: Path) -> str:
    """The dotted name of the package in `directory` (walking up its __init__.py files)."""
    parts = [directory.name]
    while (directory.parent / "__init__.py").is_file():
        directory = directory.parent
        parts.insert(0, directory.name)
    return ".".join(parts)


@functools.cache
def studies() -> tuple[Study, ...]:
    """Every study registered under the entry-point group, by entry-point name. Two with
    one section or group are refused, and so is an installation that registers none."""
    found = []
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        study = point.load()
        if not isinstance(study, Study):
            raise TypeError(f"entry point {point.name} = {point.value!r} (group {ENTRY_POINTS}) "
                            f"is a {type(study).__name__}; expected a lesion.registry.Study")
        found.append(study)
    if not found:
        raise RuntimeError(f"no study is registered (entry-point group {ENTRY_POINTS}); "
                           "expected lesion installed with its metadata: pip install -e . "
                           "(make study and make test do it)")
    for key in ("section", "group"):
        seen: dict[str, str] = {}
        for study in found:
            value = getattr(study, key)
            if value in seen:
                raise ValueError(f"two studies declare {key} {value!r}: {seen[value]} and "
                                 f"{study.package}; expected one each")
            seen[value] = study.package
    return tuple(found)


# The engine's step groups and the benchmarks' -> the module that registers their steps.
ENGINE_GROUPS: dict[str, str] = {
    "data": "lesion.cli.engine",
    "model": "lesion.cli.engine",
    "sweep": "lesion.cli.engine",
    "claims": "lesion.cli.claims",
    "atlas": "lesion.cli.atlas",
}
TOOL_GROUPS: dict[str, str] = {"bench": "lesion.tools.bench_cli", "tools": "lesion.tools.verify_cli"}


def step_groups() -> dict[str, str]:
    """Every `python -m lesion GROUP` -> the module that registers its steps: the engine's,
    each study's, the tools'. The CLI builds its parser from it, lesion.sources finds a
    step's files with it."""
    return {**ENGINE_GROUPS, **{s.group: s.cli for s in studies()}, **TOOL_GROUPS}
