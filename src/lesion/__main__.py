"""`python -m lesion GROUP STEP`: every Snakemake rule runs one of these steps.

Its first line on stderr is the command itself (`$ python -m lesion ...`): a job's log
then starts with what it ran, to be run again by hand from the study's directory. Not
on a terminal, where the user has just typed it.
"""

import shlex
import sys

from lesion.cli import main

if not sys.stderr.isatty():
    print("$ " + shlex.join(["python", "-m", "lesion", *sys.argv[1:]]), file=sys.stderr, flush=True)
raise SystemExit(main())
