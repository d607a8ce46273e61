"""lesion: lesion studies for neural networks as one rebuildable Snakemake DAG, and the same
engine from Python (lesion.api, docs/python.md).

    >>> import lesion
    >>> table = lesion.sweep(model, (images, labels), operators=["gaussian"], levels=[0.5])

The functions are imported on first use, so that `import lesion` (and the torch-free
modules under it: the catalog, the figures) stays light: the engine's from lesion.api,
a study's from the module its `Study(api=...)` names (lesion.registry). `__all__` is
derived the same way.
"""

import functools

__version__ = "0.1.0"

# The engine's public names, in lesion.api.
ENGINE_API = ("Results", "Variant", "layers", "load", "network", "perturb", "sweep", "variant")


@functools.cache
def _public() -> dict[str, str]:
    """Each public name -> "module:attribute": the engine's and every registered study's."""
    # importlib, not import statements: the workflow's import graph (which modules a step's
    # code reads, tests/test_envs.py) passes through neither lesion.api nor the registry
    import importlib

    names = {name: f"lesion.api:{name}" for name in ENGINE_API}
    for study in importlib.import_module("lesion.registry").studies():
        for spec in study.api:
            name = spec.partition(":")[2]
            if name in names:
                raise ValueError(f"study {study.package} adds lesion.{name} ({spec}), which "
                                 f"{names[name]} gives already; expected a name of its own")
            names[name] = spec
    return names


def __getattr__(name: str):
    if name == "__all__":
        return sorted(["__version__", *_public()])
    if not name.startswith("__") and name in _public():
        import importlib

        return importlib.import_module("lesion.registry").named_function(_public()[name])
    raise AttributeError(f"module 'lesion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_public()})
