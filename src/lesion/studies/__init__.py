"""The studies, one package each: its science, its plots (no torch) and its CLI steps.

perturbation (Cheney et al. 2017), faults (El-Mhamdi et al.). Each has its
rules in workflow/rules/<name>.smk; docs/adding-a-study.md says how to add one.
"""
