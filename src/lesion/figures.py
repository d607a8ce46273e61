"""Writing figures: matplotlib without a display, PNG and PDF written atomically.

Shared by every study's plots. Torch-free, like all plotting.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lesion import files  # noqa: E402


def save(fig: plt.Figure, png: str | os.PathLike, pdf: str | os.PathLike) -> None:
    """Write a figure as PNG and PDF, each atomically."""
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with files.atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
    plt.close(fig)
