"""The fault study's tables (lesion.files.TableKind): Monte Carlo errors and bounds b1-b4.

Torch-free, shared by the step that writes them (bounds) and the one that draws them (plots).
"""

from __future__ import annotations

from lesion.files import TableKind

# One row per (layer, p, statistic): Monte Carlo mean, std, ... of the output error, top-1.
ERRORS = TableKind("fault errors", "faults bounds", (
    "dataset", "model", "layer", "p", "statistic", "value"))
# One row per (layer, p, bound, statistic).
BOUNDS = TableKind("fault bounds", "faults bounds", (
    "dataset", "model", "layer", "p", "bound", "statistic", "value"))
