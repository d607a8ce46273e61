"""`python -m lesion GROUP STEP`: every Snakemake rule runs one of these steps."""

from lesion.cli import main

raise SystemExit(main())
