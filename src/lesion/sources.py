"""The source files a step runs, found from its imports, for the rules' rebuild inputs.

A rule lists the lesion modules its step runs as inputs, so that editing one
reruns exactly the jobs that use it. Kept by hand such lists drift (a
module imported later is forgotten and its jobs go stale), so they are
derived: from the step's handler (`_<step>` in the module that registers the
step's group, lesion.registry.step_groups(), and the functions of that module it
calls), every `lesion` module it imports, and every
module those import, at any depth and wherever the import statement stands
(steps import lazily inside functions). Static, by `ast`: nothing is
imported, so Snakemake pays about a millisecond per step. The CLI modules'
own top-level imports count too (argument types run in every job).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # src/lesion


def _module_file(name: str, roots: dict[str, Path]) -> Path | None:
    """`lesion.a.b` -> root/a/b.py or root/a/b/__init__.py (None if neither exists), with
    root the directory of the top package (`roots`: lesion's, a study plugin's)."""
    top = name.split(".")[0]
    return _file_in(name, roots[top]) if top in roots else None


@functools.cache
def _file_in(name: str, root: Path) -> Path | None:
    """_module_file below one root; cached, as the steps' closures ask for the same modules."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts) if parts else root
    for path in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _imported(node: ast.AST, current: str, tops=("lesion",)) -> list[str]:
    """Names of the modules of the `tops` packages an import statement may load (module or
    package.attribute)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] in tops]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against the current module's package
            package = current.split(".")[: len(current.split(".")) - node.level]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if base.split(".")[0] not in tops:
            return []
        return [base] + [f"{base}.{a.name}" for a in node.names]
    return []


def _parents(name: str) -> list[str]:
    """A module's packages, whose __init__ runs first: lesion.a.b -> [lesion, lesion.a]."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _statements(body: list[ast.stmt]):
    """Every statement in `body` and in the blocks nested in it (function bodies, branches,
    handlers), without descending into expressions: an import is a statement, and skipping
    the expressions makes this a few times faster than ast.walk."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                yield from _statements(block)


@functools.cache
def _module_imports(path: Path, name: str, tops: tuple[str, ...]) -> tuple[str, ...]:
    """Every module of `tops` that module `name` (file `path`) may import, anywhere in it.
    Cached: a Snakefile asks for some 40 steps whose closures share most modules, and
    reading each module's imports once instead of once per step halves the workflow's parse."""
    return tuple(n for node in _statements(_parse(path).body) for n in _imported(node, name, tops))


def _closure(names: list[str], roots: dict[str, Path]) -> set[Path]:
    seen: set[Path] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        for candidate in [*_parents(name), name]:
            path = _module_file(candidate, roots)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo += _module_imports(path, candidate, tuple(roots))
    return seen


def _package_dir(top: str) -> Path:
    """The directory of an importable top-level package (a study plugin's), found without
    importing it."""
    import importlib.util

    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(f"package {top!r} of a step's CLI module is not importable")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _handler_nodes(module: ast.Module, step: str, where: Path) -> list[ast.AST]:
    """The nodes of a step's handler and of the module's functions it calls, at any depth."""
    functions = {n.name: n for n in module.body if isinstance(n, ast.FunctionDef)}
    name = "_" + step.replace("-", "_")
    if name not in functions:
        raise LookupError(f"{where}: no function {name}() for step {step!r}")
    nodes, todo, seen = [], [name], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            nodes.append(node)
            if isinstance(node, ast.Name) and node.id in functions:
                todo.append(node.id)
    return nodes


def step_sources(group: str, step: str, root: Path = PACKAGE) -> list[str]:
    """Sorted paths of every lesion source file that `python -m lesion GROUP STEP` runs (and,
    for a study plugin's step, every file of the plugin's package it runs).

    `root` is the `lesion` package directory to read (a copy of it in tests).
    """
    from lesion.registry import step_groups

    known = step_groups()
    if group not in known:
        raise LookupError(f"unknown step group {group!r}; expected one of {sorted(known)}")
    cli_name = known[group]
    roots = {"lesion": root}
    top = cli_name.split(".")[0]
    if top not in roots:  # a study plugin: its own package's sources count too
        roots[top] = _package_dir(top)
    cli_file = _module_file(cli_name, roots)
    tree = _parse(cli_file)
    names = [cli_name]  # imports of the handler itself, and the CLI module's top level
    for node in [*_handler_nodes(tree, step, cli_file), *tree.body]:
        names += _imported(node, cli_name, tuple(roots))
    found = _closure([n for n in names if n != cli_name], roots)
    found |= {p for n in [cli_name, *_parents(cli_name)] if (p := _module_file(n, roots))}
    return sorted(str(p) for p in found)


def module_sources(names: list[str], root: Path = PACKAGE) -> list[str]:
    """Sorted paths of the source files of modules `names` and of what they import (for code
    a step loads by name, such as the studies' claims functions)."""
    roots = {"lesion": root}
    for top in {n.split(".")[0] for n in names} - set(roots):
        roots[top] = _package_dir(top)
    return sorted(str(p) for p in _closure(list(names), roots))
