"""The mutation score per module after `mutmut run`, and the survivors nobody explained.

    python tests/mutation_score.py      # what `make mutation` prints at the end

A mutant counts as killed when a test failed on it (or it hung or crashed
the interpreter: a timeout or a segfault is a change the suite noticed).
Survivors listed in tests/equivalent_mutants.txt, with the reason each
changes no behaviour, are left out of the score's denominator; any other
survivor is printed and makes the script exit with 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EQUIVALENT = REPO / "tests" / "equivalent_mutants.txt"
KILLED = {"killed", "timeout", "segfault"}


def statuses() -> dict[str, str]:
    """{mutant name: status} of the last run, from `mutmut results --all true`."""
    out = subprocess.run([str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"^\s*(\S+): (.+?)\s*$", out, flags=re.MULTILINE))


def equivalent() -> dict[str, str]:
    """{mutant name: why it is equivalent}: lines `name  # reason`."""
    out = {}
    for line in EQUIVALENT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition("#")
            out[name.strip()] = why.strip()
    return out


def main() -> int:
    found, explained = statuses(), equivalent()
    if not found:
        print("no mutants: run `mutmut run` first (make mutation)")
        return 1
    per_module: dict[str, Counter] = defaultdict(Counter)
    unexplained = []
    for name, status in found.items():
        if status == "not checked":  # outside the functions `make mutation` selects
            continue
        module = name.split(".x_")[0]
        if status in KILLED:
            per_module[module]["killed"] += 1
        elif name in explained:
            per_module[module]["equivalent"] += 1
            continue
        else:
            unexplained.append(f"{name}: {status}")
        per_module[module]["counted"] += 1
    print(f"{'module':40s} {'killed':>7s} {'counted':>8s} {'score':>7s} {'equivalent':>11s}")
    total = Counter()
    for module in sorted(per_module):
        c = per_module[module]
        total.update(c)
        print(f"{module:40s} {c['killed']:7d} {c['counted']:8d} "
              f"{c['killed'] / max(1, c['counted']):7.1%} {c['equivalent']:11d}")
    print(f"{'all':40s} {total['killed']:7d} {total['counted']:8d} "
          f"{total['killed'] / max(1, total['counted']):7.1%} {total['equivalent']:11d}")
    stale = sorted(set(explained) - {n for n, s in found.items() if s not in KILLED})
    if stale:
        print(f"\n{len(stale)} listed as equivalent but killed or gone (remove them): {stale}")
    if unexplained:
        print(f"\n{len(unexplained)} survivors neither killed nor explained "
              "(`mutmut show NAME` shows one):")
        print("\n".join(f"  {line}" for line in unexplained))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
