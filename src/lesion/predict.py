"""The predict step: one row per (variant, test image) for a whole sweep.

Columns: variant, image (index into the test split), label, top5 (the k
most likely classes, best first), loss (cross-entropy). Each variant is
regenerated from its row of the variants table and checked against its
sha256 before it is evaluated; the clean prefix is computed once. For crash
faults (activation operators) a row is one Monte Carlo repetition: the clean
neurons of the layer are computed once and masked per input (lesion.activations).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from lesion import activations, data, evaluate, files, models, sweep, tables
from lesion.catalog import ACTIVATION_OPERATORS
from lesion.perturb import WEIGHT_OPERATORS

log = logging.getLogger(__name__)


def _table(variant_ids: list[str], labels: torch.Tensor, tops: list[torch.Tensor],
           losses: list[torch.Tensor]) -> pa.Table:
    n, k = len(labels), tops[0].shape[1]
    top = torch.stack(tops).reshape(-1).to(torch.int32).numpy()
    return pa.table({
        "variant": pa.DictionaryArray.from_arrays(
            np.repeat(np.arange(len(variant_ids), dtype=np.int32), n), pa.array(variant_ids)),
        "image": np.tile(np.arange(n, dtype=np.int32), len(variant_ids)),
        "label": np.tile(labels.numpy().astype(np.int16), len(variant_ids)),
        "top5": pa.FixedSizeListArray.from_arrays(pa.array(top), k),
        "loss": torch.stack(losses).reshape(-1).to(torch.float32).numpy(),
    })


def _load(dataset: str, weights: str | os.PathLike, test: str | os.PathLike):
    spec = data.get(dataset)
    model = models.load_weights(weights, num_classes=spec.num_classes,
                                input_shape=spec.input_shape)
    images, labels = data.load_split(test, dataset)
    return model, images, labels


def predict_clean(dataset: str, weights: str | os.PathLike, test: str | os.PathLike,
                  out: str | os.PathLike, *, device: str, batch_size: int, precision: str) -> None:
    """Predictions of the unperturbed model (perturbation `none`).

    `precision` (evaluate.pick_device) is recorded in the table's metadata.
    """
    dev = evaluate.pick_device(device, precision)
    model, images, labels = _load(dataset, weights, test)
    logits = evaluate.run_batched(model, images, batch_size, dev)
    top, loss = evaluate.summarise(logits, labels.to(dev))
    files.write_table(_table([model.lesion_name], labels, [top.cpu()], [loss.cpu()]), out,
                      {"precision": precision, "device": dev.type}, kind=tables.PREDICTIONS)


def _crash_results(model, layer: str, base, rows: list[dict], images: torch.Tensor,
                   labels: torch.Tensor, device: torch.device, *, batch_size: int,
                   reps_per_pass: int):
    """(top-k, loss) per crash repetition: clean neurons of `layer` once, masks per input.

    Each row is one Monte Carlo repetition (level p, its own seed); the hash
    check confirms the layer's weights are those the table was drawn on. A
    crash leaves the weights alone, so every row records the same hash: one
    check per distinct hash, not one copy and hash of the layer per row.
    """
    for row in {row["sha256"]: row for row in rows}.values():
        sweep.regenerate(row, base)
    prefix, suffix = activations.crash_split(model, layer)
    neurons = evaluate.run_batched(prefix, images, batch_size, device)
    log.info("crash %s: %d repetitions x %d images on %s; clean neurons %s", layer, len(rows),
             len(labels), device, tuple(neurons.shape[1:]))
    reps = [(row["level"], row["seed"]) for row in rows]
    labels = labels.to(device)
    for logits in activations.crashed_logits(suffix, neurons, reps, batch_size=batch_size,
                                        reps_per_pass=reps_per_pass):
        top, loss = evaluate.summarise(logits, labels)
        yield top.cpu(), loss.cpu()


def _weight_results(model, layer: str, base, rows: list[dict], images: torch.Tensor,
                    labels: torch.Tensor, device: torch.device, *, batch_size: int,
                    variants_per_pass: int, cache_bytes: float):
    """(top-k, loss) per weight variant: clean prefix once per chunk of images, suffix per variant.

    With one chunk (every small study) each variant is drawn once; with
    several, each chunk redraws the variants rather than holding them all
    (a vgg16 fc1 variant is 400 MB), and their results are joined per variant.
    """
    prefix, suffix, _ = models.split(model, layer)
    names = models.parameter_names(suffix, model, layer, list(base))
    chunk = evaluate.images_per_chunk(prefix, images, cache_bytes, batch_size, device)
    spans = [(start, min(start + chunk, len(images))) for start in range(0, len(images), chunk)]
    log.info("%s: %d variants x %d images on %s, clean prefix cached for %d chunk(s) of %d",
             layer, len(rows), len(labels), device, len(spans), chunk)
    if len(spans) == 1:
        activations = evaluate.run_batched(prefix, images, batch_size, device)
        regenerated = (sweep.regenerate(row, base) for row in rows)
        yield from evaluate.sweep_suffix(suffix, names, regenerated, activations, labels,
                                         batch_size=batch_size,
                                         variants_per_pass=variants_per_pass)
        return
    parts: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in rows]
    for start, stop in tqdm(spans, desc=f"chunks {layer}", mininterval=1):
        activations = evaluate.run_batched(prefix, images[start:stop], batch_size, device)
        regenerated = (sweep.regenerate(row, base) for row in rows)
        results = evaluate.sweep_suffix(suffix, names, regenerated, activations,
                                        labels[start:stop], batch_size=batch_size,
                                        variants_per_pass=variants_per_pass)
        for part, result in zip(parts, results, strict=True):
            part.append(result)
        del activations
    for part in parts:
        yield torch.cat([top for top, _ in part]), torch.cat([loss for _, loss in part])


def predict_sweep(dataset: str, weights: str | os.PathLike, test: str | os.PathLike,
                  variants: str | os.PathLike, out: str | os.PathLike, *, device: str,
                  batch_size: int, variants_per_pass: int, cache_gb: float,
                  precision: str) -> None:
    """Predictions of every variant in a variants table (one layer, one operator).

    `cache_gb` bounds the clean prefix activations held at once (see
    `evaluate.images_per_chunk`); `precision` (evaluate.pick_device) is
    recorded in the table's metadata.
    """
    dev = evaluate.pick_device(device, precision)
    model, images, labels = _load(dataset, weights, test)
    rows = sweep.read_variants(variants, model.lesion_name)
    layer = rows[0]["layer"]
    base = sweep.base_tensors(model, layer, rows[0]["perturbation"])
    if {r["perturbation"] for r in rows} & set(ACTIVATION_OPERATORS):
        results = _crash_results(model, layer, base, rows, images, labels, dev,
                                 batch_size=batch_size, reps_per_pass=variants_per_pass)
    else:
        results = _weight_results(model, layer, base, rows, images, labels, dev,
                                  batch_size=batch_size, variants_per_pass=variants_per_pass,
                                  cache_bytes=cache_gb * 2**30)
    tops, losses = [], []
    try:
        for top, loss in tqdm(results, total=len(rows), desc=f"predict {layer}", mininterval=1):
            tops.append(top)
            losses.append(loss)
    except sweep.VariantMismatchError as err:
        raise sweep.VariantMismatchError(f"{variants}: {err}") from None
    files.write_table(_table([r["variant"] for r in rows], labels, tops, losses), out,
                      {"precision": precision, "device": dev.type}, kind=tables.PREDICTIONS)


def weight_predictions(model, rows: list[dict], images: torch.Tensor, labels: torch.Tensor,
                       device: torch.device, *, batch_size: int, variants_per_pass: int,
                       cache_gb: float) -> pa.Table:
    """Predictions (the table of predict_sweep) of the weight variants in `rows`.

    The rows are of one layer and may mix operators that perturb the same
    tensors (the synaptic filters of the filtering study: 25 levels x 3
    filters), so the clean prefix is computed once for all of them. Each
    variant is regenerated from its row and checked against its sha256.
    """
    layers = sorted({r["layer"] for r in rows})
    operators = sorted({r["perturbation"] for r in rows})
    shared = len(operators) == 1 or set(operators) <= set(WEIGHT_OPERATORS)
    if len(layers) != 1 or not shared or set(operators) & set(ACTIVATION_OPERATORS):
        raise ValueError(f"rows of layers {layers} and operators {operators}; expected one "
                         "layer and weight operators that perturb the same tensors")
    base = sweep.base_tensors(model, layers[0], rows[0]["perturbation"])
    results = _weight_results(model, layers[0], base, rows, images, labels, device,
                              batch_size=batch_size, variants_per_pass=variants_per_pass,
                              cache_bytes=cache_gb * 2**30)
    tops, losses = [], []
    for top, loss in results:
        tops.append(top)
        losses.append(loss)
    return _table([r["variant"] for r in rows], labels, tops, losses)


def unperturbed_predictions(model, images: torch.Tensor, labels: torch.Tensor,
                            device: torch.device, *, batch_size: int) -> pa.Table:
    """Predictions of the network as it is (variant: its model name), as predict_clean's."""
    logits = evaluate.run_batched(model, images, batch_size, device)
    top, loss = evaluate.summarise(logits, labels.to(device))
    return _table([model.lesion_name], labels, [top.cpu()], [loss.cpu()])
