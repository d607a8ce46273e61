"""`python -m lesion tools verify`: the tools that look after a built study."""

from __future__ import annotations

import sys

from lesion.cli.args import number, steps


def _verify(args):
    from lesion.tools import verify
    sys.exit(verify.main(args.configfile or (), do_repair=args.repair, sample=args.sample))


def register(groups) -> None:
    step = steps(groups.add_parser("tools", help="Tools for a built study."))
    s = step("verify", _verify, "Check every output of the study in this directory (each "
             "opens, tables carry their kind, rows and seeds, weights load, a sample of variants "
             "regenerates to its sha256, figures are images, files a later job read are unchanged); "
             "one line per problem, exit status 1 when any (0 once --repair removed them).")
    s.add_argument("--configfile", nargs="+", default=None,
                   help="the study's config files, as given to snakemake (default: its own)")
    s.add_argument("--repair", action="store_true",
                   help="remove the bad files, so that the next `make study` rebuilds them and what "
                        "depends on them")
    s.add_argument("--sample", type=number(int, lambda v: v >= 0, "an integer >= 0"), default=2,
                   help="variants regenerated per layer of each variants table (0: none)")
