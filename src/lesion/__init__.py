"""lesion: lesion studies for neural networks as one rebuildable Snakemake DAG, and the same
engine from Python (lesion.api, docs/python.md).

    >>> import lesion
    >>> table = lesion.sweep(model, (images, labels), operators=["gaussian"], levels=[0.5])

The functions are imported on first use, so that `import lesion` (and the torch-free
modules under it: the catalog, the figures) stays light.
"""

__version__ = "0.1.0"

__all__ = ["Results", "Variant", "__version__", "attack", "bounds", "crash", "filter_scores",
           "layers", "load", "network", "perturb", "sweep", "variant"]


def __getattr__(name: str):
    if name in __all__:
        # importlib, not an import statement: the workflow's import graph (which modules a
        # step's code reads, tests/test_envs.py) does not pass through lesion.api
        import importlib

        return getattr(importlib.import_module("lesion.api"), name)
    raise AttributeError(f"module 'lesion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
