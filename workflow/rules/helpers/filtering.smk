# Helpers of filtering.smk: its config section, the sweep's layout, params, targets.
from lesion.catalog import ALL_LAYERS
from lesion.studies.filtering.layout import TESTSETS as FILTER_TESTSETS
from lesion.studies.filtering.layout import CLEAN as FILTER_CLEAN, ADVERSARIAL as FILTER_ADVERSARIAL

FILTERING = config.get("filtering") or {}
FILTER_MODELS = FILTERING.get("models", [])
FILTER_EPOCHS = FILTERING.get("epochs", [])
FILTERS = FILTERING.get("filters", [])
RETRAINING = FILTERING.get("retraining", {})
RETRAIN_FROM = RETRAINING.get("from", [])
RETRAINED_WAYS = ["all", "selected", "fragile"]  # "none" is the checkpoint itself
MASKED_WAYS = ["selected", "fragile"]
FILTER_DIR = f"{RESULTS}/{{dataset}}/{{model}}/filtering"
# Each checkpoint's FGSM set, made by the sweep from every clean test image.
FILTER_FGSM = f"{RESULTS}/{{dataset}}/{{model}}/filtering/epoch{{epoch}}/fgsm.safetensors"
# The sweep's tables (lesion.studies.filtering.layout spells the same paths).
FILTER_VARIANTS = f"{RESULTS}/{{dataset}}/{{model}}/filtering/epoch{{epoch}}/variants.parquet"
FILTER_PREDICTIONS = f"{RESULTS}/{{dataset}}/{{model}}/filtering/epoch{{epoch}}/predictions/{{testset}}.parquet"
FILTER_UNFILTERED = (
    f"{RESULTS}/{{dataset}}/{{model}}/filtering/epoch{{epoch}}/predictions/{{testset}}_none.parquet"
)
RETRAINED = f"{RESULTS}/{{dataset}}/{{model}}/filtering/retrained/epoch{{epoch}}/{{way}}"
RETRAINED_RUN = f"{RETRAINED}/{{replicate}}"
FILTER_FIGURES = [f"heat_{name}" for name in FILTERS] + ["class_map", "retraining"]


def filter_outputs(pattern, epochs):
    """`pattern` for every epoch (and test set), the model and dataset left as wildcards."""
    return expand(pattern, epoch=epochs, testset=FILTER_TESTSETS, allow_missing=True)


def filter_checkpoints(epochs):
    """Input function: the checkpoints of `epochs` of the wildcards' model."""

    def checkpoints(wildcards):
        return [CHECKPOINT.format(dataset=wildcards.dataset, model=wildcards.model, epoch=e)
                for e in epochs]

    return checkpoints


def checkpoint_pairs(epochs):
    """Params function: EPOCH=PATH of each checkpoint, for --checkpoints."""

    def pairs(wildcards):
        paths = filter_checkpoints(epochs)(wildcards)
        return " ".join(f"{e}={p}" for e, p in zip(epochs, paths))

    return pairs


def parent(path, levels=1):
    """The directory `levels` above a path: where a step writes its layout."""
    return str(Path(path).parents[levels - 1])


def fgsm_pairs(epochs):
    """Params function: EPOCH=PATH of each checkpoint's FGSM set, for --adversarial."""

    def pairs(wildcards):
        return " ".join(
            f"{e}={FILTER_FGSM.format(dataset=wildcards.dataset, model=wildcards.model, epoch=e)}"
            for e in epochs
        )

    return pairs


def filter_layers(wildcards):
    """The model's layers (models.<name>.layers) one at a time, then all at once."""
    return ",".join([*model_layers(wildcards.model), ALL_LAYERS])


def filtering_targets():
    figures = [
        f"{FILTER_DIR}/figures/{name}.{ext}".format(dataset=DATASET, model=model)
        for model in FILTER_MODELS
        for name in FILTER_FIGURES
        for ext in FIGURE_EXTS
    ]
    invariance = [f"{RESULTS}/{DATASET}/filtering/invariance.{ext}" for ext in (*FIGURE_EXTS, "csv")]
    return figures + invariance


def filtering_claim_tables(dataset):
    return {f"{name}:{model}": f"{FILTER_DIR}/{name}.parquet".format(dataset=dataset, model=model)
            for model in FILTER_MODELS for name in ("scores", "retraining")}


def filtering_atlas_tables(dataset):
    return {m: {"scores": f"{FILTER_DIR}/scores.parquet".format(dataset=dataset, model=m)}
            for m in FILTER_MODELS}


if FILTERING:
    STUDY_TARGETS.append(filtering_targets)
    CLAIM_TABLES["filtering"] = filtering_claim_tables
    ATLAS_TABLES["filtering"] = filtering_atlas_tables
