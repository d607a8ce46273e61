"""One registry row per model (lesion.catalog.MODELS): everything else agrees with it.

The schema's enums, the config check, the CLI's check of which dataset feeds
which model and the pretrained weights are all derived from the rows; these
tests hold them against the real builders (lesion.models, lesion.data) and
against the schema file itself.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from lesion import catalog, data, models
from lesion.cli.args import check_model_fits
from lesion.config import ConfigError, check, load_schema
from workflow_rules import REPO

SCHEMA_FILE = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_every_catalog_model_is_built_by_the_registry_and_nothing_else_is():
    assert set(catalog.MODELS) == set(models.list_models())
    assert set(catalog.DATASET_SOURCES) == set(data.DATASETS)


def test_the_schema_names_no_model_or_dataset_source_itself_and_gets_them_from_the_catalog():
    raw = yaml.safe_load(SCHEMA_FILE.read_text())["properties"]
    model = "additionalProperties", "properties"
    assert raw["models"][model[0]][model[1]]["arch"]["x-enum"] == "models"
    assert raw["models"][model[0]][model[1]]["train_split"]["x-enum"] == "train_splits"
    assert raw["dataset"]["properties"]["source"]["x-enum"] == "user_sources"
    schema = load_schema(SCHEMA_FILE)["properties"]
    assert schema["models"][model[0]][model[1]]["arch"]["enum"] == list(catalog.MODELS)
    assert schema["models"][model[0]][model[1]]["train_split"]["enum"] == list(catalog.TRAIN_SPLITS)
    assert schema["dataset"]["properties"]["source"]["enum"] == list(catalog.USER_SOURCES)
    # any plain name may be a dataset of one's own: the config check names the built-in ones
    assert "enum" not in schema["dataset"]["properties"]["name"]


# The registries whose names must be written once (in lesion.catalog) and derived elsewhere.
NAMED = {"models": set(catalog.MODELS), "operators": set(catalog.OPERATORS),
         "attacks": set(catalog.ATTACKS), "filters": set(catalog.FILTERS)}
SCHEMA_FILES = [SCHEMA_FILE, *sorted((REPO / "src" / "lesion" / "studies").glob("*/schema.yaml"))]


def _literal_lists(node):
    """Every list written in a YAML document: (the list, its place)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _literal_lists(value)
    elif isinstance(node, list):
        yield node
        for value in node:
            yield from _literal_lists(value)


def test_no_schema_file_writes_a_list_of_catalog_names():
    for path in SCHEMA_FILES:
        for listed in _literal_lists(yaml.safe_load(path.read_text())):
            for kind, names in NAMED.items():
                written = [x for x in listed if isinstance(x, str) and x in names]
                assert len(written) < 2, (f"{path.relative_to(REPO)} lists {kind} {written}: "
                                          f"expected `x-enum: {kind}` (lesion.config.load_schema)")
    fragment = yaml.safe_load((REPO / "src/lesion/studies/perturbation/schema.yaml").read_text())
    assert not set(fragment["properties"]) & NAMED["operators"]  # x-operator-sweeps adds them


def test_no_source_file_writes_a_tuple_of_catalog_names_outside_the_catalog():
    import ast
    import re

    for path in sorted((REPO / "src" / "lesion").rglob("*.py")):
        if path.name == "catalog.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                strings = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                for kind, names in NAMED.items():
                    written = [x for x in strings if x in names]
                    assert len(written) < 2, (f"{path.relative_to(REPO)}:{node.lineno} writes "
                                              f"{kind} {written}; expected lesion.catalog's")
    for path in sorted((REPO / "workflow").rglob("*.smk")):
        text = path.read_text()
        for kind, names in NAMED.items():
            alternatives = "|".join(sorted(names, key=len, reverse=True))
            pair = re.search(rf"\b({alternatives})\b[\"']?\s*[|,]\s*[\"']?\b({alternatives})\b", text)
            assert pair is None, f"{path.relative_to(REPO)} writes {kind} {pair.group(0)!r}"


def test_every_operator_is_a_function_of_perturb_and_every_attack_has_options_in_the_schema():
    from lesion import operators

    assert set(operators.OPERATORS) == set(catalog.OPERATORS)
    for name, function in operators.OPERATORS.items():
        assert function.__name__ == name
    schema = load_schema(SCHEMA_FILE)
    sweeps = schema["properties"]["perturbations"]["properties"]
    for op in catalog.OPERATORS.values():
        assert sweeps[op.name] == {"$ref": f"#/$defs/{op.sweep}"}
    attacks = schema["properties"]["adversarial"]["properties"]["attacks"]["properties"]
    assert list(attacks) == list(catalog.ATTACKS)


def test_no_operator_is_named_none_the_unperturbed_networks_perturbation():
    """predictions/none.parquet is the clean network's, beside predictions/{operator}.parquet
    (workflow/rules/common.smk); the metrics table names it perturbation `none` too."""
    assert "none" not in catalog.OPERATORS


def test_the_views_of_the_rows_agree_with_the_rows():
    for name, row in catalog.MODELS.items():
        assert catalog.LAYER_COUNTS[name] == (row.conv, row.fc)
        assert len(catalog.layer_names(name)) == row.conv + row.fc
        assert catalog.PRETRAINED_WEIGHTS.get(name) == row.weights
        for dataset in catalog.DATASET_SOURCES:
            assert (name in catalog.DATASET_MODELS[dataset]) == (dataset in row.datasets)
    # a dataset of pretrained networks feeds exactly the models with weights
    assert set(catalog.DATASET_MODELS["imagenet"]) == set(catalog.PRETRAINED_WEIGHTS)
    # a dataset of one's own feeds exactly the networks the DAG trains
    assert set(catalog.USER_DATASET_MODELS) == set(catalog.MODELS) - set(catalog.PRETRAINED_WEIGHTS)
    assert catalog.dataset_models("my-photos") == catalog.USER_DATASET_MODELS
    assert catalog.dataset_models("digits") == catalog.DATASET_MODELS["digits"]


@pytest.mark.parametrize("model", list(catalog.MODELS))
def test_config_check_and_cli_accept_a_model_exactly_on_its_datasets(model):
    schema = load_schema(SCHEMA_FILE)
    base = {"dataset": {"name": "digits"}, "models": {}, "perturbations": {
        "gaussian": {"levels": [0.1], "draws": 1}}}
    for dataset in catalog.DATASET_SOURCES:
        config = copy.deepcopy(base)
        config["dataset"]["name"] = dataset
        config["models"][model] = {"layers": "all"}
        fits = dataset in catalog.MODELS[model].datasets
        if fits:
            check(config, schema)
            check_model_fits(model, dataset)
        else:
            with pytest.raises(ConfigError, match=f"cannot feed architecture '{model}'"):
                check(config, schema)
            with pytest.raises(ValueError, match=f"cannot feed architecture '{model}'"):
                check_model_fits(model, dataset)


@pytest.mark.parametrize("model", list(catalog.MODELS))
def test_config_check_and_cli_accept_on_a_dataset_of_ones_own_exactly_the_trained_models(
        model, tmp_path):
    save_file({"images": np.zeros((8, 1, 4, 4), np.float32),
               "labels": np.array([0, 1] * 4, np.int64)}, str(tmp_path / "x.safetensors"))
    config = {"dataset": {"name": "mine", "source": "tensors",
                          "path": str(tmp_path / "x.safetensors")},
              "models": {model: {}}, "perturbations": {"gaussian": {"levels": [0.1], "draws": 1}}}
    if model in catalog.USER_DATASET_MODELS:
        check(config, load_schema(SCHEMA_FILE))
        check_model_fits(model, "mine")
    else:
        with pytest.raises(ConfigError, match=f"dataset 'mine' cannot feed architecture '{model}'"):
            check(config, load_schema(SCHEMA_FILE))
        with pytest.raises(ValueError, match=f"cannot feed architecture '{model}'"):
            check_model_fits(model, "mine")


def test_a_model_unknown_to_the_catalog_is_refused_with_the_catalogs_names():
    config = {"dataset": {"name": "digits"}, "models": {"lenet": {}},
              "perturbations": {"gaussian": {"levels": [0.1], "draws": 1}}}
    with pytest.raises(ConfigError) as err:
        check(config, load_schema(SCHEMA_FILE))
    assert "'lenet'" in str(err.value) and str(list(catalog.MODELS)) in str(err.value)
