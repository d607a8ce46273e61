# What the rules share: config checking, target lists, params. No heavy
# imports: lesion.config and lesion.catalog are torch-free.
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))  # the workflow reads the catalog even before `pip install`

from lesion.catalog import DATASET_SOURCES, OPERATOR_LEVELS, PRETRAINED_WEIGHTS, layer_names
from lesion.config import ConfigError, check, check_writable, load_schema

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

try:
    check(config, load_schema(SCHEMA))
    check_writable()  # results/, logs/, ... in the working directory
except ConfigError as err:
    raise WorkflowError(str(err)) from None
validate(config, schema=str(SCHEMA))  # fills in the schema's defaults

DATASET = config["dataset"]["name"]
MODELS = list(config["models"])
PERTURBATIONS = list(config["perturbations"])
FIGURES = ["performances", "weight_diffs", "num_weights"]
# Datasets by where their raw data comes from (see lesion.catalog).
EXPORTED = "|".join(d for d, s in DATASET_SOURCES.items() if s == "export")
DOWNLOADED = "|".join(d for d, s in DATASET_SOURCES.items() if s == "download")
IN_DIRECTORY = "|".join(d for d, s in DATASET_SOURCES.items() if s == "directory")

# ImageNet cannot be downloaded: say what to fetch before any job runs.
# Checked only while the tensor cache is missing (the images are not needed
# once they are decoded); costs one directory listing per class (0.2 s).
_DECODED = Path(f"results/{DATASET}/tensors/test.safetensors")
if DATASET_SOURCES[DATASET] == "directory" and not _DECODED.exists():
    from lesion.imagenet import MissingImagesError, list_images

    try:
        list_images(config["dataset"].get("path"))
    except MissingImagesError as err:
        raise WorkflowError(str(err)) from None


wildcard_constraints:
    dataset=DATASET,
    model="|".join(MODELS),
    perturbation="|".join(OPERATOR_LEVELS),
    layer=r"(conv|fc)\d+",
    name="|".join(FIGURES),


def code(*modules):
    """Source files of the modules a job runs; editing one reruns exactly the jobs that use it."""
    return [str(SRC / "lesion" / f"{m}.py") for m in modules]


def mirror_option():
    """`--mirror URL` when the config names a mirror, else nothing (the official sources)."""
    return f"--mirror {shlex.quote(config['mirror'])}" if config.get("mirror") else ""


def raw_data(wildcards):
    """What `tensors` decodes: an export's file or a download's directory."""
    if DATASET_SOURCES[wildcards.dataset] == "download":
        return rules.download.output[0].format(dataset=wildcards.dataset)
    return rules.export_dataset.output[0].format(dataset=wildcards.dataset)


def pretrained_file(wildcards):
    """The downloaded .pth of a model's torchvision weights, named after them."""
    return rules.download_weights.output[0].format(weights=PRETRAINED_WEIGHTS[wildcards.model])


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
        # bit faults: the bit positions they hit (all when left out)
        "bits": bits_option(sweep.get("bits")),
    }


def bits_option(bits):
    """`--bits a,b` for a bit-fault sweep's `bits`, or nothing."""
    if bits is None:
        return ""
    return "--bits " + ",".join(str(b) for b in ([bits] if isinstance(bits, str) else bits))


def all_targets():
    return [
        path
        for model in MODELS
        for path in [
            f"results/{DATASET}/{model}/metrics_summary.csv",
            *(f"results/{DATASET}/{model}/figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")),
        ]
    ] + fault_targets()  # the fault study, below


# The fault study (workflow/rules/faults.smk): config["faults"] into params and targets.
FAULTS = config.get("faults") or {}
FAULT_MODELS = FAULTS.get("models", [])
REGIMES = FAULTS.get("regimes") or {}
FAULT_FIGURES = ["bounds", "tolerance"] if REGIMES else ["bounds"]

for _model in FAULT_MODELS:
    if _model not in MODELS:
        raise WorkflowError(f"config error: faults.models = {FAULT_MODELS!r}: {_model!r} is not a "
                            f"model of this study; expected some of {MODELS}")


def regime_settings(regime):
    """The training options of a regime, with their defaults."""
    return {"dropout": 0.0, "b3_variance": 0.0, **REGIMES[regime]}


def fault_dir(dataset, model, regime=None):
    """Where a network's fault tables live; a regime that adds nothing is the study's network."""
    plain = regime is None or not any(regime_settings(regime).values())
    base = f"results/{dataset}/{model}/faults"
    return base if plain else f"{base}/regimes/{regime}"


def fault_params(wildcards):
    return {
        "layers": ",".join(model_layers(wildcards.model)),
        "levels": ",".join(repr(float(p)) for p in FAULTS["levels"]),
        "repetitions": FAULTS.get("repetitions", 100),
        "inputs": f"--inputs {FAULTS['inputs']}" if FAULTS.get("inputs") else "",
    }


def fault_tables(kind):
    """Input function: the `kind` tables (errors or bounds) a fault figure draws."""
    def tables(wildcards):
        if wildcards.fault_figure == "bounds":
            return [f"{fault_dir(wildcards.dataset, wildcards.model)}/{kind}.parquet"]
        return [f"{fault_dir(wildcards.dataset, wildcards.model, r)}/{kind}.parquet" for r in REGIMES]
    return tables


def fault_labels(wildcards):
    return "base" if wildcards.fault_figure == "bounds" else " ".join(REGIMES)


def fault_targets():
    return [
        f"results/{DATASET}/{model}/faults/figures/{name}.{ext}"
        for model in FAULT_MODELS
        for name in FAULT_FIGURES
        for ext in ("png", "pdf")
    ]
