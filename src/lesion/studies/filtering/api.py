"""The filtering study from Python: `lesion.filter_scores` (docs/python.md), over the sweep
step's own `checkpoint_tables` and the scores step's `checkpoint_metrics`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lesion import catalog, models
from lesion.api import (
    BATCH_SIZE,
    CACHE_GB,
    PRECISION,
    VARIANTS_PER_PASS,
    Data,
    Network,
    borrowed,
    mark,
    tensors_of,
)
from lesion.studies.filtering import filters as filtering
from lesion.studies.filtering import scores as filter_tables
from lesion.studies.filtering.layout import ADVERSARIAL, CLEAN

# The config schema's defaults of `filtering.eps` and `filtering.tol` (tests/test_api.py).
EPS, TOL = 0.1, 0.05


def filter_scores(model: Network, data: Data, *, layers: Sequence[str] | None = None,
                  filters: Sequence[str] = catalog.FILTERS, eps: float = EPS,
                  tol: float = TOL, seed: int = 0, name: str | None = None,
                  dataset: str | None = None, device: str = "auto", precision: str = PRECISION,
                  batch_size: int = BATCH_SIZE, variants_per_pass: int = VARIANTS_PER_PASS,
                  cache_gb: float = CACHE_GB) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synaptic filtering (Pravin et al. 2024) of `layers` (default: every weight layer and
    "all" of them at once): each filter over 25 thresholds on the clean data and on its
    FGSM set (step `eps`), as the filtering study runs one checkpoint (epoch 0 here).
    Returns (curves, scores): the normalised accuracy per threshold, and per layer and
    filter the clean, adversarial and difference scores with their classes (fragile,
    robust, antifragile within `tol`).

    >>> curves, scores = lesion.filter_scores(net, (images, labels), layers=["fc3"],
    ...                                       filters=["highpass"])
    >>> list(scores[["layer", "filter"]].itertuples(index=False, name=None))
    [('fc3', 'highpass')]
    """
    filter_tables.check_tol(tol)
    images, labels, found = tensors_of(data)
    marked = mark(model, tuple(images.shape[1:]), name)
    layers = [*models.layers(marked), catalog.ALL_LAYERS] if layers is None else list(layers)
    filtering.check_layers(marked, layers)
    dataset = dataset or found or "data"
    with borrowed(marked, device, precision) as dev:
        _, table, tables = filtering.checkpoint_tables(
            marked, images, labels, dev, dataset=dataset, layers=layers, filters=filters,
            eps=eps, study_seed=seed, batch_size=batch_size, variants_per_pass=variants_per_pass,
            cache_gb=cache_gb)
    long = filter_tables.checkpoint_metrics(dataset, marked.lesion_name, 0, table, tables)
    curves = filter_tables.curves(long, table.to_pandas().assign(epoch=0))
    return curves, filter_tables.scores(curves, clean=CLEAN, adversarial=ADVERSARIAL, tol=tol)
