"""`python -m lesion GROUP STEP`: every Snakemake rule runs one of these steps.

Its first line on stderr is the command itself (`$ python -m lesion ...`): a job's log
then starts with what it ran, to be run again by hand from the study's directory. Not
on a terminal, where the user has just typed it, and not for the tools (`bench`,
`tools`), which no rule runs and whose output is read or piped as it is.
"""

import shlex
import sys

from lesion.cli import main
from lesion.registry import TOOL_GROUPS

group = sys.argv[1] if len(sys.argv) > 1 else ""
if not sys.stderr.isatty() and group not in TOOL_GROUPS:
    print("$ " + shlex.join(["python", "-m", "lesion", *sys.argv[1:]]), file=sys.stderr, flush=True)
raise SystemExit(main())
