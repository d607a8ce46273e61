"""`python -m lesion GROUP STEP ...`: the steps the rules run, grouped by who owns them.

The engine's groups (data, model, sweep), one group per study (each study's
`cli` module, found through lesion.registry) and the benchmarks (bench).
Argument parsing only: every step imports its implementation lazily, so
`--help` is instant at every level and a step that plots never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from lesion.registry import step_groups

# What the tool is, for `python -m lesion --help` (the docstring above is for its code).
DESCRIPTION = """\
lesion: lesion studies of neural networks. Knock out, perturb and crash the
inside of trained networks (their weights and neurons) and measure what
survives. Each step below reads files and writes one artifact of a study;
`snakemake` runs them all for a config (see README.md). A group's steps:
`python -m lesion GROUP --help`; a step's options: `python -m lesion GROUP
STEP --help`."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m lesion", description=DESCRIPTION,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = top.add_subparsers(dest="group", required=True, metavar="GROUP")
    for module in dict.fromkeys(step_groups().values()):
        importlib.import_module(module).register(subparsers)
    from lesion.cli.args import describe_shared

    for group in subparsers.choices.values():
        for action in group._actions:
            if isinstance(action, argparse._SubParsersAction):
                for step in action.choices.values():
                    describe_shared(step)
    subparsers.metavar = "{" + ",".join(subparsers.choices) + "}"  # named when missing
    return top


def main(argv: Sequence[str] | None = None) -> int:
    from lesion.cli.args import OUTPUTS
    from lesion.files import InputFileError, check_output

    args = parser().parse_args(argv)
    name = f"lesion {args.group} {args.step}"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        for key in OUTPUTS:  # before any work: a long job must not fail at its end
            if isinstance(getattr(args, key, None), str):
                check_output(getattr(args, key))
        args.func(args)
    except (InputFileError, ValueError, RuntimeError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:  # an input a library opened itself
        print(f"{name}: error: {err.filename}: {err.strerror}; expected an existing file",
              file=sys.stderr)
        return 1
    except OSError as err:  # an output that cannot be written, a disk that is full, ...
        where = f"{err.filename}: " if err.filename else ""
        print(f"{name}: error: {where}{err.strerror or err}; expected a writable "
              "path (is a file in the place of a directory?)", file=sys.stderr)
        return 1
    return 0
