"""The workflow's rules as written in the Snakefile and workflow/rules/*.smk.

Read as text, without running Snakemake, for the tests that check what every
rule declares (its conda env, its GPU resource, the step it runs). The
files are snakefmt-formatted: a rule starts at column 0 with `rule NAME:` and
its directives are indented four spaces; `snakemake --lint` (tests/test_envs.py)
keeps them that way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACTIONS = ("shell", "script", "run", "notebook", "wrapper")

_RULE = re.compile(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|[ \t]*\n)*)", re.MULTILINE)
# `use rule BASE as NAME with:` and its overriding directives (a twin of BASE).
_USE = re.compile(r"^use rule (\w+) as (\w+) with:\n((?:[ \t]+.*\n|[ \t]*\n)*)", re.MULTILINE)


@dataclass(frozen=True)
class Rule:
    name: str
    file: Path
    text: str

    def directive(self, name: str) -> str | None:
        """The body of one directive (`conda`, `resources`, ...), or None."""
        match = re.search(rf"^    {name}:[ \t]*(.*)\n((?:        .*\n|[ \t]*\n)*)", self.text, re.MULTILINE)
        return None if match is None else (match[1] + "\n" + match[2]).strip()

    @property
    def runs_something(self) -> bool:
        return any(self.directive(action) is not None for action in ACTIONS)

    @property
    def conda(self) -> Path | None:
        """The conda env file, resolved like Snakemake does: relative to the rule's file."""
        body = self.directive("conda")
        if body is None:
            return None
        return (self.file.parent / body.strip().strip("\"'")).resolve()

    @property
    def gpus(self) -> int:
        body = self.directive("resources") or ""
        match = re.search(r"\bgpu\s*=\s*(\d+)", body)
        return int(match[1]) if match else 0

    @property
    def lesion_step(self) -> tuple[str, str] | None:
        """(group, step) of the `python -m lesion GROUP STEP` its shell runs.

        A rule whose shell runs `python -m lesion {params.step}` (the train
        rule, which a study's twin reuses with its own step) names the step
        in its params as `step="GROUP STEP"`.
        """
        match = re.search(r"python -m lesion ([\w-]+) ([\w-]+)", self.text)
        if match:
            return match[1], match[2]
        if "python -m lesion {params.step}" in self.text:
            match = re.search(r'\bstep="([\w-]+) ([\w-]+)"', self.directive("params") or "")
            return (match[1], match[2]) if match else None
        return None

    @property
    def code_step(self) -> tuple[str, str] | None:
        """(group, step) named by the rule's `code(GROUP, STEP)` input."""
        match = re.search(r"\bcode\(\s*\"([\w-]+)\",\s*\"([\w-]+)\"\s*\)", self.text)
        return (match[1], match[2]) if match else None


def workflow_rules(root: Path = REPO) -> dict[str, Rule]:
    files = [root / "Snakefile", *sorted((root / "workflow" / "rules").glob("*.smk"))]
    rules, twins = {}, []
    for file in files:
        text = file.read_text()
        for match in _RULE.finditer(text):
            rules[match[1]] = Rule(match[1], file, match[0])
        twins += [(file, match) for match in _USE.finditer(text)]
    for file, match in twins:
        # the twin's own directives first (directive() takes the first), then the base's
        base = rules[match[1]].text.split("\n", 1)[1]
        rules[match[2]] = Rule(match[2], file, f"rule {match[2]}:\n{match[3]}{base}")
    return rules
