# What the rules share: the checked, canonical config, the paths of the
# artifacts, the source files each step runs, and the studies' targets. No
# heavy imports: lesion.config, lesion.catalog and lesion.sources are torch-free.
import mimetypes
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import update_config

SRC = Path(workflow.basedir) / "src"
# The lesion package as the rules' code inputs name it: relative to the working directory,
# so that Snakemake's records of a study (.snakemake/) still match its inputs after the
# checkout, its results/ and .snakemake/ moved elsewhere together (an absolute path there
# would make every job look changed and rerun).
LESION_SRC = Path(os.path.relpath(SRC / "lesion"))

# The rules run `python -m lesion`: the `python` beside the interpreter Snakemake runs in.
# `.venv/bin/snakemake` run by its full path, the venv not activated, would otherwise run
# another python, without lesion, in every job (after removing the outputs it rebuilds).
# Left alone when that directory is on PATH already (what comes before it was chosen);
# --use-conda's environments put their own bin/ first, so they still win.
_BIN = os.path.dirname(sys.executable)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ.update(PATH=os.pathsep.join(filter(None, [_BIN, os.environ.get("PATH")])))


def stop(message):
    """End the run with `message` alone on stderr (one line), exit status 1, before any job.
    A WorkflowError would wrap it in this file's name, a line number and a frame of
    the workflow's code; SystemExit passes through Snakemake (its main catches Exception)."""
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(1)

# The report embeds each item with the type Python's mimetypes guesses from its suffix;
# Parquet is not in its table, so the report took the atlas's tables for text (and said so
# once per table at the end of every `make study`). Its registered type (IANA, 2024):
mimetypes.add_type("application/vnd.apache.parquet", ".parquet")

sys.path.insert(0, str(SRC))  # the workflow reads the catalog even before `pip install`

from lesion.catalog import ATTACKS, DATASET_SOURCES, OPERATORS, PRETRAINED_WEIGHTS, layer_names
from lesion.config import (
    ConfigError,
    architecture,
    brought,
    canonical,
    check,
    check_writable,
    command_line_values,
    dataset_source,
    load_schema,
    study_roots,
)
from lesion.registry import studies
from lesion.seeds import network_seed
from lesion.sources import module_sources, step_sources
from lesion.targets import problem, sweep_layers

# Every study lesion knows (its own and installed plugins', registered as entry points of
# the installed distributions): the Snakefile includes their rules, the schema holds their
# config sections.
try:
    STUDIES = studies()
except RuntimeError as err:
    stop(str(err))
STUDY_TITLES = {s.group: s.title for s in STUDIES}  # the report category of each
ENVS = Path(workflow.basedir) / "envs"  # conda envs, for a plugin's rules too

SCHEMA = load_schema(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")

# `--config KEY=VALUE` read as YAML reads a config file (Snakemake leaves nested
# values strings); applied again over Snakemake's reading of the same entries.
update_config(config, command_line_values(workflow.config_settings.config_args))

# Check the config (one message naming the key, the value and what is
# allowed), then put it in one spelling: defaults filled in, keys sorted,
# numbers normalised, so that params (compared as text by Snakemake) change
# only when a value does.
try:
    check(config, SCHEMA)
    check_writable()  # results/, logs/, benchmarks/ in the working directory
except ConfigError as err:
    stop(str(err))
_canonical = canonical(config, SCHEMA)
config.clear()
config.update(_canonical)

# Where this study writes: results/, logs/, benchmarks/, or their subdirectory
# named by the config's `study` (two configs in one checkout never overwrite
# each other). Every output, log and benchmark path below starts with one.
RESULTS, LOGS, BENCHMARKS = study_roots(config)
DATASET = config["dataset"]["name"]
MODELS = list(config["models"])
# Networks lesion does not describe (models.<name>.source): imported from their weights,
# their layers read from their graph (rule layers); the others the DAG trains or downloads.
BROUGHT = [m for m in MODELS if brought(config["models"][m])]
NEVER = "(?!)"  # a wildcard pattern that matches nothing
BROUGHT_MODELS = "|".join(re.escape(m) for m in BROUGHT) or NEVER
OWN_MODELS = "|".join(re.escape(m) for m in MODELS if m not in BROUGHT) or NEVER
# A brought network with weights is imported as it is; without, the DAG trains it.
IMPORTED = [m for m in BROUGHT if "weights" in config["models"][m]]
IMPORTED_MODELS = "|".join(re.escape(m) for m in IMPORTED) or NEVER
TRAINED_MODELS = "|".join(re.escape(m) for m in MODELS if m not in IMPORTED) or NEVER
# Datasets by where their raw data comes from (see lesion.catalog).
EXPORTED = "|".join(d for d, s in DATASET_SOURCES.items() if s == "export")
DOWNLOADED = "|".join(d for d, s in DATASET_SOURCES.items() if s == "download")
IN_DIRECTORY = "|".join(d for d, s in DATASET_SOURCES.items() if s == "directory")
# A dataset of one's own (dataset.source: folder or tensors; lesion.userdata): any
# other name, checked with the config; its splits carry its shape (lesion.data.get).
OWN_DATASET = re.escape(DATASET) if DATASET not in DATASET_SOURCES else NEVER
# Datasets whose networks the DAG trains: all but ImageNet (pretrained weights).
TRAINED_ON = f"{EXPORTED}|{DOWNLOADED}|{OWN_DATASET}"

# ImageNet cannot be downloaded: say what to fetch before any job runs.
# Checked only while the tensor cache is missing (the images are not needed
# once they are decoded); costs one directory listing per class (0.2 s).
_DECODED = Path(f"{RESULTS}/{DATASET}/tensors/test.safetensors")
if dataset_source(config["dataset"]) == "directory" and not _DECODED.exists():
    from lesion.imagenet import MissingImagesError, list_images

    try:
        list_images(config["dataset"].get("path"))
    except MissingImagesError as err:
        stop(f"config error: {err}")


def requested_targets():
    """The files named on Snakemake's command line, read by its own parser; none
    when the workflow is run otherwise (the API, a cluster job)."""
    from snakemake.cli import get_argument_parser

    try:
        args, _ = get_argument_parser().parse_known_args(sys.argv[1:])
    except (Exception, SystemExit):
        return []
    return list(getattr(args, "targets", None) or [])


def refuse_unknown_targets(targets):
    """A file asked for on the command line that this study cannot make: say why before
    Snakemake can only say "No rule to produce" (lesion.targets.problem), e.g. a sweep of an
    operator or layer the config lacks, a model not in the config, a misspelt name (the
    nearest of `targets`' and the rules' file names). Needs every rule defined."""
    requested = requested_targets()
    if not requested:
        return

    def can_make(path):
        return os.path.exists(path) or any(rule.is_producer(path) for rule in workflow.rules)

    names = {Path(path).name for path in targets} | {
        Path(pattern).name for rule in workflow.rules for pattern in rule.output
        if "{" not in Path(pattern).name}
    for target in requested:
        if why := problem(target, config, can_make=can_make, names=names):
            stop(f"target error: {why}")


# Only what the config defines: no rule matches a sweep's file outside it.
wildcard_constraints:
    dataset=re.escape(DATASET),
    model="|".join(re.escape(m) for m in MODELS),
    # never `none`: predictions/none.parquet is the unperturbed network's (rule predict_clean;
    # tests/test_catalog.py checks that no operator has that name)
    perturbation="|".join(p for p in OPERATORS if p in config.get("perturbations", {}) and p != "none"),
    # a brought network's `layers: all` is known once its layer table is built: any name then
    layer=(r"[^/]+" if any(sweep_layers(config, m) is None for m in MODELS) else
           "|".join(re.escape(n) for n in dict.fromkeys(n for m in MODELS for n in sweep_layers(config, m)))),
    testset="|".join(ATTACKS),


# The artifacts the studies share, one pattern each (wildcards in braces).
# How a sweep is batched and how much clean activation it caches change its
# speed, not its tables (tests/test_references.py): they are resources, which
# Snakemake does not rerun a job for, not params, which it does.
SWEEP_TUNING = {"variants_per_pass": config["evaluate"]["variants_per_pass"],
                "cache_gb": config["evaluate"]["cache_gb"]}

RAW = "resources/{dataset}/raw.safetensors"
DOWNLOADED_RAW = "resources/{dataset}/torchvision"
PTH = "resources/imagenet/weights/{weights}.pth"
TRAIN = f"{RESULTS}/{{dataset}}/tensors/train.safetensors"
TEST = f"{RESULTS}/{{dataset}}/tensors/test.safetensors"
WEIGHTS = f"{RESULTS}/{{dataset}}/{{model}}/weights.safetensors"  # trained or pretrained
CURVE = f"{RESULTS}/{{dataset}}/{{model}}/training.parquet"
PRETRAINED = f"{RESULTS}/{{dataset}}/{{model}}/pretrained.safetensors"  # fc1 as an autoencoder's encoder
CHECKPOINTS = f"{RESULTS}/{{dataset}}/{{model}}/checkpoints"
CHECKPOINT = f"{RESULTS}/{{dataset}}/{{model}}/checkpoints/epoch{{epoch}}.safetensors"
CLEAN = f"{RESULTS}/{{dataset}}/{{model}}/predictions/none.parquet"
# A sweep step's tables: one operator on every layer the config sweeps in the model
VARIANTS = f"{RESULTS}/{{dataset}}/{{model}}/variants/{{perturbation}}.parquet"
PREDICTIONS = f"{RESULTS}/{{dataset}}/{{model}}/predictions/{{perturbation}}.parquet"
# A model's adversarial test set (the adversarial study) and the sweeps' predictions on it
ADV_SET = f"{RESULTS}/{{dataset}}/adversarial/{{attack}}/{{model}}.safetensors"
TESTSET_CLEAN = f"{RESULTS}/{{dataset}}/{{model}}/testsets/{{testset}}/predictions/none.parquet"
TESTSET_PREDICTIONS = f"{RESULTS}/{{dataset}}/{{model}}/testsets/{{testset}}/predictions/{{perturbation}}.parquet"
LAYERS = f"{RESULTS}/{{dataset}}/{{model}}/layers.parquet"  # a network's weight layers
METRICS = f"{RESULTS}/{{dataset}}/{{model}}/metrics.parquet"
SUMMARY = f"{RESULTS}/{{dataset}}/{{model}}/metrics_summary.parquet"
SUMMARY_CSV = f"{RESULTS}/{{dataset}}/{{model}}/metrics_summary.csv"


# How every figure step writes (config figures): SVG beside each PNG and PDF when asked,
# the accuracy axes over their range. Each figure rule adds svg_outputs(...) to its outputs
# and passes its flags as a param, so that changing either reruns the figures alone.
SVG = config["figures"]["svg"]
FIGURE_EXTS = ("png", "pdf", "svg") if SVG else ("png", "pdf")
FIGURE_FLAGS = "--svg" if SVG else ""
ACCURACY_FLAGS = " ".join(filter(None, [FIGURE_FLAGS, "--accuracy-axis " + ",".join(
    f"{x:g}" for x in config["figures"]["accuracy_axis"])]))


def svg_outputs(**outputs):
    """A figure rule's SVG outputs (name=path), or none unless figures.svg."""
    return outputs if SVG else {}


def code(group, step):
    """The lesion source files `python -m lesion GROUP STEP` runs, from its imports
    (lesion.sources): editing one reruns exactly the jobs that use it."""
    return step_sources(group, step, root=LESION_SRC)


def mirror_option():
    """`--mirror URL` when the config names a mirror, else nothing (the official sources)."""
    return f"--mirror {shlex.quote(config['mirror'])}" if config.get("mirror") else ""


def raw_data(wildcards):
    """What `tensors` decodes: an export's file or a download's directory."""
    source = RAW if DATASET_SOURCES[wildcards.dataset] == "export" else DOWNLOADED_RAW
    return source.format(dataset=wildcards.dataset)


def own_data(wildcards):
    """A tensors file is an input of its decoding (editing it reruns it); a folder is
    not (Snakemake would see only the directory's own time): see folder_fingerprint."""
    section = config["dataset"]
    return [section["path"]] if section["source"] == "tensors" else []


def folder_fingerprint():
    """A short hash of every image's path, size and modification time (lesion.userdata):
    a param of the folder's decoding, so that adding, removing or rewriting an image
    reruns it. One listing and one stat per image while the DAG is built."""
    from lesion.userdata import folder, fingerprint

    section = config["dataset"]
    return fingerprint(folder(section["path"])) if section.get("source") == "folder" else ""


def own_data_options():
    """The user-tensors step's options: a folder's --size and --channels, and the split's."""
    section = config["dataset"]
    options = [f"--test-fraction {section['test_fraction']} --seed {config['seed']}"]
    if section["source"] == "folder":
        options.append(f"--size {','.join(map(str, section['size']))} --channels {section['channels']}")
    return " ".join(options)


def spec_split(wildcards):
    """The test split, for a step that has none and serves a dataset of one's own: its
    metadata carries the class count and image shape (lesion.data.get). Nothing for a
    built-in dataset (its step runs as before)."""
    return [] if wildcards.dataset in DATASET_SOURCES else [TEST.format(dataset=wildcards.dataset)]


def split_option(wildcards):
    """--split FILE of spec_split, or nothing."""
    return " ".join(f"--split {path}" for path in spec_split(wildcards))


def arch(model):
    """The registry architecture of a config model (its `arch`, else its name)."""
    return architecture(model, config["models"][model])


def pretrained_file(wildcards):
    """The downloaded .pth of a model's torchvision weights, named after them."""
    return PTH.format(weights=PRETRAINED_WEIGHTS[arch(wildcards.model)])


def model_layers(model):
    """The layers a model's sweeps cover: its `layers`, or all of them; for a brought
    network's `all`, the names its layer table lists (checkpoint layers: call from an
    input function, after the table is built)."""
    layers = config["models"][model]["layers"]
    if layers != "all":
        return layers
    if model in BROUGHT:
        import pyarrow.parquet as pq

        table = checkpoints.layers.get(dataset=DATASET, model=model).output[0]
        return pq.read_table(table, columns=["name"]).column("name").to_pylist()
    return layer_names(arch(model))


def layer_table(wildcards):
    """A brought network's layer table (the checkpoint model_layers reads), as the input of a
    rule whose params list its layers; nothing for lesion's own networks."""
    return [LAYERS.format(dataset=wildcards.dataset, model=wildcards.model)] if (
        wildcards.model in BROUGHT) else []


def brought_module(model):
    """A python source's module file: an input of its import (editing it reimports)."""
    settings = config["models"][model]
    if not settings["source"].startswith("python:"):
        return []
    name = settings["source"].split(":")[1]
    return [str(Path(settings.get("path", "."), *name.split(".")).with_suffix(".py"))]


def source_options(model):
    """--source and, where the config gives them, --path, --kwargs and --normalize of a
    brought network."""
    import json

    settings = config["models"][model]
    options = [f"--source {shlex.quote(settings['source'])}"]
    if "path" in settings:
        options.append(f"--path {shlex.quote(settings['path'])}")
    for key in ("kwargs", "normalize"):
        if settings.get(key):
            options.append(f"--{key} {shlex.quote(json.dumps(settings[key], sort_keys=True))}")
    return options


def import_options(model):
    """source_options and, where the config gives them, --state-dict-key and --strip-prefix
    of a brought network's import."""
    settings = config["models"][model]
    options = source_options(model)
    for key in ("state_dict_key", "strip_prefix"):
        if key in settings:
            options.append(f"--{key.replace('_', '-')} {shlex.quote(settings[key])}")
    return " ".join(options)


def train_settings(model):
    """The shared train block, each key of the model's own winning (sorted, for stable params)."""
    return dict(sorted({**config["train"], **config["models"][model].get("train", {})}.items()))


def init_weights(model):
    """Where a model's training starts: its train.init, its pretrained network, or None."""
    if "pretrain" in config["models"][model]:
        return PRETRAINED.format(dataset=DATASET, model=model)
    return train_settings(model).get("init")


def train_init(wildcards):
    """The weights a model fine-tunes from, if any: an input of its training."""
    init = init_weights(wildcards.model)
    return [init] if init else []


def training_seed(model):
    """The model's train.seed, else one hashed from the study seed and its name
    (lesion.seeds.network_seed): the networks of a study start from different weights."""
    return train_settings(model).get("seed", network_seed(config["seed"], model))


def start_options(model, seed=None):
    """What the network is and where it starts: --arch (or a brought network's --source
    options), --train-split, --seed (`seed`, else training_seed), --split-seed, and --init
    and --freeze of fine-tuning."""
    settings = train_settings(model)
    seed = training_seed(model) if seed is None else seed
    what = " ".join(source_options(model)) if model in BROUGHT else f"--arch {arch(model)}"
    options = [f"{what} --train-split {config['models'][model]['train_split']}",
               f"--seed {seed} --split-seed {config['seed']}"]
    init = init_weights(model)
    options += [f"--init {shlex.quote(init)}"] if init else []
    options += [f"--freeze {','.join(settings['freeze'])}"] if settings.get("freeze") else []
    return " ".join(options)


def checkpoint_options(wildcards):
    """--checkpoint-epochs and --checkpoints-dir when train.checkpoints names epochs."""
    epochs = config["train"]["checkpoints"]
    if not epochs:
        return ""
    where = CHECKPOINTS.format(dataset=wildcards.dataset, model=wildcards.model)
    return f"--checkpoint-epochs {','.join(map(str, epochs))} --checkpoints-dir {where}"


# Each study's rule file registers a function returning its targets; rule
# `all` asks every study whose section the config has (see the Snakefile).
STUDY_TARGETS = []
# Each study's rule file names the tables its claims function reads
# (lesion.registry.Study.claims): CLAIM_TABLES[group] = a function of the dataset
# returning {name: path}; workflow/rules/claims.smk judges them all in one table.
CLAIM_TABLES = {}
# Likewise the tables its atlas measures read (lesion.registry.Study.atlas):
# ATLAS_TABLES[group] = a function of the dataset returning {model: {name: path}};
# workflow/rules/atlas.smk puts every study's verdict on each layer side by side.
ATLAS_TABLES = {}


def claim_tables(wildcards):
    """{STUDY:NAME: path} of every table a study's claims read."""
    return {
        f"{group}:{name}": path
        for group, tables in CLAIM_TABLES.items()
        for name, path in tables(wildcards.dataset).items()
    }


def all_targets():
    """Every study's targets, for rule `all`. Rule `all` is the Snakefile's last statement, so
    this runs once all rules are defined, and checks the targets asked for there too."""
    targets = [path for targets in STUDY_TARGETS for path in targets()]
    refuse_unknown_targets(targets)
    refuse_missing_inits()
    return targets


def refuse_missing_inits():
    """A model's train.init that is neither a file nor made by a rule: refused before any
    job. Snakemake alone would say so only when the model trains; on a built study it
    would skip the missing input and keep the old weights, saying nothing."""
    for model in MODELS:
        init = init_weights(model)
        if init and not os.path.exists(init) and not any(
                made.is_producer(init) for made in workflow.rules):
            stop(f"config error: models.{model}.train.init = {init!r}: no such file, and no rule "
                 "of this study makes it; expected a weights file of the same model (.safetensors)")
