"""lesion's own studies, one package each: its science, its plots (no torch), its CLI steps.

Each package declares itself with `STUDY = lesion.registry.Study(...)` in its
`__init__.py` (config section and schema, checks, CLI group, rules file, report
category), registered as an entry point in pyproject.toml and found by lesion.registry;
docs/adding-a-study.md says how to add one.
"""
