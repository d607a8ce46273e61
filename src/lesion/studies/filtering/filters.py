"""The filtering sweep of trained checkpoints: every layer (and all at once), 3 filters x 25 alphas.

One job per model runs all its checkpoints, so Python and torch start once.
For each checkpoint and layer the variants are drawn once (deterministic,
recorded with their sha256 like any sweep) and predicted on every test set,
the clean prefix in front of the layer computed once per (layer, test set)
for all 75 variants (lesion.predict.weight_predictions); layer "all" runs
whole networks. The unfiltered checkpoint is predicted on every test set too:
it is what the scores normalise by.

The test sets are the clean test split and its FGSM set made against each
checkpoint (every clean image attacked, clamped to [0, 1]): the scores of an
early epoch are not judged on a transfer attack from the final network, and
both curves count the same images.

Layout under `out_dir` (results/{dataset}/{model}/filtering):
    epoch{E}/variants.parquet                   every variant of every layer (sweeps.VARIANT_SCHEMA)
    epoch{E}/fgsm.safetensors                   the checkpoint's FGSM set (a test split file)
    epoch{E}/predictions/{testset}.parquet      their predictions (lesion.predict's columns)
    epoch{E}/predictions/{testset}_none.parquet the unfiltered checkpoint's
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import pyarrow as pa
import torch

from lesion import attacks, data, evaluate, files, kinds, models, predict, sweeps, tensorfiles
from lesion.catalog import ALL_LAYERS, FILTERS
from lesion.studies.filtering.layout import ADVERSARIAL, CLEAN, fgsm_path, predictions_path, variants_path
from lesion.studies.filtering.scores import ALPHA_GRID

log = logging.getLogger(__name__)


def filter_table(model: torch.nn.Module, *, dataset: str, layers: Sequence[str],
                 filters: Sequence[str], study_seed: int) -> pa.Table:
    """The variants of every (layer, filter, alpha): 25 normalised alphas each, one draw."""
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise ValueError(f"filter {unknown[0]!r} is unknown; expected some of {list(FILTERS)}")
    tables = []
    for layer in layers:
        for name in filters:
            base = sweeps.base_tensors(model, layer, name)
            table, _ = sweeps.variant_table(base, dataset=dataset, model=model.lesion_name,
                                           layer=layer, perturbation=name, levels=ALPHA_GRID,
                                           draws=1, study_seed=study_seed)
            tables.append(table)
    return pa.concat_tables(tables)


def check_layers(model: torch.nn.Module, layers: Sequence[str]) -> None:
    """Refuse a layer that is neither a weight layer of `model` nor "all"."""
    valid = [*models.layers(model), ALL_LAYERS]
    bad = [layer for layer in layers if layer not in valid]
    if bad:
        raise ValueError(f"layer {bad[0]!r} is not a weight layer of {model.lesion_name}; "
                         f"expected some of {valid}")


def filter_checkpoints(dataset: str, checkpoints: Mapping[int, str | os.PathLike],
                       test: str | os.PathLike, out_dir: str | os.PathLike, *, eps: float,
                       layers: Sequence[str], filters: Sequence[str], study_seed: int,
                       device: str, batch_size: int, variants_per_pass: int, cache_gb: float,
                       precision: str) -> None:
    """The filtering sweep step: every checkpoint (epoch -> weights file) on the clean test
    split `test` and on its FGSM set (step `eps`) made against the checkpoint.

    `layers` are weight layers and/or "all" (every Conv/Linear layer at once,
    each with its own [min, max]).
    """
    dev = evaluate.pick_device(device, precision)
    spec = data.get(dataset, split=test)
    images, labels = data.load_split(test)
    index = tensorfiles.load_tensors(test).get("index", torch.arange(len(labels)))
    for epoch, weights in sorted(checkpoints.items()):
        model = models.load_weights(weights, num_classes=spec.num_classes,
                                    input_shape=spec.input_shape)
        check_layers(model, layers)
        attacked, table, tables = checkpoint_tables(
            model, images, labels, dev, dataset=dataset, layers=layers, filters=filters, eps=eps,
            study_seed=study_seed, batch_size=batch_size, variants_per_pass=variants_per_pass,
            cache_gb=cache_gb)
        tensorfiles.save_tensors({"images": attacked, "labels": labels, "index": index},
                                 fgsm_path(out_dir, epoch),
                                 {"dataset": dataset, "model": model.lesion_name, "attack": "fgsm",
                                  "options": {"eps": eps}, "epoch": epoch, "split": "test",
                                  **data.carried(dataset, spec)})
        meta = {"precision": precision, "device": dev.type, "epoch": str(epoch)}
        for name, (unfiltered, filtered) in tables.items():
            files.write_table(unfiltered, predictions_path(out_dir, epoch, name, unfiltered=True),
                              meta, kind=kinds.PREDICTIONS)
            files.write_table(filtered, predictions_path(out_dir, epoch, name), meta,
                              kind=kinds.PREDICTIONS)
        files.write_table(table, variants_path(out_dir, epoch), kind=kinds.VARIANTS)


def checkpoint_tables(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      dev: torch.device, *, dataset: str, layers: Sequence[str],
                      filters: Sequence[str], eps: float, study_seed: int, batch_size: int,
                      variants_per_pass: int, cache_gb: float,
                      ) -> tuple[torch.Tensor, pa.Table, dict[str, tuple[pa.Table, pa.Table]]]:
    """One network's filtering sweep, in memory (the sweep step and `lesion.filter_scores`
    both run this): (its FGSM set of `images`, the variants table, {test set: (unfiltered
    predictions, filtered predictions)} for the clean and FGSM sets)."""
    attacked = attacks.fgsm_batched(model, images, labels, eps, batch_size=batch_size, device=dev)
    model = model.cpu()
    table = filter_table(model, dataset=dataset, layers=layers, filters=filters,
                         study_seed=study_seed)
    rows = table.to_pylist()
    tables = {}
    for name, x in ((CLEAN, images), (ADVERSARIAL, attacked)):
        unfiltered = predict.unperturbed_predictions(model, x, labels, dev, batch_size=batch_size)
        parts = [predict.weight_predictions(model, [r for r in rows if r["layer"] == layer],
                                            x, labels, dev, batch_size=batch_size,
                                            variants_per_pass=variants_per_pass,
                                            cache_gb=cache_gb)
                 for layer in layers]
        log.info("%s: %d variants x %d images", name, len(rows), len(labels))
        tables[name] = (unfiltered, pa.concat_tables(parts).unify_dictionaries().combine_chunks())
    return attacked, table, tables
