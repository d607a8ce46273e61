"""`python -m lesion tools verify`: is every output of a built study what its job wrote?

Snakemake trusts the file that is there: a table truncated, a weights file with
one flipped byte, a table replaced by another's or edited after its job finished
goes unnoticed and feeds every later job. This checks each output of the study
(the list and the rule that makes each are asked of Snakemake, `--detailed-summary`
with the same config files, in the study's directory):

- it exists and opens: a Parquet table reads whole, a safetensors file loads, a
  figure is a non-empty image (PIL opens a PNG; a PDF starts and ends as one), a
  CSV parses;
- a table carries the kind and writing step its step's output is stamped with
  (EXPECTED below, lesion.files.check_kind), the rows its step's command implies
  where that is simple (a sweep's variants: layers x levels x draws; its
  predictions: variants x test images; a training curve: its epochs) and no
  missing value in the columns that name a row (NOT_NULL);
- a variants table's seeds are the ones its rows' names hash to
  (lesion.operators.variant_seed), and a sample of its variants (`sample` per
  layer) regenerates from the weights to the sha256 the table recorded
  (lesion.sweeps.regenerate);
- a weights file builds its model and loads into it (lesion.models.load_weights),
  every entry finite;
- a file that a later job read hashes to the sha256 Snakemake recorded for it
  then (`input_checksums` of that job's record in .snakemake/metadata, kept for
  inputs up to 1 MB), unless its own job ran again since: this is what finds a
  byte changed inside a tensor, which still loads.

Each problem is one line (file, what is wrong, what was expected); `repair`
removes exactly the files found bad, so that the next `make study` rebuilds them
and what depends on them. Run it in the study's directory.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from lesion import files

# (step, file name) -> the kind its table must carry, as "module:NAME"; a file name
# "*" stands for any table that step writes (lesion's own studies; a plugin's tables
# are checked for a kind stamp of some lesion step only).
EXPECTED: dict[tuple[str, str], str] = {
    ("sweep run", "variants"): "lesion.kinds:VARIANTS",
    ("sweep run", "*"): "lesion.kinds:PREDICTIONS",
    ("sweep predict", "*"): "lesion.kinds:PREDICTIONS",
    ("sweep metrics", "metrics_summary.parquet"): "lesion.kinds:SUMMARY",
    ("sweep metrics", "*"): "lesion.kinds:METRICS",
    ("model layers", "*"): "lesion.kinds:LAYERS",
    ("model train", "*"): "lesion.kinds:TRAINING",
    ("faults train", "*"): "lesion.kinds:TRAINING",
    ("adversarial train", "*"): "lesion.kinds:TRAINING",
    ("faults bounds", "errors.parquet"): "lesion.studies.faults.kinds:ERRORS",
    ("faults bounds", "bounds.parquet"): "lesion.studies.faults.kinds:BOUNDS",
    ("adversarial distortion", "*"): "lesion.studies.adversarial.kinds:DISTORTION",
    ("adversarial transfer", "*"): "lesion.studies.adversarial.kinds:TRANSFER",
    ("adversarial cross-training", "*"): "lesion.studies.adversarial.kinds:CROSS_TRAINING",
    ("adversarial training-table", "*"): "lesion.studies.adversarial.kinds:ADVERSARIAL_TRAINING",
    ("filtering sweep", "variants.parquet"): "lesion.kinds:VARIANTS",
    ("filtering sweep", "*"): "lesion.kinds:PREDICTIONS",
    ("filtering scores", "metrics.parquet"): "lesion.studies.filtering.kinds:METRICS",
    ("filtering scores", "curves.parquet"): "lesion.studies.filtering.kinds:CURVES",
    ("filtering scores", "scores.parquet"): "lesion.studies.filtering.kinds:SCORES",
    ("filtering retrain", "*"): "lesion.studies.filtering.kinds:RETRAINING",
    ("zoo shard", "*"): "lesion.studies.zoo.kinds:SHARD",
    ("zoo merge", "excluded.parquet"): "lesion.studies.zoo.kinds:EXCLUDED",
    ("zoo merge", "*"): "lesion.studies.zoo.kinds:NETS",
    ("zoo meta", "meta_snapshots.parquet"): "lesion.studies.zoo.kinds:META_SNAPSHOTS",
    ("zoo meta", "*"): "lesion.studies.zoo.kinds:META",
    ("claims table", "*"): "lesion.claims:CLAIMS",
    ("atlas table", "agreement.parquet"): "lesion.atlas:AGREEMENT",
    ("atlas table", "*"): "lesion.atlas:ATLAS",
}

# Columns that name a row: never null or NaN (a loss, a distortion, a bit-flipped
# variant's L2 difference may be NaN or infinite; these may not).
NOT_NULL: dict[str, tuple[str, ...]] = {
    "variants": ("variant", "model", "perturbation", "layer", "level", "draw", "seed", "sha256"),
    "predictions": ("variant", "image", "label", "top5"),
    "metrics": ("model", "testset", "perturbation", "variant", "metric"),
    "training curve": ("epoch", "split"),
    "layers": ("name", "type", "parameters"),
}

# A network's weights, besides the checkpoints (checkpoints/epoch{N}.safetensors).
WEIGHT_NAMES = ("weights.safetensors",)


@dataclass(frozen=True)
class Problem:
    """One bad file: what is wrong with it and what was expected. `remove`: whether
    repair deletes it (False for a missing file: there is nothing to delete)."""

    path: str
    what: str
    expected: str
    remove: bool = True

    def line(self) -> str:
        return f"{self.path}: {self.what}; expected {self.expected}"


@dataclass(frozen=True)
class Output:
    """One output of the study as Snakemake lists it, with the command its job runs."""

    path: str
    rule: str
    status: str
    command: tuple[str, ...]
    inputs: tuple[str, ...] = ()

    @property
    def step(self) -> str:
        """`GROUP STEP` of `python -m lesion GROUP STEP ...`, or "" for another command."""
        c = self.command
        return f"{c[3]} {c[4]}" if len(c) > 4 and c[1:3] == ("-m", "lesion") else ""


# -- asking Snakemake ------------------------------------------------------------------

def snakemake_command() -> str:
    """The snakemake beside this interpreter (the study's venv), else the one on PATH."""
    here = Path(sys.executable).parent / "snakemake"
    return str(here) if here.is_file() else (shutil.which("snakemake") or "snakemake")


def outputs(configfiles: Sequence[str] = (), snakemake: str | None = None) -> list[Output]:
    """Every output of the study in the current directory, from `snakemake
    --detailed-summary` (one tab-separated row per output file: its rule, its shell
    command, its status)."""
    command = [snakemake or snakemake_command(), "--detailed-summary", "--cores", "1"]
    if configfiles:
        command += ["--configfile", *configfiles]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"snakemake --detailed-summary failed in {os.getcwd()}:\n{tail}")
    lines = proc.stdout.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("output_file\t")), None)
    if header is None:
        raise RuntimeError("snakemake --detailed-summary printed no table; expected its header "
                           "line output_file<TAB>date<TAB>rule...")
    names = lines[header].split("\t")
    found = []
    for line in lines[header + 1:]:
        row = dict(zip(names, line.split("\t"), strict=False))
        if not row.get("output_file"):
            continue
        shell = row.get("shellcmd", "").split(" > ")[0]
        try:
            command = tuple(shlex.split(shell))
        except ValueError:
            command = ()
        inputs = tuple(i for i in row.get("input-file(s)", "").split(",") if i and i != "-")
        found.append(Output(row["output_file"], row.get("rule", ""), row.get("status", ""), command,
                            inputs))
    return found


@functools.cache
def _parser():
    from lesion.cli import parser

    return parser()


def parsed(output: Output):
    """The step's arguments as the step itself parsed them (lesion's own parser), or None."""
    if not output.step:
        return None
    try:
        return _parser().parse_args(list(output.command[3:]))
    except SystemExit:
        return None


# -- the checks ------------------------------------------------------------------------

def _kind(spec: str) -> files.TableKind:
    from lesion.registry import named_function  # "module:NAME" -> the object

    return named_function(spec)


def expected_kind(output: Output) -> files.TableKind | None:
    name = Path(output.path).name
    if output.step == "sweep run" and Path(output.path).parent.name == "variants":
        return _kind(EXPECTED[("sweep run", "variants")])
    spec = EXPECTED.get((output.step, name)) or EXPECTED.get((output.step, "*"))
    return _kind(spec) if spec else None


def _images(path: str) -> int | None:
    """The images in a test set (its `labels`' length), without loading it."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return f.get_slice("labels").get_shape()[0]
    except Exception:  # a test set that is itself bad is reported on its own
        return None


def check_table(output: Output, args) -> tuple[list[Problem], pa.Table | None]:
    path = output.path
    try:
        table = files.read_table(path)
    except files.InputFileError as err:
        return [Problem(path, str(err).removeprefix(f"{path}: "), "a whole Parquet table")], None
    meta = table.schema.metadata or {}
    kind = expected_kind(output)
    if kind is None:
        if files.KIND_KEY not in meta:
            return [Problem(path, "a table without the kind stamp of a lesion step",
                            f"a table written by `{' '.join(output.command[:5])}`")], table
        return [], table
    try:
        files.check_kind(table, path, kind)
    except files.InputFileError as err:
        return [Problem(path, str(err).removeprefix(f"{path}: ").split("; expected ")[0],
                        kind.describe())], table
    problems = []
    for column in NOT_NULL.get(kind.name, ()):
        if column in table.column_names:
            values = table.column(column)
            missing = values.null_count
            if pa.types.is_floating(values.type):
                import pyarrow.compute as pc
                missing += int(pc.sum(pc.is_nan(values)).as_py() or 0)
            if missing:
                problems.append(Problem(path, f"{missing} missing values (null or NaN) in column "
                                        f"{column!r}", f"a value in every row of {column!r}"))
    rows = expected_rows(output, args, kind, table)
    if rows is not None and table.num_rows != rows[0]:
        problems.append(Problem(path, f"{table.num_rows} rows", f"{rows[0]} ({rows[1]})"))
    return problems + _epochs(output, args, kind, table), table


def expected_rows(output: Output, args, kind: files.TableKind, table: pa.Table):
    """(rows, why) where the step's command says how many rows its table has, else None."""
    if args is None:
        return None
    step = output.step
    if step == "sweep run" and kind.name == "variants":
        layers = _swept_layers(args)
        if layers is None:
            return None
        return (len(layers) * len(args.levels) * args.draws,
                f"{len(layers)} layers x {len(args.levels)} levels x {args.draws} draws")
    if kind.name == "predictions" and step in ("sweep run", "sweep predict"):
        test = args.test
        if step == "sweep run" and output.path in args.other_outs:
            test = args.other_tests[args.other_outs.index(output.path)]
        images = _images(test)
        if images is None:
            return None
        if step == "sweep predict":
            return images, f"{images} images of {test}"
        layers = _swept_layers(args)
        if layers is None:
            return None
        variants = len(layers) * len(args.levels) * args.draws
        return variants * images, f"{variants} variants x {images} images of {test}"
    return None


def _epochs(output: Output, args, kind: files.TableKind, table: pa.Table) -> list[Problem]:
    """A training curve holds every epoch its step's `--epochs` trained."""
    if args is None or kind.name != "training curve" or not hasattr(args, "epochs"):
        return []
    epochs = len(set(table.column("epoch").to_pylist()))
    if epochs == args.epochs:
        return []
    return [Problem(output.path, f"a training curve of {epochs} epochs",
                    f"{args.epochs} epochs (--epochs of `{' '.join(output.command[:5])}`)")]


_MODELS: dict[tuple[str, str], object] = {}


def _model(dataset: str, weights: str):
    """The network of a weights file (cached per run: several tables share one)."""
    key = (dataset, weights)
    if key not in _MODELS:
        from lesion import data, models

        spec = data.get(dataset)
        _MODELS[key] = models.load_weights(weights, num_classes=spec.num_classes,
                                           input_shape=spec.input_shape)
    return _MODELS[key]


def _swept_layers(args) -> list[str] | None:
    from lesion import sweeps

    try:
        return sweeps.swept_layers(_model(args.dataset, args.weights), args.layers)
    except Exception:  # a weights file that does not load is reported on its own
        return None


def _variant_source(output: Output, args) -> tuple[str, str, int] | None:
    """(dataset, weights, study seed) a variants table was drawn from."""
    if output.step == "sweep run":
        return args.dataset, args.weights, args.seed
    if output.step == "filtering sweep":  # {out_dir}/epoch{E}/variants.parquet
        epoch = Path(output.path).parent.name.removeprefix("epoch")
        weights = dict(args.checkpoints).get(epoch)
        return (args.dataset, weights, args.seed) if weights else None
    return None


def check_variants(output: Output, args, table: pa.Table, sample: int,
                   bad: set[str]) -> list[Problem]:
    """Seeds against the names they hash from (every row), then `sample` variants per layer
    regenerated from the weights to their recorded sha256."""
    from lesion import operators

    source = _variant_source(output, args) if args is not None else None
    if source is None:
        return []
    dataset, weights, study_seed = source
    rows = table.to_pylist()
    problems = []
    wrong = [r for r in rows if r["seed"] != operators.variant_seed(
        study_seed, r["model"], r["layer"], r["perturbation"], r["level"], r["draw"])]
    if wrong:
        problems.append(Problem(output.path, f"{len(wrong)} of {len(rows)} seeds differ from the "
                                f"hash of their variant's name, first {wrong[0]['variant']} with "
                                f"seed {wrong[0]['seed']}",
                                f"seed {operators.variant_seed(study_seed, wrong[0]['model'], wrong[0]['layer'], wrong[0]['perturbation'], wrong[0]['level'], wrong[0]['draw'])} "  # noqa: E501
                                f"(operators.variant_seed of study seed {study_seed})"))
    if sample <= 0 or weights in bad:
        return problems
    from lesion import sweeps

    try:
        model = _model(dataset, weights)
    except Exception:  # reported as the weights file's problem
        return problems
    wrong_seeds = {r["variant"] for r in wrong}
    for layer, indices in sweeps.by_layer(rows).items():
        picked = [rows[i] for i in _spread(indices, sample)]
        base = sweeps.base_tensors(model, layer, picked[0]["perturbation"])
        for row in picked:
            if row["variant"] in wrong_seeds:
                continue
            try:
                sweeps.regenerate(row, base)
            except sweeps.VariantMismatchError as err:
                problems.append(Problem(output.path, str(err).split("; the weights")[0],
                                        f"the variant its row describes, drawn from {weights}"))
                break
    return problems


def _spread(indices: list[int], n: int) -> list[int]:
    """`n` of `indices`, evenly spread (first and last included)."""
    if n >= len(indices):
        return indices
    if n == 1:
        return [indices[0]]
    return [indices[round(i * (len(indices) - 1) / (n - 1))] for i in range(n)]


def check_tensors(output: Output) -> list[Problem]:
    from lesion import tensorfiles

    path = output.path
    try:
        tensors = tensorfiles.load_tensors(path)
        meta = tensorfiles.load_metadata(path)
    except files.InputFileError as err:
        return [Problem(path, str(err).removeprefix(f"{path}: "), "a whole safetensors file")]
    is_weights = Path(path).name in WEIGHT_NAMES or Path(path).parent.name == "checkpoints"
    if not is_weights:
        return []
    import torch

    try:
        _model(meta.get("dataset", ""), path)
    except Exception as err:  # noqa: BLE001 (any failure to build or load is the file's)
        return [Problem(path, f"does not load into its model ({str(err).splitlines()[0][:300]})",
                        f"the weights of {meta.get('model', 'its model')!r} "
                        f"({meta.get('arch', meta.get('source', '?'))})")]
    infinite = [name for name, t in tensors.items() if t.is_floating_point()
                and not bool(torch.isfinite(t).all())]
    if infinite:
        return [Problem(path, f"non-finite entries in {infinite}", "finite trained weights")]
    return []


def check_figure(path: str) -> list[Problem]:
    size = os.path.getsize(path)
    if size == 0:
        return [Problem(path, "an empty file", "a figure")]
    if path.endswith(".pdf"):
        with open(path, "rb") as f:
            head = f.read(5)
            f.seek(max(0, size - 1024))
            tail = f.read()
        if head != b"%PDF-" or b"%%EOF" not in tail:
            return [Problem(path, "not a whole PDF", "a file from %PDF- to %%EOF")]
        return []
    if path.endswith(".svg"):
        import xml.etree.ElementTree as ElementTree  # our own files: matplotlib wrote them

        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError as err:
            return [Problem(path, f"not whole XML ({err})", "an SVG figure")]
        if root.tag.rpartition("}")[2] != "svg":
            return [Problem(path, f"XML whose root is <{root.tag}>", "an SVG figure (<svg>)")]
        return []
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            width, height = image.size
    except Exception as err:  # noqa: BLE001 (PIL raises many kinds)
        return [Problem(path, f"not a readable image ({err})", "a PNG figure")]
    if width * height == 0:
        return [Problem(path, f"an image of {width}x{height} pixels", "a non-empty figure")]
    return []


def check_csv(path: str) -> list[Problem]:
    import pandas as pd

    try:
        pd.read_csv(path)
    except Exception as err:  # noqa: BLE001
        return [Problem(path, f"not a readable CSV ({str(err).splitlines()[0]})", "a CSV table")]
    return []


# -- what Snakemake recorded -----------------------------------------------------------

def _records(root: Path = Path(".snakemake/metadata")) -> dict[str, dict]:
    """Snakemake's record of each output's job, by output path (file names are the
    urlsafe base64 of the path, cut into directories named "@..." when long)."""
    found = {}
    if not root.is_dir():
        return found
    for file in root.rglob("*"):
        if not file.is_file():
            continue
        key = "".join(part.removeprefix("@") for part in file.relative_to(root).parts)
        try:
            path = base64.urlsafe_b64decode(key).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        try:
            found[path] = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
    return found


def recorded_checksums(records: dict[str, dict]) -> dict[str, list[tuple[float, str, str]]]:
    """{file: [(when the reading job started, sha256 it read, the job's output)]}."""
    read: dict[str, list[tuple[float, str, str]]] = {}
    for output, record in records.items():
        for path, digest in (record.get("input_checksums") or {}).items():
            if isinstance(digest, str) and digest.startswith("sha256:"):
                read.setdefault(path, []).append(
                    (float(record.get("starttime") or 0), digest.removeprefix("sha256:"), output))
    return read


def check_checksum(path: str, records: dict[str, dict],
                   read: dict[str, list[tuple[float, str, str]]]) -> list[Problem]:
    """The file against the sha256 a later job read, when its own job has not run since."""
    finished = float((records.get(path) or {}).get("endtime") or 0)
    seen = [(start, digest, reader) for start, digest, reader in read.get(path, ())
            if start >= finished]
    if not seen:
        return []
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if any(digest == d for _, d, _ in seen):
        return []
    start, recorded, reader = max(seen)
    return [Problem(path, f"its content changed since its job wrote it (sha256 {digest[:12]}...)",
                    f"sha256 {recorded[:12]}..., as Snakemake recorded it when the job that "
                    f"wrote {reader} read it ({time.strftime('%Y-%m-%d %H:%M', time.localtime(start))})")]


# -- the whole study -------------------------------------------------------------------

@dataclass
class Report:
    problems: list[Problem]
    checked: int
    seconds: float


def verify(configfiles: Sequence[str] = (), *, sample: int = 2, snakemake: str | None = None,
           listed: Iterable[Output] | None = None) -> Report:
    """Check every output of the study in the current directory (module docstring)."""
    started = time.perf_counter()
    _MODELS.clear()
    found = list(listed) if listed is not None else outputs(configfiles, snakemake)
    records = _records()
    read = recorded_checksums(records)
    problems: list[Problem] = []
    present = []
    for output in found:
        if not os.path.exists(output.path):
            problems.append(Problem(output.path, "missing",
                                    f"the output of rule {output.rule} (make study rebuilds it)",
                                    remove=False))
        elif os.path.isfile(output.path):
            present.append(output)
    bad: set[str] = set()

    def add(new: list[Problem]) -> None:
        problems.extend(new)
        bad.update(p.path for p in new if p.remove)

    tables = []
    for output in present:  # what each file is
        path = output.path
        if path.endswith(".safetensors"):
            add(check_tensors(output))
        elif path.endswith((".png", ".pdf", ".svg")):
            add(check_figure(path))
        elif path.endswith(".csv"):
            add(check_csv(path))
        elif path.endswith(".parquet"):
            args = parsed(output)
            new, table = check_table(output, args)
            add(new)
            if table is not None and not new:
                tables.append((output, args, table))
    for output in present:  # then its bytes against what a later job read
        add(check_checksum(output.path, records, read))
    for output, args, table in tables:  # variants last: they need the weights found good
        if (table.schema.metadata or {}).get(files.KIND_KEY) == b"variants":
            add(check_variants(output, args, table, sample, bad))
    return Report(problems, len(found), time.perf_counter() - started)


def repair(problems: Iterable[Problem], listed: Sequence[Output]) -> tuple[list[str], list[str]]:
    """Remove each file found bad, and mark for a rerun the jobs that read a bad or missing
    file: (removed, marked).

    Snakemake rebuilds a missing file only when a job that needs it runs: a missing table
    whose readers' outputs are all there is left missing. So the outputs of the jobs that
    read it (else the other outputs of its own job) get Snakemake's incomplete marker, the
    one a killed job leaves: the next `make study` (its profile has `rerun-incomplete`)
    reruns those jobs, which rebuilds the file, and what depends on them follows.
    """
    problems = list(problems)
    removed = []
    for path in dict.fromkeys(p.path for p in problems if p.remove):
        if os.path.isfile(path):
            os.unlink(path)
            removed.append(path)
    gone = {p.path for p in problems if p.remove or p.what == "missing"}
    marked = []
    for path in sorted(gone):
        readers = [o.path for o in listed if path in o.inputs]
        own = next((o for o in listed if o.path == path), None)
        siblings = [o.path for o in listed if own is not None and o.path != path
                    and (o.rule, o.command) == (own.rule, own.command)]
        for target in readers or siblings:
            if target not in gone and target not in marked and os.path.exists(target):
                mark_incomplete(target)
                marked.append(target)
    return removed, marked


def mark_incomplete(path: str, root: Path = Path(".snakemake/incomplete")) -> None:
    """Snakemake's marker of an output whose job did not finish (its file persistence:
    .snakemake/incomplete/ and the urlsafe base64 of the path, cut into directories named
    "@..." longer than the file system's name limit)."""
    limit = (os.pathconf(root.parent, "PC_NAME_MAX") if root.parent.is_dir() else 255) or 255
    key = base64.urlsafe_b64encode(path.encode()).decode()
    parts = [key[i:i + limit - 1] for i in range(0, len(key), limit - 1)]
    record = root.joinpath(*["@" + part for part in parts[:-1]], parts[-1])
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"external_jobid": None}))


@contextlib.contextmanager
def _no_study_running(configfiles: Sequence[str]) -> Iterator[None]:
    """Hold the study's kernel lock (lesion.tools.run's) while checking and removing: a
    running study's outputs are half made, and `make study` must not start meanwhile."""
    from lesion.tools import run

    lock = run.study_lock(["snakemake", *(["--configfile", *configfiles] if configfiles else [])])
    if run.snakemake_running_here():
        raise RuntimeError("Snakemake runs in this directory; expected a finished study: run "
                           "verify when it has stopped")
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"a study is running here ({lock} is held); expected a "
                               "finished study: run verify when it has stopped") from None
        yield


def main(configfiles: Sequence[str] = (), *, do_repair: bool = False, sample: int = 2) -> int:
    """Print one line per problem and a summary; 1 when anything is wrong and stays so (0
    once --repair removed the bad files: what is left is `make study`'s to rebuild)."""
    with _no_study_running(configfiles):
        return _main(configfiles, do_repair, sample)


def _main(configfiles: Sequence[str], do_repair: bool, sample: int) -> int:
    started = time.perf_counter()
    listed = outputs(configfiles)
    report = verify(configfiles, sample=sample, listed=listed)
    report.seconds = time.perf_counter() - started  # Snakemake's listing included
    for problem in report.problems:
        print(problem.line())
    bad = sorted({p.path for p in report.problems})
    print(f"verify: {report.checked} outputs checked in {report.seconds:.1f} s, "
          f"{len(report.problems)} problems in {len(bad)} files"
          + ("" if report.problems else ": all good"))
    if do_repair and report.problems:
        removed, marked = repair(report.problems, listed)
        print(f"verify --repair: removed {len(removed)} files"
              + (f" ({', '.join(removed)})" if removed else "")
              + f", marked {len(marked)} outputs of the jobs that read them for a rerun; run the "
              "study again (make study) to rebuild them and what depends on them")
    elif report.problems:
        print("verify: run again with --repair (make verify REPAIR=1) to remove the bad files, "
              "then make study rebuilds them")
    return 1 if report.problems and not do_repair else 0


__all__ = ["EXPECTED", "Output", "Problem", "Report", "main", "outputs", "repair", "verify"]
