"""The docs match the code: every `python -m lesion` command that README.md and docs/*.md
show (and every one that lesion's own messages name) parses, every repository path they
name exists, every rule they hand to Snakemake is a rule of the workflow, and the
README's table names every study package.

The references are the CLI's own parser (argparse, which `--help` prints), the files
of this checkout and the rule names written in workflow/rules/*.smk.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from lesion import cli

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TEXT = {path.relative_to(REPO).as_posix(): path.read_text() for path in DOCS}
# The commands that messages and docstrings tell users to run are checked too
CODE = {path.relative_to(REPO).as_posix(): path.read_text()
        for path in sorted((REPO / "src" / "lesion").rglob("*.py"))}

# `python -m lesion` then its words, up to the end of the line, a backtick or a comment
COMMAND = re.compile(r"python -m lesion(?![.\w])([^`#\n]*)")
# Words that stand for something (GROUP, STEP, <step>, ...), not a word to type
PLACEHOLDER = re.compile(r"^([A-Z]+|<.*>|\.\.\.|\{.*\}|\[.*\])$")
WORD = re.compile(r"^[a-z][a-z0-9_-]*$")  # a group, a step or a positional argument
FLAG = re.compile(r"^--[a-z][a-z0-9-]*$")
# Repository paths in backticks or links: they start with a directory of the checkout
TOP = ("src", "docs", "config", "workflow", "tests", "envs", "profiles", ".test", ".ci")
PATH = re.compile(r"(?:`|\]\()((?:" + "|".join(re.escape(t) for t in TOP) + r")/[^`)\s]*)")
# Rule names handed to Snakemake
RULE_OPTION = re.compile(r"--(?:set-resources|set-threads)\s+((?:\w+:\S+\s*)+)|--until\s+(\w+)")


def _commands() -> list[tuple[str, list[str]]]:
    """(where, words) of every command shown; `a|b` alternatives become two commands."""
    found = []
    for name, text in {**TEXT, **CODE}.items():
        for match in COMMAND.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            words = match.group(1).split()
            variants = [[]]
            for word in words:
                options = word.split("|") if "|" in word and not word.startswith("-") else [word]
                variants = [v + [o] for v in variants for o in options]
            found += [(f"{name}:{line}", v) for v in variants]
    return found


COMMANDS = _commands()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


@pytest.fixture(scope="module")
def top() -> argparse.ArgumentParser:
    """lesion's parser with the plugin study of tests/plugin installed: the docs show its
    commands too (docs/adding-a-study.md)."""
    import sys

    from lesion import registry

    sys.path.insert(0, str(REPO / "tests" / "plugin"))
    registry.studies.cache_clear()
    try:
        return cli.parser()
    finally:
        sys.path.remove(str(REPO / "tests" / "plugin"))
        registry.studies.cache_clear()


def test_the_docs_show_commands_to_check():
    assert len(COMMANDS) >= 20  # a parse that finds none would pass everything


@pytest.mark.parametrize(("where", "words"), COMMANDS, ids=[f"{w}:{' '.join(c[:2])}"
                                                         for w, c in COMMANDS])
def test_every_command_the_docs_show_parses(top, where, words):
    parser, path = top, []
    for word in words:
        if word.startswith("-") or PLACEHOLDER.match(word) or not WORD.match(word):
            break
        choices = _subparsers(parser)
        if not choices:
            break  # a positional argument of the step
        assert word in choices, (f"{where}: `python -m lesion {' '.join(path + [word])}`: no "
                                 f"such {'step' if path else 'group'}; expected one of "
                                 f"{sorted(choices)}")
        parser, path = choices[word], path + [word]
    known = {flag for action in parser._actions for flag in action.option_strings}
    for word in words:
        flag = word.split("=")[0]
        if FLAG.match(flag):
            assert flag in known, (f"{where}: `python -m lesion {' '.join(path)}` has no "
                                   f"{flag}; expected one of {sorted(known)}")
    with pytest.raises(SystemExit) as exited:  # --help at that level, as the docs promise
        top.parse_args([*path, "--help"])
    assert exited.value.code == 0


PATHS = sorted({(name, match.group(1).rstrip(".,:;")) for name, text in TEXT.items()
                for match in PATH.finditer(text)})


def test_the_docs_name_paths_to_check():
    assert len(PATHS) >= 30


@pytest.mark.parametrize(("where", "path"), PATHS, ids=[f"{w}:{p}" for w, p in PATHS])
def test_every_repository_path_the_docs_name_exists(where, path):
    if any(c in path for c in "{<*$") or "..." in path:
        pytest.skip("a pattern, not a path")
    assert (REPO / path.split("#")[0]).exists(), f"{where}: {path} does not exist"


def _rules() -> set[str]:
    text = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").rglob("*.smk"))
    return (set(re.findall(r"^(?:rule|checkpoint)\s+(\w+)\s*:", text, flags=re.M))
            | set(re.findall(r"^use rule \w+ as (\w+)", text, flags=re.M)))


def test_every_rule_the_docs_hand_to_snakemake_is_a_rule_of_the_workflow():
    rules, named = _rules(), []
    assert {"sweep", "train", "fault_bounds", "zoo_shard"} <= rules
    for name, text in TEXT.items():
        for match in RULE_OPTION.finditer(text):
            if match.group(1):
                named += [(name, item.split(":")[0]) for item in match.group(1).split()
                          if ":" in item]
            else:
                named.append((name, match.group(2)))
    assert named, "no --set-resources or --until found: the pattern is stale"
    unknown = [(where, rule) for where, rule in named if rule not in rules]
    assert not unknown, f"rules the workflow does not have: {unknown}"


def test_the_readme_table_names_every_study_package():
    from lesion.registry import studies

    packages = [s.package.removeprefix("lesion.studies.") for s in studies()
                if s.package.startswith("lesion.studies.")]
    assert len(packages) >= 5
    table = [line for line in TEXT["README.md"].splitlines() if line.startswith("|")]
    for package in packages:
        assert any(f"studies/{package}" in line for line in table), (
            f"README.md: no table row names src/lesion/studies/{package}")
