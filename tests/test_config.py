"""The config check: every mistake of issue #2's list stops with one message
naming the key, the bad value and what is allowed. The same check runs inside
Snakemake (common.smk); tests/test_bad_inputs.py drives it through snakemake."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from lesion.config import ConfigError, canonical, check, load_schema, study_roots

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
    "unknown frozen layer": (lambda c: c["models"]["mlp"].update(train={"freeze": ["fc9"]}),
                             ["models.mlp.train.freeze", "'fc9'", "['fc1', 'fc2', 'fc3']"]),
    "checkpoint after the last epoch": (lambda c: c["train"].update(checkpoints=[5, 99]),
                                        ["train.checkpoints", "epoch 99", "1..40"]),
    "unknown precision": (lambda c: c["evaluate"].update(precision="fp16"),
                          ["evaluate.precision", "'fp16'", "['ieee', 'tf32']"]),
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
    "study name with a slash": (lambda c: c.update(study="a/b"),
                                ["study", "'a/b'", "plain name", "results/"]),
    "study named like a dataset": (lambda c: c.update(study="mnist"),
                                   ["study", "'mnist'", "dataset", "'digits'"]),
    "study name not a string": (lambda c: c.update(study=7), ["study", "7", "a string"]),
    # every missing key at once, each with its schema description's first clause (or its type)
    "two missing keys of a section": (
        lambda c: [c["filtering"].pop(k) for k in ("epochs", "retraining")],
        ["missing keys 'epochs', 'retraining' in filtering", "epochs: Checkpoints to filter, by epoch",
         "retraining: Selective retraining from some checkpoints"]),
    "a sweep without levels": (lambda c: c["perturbations"]["gaussian"].pop("levels"),
                               ["missing key 'levels' in perturbations.gaussian", "levels: a list"]),
    # an overlay given alone, in the place of the whole config
    "an overlay alone": (lambda c: [c.clear(), c.update(perturbations={"gaussian": {"draws": 10}})],
                         ["missing keys 'dataset', 'models' in the top level",
                          "models: The study's networks by name",
                          "a --configfile replaces config/config.yaml",
                          "--configfile config/config.yaml overlay.yaml"]),
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


# --- canonical params ---------------------------------------------------------

def test_a_named_study_writes_under_its_own_name_and_the_default_where_it_always_did():
    assert study_roots(DEFAULT) == ("results", "logs", "benchmarks")
    assert study_roots({**DEFAULT, "study": "cnn-only"}) == (
        "results/cnn-only", "logs/cnn-only", "benchmarks/cnn-only")


def test_canonical_fills_defaults_sorts_keys_and_normalises_numbers():
    schema = SCHEMA
    written = {"perturbations": {"gaussian": {"draws": 2.0, "levels": [1, 0.5]}},
               "models": {"mlp": {"train": {"epochs": 5.0}}}, "dataset": {"name": "digits"},
               "train": {"learning_rate": 1}}
    out = canonical(written, schema)
    assert list(out) == sorted(out)
    assert out["seed"] == 0 and out["device"] == "auto"            # defaults filled in
    assert out["evaluate"] == {"batch_size": 512, "cache_gb": 4.0, "precision": "ieee",
                               "variants_per_pass": 8}
    assert out["train"] == {"batch_size": 64, "checkpoints": [], "epochs": 40,
                            "learning_rate": 1.0, "weight_decay": 0.0, "dropout": 0.0}
    # the model's own train block gets no defaults (the shared block's would override it)
    assert out["models"]["mlp"] == {"layers": "all", "train_split": "all", "train": {"epochs": 5}}
    assert type(out["models"]["mlp"]["train"]["epochs"]) is int
    assert out["perturbations"]["gaussian"] == {"draws": 2, "levels": [1.0, 0.5]}
    assert type(out["perturbations"]["gaussian"]["draws"]) is int
    assert [type(x) for x in out["perturbations"]["gaussian"]["levels"]] == [float, float]
    assert written["models"]["mlp"]["train"] == {"epochs": 5.0}  # the input is left alone


def test_a_models_own_train_block_overrides_only_the_keys_it_names():
    # A model's train block gets no defaults: filling them would override the
    # shared block's values with the schema's.
    schema = SCHEMA
    out = canonical({"dataset": {"name": "digits"}, "train": {"batch_size": 128},
                     "models": {"mlp": {"train": {"epochs": 5}}}}, schema)
    assert {**out["train"], **out["models"]["mlp"]["train"]}["batch_size"] == 128


def test_canonical_is_the_same_for_every_spelling_of_a_shipped_config():
    schema = SCHEMA
    for path in sorted((REPO / "config").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        respelled = yaml.safe_load(yaml.safe_dump(dict(reversed(list(canonical(config, schema).items()))),
                                                  sort_keys=False, indent=4))
        assert repr(canonical(respelled, schema)) == repr(canonical(config, schema)), path.name


def test_a_study_is_switched_off_by_leaving_its_section_out():
    studies = [k for k, v in SCHEMA["properties"].items() if v.get("x-study")]
    assert set(studies) == {"perturbations", "faults", "adversarial", "zoo", "filtering"}
    faults_only = {k: v for k, v in DEFAULT.items() if k == "faults" or k not in studies}
    check(faults_only, SCHEMA)
    with pytest.raises(ConfigError, match=r"no study in the config; expected at least one of the "
                                          rf"sections {re.escape(str(studies))}"):
        check({k: v for k, v in faults_only.items() if k != "faults"}, SCHEMA)


EXAMPLE = yaml.safe_load((REPO / "config" / "examples" / "own_network.yaml").read_text())


def brought(**change) -> dict:
    config = copy.deepcopy(EXAMPLE)
    config["models"]["residual"].update(change)
    return config


def test_the_own_network_example_is_valid_and_its_canonical_form_keeps_its_keys(monkeypatch):
    monkeypatch.chdir(REPO)  # its weights and module path are relative to the checkout
    check(EXAMPLE, SCHEMA)
    model = canonical(EXAMPLE, SCHEMA)["models"]["residual"]
    assert model["source"] == "python:residual:build" and model["kwargs"] == {"width": 8}


@pytest.mark.parametrize(("config", "words"), [
    (brought(arch="cnn"), ["models.residual", "both arch and source"]),
    (brought(train={"epochs": 3}), ["models.residual.train", "imported as it is, not trained",
                                    "leave weights out"]),
    (brought(pretrain={"epochs": 3}), ["models.residual.pretrain", "ae400_10"]),
    (brought(weights="config/examples/own_network/absent.pt"), ["models.residual.weights", "no such file"]),
    (brought(path="config/examples/nowhere"), ["models.residual.path", "no such directory"]),
    (brought(source="keras:residual"), ["models.residual.source", "'keras:residual'"]),
    (brought(normalize={"mean": [0.5]}), ["models.residual.normalize"]),
    (brought(normalize="imagenet"), ["models.residual.normalize", "'imagenet'"]),
    ({**brought(), "models": {**brought()["models"],
                              "cnn": {"normalize": {"mean": [0.5], "std": [0.2]}}}},
     ["models.cnn.normalize", "lesion's own networks normalise nothing", "beside a source"]),
    ({**brought(), "faults": {"models": ["residual"], "levels": [0.1],
                              "regimes": {"dropout0.5": {"dropout": 0.5}}}},
     ["faults.models", "'residual' is imported", "regimes train", "leave out models.residual.weights"]),
    ({**brought(), "adversarial": {"models": ["residual"], "attacks": {"fgsm": {"eps": 0.1}},
                                   "training": {"model": "residual",
                                                "regimes": {"dropout": {"dropout": 0.3}}}}},
     ["adversarial.training.model", "'residual' is imported"]),
    ({**brought(), "adversarial": {"models": ["residual"], "attacks": {"fgsm": {"eps": 0.1}}},
      "filtering": {"models": ["residual"], "epochs": [5],
                    "retraining": {"from": [5], "epochs": 1}}},
     ["filtering.models", "'residual' is imported", "training checkpoints"]),
])
def test_a_brought_network_the_studies_cannot_take_is_refused_with_the_reason(monkeypatch, config, words):
    monkeypatch.chdir(REPO)
    config = copy.deepcopy(config)
    if config["models"]["residual"].get("weights", "") is None:
        del config["models"]["residual"]["weights"]
    with pytest.raises(ConfigError) as err:
        check(config, SCHEMA)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


# --- a dataset of one's own ---------------------------------------------------

def own(tmp_path, **dataset) -> dict:
    """The default study on a folder of 3 classes x 4 blank PNGs in `tmp_path`, its
    dataset section changed by `dataset`."""
    from PIL import Image

    for name in ("cat", "dog", "owl"):
        (tmp_path / "photos" / name).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            Image.new("RGB", (5, 7)).save(tmp_path / "photos" / name / f"{i}.png")
    config = copy.deepcopy(DEFAULT)
    del config["zoo"]  # the zoo trains on built-in datasets only (test_zoo.py)
    config["dataset"] = {"name": "photos", "source": "folder", "path": str(tmp_path / "photos"),
                         "size": [8, 8], **dataset}
    return config


def test_a_dataset_of_ones_own_is_valid_with_source_path_and_size(tmp_path):
    check(own(tmp_path), SCHEMA)
    check(own(tmp_path, channels=1, test_fraction=0.5), SCHEMA)
    out = canonical(own(tmp_path), SCHEMA)["dataset"]
    assert out == {"channels": 3, "name": "photos", "path": str(tmp_path / "photos"),
                   "size": [8, 8], "source": "folder", "test_fraction": 0.25}


OWN_CASES = {
    "a built-in dataset with a source": (
        lambda c: c["dataset"].update(name="mnist"),
        ["dataset.source = 'folder'", "'mnist' is a built-in dataset", "expected no source"]),
    "a misspelt built-in dataset": (
        lambda c: c.update(dataset={"name": "mnsit"}),
        ["dataset.name = 'mnsit'", "not a built-in dataset", "did you mean 'mnist'",
         "dataset.source (folder or tensors) and dataset.path"]),
    "an unknown source": (lambda c: c["dataset"].update(source="csv"),
                          ["dataset.source = 'csv'", "['folder', 'tensors']"]),
    "a source without a path": (lambda c: c["dataset"].pop("path"),
                                ["missing key 'path' in dataset", "directory", "'photos'"]),
    "a folder without a size": (lambda c: c["dataset"].pop("size"),
                                ["missing key 'size' in dataset", "[height, width]"]),
    "a size of one number": (lambda c: c["dataset"].update(size=[8]),
                             ["dataset.size = [8]", "1 entries", "at least 2"]),
    "a tensors file with a size": (lambda c: c["dataset"].update(source="tensors"),
                                   ["dataset.size = [8, 8]", "tensors file", "expected no size"]),
    "two channels": (lambda c: c["dataset"].update(channels=2),
                     ["dataset.channels = 2", "[1, 3]"]),
    "a path that is not there": (lambda c: c["dataset"].update(path="no/such/photos"),
                                 ["dataset.path = 'no/such/photos'", "no such directory",
                                  "ImageFolder"]),
    "a study named like the dataset": (lambda c: c.update(study="photos"),
                                       ["study = 'photos'", "a dataset's name", "'photos'"]),
    "a test split too small for every class": (
        lambda c: c["dataset"].update(test_fraction=0.1),
        ["dataset.test_fraction = 0.1", "12 images", "2 test", "3 classes"]),
}


@pytest.mark.parametrize("case", OWN_CASES)
def test_mistakes_of_a_dataset_of_ones_own_name_key_value_and_what_is_expected(case, tmp_path):
    edit, words = OWN_CASES[case]
    config = own(tmp_path)
    edit(config)
    with pytest.raises(ConfigError) as err:
        check(config, SCHEMA)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"
