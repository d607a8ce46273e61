"""The fault study from Python: `lesion.crash` and `lesion.bounds` (docs/python.md), over the
step's own `layer_study`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lesion import catalog, models
from lesion.api import BATCH_SIZE, PRECISION, Data, Network, borrowed, mark, tensors_of
from lesion.studies.faults import bounds as fault_bounds

# The config schema's default of `faults.repetitions` (tests/test_api.py checks it).
REPETITIONS = 100


def _faults(model: Network, data: Data, layer: str, *, levels: Sequence[float], repetitions: int,
            seed: int, inputs: int | None, name: str | None, dataset: str | None, device: str,
            precision: str, batch_size: int, reps_per_pass: int,
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fault study's (errors, bounds) tables of one layer (faults.bounds.layer_study)."""
    catalog.check_sweep("crash", list(levels))
    images, labels, found = tensors_of(data)
    images, labels = images[:inputs], labels[:inputs]
    marked = mark(model, tuple(images.shape[1:]), name)
    models.layer(marked, layer)  # an unknown name is refused with the nearest ones
    with borrowed(marked, device, precision) as dev:
        errors, bounds = fault_bounds.layer_study(
            marked, layer, images, labels, levels=levels, repetitions=repetitions,
            study_seed=seed, batch_size=batch_size, reps_per_pass=reps_per_pass, device=dev)
    dataset = dataset or found or "data"
    return (fault_bounds.named(errors, dataset, marked.lesion_name),
            fault_bounds.named(bounds, dataset, marked.lesion_name))


def crash(model: Network, data: Data, layer: str, *, levels: Sequence[float],
          repetitions: int = REPETITIONS, seed: int = 0, inputs: int | None = None,
          name: str | None = None, dataset: str | None = None, device: str = "auto",
          precision: str = PRECISION, batch_size: int = BATCH_SIZE,
          reps_per_pass: int = 100) -> pd.DataFrame:
    """Crash each neuron of `layer`'s output with probability p, for every p of `levels`,
    `repetitions` Monte Carlo times (El-Mhamdi et al.): the fault study's `errors.parquet`
    rows (the output error's mean, std and norms, top1 and its drop, per p).

    >>> errors = lesion.crash(net, (images, labels), "fc1", levels=[0.1], repetitions=4)
    >>> sorted(set(errors["statistic"]))[:3]
    ['mean', 'nonfinite', 'norm_l1']
    """
    return _faults(model, data, layer, levels=levels, repetitions=repetitions, seed=seed,
                   inputs=inputs, name=name, dataset=dataset, device=device,
                   precision=precision, batch_size=batch_size, reps_per_pass=reps_per_pass)[0]


def bounds(model: Network, data: Data, layer: str, *, levels: Sequence[float],
           repetitions: int = REPETITIONS, seed: int = 0, inputs: int | None = None,
           name: str | None = None, dataset: str | None = None, device: str = "auto",
           precision: str = PRECISION, batch_size: int = BATCH_SIZE,
           reps_per_pass: int = 100) -> pd.DataFrame:
    """El-Mhamdi et al.'s bounds (b1, b1_jensen, b2, b3, b4) on the output error of crashes in
    `layer`, beside the Monte Carlo value of the same statistic (`crash`'s draws): the
    fault study's `bounds.parquet` rows. `inputs` keeps the first that many images (b3
    and b4 cost a Jacobian row and a pass per neuron and image).

    >>> table = lesion.bounds(net, (images, labels), "fc2", levels=[0.1], repetitions=4)
    >>> sorted(set(table["bound"]))
    ['b1', 'b1_jensen', 'b2', 'b3', 'b4']
    """
    return _faults(model, data, layer, levels=levels, repetitions=repetitions, seed=seed,
                   inputs=inputs, name=name, dataset=dataset, device=device,
                   precision=precision, batch_size=batch_size, reps_per_pass=reps_per_pass)[1]


