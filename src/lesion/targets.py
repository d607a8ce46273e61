"""Files a study's config can make: a target asked for by path is checked before
Snakemake plans it.

`snakemake results/digits/cnn/predictions/bitflip.parquet` asks for a sweep the
config does not define (no `bitflip` under perturbations; for the variant weights
of one layer, `variant_weights/gaussian/fc3`, a layer the model lacks). The
wildcard constraints (workflow/rules/common.smk) keep such a
path from matching a rule, so Snakemake can only say "No rule to produce";
`problem` says why, naming the config key to change. Given what the rules can
make, it names the other files no rule makes as well: a model not in the config
(`results/digits/resnet/metrics.parquet`), a misspelt name with the nearest real
one (`figures/performance.png`, did you mean `performances.png`). Torch-free.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping

from lesion.catalog import OPERATOR_LEVELS, layer_names

# The files of one sweep step (an operator on every layer it sweeps) under the study's
# results directory: its variants and predictions (on the test split, or on one of the
# model's adversarial sets), and (on demand) one layer's variant weights.
SWEEP_FILE = re.compile(r"(?P<dataset>[^/]+)/(?P<model>[^/]+)/"
                        r"(?:testsets/(?P<testset>[^/]+)/(?=predictions/))?"
                        r"(?P<kind>variants|predictions)/(?P<perturbation>[^/]+)\.parquet")
VARIANT_WEIGHTS = re.compile(r"(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?P<kind>variant_weights)/"
                             r"(?P<perturbation>[^/]+)/(?P<layer>[^/]+)/?")
# A table of one (operator, layer), as lesion wrote them before one table held every layer.
LAYER_TABLE = re.compile(r"(?P<table>[^/]+/[^/]+/(?:testsets/[^/]+/)?(?:variants|predictions)/"
                         r"[^/]+)/(?P<layer>[^/]+)\.parquet")


def sweep_layers(config: Mapping, model: str) -> list[str] | None:
    """The layers the config sweeps in `model` (`layers: all` is every one); None for a
    brought network's `all`, known only once its layer table is built (rule layers)."""
    from lesion.config import architecture, brought

    settings = config["models"][model] or {}
    layers = settings.get("layers", "all")
    if layers == "all" and brought(settings):
        return None
    return layer_names(architecture(model, settings)) if layers == "all" else list(layers)


def problem(target: str, config: Mapping, can_make: Callable[[str], bool] | None = None,
            names: Iterable[str] = ()) -> str | None:
    """Why the checked, canonical `config` cannot make `target`, or None when it can.

    Without `can_make` only a sweep's files are judged (None for any other file). With it
    (whether a rule makes a path, relative to the study's directory), a file under the
    results directory that no rule makes is named too, with the nearest of `names` (file
    names the study makes) where one is close."""
    from lesion.config import brought, study_roots

    results = study_roots(config)[0]
    path = os.path.relpath(target) if os.path.isabs(target) else os.path.normpath(target)
    path = path.replace(os.sep, "/")
    if not path.startswith(results + "/"):
        if path.startswith("results/") and config.get("study"):
            return (f"{target}: not a file of study {config['study']!r}; expected a path under "
                    f"{results}/ (this config's `study` names its results directory)")
        return None
    inside = path[len(results) + 1:]
    if old := LAYER_TABLE.fullmatch(inside):
        return (f"{target}: one table holds every layer an operator sweeps; expected "
                f"{results}/{old['table']}.parquet (its rows of layer {old['layer']!r})")
    found = SWEEP_FILE.fullmatch(inside) or VARIANT_WEIGHTS.fullmatch(inside)
    if found is None:
        return None if can_make is None else _unmade(target, results, inside, config, can_make, names)
    dataset, model, operator = found.group("dataset", "model", "perturbation")
    if found["kind"] == "predictions" and operator == "none":
        return None  # the unperturbed network's predictions (rule predict_clean)
    operators = [p for p in OPERATOR_LEVELS if p in config.get("perturbations", {})]
    if dataset != config["dataset"]["name"]:
        return (f"{target}: dataset {dataset!r} is not this study's; expected "
                f"{results}/{config['dataset']['name']}/... (dataset.name in the config)")
    if model not in config["models"]:
        return (f"{target}: model {model!r} is not in the config; expected one of "
                f"{list(config['models'])} (or add it under models:)")
    if operator not in operators:
        return (f"{target}: operator {operator!r} is not in the config; expected one of "
                f"{operators} (or add it under perturbations:, with its levels and draws)")
    testsets = (config.get("perturbations") or {}).get("testsets", [])
    if found["kind"] == "predictions" and found["testset"] not in (None, *testsets):
        return (f"{target}: test set {found['testset']!r} is not in the config; expected one "
                f"of {testsets} (or add it under perturbations.testsets)")
    if found["kind"] != "variant_weights":
        return None  # a sweep step's table: every layer the config sweeps
    layer = found["layer"]
    layers = sweep_layers(config, model)
    if layers is None:  # a brought network: its layers are checked by the step itself
        return None
    if layer not in layers and brought(config["models"][model]):
        return (f"{target}: {layer!r} is not among the layers the config sweeps in {model!r}; "
                f"expected one of {layers} (models.{model}.layers)")
    if layer not in layers:
        from lesion.config import architecture

        arch = architecture(model, config["models"][model] or {})
        why = ("not a weight layer of " if layer not in layer_names(arch)
               else "not among the layers the config sweeps in ")
        return (f"{target}: {layer!r} is {why}{model!r}; expected one of {layers} "
                f"(models.{model}.layers)")
    return None


def _unmade(target: str, results: str, inside: str, config: Mapping,
            can_make: Callable[[str], bool], names: Iterable[str]) -> str | None:
    """Why no rule makes RESULTS/`inside` (asked for as `target`), or None when one does: the
    dataset or model directory, when another one's makes it; else the nearest file name."""
    if can_make(f"{results}/{inside}"):
        return None
    dataset, models = config["dataset"]["name"], list(config["models"])
    first, *rest = inside.split("/")
    if first != dataset and rest and can_make("/".join([results, dataset, *rest])):
        return (f"{target}: dataset {first!r} is not this study's; expected "
                f"{results}/{dataset}/... (dataset.name in the config)")
    if len(rest) >= 2 and rest[0] not in models and any(
            can_make("/".join([results, dataset, model, *rest[1:]])) for model in models):
        return (f"{target}: model {rest[0]!r} is not in the config; expected one of "
                f"{models} (or add it under models:)")
    folder, _, name = f"{results}/{inside}".rpartition("/")
    if name.endswith(".svg") and can_make(f"{folder}/{name[:-4]}.png"):
        return (f"{target}: figures are written as PNG and PDF only; expected figures.svg: true "
                "in the config for SVG beside them")
    for near in difflib.get_close_matches(name, sorted(set(names)), n=3):
        if can_make(f"{folder}/{near}"):
            return f"{target}: no rule makes {name!r}; did you mean {folder}/{near}?"
    return (f"{target}: no rule of this study makes it; expected a file its rules make "
            "(`snakemake --dry-run` lists the default targets)")
