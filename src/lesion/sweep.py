"""A sweep: every (level, draw) variant of one operator on one layer.

`variant_table` draws each variant from the original weights and records what
is needed to regenerate and check it (seed, sha256) and how far it moved
(weights changed, relative L1 and L2 difference). `regenerate` rebuilds a
variant from its row alone and refuses one whose hash no longer matches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

import pyarrow as pa
import torch

from lesion import files, io, perturb, tables

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


def _difference(base: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor]) -> dict:
    old = torch.cat([base[k].reshape(-1).double() for k in sorted(base)])
    diff = torch.cat([(new[k].double() - base[k].double()).reshape(-1) for k in sorted(base)])
    return {
        "weights": old.numel(),
        "changed": int((diff != 0).sum()),
        "rel_l1": float(diff.abs().sum() / old.abs().sum()),
        "rel_l2": float(diff.norm() / old.norm()),
    }


def variant_table(base: Mapping[str, torch.Tensor], *, dataset: str, model: str, layer: str,
                  perturbation: str, levels: Iterable[float], draws: int,
                  study_seed: int, options: Mapping | None = None,
                  ) -> tuple[pa.Table, list[dict[str, torch.Tensor]]]:
    """Draw every variant of the sweep; return its table and the variant tensors.

    `options` are the operator's own (perturb.OPERATOR_OPTIONS), recorded in
    every row so that the row alone regenerates the variant.
    """
    options = dict(options or {})
    rows, variants = [], []
    for level in levels:
        for draw in range(draws):
            seed = perturb.variant_seed(study_seed, model, layer, perturbation, level, draw)
            new = perturb.apply(perturbation, base, level, seed, **options)
            rows.append({
                "variant": perturb.variant_id(model, layer, perturbation, level, draw),
                "dataset": dataset, "model": model, "perturbation": perturbation,
                "layer": layer, "level": float(level), "draw": draw, "seed": seed,
                "sha256": io.tensors_sha256(new), **_difference(base, new),
                "options": json.dumps(options, sort_keys=True),
                "tensors": ",".join(sorted(base)),
            })
            variants.append(new)
    return pa.Table.from_pylist(rows, schema=VARIANT_SCHEMA), variants


def regenerate(row: Mapping, base: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rebuild the variant of a table row from the original tensors; check its hash."""
    options = json.loads(row["options"])
    new = perturb.apply(row["perturbation"], base, row["level"], row["seed"], **options)
    digest = io.tensors_sha256(new)
    if digest != row["sha256"]:
        raise VariantMismatchError(
            f"variant {row['variant']}: regenerated tensors hash to {digest[:12]}..., the "
            f"variants table recorded {row['sha256'][:12]}...; the weights or the operator "
            "changed since the table was written: rebuild the variants table")
    return new


def base_tensors(model, layer: str, perturbation: str) -> dict[str, torch.Tensor]:
    """The tensors an operator perturbs: a layer's own, or for an operator on whole units
    (perturb.UNIT_OPERATORS) also its BatchNorm's scale and shift (models.unit_tensors),
    or for a synaptic filter (perturb.WEIGHT_OPERATORS) its weight alone, or every
    Conv/Linear weight for layer "all" (models.weight_tensors)."""
    from lesion import models  # here, so that the pure functions above stay light

    if perturbation in perturb.WEIGHT_OPERATORS:
        return models.weight_tensors(model, layer)
    if perturbation in perturb.UNIT_OPERATORS:
        return models.unit_tensors(model, layer)
    return models.layer_tensors(model, layer)


def _base(dataset: str, weights: str, layer: str, perturbation: str):
    from lesion import data, models

    spec = data.get(dataset)
    model = models.load_weights(weights, num_classes=spec.num_classes,
                                input_shape=spec.input_shape)
    return model.lesion_name, base_tensors(model, layer, perturbation)


def read_variants(path: str | os.PathLike, model: str) -> list[dict]:
    """The rows of a variants table for `model`'s weights: one layer, one operator.

    Checked at entry, so that a wrong table is named as such (not a KeyError,
    not a hash mismatch whose real cause is another model's table).
    """
    rows = files.read_table(path, tables.VARIANTS).to_pylist()
    if not rows:
        raise files.InputFileError(f"{path}: the variants table is empty")
    for column in ("layer", "perturbation"):
        found = sorted({r[column] for r in rows})
        if len(found) != 1:
            raise files.InputFileError(f"{path}: expected one {column} per table, found {found}")
    models_found = sorted({r["model"] for r in rows})
    if models_found != [model]:
        raise files.InputFileError(f"{path}: a variants table of model {models_found[0]!r}, but "
                                   f"the weights are {model!r}'s; expected the weights the "
                                   "table was drawn from")
    return rows


def write_variants(dataset: str, weights: str, layer: str, perturbation: str, *,
                   levels: list[float], draws: int, study_seed: int, out: str,
                   options: Mapping | None = None) -> None:
    """The variants step: draw a sweep and write its table."""
    from lesion.catalog import check_sweep

    check_sweep(perturbation, list(levels))
    model, base = _base(dataset, weights, layer, perturbation)
    table, _ = variant_table(base, dataset=dataset, model=model, layer=layer,
                             perturbation=perturbation, levels=levels, draws=draws,
                             study_seed=study_seed, options=options)
    files.write_table(table, out, kind=tables.VARIANTS)


def write_variant_weights(dataset: str, weights: str, variants: str, out_dir: str) -> None:
    """Write each variant of a table as `{variant}.safetensors` in `out_dir`, checked by hash.

    The directory appears only when complete (built aside, then renamed).
    """
    rows = read_variants(variants, io.load_metadata(weights).get("model"))
    _, base = _base(dataset, weights, rows[0]["layer"], rows[0]["perturbation"])
    with files.atomic_dir(out_dir) as tmp:
        for row in rows:
            io.save_tensors(regenerate(row, base), tmp / f"{row['variant']}.safetensors",
                            {k: row[k] for k in ("variant", "seed", "sha256")})
