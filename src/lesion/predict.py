"""The predict step: one row per (variant, test image) for a whole sweep.

Columns: variant, image (index into the test split), label, top5 (the k
most likely classes, best first), loss (cross-entropy). The sweep step
(`run_sweep`: every layer of one operator, in one process) draws each variant
once for its table row and its predictions; the predict step regenerates each
variant from its row of a variants table and checks it against its sha256
before it is evaluated. Either way the clean prefix is computed once per pass
of images, layer by layer. For crash
faults (activation operators) a row is one Monte Carlo repetition: the clean
neurons of the layer are computed once and masked per input (lesion.activations).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from lesion import activations, data, evaluate, files, kinds, models, sweeps
from lesion.catalog import ACTIVATION_OPERATORS, WEIGHT_OPERATORS

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
    spec = data.get(dataset, split=test)
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
                      {"precision": precision, "device": dev.type}, kind=kinds.PREDICTIONS)


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
        sweeps.regenerate(row, base)
    prefix, suffix = activations.crash_split(model, layer)
    neurons = evaluate.run_batched(prefix, images, batch_size, device)
    # a log line's text is no result (each line of it: `make mutation` leaves it alone)
    packed = " (packed with the values the rest of the network reads)"  # pragma: no mutate
    log.info("crash %s: %d repetitions x %d images on %s; clean neurons %s%s",  # pragma: no mutate
             layer, len(rows), len(labels), device, prefix.neurons,  # pragma: no mutate
             packed if prefix.packed else "")  # pragma: no mutate
    reps = [(row["level"], row["seed"]) for row in rows]
    labels = labels.to(device)
    for logits in activations.crashed_logits(
            suffix, neurons, reps, batch_size=batch_size, reps_per_pass=reps_per_pass,
            neurons=prefix.neurons if prefix.packed else None):
        top, loss = evaluate.summarise(logits, labels)
        yield top.cpu(), loss.cpu()


def _passes(sizes: list[int], chunk: int) -> list[list[tuple[int, int, int]]]:
    """The images of test sets of `sizes` as passes of at most `chunk` images each, a pass
    a list of (set, start, stop) spans.

    Each set is cut into spans of `chunk` images (a multiple of the batch
    size, so batches stay those of the set alone) and consecutive spans share
    a pass while they fit: where the activations of every set fit at once
    (every small study) there is one pass, and each variant is drawn once.
    """
    passes, current, room = [], [], chunk
    for index, size in enumerate(sizes):
        for start in range(0, size, chunk):
            stop = min(start + chunk, size)
            if current and stop - start > room:
                passes.append(current)
                current, room = [], chunk
            current.append((index, start, stop))
            room -= stop - start
    return [*passes, current] if current else passes


def _weight_results(model, layer: str, base, sets: list[tuple[torch.Tensor, torch.Tensor]],
                    variants: Iterable[dict[str, torch.Tensor]],
                    redraw: Callable[[], Iterable[dict[str, torch.Tensor]]],
                    device: torch.device, *, batch_size: int, variants_per_pass: int,
                    cache_bytes: float, total: int | None = None,
                    ) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """(top-k, loss) per test set and weight variant: the clean prefix once per pass of
    images (`_passes`), the suffix per variant.

    `sets` are (images, labels); `variants` yields the variant tensors in order
    and feeds the first pass; each later pass (a prefix cache too large for
    all images at once) redraws them with `redraw()` rather than holding them
    all (a vgg16 fc1 variant is 400 MB), and their results are joined per
    variant.
    """
    prefix, suffix, _ = models.split(model, layer)
    names = models.parameter_names(suffix, model, layer, list(base))
    sizes = [len(labels) for _, labels in sets]
    chunk = evaluate.images_per_chunk(prefix, sets[0][0], cache_bytes, batch_size, device,
                                      count=sum(sizes), layer=f"layer {layer}")
    passes = _passes(sizes, chunk)
    log.info("%s: %d test set(s) of %s images on %s, clean prefix cached for "  # pragma: no mutate
             "%d pass(es) of at most %d",  # pragma: no mutate
             layer, len(sets), sizes, device, len(passes), chunk)  # pragma: no mutate
    parts: list[list[list[tuple[torch.Tensor, torch.Tensor]]]] = [[] for _ in sets]
    for number, spans in enumerate(passes):
        activations = torch.cat([evaluate.run_batched(prefix, sets[i][0][a:b], batch_size, device)
                                 for i, a, b in spans])
        labels = torch.cat([sets[i][1][a:b] for i, a, b in spans])
        bounds = [0, *itertools.accumulate(b - a for _, a, b in spans)]
        results = evaluate.sweep_suffix(suffix, names, variants if number == 0 else redraw(),
                                        activations, labels, batch_size=batch_size,
                                        variants_per_pass=variants_per_pass, bounds=bounds)
        if number == 0:  # pragma: no mutate (the progress bar: display only)
            results = tqdm(results, total=total, desc=f"predict {layer}", mininterval=1)  # pragma: no mutate
        for v, (top, loss) in enumerate(results):
            for (i, _, _), a, b in zip(spans, bounds, bounds[1:], strict=False):
                if len(parts[i]) == v:  # the set's first span
                    parts[i].append([])
                parts[i][v].append((top[a:b], loss[a:b]))
        del activations
    return [[(torch.cat([top for top, _ in part]), torch.cat([loss for _, loss in part]))
             for part in per_set] for per_set in parts]


def _checked(rows: list[dict], base) -> tuple[Iterable, Callable[[], Iterable]]:
    """The variants of table rows for `_weight_results`: regenerated and checked against
    their sha256 for the first pass, redrawn unchecked for later ones (hashed once per
    sweep, not once per pass)."""
    return ((sweeps.regenerate(row, base) for row in rows),
            lambda: (sweeps.regenerate(row, base, check=False) for row in rows))


def _cuts(model, layers: Iterable[str]) -> dict[str, str]:
    """A table's metadata on how the network was cut in front of each layer (models.cut_of):
    key "cuts", a JSON object layer -> cut, in forward order."""
    return {"cuts": json.dumps({layer: models.cut_of(model, layer) for layer in layers})}


def predict_sweep(dataset: str, weights: str | os.PathLike, test: str | os.PathLike,
                  variants: str | os.PathLike, out: str | os.PathLike, *, device: str,
                  batch_size: int, variants_per_pass: int, cache_gb: float,
                  precision: str) -> None:
    """Predictions of every variant in a variants table (one operator, one or more layers):
    each layer's rows predicted in turn, the table in the rows' order.

    `cache_gb` bounds the clean prefix activations held at once (see
    `evaluate.images_per_chunk`); `precision` (evaluate.pick_device) is
    recorded in the table's metadata.
    """
    dev = evaluate.pick_device(device, precision)
    model, images, labels = _load(dataset, weights, test)
    rows = sweeps.read_variants(variants, model.lesion_name)
    try:
        results = table_results(model, rows, images, labels, dev, batch_size=batch_size,
                                variants_per_pass=variants_per_pass, cache_bytes=cache_gb * 2**30)
    except sweeps.VariantMismatchError as err:
        raise sweeps.VariantMismatchError(f"{variants}: {err}") from None
    crash = rows[0]["perturbation"] in ACTIVATION_OPERATORS
    cut = {} if crash else _cuts(model, sweeps.by_layer(rows))
    files.write_table(_table([r["variant"] for r in rows], labels, *zip(*results, strict=True)),
                      out, {"precision": precision, "device": dev.type, **cut},
                      kind=kinds.PREDICTIONS)


def table_results(model, rows: list[dict], images: torch.Tensor, labels: torch.Tensor,
                  dev: torch.device, *, batch_size: int, variants_per_pass: int,
                  cache_bytes: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(top-k, loss) of every row of a variants table (one operator, one or more layers), in
    the rows' order: each layer's rows in turn, regenerated and checked against their
    sha256 (a weight operator), or crashed per input (an activation operator)."""
    crash = rows[0]["perturbation"] in ACTIVATION_OPERATORS
    groups = sweeps.by_layer(rows)
    results: list = [None] * len(rows)
    for number, (layer, indices) in enumerate(groups.items(), 1):
        mine = [rows[i] for i in indices]
        started = time.monotonic()
        base = sweeps.base_tensors(model, layer, mine[0]["perturbation"])
        if crash:
            found = list(tqdm(_crash_results(model, layer, base, mine, images, labels, dev,
                                             batch_size=batch_size,
                                             reps_per_pass=variants_per_pass),
                              total=len(mine), desc=f"predict {layer}", mininterval=1))
        else:
            [found] = _weight_results(model, layer, base, [(images, labels)],
                                      *_checked(mine, base), dev, batch_size=batch_size,
                                      variants_per_pass=variants_per_pass,
                                      cache_bytes=cache_bytes, total=len(mine))
        for i, result in zip(indices, found, strict=True):
            results[i] = result
        _progress(number, len(groups), layer, len(mine), started)
    return results


def _progress(number: int, count: int, layer: str, variants: int, started: float) -> None:
    """One log line per layer of a sweep step: how far it is."""
    log.info("layer %d/%d %s: %d variants in %.2f s",  # pragma: no mutate
             number, count, layer, variants, time.monotonic() - started)  # pragma: no mutate


def _layer_sweep(model, layer: str, sets, dev: torch.device, *, batch_size: int,
                 variants_per_pass: int, cache_bytes: float, **drawing):
    """One layer of run_sweep: (its variants' rows, their results per test set). Each variant
    is drawn once for its row and its predictions (`drawing`: sweeps.variants' arguments
    but the tensors, the model and the layer)."""
    base = sweeps.base_tensors(model, layer, drawing["perturbation"])
    rows: list[dict] = []

    def drawn():
        for row, new in sweeps.variants(base, model=model.lesion_name, layer=layer, **drawing):
            rows.append(row)
            yield new

    found = _weight_results(
        model, layer, base, sets, drawn(),
        lambda: (sweeps.regenerate(row, base, check=False) for row in rows), dev,
        batch_size=batch_size, variants_per_pass=variants_per_pass, cache_bytes=cache_bytes,
        total=len(drawing["levels"]) * drawing["draws"])
    return rows, found


def run_sweep(dataset: str, weights: str | os.PathLike, tests: list[str | os.PathLike],
              outs: list[str | os.PathLike], variants_out: str | os.PathLike, *,
              layers: str | list[str], perturbation: str, levels: list[float], draws: int,
              study_seed: int, options: dict, device: str, batch_size: int,
              variants_per_pass: int, cache_gb: float, precision: str) -> None:
    """The sweep step: draw the variants of every layer in `layers` (a name, several, or
    "all": sweeps.swept_layers) and predict every test set in `tests` with each variant,
    writing one variants table (`variants_out`, the layers in forward order) and one
    predictions table per test set (`outs`), all in one process.

    Each layer is swept in turn, with its own clean prefix cache. Each weight
    variant is drawn once and that same tensor gives its table row (statistics,
    sha256) and its predictions on every test set (not drawn for the table and
    regenerated for predict); it is drawn again only for a later pass of a
    prefix cache too large for all images at once. Crash sweeps (activation
    operators) draw no tensors: their table, then their predictions from it.
    """
    if perturbation in ACTIVATION_OPERATORS:
        sweeps.write_variants(dataset, str(weights), layers, perturbation, levels=levels,
                             draws=draws, study_seed=study_seed, out=str(variants_out),
                             options=options, split=str(tests[0]))
        for test, out in zip(tests, outs, strict=True):
            predict_sweep(dataset, weights, test, variants_out, out, device=device,
                          batch_size=batch_size, variants_per_pass=variants_per_pass,
                          cache_gb=cache_gb, precision=precision)
        return
    dev = evaluate.pick_device(device, precision)
    spec = data.get(dataset, split=tests[0])
    model = models.load_weights(weights, num_classes=spec.num_classes,
                                input_shape=spec.input_shape)
    sets = [data.load_split(test, dataset) for test in tests]
    swept, rows, results = sweep_layers(
        model, sets, dev, layers=layers, dataset=dataset, perturbation=perturbation,
        levels=levels, draws=draws, study_seed=study_seed, options=options,
        batch_size=batch_size, variants_per_pass=variants_per_pass, cache_bytes=cache_gb * 2**30)
    cut = _cuts(model, swept)  # the variants table and the log say how
    variants, predictions = sweep_tables(rows, [labels for _, labels in sets], results)
    files.write_table(variants, variants_out, cut, kind=kinds.VARIANTS)
    for table, out in zip(predictions, outs, strict=True):
        files.write_table(table, out, {"precision": precision, "device": dev.type, **cut},
                          kind=kinds.PREDICTIONS)


def sweep_tables(rows: list[dict], labels: list[torch.Tensor],
                 results: list[list[tuple[torch.Tensor, torch.Tensor]]],
                 ) -> tuple[pa.Table, list[pa.Table]]:
    """A sweep's variants table and one predictions table per test set (`labels` and
    `results` per set, as sweep_layers gives them)."""
    ids = [r["variant"] for r in rows]
    return (pa.Table.from_pylist(rows, schema=sweeps.VARIANT_SCHEMA),
            [_table(ids, y, *zip(*found, strict=True)) for y, found in zip(labels, results,
                                                                           strict=True)])


def sweep_layers(model, sets: list[tuple[torch.Tensor, torch.Tensor]], dev: torch.device, *,
                 layers: str | list[str], batch_size: int, variants_per_pass: int,
                 cache_bytes: float, **drawing,
                 ) -> tuple[list[str], list[dict], list[list[tuple[torch.Tensor, torch.Tensor]]]]:
    """A weight operator's sweep of `layers` (a name, several, or "all": sweeps.swept_layers)
    on the test sets `sets` ((images, labels) each), in memory: (the layers swept in forward
    order, the variants' table rows, (top-k, loss) per test set and variant). `drawing`:
    sweeps.variants' arguments but the tensors, the model and the layer. The sweep step and
    `lesion.sweep` both run this."""
    swept = sweeps.swept_layers(model, layers)  # every name checked before any is drawn
    rows: list[dict] = []
    results: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in sets]
    for number, layer in enumerate(swept, 1):
        started = time.monotonic()
        mine, found = _layer_sweep(model, layer, sets, dev, batch_size=batch_size,
                                   variants_per_pass=variants_per_pass, cache_bytes=cache_bytes,
                                   **drawing)
        rows += mine
        for per_set, more in zip(results, found, strict=True):
            per_set += more
        _progress(number, len(swept), layer, len(mine), started)
    return swept, rows, results


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
    base = sweeps.base_tensors(model, layers[0], rows[0]["perturbation"])
    [results] = _weight_results(model, layers[0], base, [(images, labels)], *_checked(rows, base),
                                device, batch_size=batch_size,
                                variants_per_pass=variants_per_pass,
                                cache_bytes=cache_gb * 2**30)
    return _table([r["variant"] for r in rows], labels, *zip(*results, strict=True))


def unperturbed_predictions(model, images: torch.Tensor, labels: torch.Tensor,
                            device: torch.device, *, batch_size: int) -> pa.Table:
    """Predictions of the network as it is (variant: its model name), as predict_clean's."""
    logits = evaluate.run_batched(model, images, batch_size, device)
    top, loss = evaluate.summarise(logits, labels.to(device))
    return _table([model.lesion_name], labels, [top.cpu()], [loss.cpu()])
