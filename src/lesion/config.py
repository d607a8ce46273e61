"""Check a study config before anything runs, with one clear message.

JSON-schema validation gives the structure, types and level ranges; the
registries give the names (datasets, the models a dataset can feed, layers).
Every error names the key, the bad value and what is allowed. Torch-free:
Snakemake runs this while it parses the workflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jsonschema
import yaml

from lesion.catalog import DATASET_MODELS, layer_names


class ConfigError(ValueError):
    """The study config is not valid; the message says where and why."""


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _message(error: jsonschema.ValidationError) -> str:
    key, value, kind, rule = _key(error.absolute_path), error.instance, error.validator, error.validator_value
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed))
        return f"unknown key {unknown[0]!r} in {key}; expected one of {allowed}"
    if kind == "required":
        missing = [r for r in rule if r not in value]
        return f"missing key {missing[0]!r} in {key}"
    if kind == "enum":
        return f"{key} = {value!r} is not allowed; expected one of {rule}"
    if kind == "type":
        return f"{key} = {value!r} has the wrong type; expected {rule}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        return f"{key} = {value!r} is out of range; expected a number {bounds[kind]} {rule}"
    if kind == "uniqueItems":
        return f"{key} = {value!r} has duplicates; expected each value once"
    if kind in ("minItems", "minProperties"):
        return f"{key} is empty; expected at least {rule} entry"
    if kind == "anyOf" and key.endswith(".layers"):
        return f"{key} = {value!r}; expected \"all\" or a non-empty list of layer names"
    return f"{key} = {value!r}: {error.message}"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "propertyNames" and error.context:  # a bad mapping key, e.g. a model
        inner = error.context[0]
        return (f"{_key(error.absolute_path)}: {inner.instance!r} is not allowed; expected one of "
                f"{inner.validator_value}")
    return _message(error)


def load_schema(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def check(config: Mapping, schema: Mapping) -> None:
    """Raise ConfigError naming the first problem of `config`, if any."""
    if not isinstance(config, Mapping) or not config:
        raise ConfigError("the config is empty; expected a mapping with keys dataset, models, "
                          "perturbations (see config/config.yaml)")
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(f"config error: {_describe(error)}")
    dataset = config["dataset"]["name"]
    for model, settings in config["models"].items():
        allowed = DATASET_MODELS.get(dataset, ())
        if model not in allowed:
            raise ConfigError(f"config error: models.{model}: dataset {dataset!r} cannot feed "
                              f"model {model!r}; expected one of {list(allowed)}")
        layers = (settings or {}).get("layers", "all")
        if layers != "all":
            valid = layer_names(model)
            for name in layers:
                if name not in valid:
                    raise ConfigError(f"config error: models.{model}.layers: {name!r} is not a "
                                      f"weight layer of {model}; expected \"all\" or some of {valid}")
