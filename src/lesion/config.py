"""Check a study config before anything runs, with one clear message.

JSON-schema validation gives the structure, types and level ranges; the
registries give the names (datasets, the models a dataset can feed, layers).
Every error names the key, the bad value and what is allowed. Torch-free:
Snakemake runs this while it parses the workflow.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath, PureWindowsPath

import jsonschema
import yaml

from lesion.catalog import (
    ATTACKS,
    DATASET_SOURCES,
    FILTERS,
    MODELS,
    OPERATORS,
    PRECISIONS,
    TRAIN_SPLITS,
    USER_SOURCES,
    dataset_models,
    layer_names,
)

# Where a study may write, relative to the project directory.
OUTPUT_ROOTS = ("results", "resources", "logs", "benchmarks")
# The engine's config values that become part of output paths (a name in a file or
# directory name); `*` matches every key of a mapping, `[]` every list item. Each
# study adds its own (lesion.registry.Study.path_names).
PATH_NAMES = ("study", "dataset.name", "models.*", "models.*.layers[]")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_TYPES = {"array": "a list", "object": "a mapping", "integer": "an integer", "number": "a number",
          "string": "a string", "boolean": "true or false", "null": "nothing"}


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
        return f"unknown key {unknown[0]!r} in {key}; expected one of {allowed}{_guess(unknown[0], allowed)}"
    if kind == "required":
        missing = [r for r in rule if r not in value]
        described = {name: _first_sentence(error.schema.get("properties", {}).get(name, {}))
                     for name in missing}
        what = "; ".join(f"{name}: {text}" if text else name for name, text in described.items())
        keys = ", ".join(repr(name) for name in missing)
        hint = ""
        if key == "the top level" and value:  # a file of a few keys given alone
            hint = (" (a --configfile replaces config/config.yaml; for an overlay on the default "
                    "give both: --configfile config/config.yaml overlay.yaml, or make study "
                    "CONFIG=\"config/config.yaml overlay.yaml\")")
        return (f"missing key{'s' if len(missing) > 1 else ''} {keys} in {key}; "
                f"expected {what}{hint}")
    if kind == "enum":
        guess = _guess(value, rule) if isinstance(value, str) else ""
        return f"{key} = {value!r} is not allowed; expected one of {rule}{guess}"
    if kind == "type":
        expected = " or ".join(_TYPES.get(t, t) for t in ([rule] if isinstance(rule, str) else rule))
        return f"{key} = {value!r} has the wrong type; expected {expected}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        number = "an integer" if error.schema.get("type") == "integer" else "a number"
        return f"{key} = {value!r} is out of range; expected {number} {bounds[kind]} {rule}"
    if kind == "uniqueItems":
        return f"{key} = {value!r} has duplicates; expected each value once"
    if kind in ("minItems", "minProperties") and not value:
        return f"{key} is empty; expected at least {rule} entry"
    if kind in ("minItems", "maxItems"):
        bound = "at least" if kind == "minItems" else "at most"
        return f"{key} = {value!r} has {len(value)} entries; expected {bound} {rule}"
    if kind == "not" and "const" in rule:  # a reserved name, e.g. the regime "base"
        return f"{key} = {value!r} is reserved; expected any other name than {rule['const']!r}"
    if kind == "anyOf" and key.endswith(".layers"):
        return f"{key} = {value!r}; expected \"all\" or a non-empty list of layer names"
    return f"{key} = {value!r}: {error.message}"


def _first_sentence(schema: Mapping) -> str:
    """A key's schema description up to its first full stop (what the key is, in one clause),
    else its type."""
    text = " ".join(str(schema.get("description", "")).split())
    if not text and isinstance(schema.get("type"), str):
        return _TYPES.get(schema["type"], schema["type"])
    return text.split(". ")[0].rstrip(".")


def _guess(word: str, allowed) -> str:
    close = difflib.get_close_matches(word, [str(a) for a in allowed], n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "propertyNames" and error.context:  # a bad mapping key, e.g. a model
        inner = error.context[0]
        return (f"{_key(error.absolute_path)}: {inner.instance!r} is not allowed; expected one of "
                f"{inner.validator_value}{_guess(inner.instance, inner.validator_value)}")
    return _message(error)


def _values(config, pattern: str) -> Iterator[tuple[str, object]]:
    """(dotted key, value) of every config value `pattern` names (see PATH_NAMES).

    A `*` that ends the pattern yields the mapping's keys themselves (names
    such as a model's, under the mapping's own key), a `*` inside it descends
    into every value.
    """
    found: list[tuple[str, object]] = [("", config)]
    parts = pattern.split(".")
    for i, part in enumerate(parts):
        name, many, last = part.removesuffix("[]"), part.endswith("[]"), i == len(parts) - 1
        step: list[tuple[str, object]] = []
        for key, node in found:
            if not isinstance(node, Mapping):
                continue
            pairs = list(node.items()) if name == "*" else [(name, node[name])] if name in node else []
            for k, v in pairs:
                sub = f"{key}.{k}" if key else str(k)
                if many:
                    step += [(f"{sub}[{j}]", x) for j, x in enumerate(v)] if isinstance(v, list) else []
                else:
                    step.append((key, k) if name == "*" and last else (sub, v))
        found = step
    return iter(found)


def check_paths(config: Mapping) -> None:
    """Refuse config values that could make the workflow write outside OUTPUT_ROOTS.

    Names that end up in file names must be plain names (no `/`, no `..`);
    output paths must be relative and stay inside results/, resources/,
    logs/ or benchmarks/ after `..` is resolved.
    """
    from lesion.registry import studies

    patterns = [*PATH_NAMES, *(p for s in studies() for p in s.path_names)]
    for pattern in patterns:
        for key, value in _values(config, pattern):
            if isinstance(value, str) and not (_NAME.fullmatch(value) and ".." not in value):
                raise ConfigError(
                    f"config error: {key} = {value!r} cannot be used in a file name; expected a "
                    "plain name (letters, digits, '_', '-', '.', '+'; no '/' or '..'), so that "
                    f"outputs stay inside {', '.join(r + '/' for r in OUTPUT_ROOTS)}")


def confined(path: str | os.PathLike, roots: tuple[str, ...] = OUTPUT_ROOTS) -> bool:
    """Whether a relative `path` stays inside one of `roots` once `..` is resolved."""
    text = os.fspath(path)
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).drive or text.startswith("~"):
        return False
    parts: list[str] = []
    for part in PurePosixPath(text.replace("\\", "/")).parts:
        if part == "..":
            if not parts:
                return False
            parts.pop()
        elif part != ".":
            parts.append(part)
    return len(parts) >= 1 and parts[0] in roots


def _read_yaml(path: str | os.PathLike):
    """A YAML file read with libyaml's safe loader where PyYAML was built with it (10x
    faster: Snakemake reads the schema at every start), else the pure-Python one; both
    construct the same values."""
    with open(path) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_schema(path: str | os.PathLike) -> dict:
    """The config schema: the engine's keys (`path`), each study's section from its package
    (lesion.registry), and the name enums filled in from lesion.catalog."""
    from lesion.registry import studies

    schema = _read_yaml(path)
    props = schema["properties"]
    for study in studies():
        section = _read_yaml(study.schema_file)
        for name, definition in section.pop("$defs", {}).items():  # `#/$defs/...` refs resolve
            if name in schema["$defs"]:
                raise ValueError(f"{study.schema_file}: $defs.{name} is defined already; "
                                 "expected a name of the study's own")
            schema["$defs"][name] = definition
        props[study.section] = {"x-study": True, **section}
    _fill(schema)
    return schema


# The lists of lesion.catalog a schema names with `x-enum: NAME` (after its own `enum`, if any).
ENUMS: dict[str, tuple[str, ...]] = {
    "attacks": ATTACKS, "filters": FILTERS, "models": tuple(MODELS),
    "operators": tuple(OPERATORS), "precisions": PRECISIONS, "train_splits": TRAIN_SPLITS,
    "user_sources": USER_SOURCES}


def _fill(node) -> None:
    """Fill in, in place and at any depth, every `x-enum: NAME` (ENUMS), every
    `x-default: NAME` (a default of every name of ENUMS[NAME]) and every
    `x-operator-sweeps: true` (a property per operator of the catalog, its sweep's $defs)."""
    if isinstance(node, list):
        for item in node:
            _fill(item)
    if not isinstance(node, dict):
        return
    if "x-enum" in node:
        node["enum"] = [*node.get("enum", []), *ENUMS[node.pop("x-enum")]]
    if "x-default" in node:
        node["default"] = list(ENUMS[node.pop("x-default")])
    if node.pop("x-operator-sweeps", False):
        props = node.setdefault("properties", {})
        for op in OPERATORS.values():
            props[op.name] = {"$ref": f"#/$defs/{op.sweep}"}
    for value in node.values():
        _fill(value)


def _resolve(schema: Mapping, root: Mapping) -> Mapping:
    """Follow a local `$ref` ("#/$defs/name"), the only kind the schema uses."""
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def canonical(value, schema: Mapping, root: Mapping | None = None):
    """`value` (a checked config) in one spelling: defaults filled in, keys sorted,
    integers as int and other numbers as float.

    Snakemake reruns a job when the text of its params changes, so a config
    written back in another key order, with `40.0` for `40`, or with a
    default spelled out must give the same params: rules take their params
    from the canonical config only.
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    kind = schema.get("type")
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key in value:
            sub = props.get(key, extra if isinstance(extra, Mapping) else {})
            out[key] = canonical(value[key], sub, root)
        for key, sub in props.items():
            default = _resolve(sub, root).get("default", sub.get("default"))
            if key not in out and default is not None:
                out[key] = canonical(copy.deepcopy(default), sub, root)
        return dict(sorted(out.items()))
    if isinstance(value, list):
        items = schema.get("items", {})
        return [canonical(v, items, root) for v in value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if kind == "integer" and float(value).is_integer():
        return int(value)
    if kind == "number":
        return float(value)
    if "anyOf" in schema:  # e.g. bit indices (integers) among field names
        return int(value) if float(value).is_integer() else value
    return value


def check(config: Mapping, schema: Mapping) -> None:
    """Raise ConfigError naming the first problem of `config`, if any."""
    if not isinstance(config, Mapping) or not config:
        raise ConfigError("the config is empty; expected a mapping with keys dataset, models "
                          "and a study section such as perturbations (see config/config.yaml)")
    check_paths(config)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(f"config error: {_describe(error)}")
    studies = [key for key, sub in schema["properties"].items() if sub.get("x-study")]
    if not any(key in config for key in studies):
        raise ConfigError(f"config error: no study in the config; expected at least one of the "
                          f"sections {studies} (each switches its study on)")
    dataset = config["dataset"]["name"]
    if config.get("study") in (*DATASET_SOURCES, dataset):
        raise ConfigError(f"config error: study = {config['study']!r} is a dataset's name, so "
                          f"results/{config['study']}/ would hold two studies; expected another "
                          f"name (not one of {list(dict.fromkeys([*DATASET_SOURCES, dataset]))})")
    _check_dataset(config["dataset"], schema)
    for model, settings in config["models"].items():
        settings = settings or {}
        if brought(settings):
            _check_brought(config, model, settings)
            if "weights" not in settings:  # trained: its layers are known from its graph only
                _check_training(config, schema, model, None, settings.get("train", {}))
            continue
        if "normalize" in settings:
            raise ConfigError(f"config error: models.{model}.normalize: lesion's own networks "
                              "normalise nothing (ImageNet's carry their weights' mean and std); "
                              "expected normalize only beside a source")
        arch = architecture(model, settings)
        allowed = dataset_models(dataset)
        if arch not in allowed:
            raise ConfigError(f"config error: models.{model}: dataset {dataset!r} cannot feed "
                              f"architecture {arch!r}; expected one of {list(allowed)}")
        layers = settings.get("layers", "all")
        if layers != "all":
            valid = layer_names(arch)
            for name in layers:
                if name not in valid:
                    raise ConfigError(f"config error: models.{model}.layers: {name!r} is not a "
                                      f"weight layer of {arch}; expected \"all\" or some of {valid}")
        _check_training(config, schema, model, arch, settings.get("train", {}))
    _check_starts(config)
    _check_figures(config.get("figures") or {})
    _check_studies(config, schema)


def _check_figures(section: Mapping) -> None:
    """What the schema cannot say of figures: an accuracy axis runs upwards."""
    if "accuracy_axis" in section:
        low, high = section["accuracy_axis"]
        if not low < high:
            raise ConfigError(f"config error: figures.accuracy_axis = {list(section['accuracy_axis'])}: "
                              "expected [low, high] with low < high, such as [0, 1]")


def _check_studies(config: Mapping, schema: Mapping) -> None:
    """Each study in the config: its model lists name models, then its own checks across
    keys (lesion.registry.Study.check), on the config with its defaults filled in."""
    from lesion.registry import studies

    full = None
    known = list(config["models"])
    for study in studies():
        if study.section not in config:
            continue
        for pattern in study.model_lists:
            for key, name in _values(config, pattern):
                if name not in known:
                    raise ConfigError(f"config error: {key} = {name!r} is not a model of this "
                                      f"study; expected one of {known}{_guess(name, known)}")
        if study.check:
            full = canonical(config, schema) if full is None else full
            study.check_config(full)


def dataset_source(section: Mapping) -> str:
    """Where the config's dataset comes from: a built-in one's catalog source (export,
    download, directory) or a dataset of one's own's `source` (folder, tensors)."""
    return DATASET_SOURCES.get(section["name"]) or section["source"]


def _check_dataset(section: Mapping, schema: Mapping) -> None:
    """A built-in dataset takes no source or size; any other name is a dataset of one's
    own, whose files are listed and checked now (lesion.userdata), before any job runs."""
    from lesion import userdata

    name = section["name"]
    if name in DATASET_SOURCES:
        for key in ("source", "size"):
            if key in section:
                raise ConfigError(f"config error: dataset.{key} = {section[key]!r}: {name!r} is a "
                                  f"built-in dataset; expected no {key} (a dataset of your own "
                                  "takes another name)")
        return
    if "source" not in section:
        raise ConfigError(f"config error: dataset.name = {name!r} is not a built-in dataset; "
                          f"expected one of {list(DATASET_SOURCES)}"
                          f"{_guess(name, list(DATASET_SOURCES))}, or a dataset of your own with "
                          f"dataset.source ({' or '.join(USER_SOURCES)}) and dataset.path")
    if "path" not in section:
        raise ConfigError(f"config error: missing key 'path' in dataset; expected the "
                          f"{'directory' if section['source'] == 'folder' else 'file'} of "
                          f"dataset {name!r} (source {section['source']})")
    if section["source"] == "folder" and "size" not in section:
        raise ConfigError("config error: missing key 'size' in dataset; expected [height, width] "
                          "of the images after resizing and cropping (source folder)")
    if section["source"] == "tensors" and "size" in section:
        raise ConfigError(f"config error: dataset.size = {section['size']!r}: the images of a "
                          "tensors file are used at their size; expected no size")
    try:
        if section["source"] == "folder":
            listed = userdata.folder(section["path"])
            labels = [y for _, y in listed.splits.get("all", [])]
        else:
            labels = userdata.tensors_file(section["path"]).labels.get("all", [])
        if labels:
            default = schema["properties"]["dataset"]["properties"]["test_fraction"]["default"]
            userdata.check_splittable(labels, section.get("test_fraction", default),
                                      f"dataset.path = {section['path']!r}")
    except userdata.DataError as err:
        raise ConfigError(f"config error: {err}") from None


def study_roots(config: Mapping) -> tuple[str, str, str]:
    """Where a study writes: its results, logs and benchmarks directories.

    A config without `study` writes to results/, logs/ and benchmarks/ (the
    default study's paths); `study: NAME` to results/NAME/, logs/NAME/ and
    benchmarks/NAME/, so two configs run in one checkout never overwrite each
    other's files.
    """
    name = config.get("study")
    return tuple(f"{root}/{name}" if name else root for root in ("results", "logs", "benchmarks"))


def brought(settings: Mapping | None) -> bool:
    """Whether a config model is a network lesion does not describe (a `source` other than
    lesion:): its layers are named by module path, its weights imported or trained."""
    source = (settings or {}).get("source", "")
    return bool(source) and not source.startswith("lesion:")


def _check_brought(config: Mapping, model: str, settings: Mapping) -> None:
    """A `source` network: imported from its weights, or without weights trained by the DAG
    from its random initialisation; studied where the studies allow."""
    if "arch" in settings:
        raise ConfigError(f"config error: models.{model}: both arch and source; expected one "
                          "(source: lesion:<arch> is the same as arch)")
    if "pretrain" in settings:
        raise ConfigError(f"config error: models.{model}.pretrain: only lesion's ae400_10 is "
                          "pretrained as an autoencoder; expected no pretrain beside source")
    if "weights" in settings:
        for key in ("train", "train_split"):
            if key in settings:
                raise ConfigError(f"config error: models.{model}.{key}: a network brought with "
                                  f"its weights is imported as it is, not trained; expected no "
                                  f"{key} beside source and weights (leave weights out to train it)")
        if not os.path.isfile(settings["weights"]):
            raise ConfigError(f"config error: models.{model}.weights = {settings['weights']!r}: "
                              "no such file; expected the network's weights (.safetensors, .pt, "
                              ".pth)")
    elif config["dataset"]["name"] == "imagenet":
        raise ConfigError(f"config error: models.{model}: source {settings['source']!r} without "
                          "weights on imagenet, which has no training split; expected weights: "
                          "<file> (the network is imported as it is)")
    if settings["source"].startswith("python:") and not os.path.isdir(settings.get("path", ".")):
        raise ConfigError(f"config error: models.{model}.path = {settings['path']!r}: no such "
                          "directory; expected the directory of the source's module")


def imported(config: Mapping, model: str) -> bool:
    """Whether config model `model` is a network imported with its weights (never trained)."""
    settings = config["models"].get(model) or {}
    return brought(settings) and "weights" in settings


def refuse_imported(config: Mapping, key: str, models, why: str) -> None:
    """Raise ConfigError when one of `models` (listed at config `key`) is imported with its
    weights, for a study that must train it (`why` says what the study does)."""
    for model in models:
        if imported(config, model):
            raise ConfigError(f"config error: {key}: {model!r} is imported with its weights and "
                              f"never trained, and {why}; expected a network the DAG trains "
                              f"there (leave out models.{model}.weights to train it)")


def architecture(model: str, settings: Mapping) -> str:
    """The registry architecture of config model `model`: its `arch`, else its own name
    (a `source: lesion:<arch>` names it too)."""
    source = settings.get("source", "")
    if source.startswith("lesion:"):
        settings = {**settings, "arch": source.removeprefix("lesion:")}
    arch = settings.get("arch", model)
    if arch not in MODELS:
        raise ConfigError(f"config error: models.{model}: {model!r} is not a registry "
                          f"architecture, so it needs an `arch`; expected one of {list(MODELS)}"
                          f"{_guess(model, list(MODELS))}")
    return arch


def _check_starts(config: Mapping) -> None:
    """One way for a model's training to start."""
    for model, settings in config["models"].items():
        if "pretrain" in (settings or {}) and (settings.get("train") or {}).get("init"):
            raise ConfigError(f"config error: models.{model}: both pretrain and train.init; "
                              "expected one way for its training to start")


def _check_training(config: Mapping, schema: Mapping, model: str, arch: str | None,
                    own: Mapping) -> None:
    """A model's frozen layers exist (a brought network's, arch None, are checked by the
    step), and the shared checkpoints fall within its epochs."""
    valid = layer_names(arch) if arch else []
    for name in own.get("freeze", []) if arch else []:
        if name not in valid:
            raise ConfigError(f"config error: models.{model}.train.freeze: {name!r} is not a "
                              f"weight layer of {arch}; expected some of {valid}")
    default = schema["$defs"]["train"]["properties"]["epochs"]["default"]
    epochs = own.get("epochs", config.get("train", {}).get("epochs", default))
    late = [e for e in config.get("train", {}).get("checkpoints", []) if e > epochs]
    if late:
        raise ConfigError(f"config error: train.checkpoints: epoch {late[0]} is after the last "
                          f"epoch of {model} ({epochs}); expected epochs in 1..{epochs}")


def check_writable(project: str | os.PathLike = ".") -> None:
    """Refuse to start when an output root (results/, logs/, ...) cannot be written.

    Checked before any job runs, so a study never half-runs into a wall; a
    root that does not exist yet is fine when the project directory is writable.
    """
    for root in OUTPUT_ROOTS:
        path = os.path.join(project, root)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise ConfigError(f"{path}: exists but is not a directory; expected a directory the "
                              f"study can write its {root} to (move the file away)")
        where = path if os.path.isdir(path) else project
        if not os.access(where, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: not writable; expected a directory the study can write "
                              f"its {root} to")


def command_line_values(entries: list[str] | None) -> dict:
    """`snakemake --config KEY=VALUE ...` entries read as a config file reads them.

    Snakemake reads a nested VALUE with YAML's BaseLoader, which leaves every
    scalar a string (`perturbations={gaussian: {draws: 10}}` gives draws '10',
    which the check refuses); here VALUE is read with yaml.safe_load, so text
    means the same on the command line as in a config file. An entry that is
    not KEY=VALUE or not YAML is left to Snakemake's own reading.
    """
    values = {}
    for entry in entries or []:
        key, sep, text = entry.partition("=")
        if not sep:
            continue
        try:
            values[key] = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            continue
    return values
