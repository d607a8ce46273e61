"""The config check: every mistake of issue #2's list stops with one message
naming the key, the bad value and what is allowed. The same check runs inside
Snakemake (common.smk); tests/test_bad_inputs.py drives it through snakemake."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lesion.config import ConfigError, check, load_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def broken(edit) -> dict:
    config = copy.deepcopy(DEFAULT)
    edit(config)
    return config


def test_the_default_study_is_valid():
    check(DEFAULT, SCHEMA)


CASES = {
    "unknown model": (lambda c: c["models"].update(lenet={}), ["models", "'lenet'", "'cnn'", "'mlp'"]),
    "unknown operator": (lambda c: c["perturbations"].update(dropout={"levels": [0.1], "draws": 1}),
                         ["perturbations", "'dropout'", "synapse_knockout"]),
    "unknown layer": (lambda c: c["models"]["cnn"].update(layers=["conv1", "fc7"]),
                      ["models.cnn.layers", "'fc7'", "['conv1', 'conv2', 'fc1', 'fc2']"]),
    "unknown dataset": (lambda c: c["dataset"].update(name="svhn"), ["dataset.name", "'svhn'", "digits"]),
    "fraction above 1": (lambda c: c["perturbations"]["node_knockout"].update(levels=[0.5, 1.5]),
                         ["perturbations.node_knockout.levels[1]", "1.5", "<= 1"]),
    "negative noise": (lambda c: c["perturbations"]["gaussian"].update(levels=[-0.1]),
                       ["perturbations.gaussian.levels[0]", "-0.1", ">= 0"]),
    "zero draws": (lambda c: c["perturbations"]["redraw"].update(draws=0),
                   ["perturbations.redraw.draws", "0", ">= 1"]),
    "misspelt key": (lambda c: c.update(perturbation=c.pop("perturbations")),
                     ["'perturbation'", "perturbations"]),
    "levels as a string": (lambda c: c["perturbations"]["gaussian"].update(levels="0.1, 0.2"),
                           ["perturbations.gaussian.levels", "'0.1, 0.2'", "a list"]),
    "duplicate levels": (lambda c: c["perturbations"]["gaussian"].update(levels=[0.1, 0.1]),
                         ["perturbations.gaussian.levels", "duplicates"]),
    "model the dataset cannot feed": (lambda c: c["models"].update(resnet18={}),
                                      ["models.resnet18", "'digits'", "'cnn'"]),
}


@pytest.mark.parametrize("case", CASES)
def test_mistakes_name_key_value_and_what_is_allowed(case):
    edit, words = CASES[case]
    with pytest.raises(ConfigError) as err:
        check(broken(edit), SCHEMA)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"
