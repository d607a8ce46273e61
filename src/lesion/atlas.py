"""The layer atlas: every study's verdict on each layer of a network, side by side, and how
far the verdicts agree (docs/studies.md, "The layer atlas").

A study states its measures of a layer in a torch-free function (its `Study.atlas`,
"module:function"), called with a model's name, its tables of that model (name -> path)
and the atlas settings; it returns one row per (layer, measure, draw) with the columns
COLUMNS: `fragile` says which end of the value is the fragile one ("low": a small area
under the accuracy curve; "high": a large output error), `study` whose verdict it is,
`source` the table it was read from. Measures come from the studies' own tables: the
atlas runs no network.

Here they become:
  atlas.parquet      one row per (model, layer, measure): the mean over draws with its 95%
                     Student-t interval (low = high = NaN for a single value), the layer's
                     depth (0 the first weight layer in forward order, 1 the last), parameter
                     count and type, and `rank` (1 = the most fragile layer of the model by
                     that measure)
  agreement.parquet  Spearman's rank correlation between every pair of measures across the
                     layers of each model, the measures oriented so that > 0 means "they find
                     the same layers fragile", with a bootstrap interval that resamples the
                     layers and, within each layer, the draws; and the same pooled over every
                     model (model "all", layers resampled within each model). depth and
                     parameters take part as they are (> 0 with depth: deeper layers are
                     more fragile).
Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.stats

from lesion import files
from lesion.intervals import t_interval
from lesion.kinds import LAYERS
from lesion.seeds import network_seed

COLUMNS = ["layer", "measure", "level", "draw", "value", "fragile", "study", "source"]
# The layer's own description, correlated with the measures as it is.
DESCRIPTORS = ("depth", "parameters")
POOLED = "all"  # the model name of the agreement pooled over every model

ATLAS = files.TableKind("atlas", "atlas table", (
    "dataset", "model", "layer", "depth", "parameters", "type", "measure", "study", "level", "value",
    "low", "high", "n", "rank", "fragile", "class", "source"))
AGREEMENT = files.TableKind("atlas agreement", "atlas table", (
    "dataset", "model", "measure_a", "measure_b", "rho", "low", "high", "layers", "replicates"))


def curves(metrics: pd.DataFrame, testset: str = "clean") -> tuple[float, pd.DataFrame]:
    """The clean top-1 of `testset` in a metrics table and its sweeps' top-1, indexed by
    (perturbation, layer, draw) with one column per level (the studies' measures share it)."""
    rows = metrics[(metrics["metric"] == "top1") & (metrics["testset"] == testset)]
    clean = rows[rows["perturbation"] == "none"]["value"]
    if clean.empty:
        raise ValueError(f"no clean top-1 on test set {testset!r} in the metrics table; expected "
                         "the rows of perturbation 'none' that the sweep metrics step writes")
    swept = rows[rows["perturbation"] != "none"]
    return float(clean.mean()), swept.pivot_table(index=["perturbation", "layer", "draw"],
                                                  columns="level", values="value")


def study_measures(tables: Mapping[str, Mapping[str, Mapping[str, str]]],
                   settings: Mapping) -> pd.DataFrame:
    """Every study's measures (study group -> model -> its tables), one row per draw, with
    the model in column `model`."""
    from lesion import registry

    known = {s.group: s for s in registry.studies()}
    frames = []
    for group, models in tables.items():
        if group not in known or not known[group].atlas:
            raise ValueError(f"atlas: study {group!r} has no atlas measures; expected one of "
                             f"{sorted(g for g, s in known.items() if s.atlas)}")
        measure = registry.named_function(known[group].atlas)
        for model, paths in models.items():
            frames.append(measure(model, paths, settings).assign(model=model))
    found = pd.concat(frames, ignore_index=True)
    if "class" not in found:
        found["class"] = None
    return found


def layer_frame(layer_tables: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """(model, layer, depth, parameters, type) of every model's layer table."""
    frames = []
    for model, path in layer_tables.items():
        table = files.read_table(path, LAYERS).to_pandas()
        frames.append(pd.DataFrame({
            "model": model, "layer": table["name"], "parameters": table["parameters"],
            "type": table["type"],
            "depth": np.arange(len(table)) / max(len(table) - 1, 1)}))
    return pd.concat(frames, ignore_index=True)


def check_coverage(found: pd.DataFrame) -> None:
    """Refuse a model that a single study covers: its atlas would compare nothing."""
    for model, studies in found.groupby("model")["study"].unique().items():
        if len(studies) < 2:
            raise ValueError(f"atlas: model {model!r} is covered by one study ({studies[0]}); "
                             "expected two or more (add it to another study's models, or drop "
                             "it from atlas.models)")


def summarise(found: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, layer, measure): the mean over draws, its interval, its rank."""
    missing = found.merge(layers, on=["model", "layer"], how="left", indicator=True)
    lost = missing[missing["_merge"] == "left_only"][["model", "layer"]].drop_duplicates()
    if len(lost):
        model, layer = lost.iloc[0]
        raise ValueError(f"atlas: layer {layer!r} of model {model!r} is not in its layer table; "
                         f"expected one of {layers[layers['model'] == model]['layer'].tolist()}")
    rows = []
    keys = ["model", "layer", "measure"]
    for (model, layer, measure), group in found.groupby(keys, sort=False):
        mean, low, high = t_interval(group["value"].tolist())
        first = group.iloc[0]
        rows.append({"model": model, "layer": layer, "measure": measure, "study": first["study"],
                     "level": first["level"], "value": mean, "low": low, "high": high,
                     "n": len(group), "fragile": first["fragile"], "class": first["class"],
                     "source": first["source"]})
    table = pd.DataFrame(rows).merge(layers, on=["model", "layer"])
    table["oriented"] = oriented(table["value"], table["fragile"])
    table["rank"] = table.groupby(["model", "measure"])["oriented"].rank(
        method="min", ascending=False).astype(int)
    table = table.sort_values(["model", "depth", "study", "measure"], kind="stable")
    return table[["model", "layer", "depth", "parameters", "type", "measure", "study", "level",
                  "value", "low", "high", "n", "rank", "fragile", "class", "source"]]


def oriented(values, fragile):
    """Values turned so that larger is more fragile: a "low" measure is negated."""
    return np.where(np.asarray(fragile) == "low", -np.asarray(values, dtype=float),
                    np.asarray(values, dtype=float))


def _replicates(draws: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, layers) means of each layer's draws resampled with replacement; a layer
    with one value keeps it."""
    out = np.empty((n_boot, len(draws)))
    for j, x in enumerate(draws):
        out[:, j] = x[0] if len(x) == 1 else x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    return out


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of a and b (ties averaged); NaN for a constant row.
    Vectorised over bootstrap replicates, which scipy's spearmanr is not."""
    ra, rb = (scipy.stats.rankdata(x, axis=-1) for x in (a, b))
    ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(-1) / np.sqrt((ra ** 2).sum(-1) * (rb ** 2).sum(-1))


def _variables(found: pd.DataFrame, layers: pd.DataFrame) -> dict[str, dict[tuple, np.ndarray]]:
    """measure -> {(model, layer): its oriented draws}, depth and parameters included."""
    found = found.assign(oriented=oriented(found["value"], found["fragile"]))
    variables: dict[str, dict[tuple, np.ndarray]] = {}
    for (measure, model, layer), group in found.groupby(["measure", "model", "layer"], sort=False):
        variables.setdefault(measure, {})[(model, layer)] = group.sort_values("draw")["oriented"].to_numpy()
    for name in DESCRIPTORS:
        variables[name] = {(m, la): np.array([float(v)])
                           for m, la, v in layers[["model", "layer", name]].itertuples(index=False)}
    return variables


def _pair(a: dict, b: dict, n_boot: int, rng: np.random.Generator) -> tuple[float, float, float, int, int]:
    """rho over the layers both variables have, its bootstrap interval (layers resampled
    within each model, draws within each layer), the layer count and usable replicates."""
    common = [key for key in a if key in b]
    if len(common) < 3:
        return np.nan, np.nan, np.nan, len(common), 0
    xa = np.array([a[k].mean() for k in common])
    xb = np.array([b[k].mean() for k in common])
    rho = float(rank_correlation(xa, xb))
    if n_boot == 0:
        return rho, np.nan, np.nan, len(common), 0
    ra = _replicates([a[k] for k in common], n_boot, rng)
    rb = _replicates([b[k] for k in common], n_boot, rng)
    pick = np.empty((n_boot, len(common)), dtype=int)
    models = np.array([k[0] for k in common])
    for model in dict.fromkeys(models):  # resample layers within each model
        where = np.flatnonzero(models == model)
        pick[:, where] = where[rng.integers(0, len(where), (n_boot, len(where)))]
    rows = np.arange(n_boot)[:, None]
    boot = rank_correlation(ra[rows, pick], rb[rows, pick])
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return rho, np.nan, np.nan, len(common), 0
    low, high = np.percentile(boot, [2.5, 97.5])
    return rho, float(low), float(high), len(common), int(boot.size)


def agreement(found: pd.DataFrame, layers: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Spearman's rho of every pair of measures per model and pooled over the models."""
    rows = []
    models = list(dict.fromkeys(found["model"]))
    for model in [*models, POOLED]:
        part = found if model == POOLED else found[found["model"] == model]
        variables = _variables(part, layers[layers["model"].isin(part["model"].unique())])
        rng = np.random.default_rng(network_seed(seed, f"atlas/{model}"))
        names = list(variables)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                rho, low, high, n, used = _pair(variables[a], variables[b], n_boot, rng)
                rows.append({"model": model, "measure_a": a, "measure_b": b, "rho": rho,
                             "low": low, "high": high, "layers": n, "replicates": used})
    return pd.DataFrame(rows, columns=["model", "measure_a", "measure_b", "rho", "low", "high",
                                       "layers", "replicates"])


def write_atlas(tables: Mapping[str, Mapping[str, Mapping[str, str]]],
                layer_tables: Mapping[str, str | os.PathLike], settings: Mapping, dataset: str,
                out: str | os.PathLike, agreement_out: str | os.PathLike) -> pd.DataFrame:
    """The atlas step: every study's measures of the models' layers into `out`, their
    rank agreement into `agreement_out`."""
    found = study_measures(tables, settings)
    check_coverage(found)
    layers = layer_frame(layer_tables)
    table = summarise(found, layers).assign(dataset=dataset)
    agree = agreement(found, layers, int(settings["bootstrap"]), int(settings["seed"]))
    agree = agree.assign(dataset=dataset)
    files.write_table(pa.Table.from_pandas(table, preserve_index=False), out, kind=ATLAS)
    files.write_table(pa.Table.from_pandas(agree, preserve_index=False), agreement_out, kind=AGREEMENT)
    return table
