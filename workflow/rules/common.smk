# What the rules share: config checking, target lists, params. No heavy
# imports: lesion.config and lesion.catalog are torch-free.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))  # the workflow reads the catalog even before `pip install`

from lesion.catalog import OPERATOR_LEVELS, layer_names
from lesion.config import ConfigError, check, load_schema

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

try:
    check(config, load_schema(SCHEMA))
except ConfigError as err:
    raise WorkflowError(str(err)) from None
validate(config, schema=str(SCHEMA))  # fills in the schema's defaults

DATASET = config["dataset"]["name"]
MODELS = list(config["models"])
PERTURBATIONS = list(config["perturbations"])
FIGURES = ["performances", "weight_diffs", "num_weights"]


wildcard_constraints:
    dataset=DATASET,
    model="|".join(MODELS),
    perturbation="|".join(OPERATOR_LEVELS),
    layer=r"(conv|fc)\d+",
    name="|".join(FIGURES),


def code(*modules):
    """Source files a rule runs: editing one reruns exactly the jobs that use it."""
    return [str(SRC / "lesion" / f"{m}.py") for m in modules]


def model_layers(model):
    layers = config["models"][model]["layers"]
    return layer_names(model) if layers == "all" else layers


def train_settings(model):
    """The shared train block, overridden by the model's own."""
    return {**config["train"], **config["models"][model].get("train", {})}


def sweep_paths(kind, dataset, model):
    """variants or predictions tables of every (perturbation, layer) of a model."""
    return [
        f"results/{dataset}/{model}/{kind}/{perturbation}/{layer}.parquet"
        for perturbation in PERTURBATIONS
        for layer in model_layers(model)
    ]


def sweep_params(wildcards):
    sweep = config["perturbations"][wildcards.perturbation]
    return {
        "levels": ",".join(repr(float(level)) for level in sweep["levels"]),
        "draws": sweep["draws"],
    }


def all_targets():
    return [
        path
        for model in MODELS
        for path in [
            f"results/{DATASET}/{model}/metrics_summary.csv",
            *(f"results/{DATASET}/{model}/figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")),
        ]
    ]
