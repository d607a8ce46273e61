"""A sweep: every (level, draw) variant of one operator on one layer, and an operator's
table: the sweeps of several layers of one model, in forward order.

`variant_table` draws each variant from the original weights and records what
is needed to regenerate and check it (seed, sha256) and how far it moved
(weights changed, relative L1 and L2 difference). `regenerate` rebuilds a
variant from its row alone and refuses one whose hash no longer matches.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import torch

from lesion import catalog, files, kinds, operators, tensorfiles

VARIANT_SCHEMA = pa.schema([
    ("variant", pa.string()),
    ("dataset", pa.string()),
    ("model", pa.string()),
    ("perturbation", pa.string()),
    ("layer", pa.string()),
    ("level", pa.float64()),
    ("draw", pa.int32()),
    ("seed", pa.int64()),
    ("sha256", pa.string()),
    ("weights", pa.int64()),       # entries of those tensors (the layer's weight and bias,
                                   # for node knockout also its BatchNorm's scale and shift)
    ("changed", pa.int64()),       # entries whose value differs from the original
    ("rel_l1", pa.float64()),      # |W' - W|_1 / |W|_1 over weight and bias together
    ("rel_l2", pa.float64()),      # |W' - W|_2 / |W|_2
    ("options", pa.string()),      # the operator's options as JSON, e.g. {"bits": ["sign"]}
    ("tensors", pa.string()),      # the tensors the operator was given, e.g. "bias,weight"
])


class VariantMismatchError(RuntimeError):
    """A regenerated variant does not hash to what its table row recorded."""


# Entries of a layer's concatenated tensors per float64 window of `_difference`:
# the statistics never copy a whole layer (a vgg16 fc1 is 103 M entries) and
# work in two 32 MB float64 buffers, allocated once per call (fresh allocations
# of a whole layer, not the arithmetic, were most of the cost). A layer of
# one window (every layer of the digits networks) sums exactly as one float64
# vector of the whole layer does.
_WINDOW = 1 << 22


def _windows(tensors: Mapping[str, torch.Tensor]) -> list[list[tuple[str, int, int]]]:
    """The concatenation of `tensors` (sorted names, flattened) cut into windows of
    `_WINDOW` entries, each a list of (name, start, stop) pieces."""
    windows, current, size = [], [], 0
    for name in sorted(tensors):
        n, start = tensors[name].numel(), 0
        while start < n:
            take = min(n - start, _WINDOW - size)
            current.append((name, start, start + take))
            size, start = size + take, start + take
            if size == _WINDOW:
                windows.append(current)
                current, size = [], 0
    return [*windows, current] if current else windows


def _buffer_size(tensors: Mapping[str, torch.Tensor]) -> int:
    """Entries of a window buffer: a window, or the whole layer when it is smaller."""
    return min(_WINDOW, sum(t.numel() for t in tensors.values()))


def _fill(buffer: torch.Tensor, tensors: Mapping[str, torch.Tensor],
          pieces: list[tuple[str, int, int]]) -> torch.Tensor:
    """Window `pieces` of the concatenation, converted to float64 into `buffer`."""
    offset = 0
    for name, start, stop in pieces:
        buffer[offset:offset + stop - start].copy_(tensors[name].reshape(-1)[start:stop])
        offset += stop - start
    return buffer[:offset]


def _norms(base: Mapping[str, torch.Tensor]) -> tuple[float, float]:
    """|W|_1 and |W|_2 of the original tensors together: computed once per sweep."""
    buffer = torch.empty(_buffer_size(base), dtype=torch.float64)
    l1, l2 = [], []
    for pieces in _windows(base):
        old = _fill(buffer, base, pieces)
        l2.append(float(old.norm()))
        l1.append(float(torch.abs(old, out=old).sum()))
    return math.fsum(l1), math.hypot(*l2)


def _difference(base: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor],
                norms: tuple[float, float] | None = None) -> dict:
    """Entries, entries changed, and |W' - W| / |W| in L1 and L2 over all tensors together.

    Computed in float64 window by window (`_WINDOW`), each window with the
    float64 reductions of the whole-vector formula; the windows' sums are
    combined with `math.fsum` and `math.hypot` (exact for one window).
    `norms` are `_norms(base)`, when the caller already has them.
    """
    l1_old, l2_old = norms or _norms(base)
    buffers = torch.empty(2, _buffer_size(base), dtype=torch.float64)
    changed, l1, l2 = 0, [], []
    for pieces in _windows(base):
        d = _fill(buffers[0], new, pieces)
        d = torch.sub(d, _fill(buffers[1], base, pieces), out=d)
        changed += int(torch.count_nonzero(d))
        l2.append(float(d.norm()))
        l1.append(float(torch.abs(d, out=d).sum()))
    return {
        "weights": sum(t.numel() for t in base.values()),
        "changed": changed,
        "rel_l1": _ratio(math.fsum(l1), l1_old),
        "rel_l2": _ratio(math.hypot(*l2), l2_old),
    }


def _ratio(a: float, b: float) -> float:
    """a / b in IEEE float64: inf or nan where b is 0 (an all-zero layer), never an error."""
    return float(torch.tensor(a, dtype=torch.float64) / b)


def variants(base: Mapping[str, torch.Tensor], *, dataset: str, model: str, layer: str,
             perturbation: str, levels: Iterable[float], draws: int, study_seed: int,
             options: Mapping | None = None) -> Iterator[tuple[dict, dict[str, torch.Tensor]]]:
    """Draw the variants of a sweep one at a time: (table row, variant tensors).

    Lazy, so that a sweep over a large layer holds one variant at a time (a
    vgg16 fc1 variant is 400 MB). `options` are the operator's own
    (catalog.OPERATOR_OPTIONS), recorded in every row so that the row alone
    regenerates the variant.
    """
    norms = _norms(base)  # the original's, once per sweep
    for level in levels:
        for draw in range(draws):
            yield one_variant(base, dataset=dataset, model=model, layer=layer,
                              perturbation=perturbation, level=level, draw=draw,
                              study_seed=study_seed, options=options, norms=norms)


def one_variant(base: Mapping[str, torch.Tensor], *, dataset: str, model: str, layer: str,
                perturbation: str, level: float, draw: int, study_seed: int,
                options: Mapping | None = None, norms: tuple[float, float] | None = None,
                ) -> tuple[dict, dict[str, torch.Tensor]]:
    """One variant of a sweep (`variants`' arguments, one level and draw): (table row,
    variant tensors). `norms` are the original's (`_norms`), when the caller has them."""
    options = dict(options or {})
    seed = operators.variant_seed(study_seed, model, layer, perturbation, level, draw)
    new = operators.apply(perturbation, base, level, seed, **options)
    return {
        "variant": operators.variant_id(model, layer, perturbation, level, draw),
        "dataset": dataset, "model": model, "perturbation": perturbation,
        "layer": layer, "level": float(level), "draw": draw, "seed": seed,
        "sha256": tensorfiles.tensors_sha256(new),
        **_difference(base, new, norms),
        "options": json.dumps(options, sort_keys=True),
        "tensors": ",".join(sorted(base)),
    }, new


def variant_table(base: Mapping[str, torch.Tensor], **sweep: Any,
                  ) -> tuple[pa.Table, list[dict[str, torch.Tensor]]]:
    """Draw every variant of the sweep (`variants`' arguments); return its table and the
    variant tensors."""
    rows, tensors = [], []
    for row, new in variants(base, **sweep):
        rows.append(row)
        tensors.append(new)
    return pa.Table.from_pylist(rows, schema=VARIANT_SCHEMA), tensors


def regenerate(row: Mapping, base: Mapping[str, torch.Tensor], *,
               check: bool = True) -> dict[str, torch.Tensor]:
    """Rebuild the variant of a table row from the original tensors; check its hash.

    `check=False` skips the hash, for a variant already checked (or drawn) once
    in this process and redrawn for another chunk of images: the operator is
    deterministic in (row, base), and hashing a large layer costs about a
    third of drawing it.
    """
    options = json.loads(row["options"])
    new = operators.apply(row["perturbation"], base, row["level"], row["seed"], **options)
    if not check:
        return new
    digest = tensorfiles.tensors_sha256(new)
    if digest != row["sha256"]:
        raise VariantMismatchError(
            f"variant {row['variant']}: regenerated tensors hash to {digest[:12]}..., the "
            f"variants table recorded {row['sha256'][:12]}...; the weights or the operator "
            "changed since the table was written: rebuild the variants table")
    return new


def base_tensors(model, layer: str, perturbation: str) -> dict[str, torch.Tensor]:
    """The tensors an operator perturbs: a layer's own, or for an operator on whole units
    (catalog.UNIT_OPERATORS) also its BatchNorm's scale and shift (models.unit_tensors),
    or for a synaptic filter (catalog.WEIGHT_OPERATORS) its weight alone, or every
    Conv/Linear weight for layer "all" (models.weight_tensors)."""
    from lesion import models  # here, so that the pure functions above stay light

    if perturbation in catalog.WEIGHT_OPERATORS:
        return models.weight_tensors(model, layer)
    if perturbation in catalog.UNIT_OPERATORS:
        return models.unit_tensors(model, layer)
    return models.layer_tensors(model, layer)


def swept_layers(model, layers: str | Sequence[str]) -> list[str]:
    """The layers a sweep step covers, in the network's forward order: `"all"` (or
    `["all"]`) is every weight layer (models.layers: a brought network's from its graph,
    as its layer table lists them), a name or a list of names picks some. Every name is
    checked before any variant is drawn."""
    from lesion import graph, models

    known = list(models.layers(model))
    names = [layers] if isinstance(layers, str) else list(layers)
    if names == [catalog.ALL_LAYERS]:
        return known
    unknown = [name for name in names if name not in known]
    if len(unknown) == 1:
        raise ValueError(graph.unknown_layer(unknown[0], known))
    if unknown:
        raise ValueError(f"layers {unknown} are not weight layers of {model.lesion_name!r}; "
                         f"expected some of {known}")
    return [name for name in known if name in names]


def _model(dataset: str, weights: str, split: str | None = None):
    from lesion import data, models

    spec = data.get(dataset, split=split)
    return models.load_weights(weights, num_classes=spec.num_classes,
                               input_shape=spec.input_shape)


def read_variants(path: str | os.PathLike, model: str) -> list[dict]:
    """The rows of a variants table for `model`'s weights: one operator, one or more layers.

    Checked at entry, so that a wrong table is named as such (not a KeyError,
    not a hash mismatch whose real cause is another model's table).
    """
    rows = files.read_table(path, kinds.VARIANTS).to_pylist()
    if not rows:
        raise files.InputFileError(f"{path}: the variants table is empty")
    found = sorted({r["perturbation"] for r in rows})
    if len(found) != 1:
        raise files.InputFileError(f"{path}: expected one perturbation per table, found {found}")
    models_found = sorted({r["model"] for r in rows})
    if models_found != [model]:
        raise files.InputFileError(f"{path}: a variants table of model {models_found[0]!r}, but "
                                   f"the weights are {model!r} (the model their metadata "
                                   "names); expected the weights the table was drawn from")
    return rows


def by_layer(rows: list[dict]) -> dict[str, list[int]]:
    """The indices of `rows` per layer, layers in the order they first appear."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row["layer"], []).append(i)
    return groups


def write_variants(dataset: str, weights: str, layers: str | Sequence[str], perturbation: str, *,
                   levels: list[float], draws: int, study_seed: int, out: str,
                   options: Mapping | None = None, split: str | None = None) -> None:
    """The variants step: draw the sweeps of `layers` (one name, several, or "all": see
    swept_layers) and write their table, layer after layer in forward order (`split`: see
    lesion.data.get)."""
    rows = variant_rows(_model(dataset, weights, split), layers, perturbation, dataset=dataset,
                        levels=levels, draws=draws, study_seed=study_seed, options=options)
    files.write_table(pa.Table.from_pylist(rows, schema=VARIANT_SCHEMA), out, kind=kinds.VARIANTS)


def variant_rows(model, layers: str | Sequence[str], perturbation: str, **drawing: Any,
                 ) -> list[dict]:
    """The table rows of the sweeps of `layers` (swept_layers), layer after layer in
    forward order; `drawing`: `variants`' arguments but the tensors, the model and the layer."""
    rows = []
    for layer in swept_layers(model, layers):
        base = base_tensors(model, layer, perturbation)
        rows += [row for row, _ in variants(base, model=model.lesion_name, layer=layer,
                                            perturbation=perturbation, **drawing)]
    return rows


def write_variant_weights(dataset: str, weights: str, variants: str, out_dir: str,
                          split: str | None = None, layer: str | None = None) -> None:
    """Write each variant of a table (of `layer` only, when given) as
    `{variant}.safetensors` in `out_dir`, checked by hash.

    The directory appears only when complete (built aside, then renamed).
    """
    rows = read_variants(variants, tensorfiles.load_metadata(weights).get("model"))
    if layer is not None:
        layers = list(by_layer(rows))
        rows = [row for row in rows if row["layer"] == layer]
        if not rows:
            raise files.InputFileError(f"{variants}: no variants of layer {layer!r}; expected "
                                       f"one of the layers the table holds: {layers}")
    model = _model(dataset, weights, split)
    with files.atomic_dir(out_dir) as tmp:
        for name, indices in by_layer(rows).items():
            base = base_tensors(model, name, rows[indices[0]]["perturbation"])
            for row in (rows[i] for i in indices):
                tensorfiles.save_tensors(regenerate(row, base),
                                         tmp / f"{row['variant']}.safetensors",
                                         {k: row[k] for k in ("variant", "seed", "sha256")})
