"""`python -m lesion <step>`: every Snakemake rule runs one of these steps."""

from lesion.cli import main

raise SystemExit(main())
