"""lesion from Python: the engine's steps as functions over a network and its data.

Each function runs the engine the workflow's steps run (lesion.sweeps, lesion.predict,
lesion.metrics), in memory, so the numbers are the DAG's: a
variant drawn here has the seed, tensors and sha256 that a rule draws for the same
(seed, network name, layer, operator, level, draw), and `sweep` returns the rows of a
study's `metrics.parquet`. A network of your own is marked for the engine on first use
(lesion.models.adopt: attributes `lesion_*`; its layers are named by module path). No
function leaves it perturbed, moved to another device or in another train/eval mode.

`data` is a torch Dataset, a DataLoader, a pair (images, labels) of tensors, or a split
file of a study (`results/{dataset}/tensors/test.safetensors`). A study adds functions of
its own in its package's `api` module (`lesion.crash`, `lesion.attack`, ...), registered
with its `Study(api=...)` and built on `tensors_of`, `mark` and `borrowed` here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from lesion import catalog, evaluate, files, metrics, models, predict, sweeps, tensorfiles
from lesion import data as datasets

Data = (torch.utils.data.Dataset | torch.utils.data.DataLoader | tuple[torch.Tensor, torch.Tensor]
        | str | os.PathLike)
Network = nn.Module | str | os.PathLike

# The config schema's `evaluate` defaults (a study's api module has its section's);
# tests/test_api.py checks that they are the schema's.
BATCH_SIZE, VARIANTS_PER_PASS, CACHE_GB, PRECISION = 512, 8, 4.0, "ieee"


def network(path: str | os.PathLike, data: Data | None = None) -> nn.Module:
    """The network of a study's weights file, rebuilt and loaded (eval mode), with its
    name and layer names as the study's tables have them. `data` (a split file) is
    needed only for a dataset of your own, whose class count its splits carry.

    >>> net = lesion.network(weights)  # e.g. "results/digits/mlp/weights.safetensors"
    >>> net.lesion_name
    'mlp'
    """
    meta = tensorfiles.load_metadata(path)
    if "dataset" not in meta:
        raise ValueError(f"{path}: its metadata names no dataset; expected weights written "
                         "by a study's model step (e.g. `python -m lesion model train`)")
    split = data if isinstance(data, str | os.PathLike) else None
    spec = datasets.get(meta["dataset"], split=split)
    return models.load_weights(path, num_classes=spec.num_classes, input_shape=spec.input_shape)


def tensors_of(data: Data, what: str = "data") -> tuple[torch.Tensor, torch.Tensor, str | None]:
    """(images, labels, the dataset a split file names) on the CPU; the engine moves each
    batch to the device it runs on."""
    if isinstance(data, str | os.PathLike):
        dataset = tensorfiles.load_metadata(data).get("dataset")
        return *datasets.load_split(data, dataset), dataset
    if isinstance(data, torch.utils.data.DataLoader):
        batches = list(data)
    elif isinstance(data, torch.utils.data.Dataset):
        batches = list(torch.utils.data.DataLoader(data, batch_size=BATCH_SIZE))
    elif isinstance(data, tuple | list) and len(data) == 2:
        batches = [tuple(data)]
    else:
        raise TypeError(f"{what} is a {type(data).__name__}; expected a torch Dataset, a "
                        "DataLoader, a pair (images, labels) of tensors or a split file's path")
    images = torch.cat([torch.as_tensor(b[0]) for b in batches]).detach().cpu()
    labels = torch.cat([torch.as_tensor(b[1]).reshape(-1) for b in batches]).detach().cpu()
    if not images.is_floating_point() or images.dim() < 2:
        raise ValueError(f"{what}: images of dtype {images.dtype} and shape {tuple(images.shape)}; "
                         "expected floating-point images with a batch dimension")
    if labels.is_floating_point() or labels.is_complex() or len(labels) != len(images):
        raise ValueError(f"{what}: {len(labels)} labels of dtype {labels.dtype} for {len(images)} "
                         "images; expected one integer class label per image")
    if not len(images):
        raise ValueError(f"{what} holds no images; expected at least one")
    return images, labels.to(torch.int64), None


def mark(model: Network, input_shape: tuple[int, ...] | None = None,
         name: str | None = None) -> nn.Module:
    """`model` marked for the engine (a weights file: `network`); `input_shape` (one input,
    no batch) is set where it was not known, `name` where given."""
    if isinstance(model, str | os.PathLike):
        model = network(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model is a {type(model).__name__}; expected a torch.nn.Module or the "
                        "path of a study's weights file")
    if getattr(model, "lesion_name", None) is None:
        models.adopt(model, input_shape=input_shape, name=name or "model")
    elif name is not None:
        model.lesion_name = name
    if input_shape is not None and model.lesion_input_shape != tuple(input_shape):
        model.lesion_input_shape = tuple(input_shape)
        for cached in ("_lesion_traced", "_lesion_layers", "_lesion_cuts"):  # of another shape
            model.__dict__.pop(cached, None)
    return model


@contextlib.contextmanager
def borrowed(model: nn.Module, device: str, precision: str) -> Iterator[torch.device]:
    """Run on `device` ("auto": the model's GPU if it is on one, else CUDA when present, else
    the CPU) in eval mode; give the model back where it was and in the modes it had."""
    parameters = list(model.parameters())
    home = parameters[0].device if parameters else torch.device("cpu")
    dev = evaluate.pick_device(device, precision)  # also sets the float32 precision
    if device == "auto" and home.type == "cuda":
        dev = home
    modes = {m: m.training for m in model.modules()}
    try:
        yield dev
    finally:
        model.to(home)
        for m, mode in modes.items():
            m.train(mode)


def layers(model: Network, input_shape: tuple[int, ...] | None = None) -> pd.DataFrame:
    """The weight layers (Conv, Linear) in forward order, as a sweep names them: name, type,
    parameters, out_features, the norm that normalises its units (node knockout silences
    it with them) and whether torch.fx traced the network (`python -m lesion model layers`).

    >>> list(lesion.layers(torchvision.models.resnet18())["name"][:3])
    ['conv1', 'layer1.0.conv1', 'layer1.0.conv2']
    """
    from lesion import networks

    return networks.layer_frame(mark(model, input_shape))


@dataclass(frozen=True)
class Variant:
    """One variant: its row of a variants table (variant id, seed, sha256, how far it moved:
    changed, rel_l1, rel_l2, ...) and its tensors, keyed as the layer's parameters
    (`weight`, `bias`, and `norm.weight`, `norm.bias` for node knockout)."""

    row: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def _checked_operator(operator: str, levels: Sequence[float], options: Mapping) -> None:
    catalog.check_sweep(operator, list(levels))
    valid = catalog.OPERATOR_OPTIONS.get(operator, ())
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"option {unknown[0]!r} does not apply to {operator}; expected "
                         f"{list(valid) or 'no options'}")


def variant(model: Network, layer: str, operator: str, level: float, *, seed: int = 0,
            draw: int = 0, name: str | None = None, dataset: str = "data",
            **options: Any) -> Variant:
    """Draw one variant of a layer: the tensors and table row that a study with this `seed`
    (its `seed` key) draws for it. The network is left as it is.

    >>> v = lesion.variant(net, "fc1", "synapse_knockout", 0.5, seed=0)
    >>> v.row["changed"] / v.row["weights"]  # half of fc1's weights and biases knocked out
    0.5
    """
    if operator in catalog.ACTIVATION_OPERATORS:
        raise ValueError(f"operator {operator!r} acts on activations, not on tensors; expected a "
                         f"weight operator (for crashes: lesion.crash, lesion.sweep)")
    _checked_operator(operator, [level], options)
    marked = mark(model, name=name)
    base = sweeps.base_tensors(marked, layer, operator)
    row, new = sweeps.one_variant(base, dataset=dataset, model=marked.lesion_name, layer=layer,
                                  perturbation=operator, level=level, draw=draw,
                                  study_seed=seed, options=options)
    return Variant(row, new)


@contextlib.contextmanager
def perturb(model: nn.Module, layer: str, operator: str, level: float, *, seed: int = 0,
            draw: int = 0, name: str | None = None, dataset: str = "data",
            **options: Any) -> Iterator[dict[str, Any]]:
    """Apply one variant (`variant`) to the network in place, for the `with` block; on exit,
    even by an exception, every tensor it changed is restored bit for bit. Yields the
    variant's table row.

    >>> with lesion.perturb(net, "fc1", "gaussian", 0.5, seed=0) as row:
    ...     damaged = net(images).argmax(1)
    >>> row["variant"]
    'mlp-fc1-gaussian0.50-num0'
    """
    drawn = variant(model, layer, operator, level, seed=seed, draw=draw, name=name,
                    dataset=dataset, **options)
    targets = models.parameter_names(model, model, layer, list(drawn.tensors))
    parameters = dict(model.named_parameters())
    saved = {key: parameters[path].detach().clone() for key, path in targets.items()}
    try:
        with torch.no_grad():
            for key, path in targets.items():
                parameters[path].copy_(drawn.tensors[key])
        yield drawn.row
    finally:
        with torch.no_grad():
            for key, path in targets.items():
                parameters[path].copy_(saved[key])


def _per_operator(value, operators: list[str], what: str) -> dict:
    """`value` for every operator, or a mapping operator -> value naming each."""
    if isinstance(value, Mapping):
        missing = [op for op in operators if op not in value]
        if missing:
            raise ValueError(f"{what} names no value for {missing[0]!r}; expected {what} for "
                             f"every operator of {operators}")
        return {op: value[op] for op in operators}
    return dict.fromkeys(operators, value)


def sweep(model: Network, data: Data, *, operators: str | Sequence[str],
          levels: Sequence[float] | Mapping[str, Sequence[float]], layers: str | Sequence[str] = "all",
          draws: int | Mapping[str, int] = 1, seed: int = 0, options: Mapping[str, Mapping] | None = None,
          testsets: Mapping[str, Data] | None = None, dataset: str | None = None,
          name: str | None = None, device: str = "auto", precision: str = PRECISION,
          batch_size: int = BATCH_SIZE, variants_per_pass: int = VARIANTS_PER_PASS,
          cache_gb: float = CACHE_GB, predictions: bool = False,
          ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Sweep `operators` over `layers` ("all", one name or several) at `levels`, `draws`
    draws each (one value for every operator, or operator -> value): the long metrics table
    of a study's `metrics.parquet` (top1, top5, loss, agreement, nonfinite per test set
    and variant, the unperturbed network as perturbation `none`), value for value. The
    clean prefix in front of each layer is computed once and the variants are batched,
    as in the sweep step. `testsets` adds named test sets (an adversarial set, say);
    `options` gives an operator its options (e.g. {"bitflip": {"bits": "exponent"}});
    with `predictions=True` the per-image table comes too (top-5 classes and loss of
    every variant and image, with its test set).

    >>> table = lesion.sweep(net, (images, labels), operators=["gaussian"], levels=[0.5, 1.0])
    >>> len(table)  # (the intact network + 3 layers x 2 levels) x 5 metrics
    35
    """
    operators = [operators] if isinstance(operators, str) else list(operators)
    if not operators:
        raise ValueError("operators is empty; expected at least one of "
                         f"{sorted(catalog.OPERATORS)}")
    per_operator = {op: [float(x) for x in value]
                    for op, value in _per_operator(levels, operators, "levels").items()}
    draws = _per_operator(draws, operators, "draws")
    options = {op: dict(o) for op, o in (options or {}).items()}
    stray = sorted(set(options) - set(operators))
    if stray:
        raise ValueError(f"options are given for {stray[0]!r}, which is not swept; expected "
                         f"options of some of {operators}")
    for op in operators:
        _checked_operator(op, per_operator[op], options.get(op, {}))
    for op, n in draws.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"draws of {op} = {n!r}; expected an integer >= 1")
    images, labels, found = tensors_of(data)
    sets = [("clean", images, labels)]
    for testset, extra in (testsets or {}).items():
        if testset == "clean":
            raise ValueError("testsets names a set 'clean'; expected another name (the test "
                             "data is the set 'clean')")
        sets.append((testset, *tensors_of(extra, f"testsets[{testset!r}]")[:2]))
    dataset = dataset or found or "data"
    marked = mark(model, tuple(images.shape[1:]), name)
    sweeps.swept_layers(marked, layers)  # every name checked before any work
    pairs = [(x, y) for _, x, y in sets]
    engine = {"batch_size": batch_size, "variants_per_pass": variants_per_pass,
              "cache_bytes": cache_gb * 2**30}
    with borrowed(marked, device, precision) as dev, torch.no_grad():
        cleans = [predict.unperturbed_predictions(marked, x, y, dev, batch_size=batch_size)
                  for x, y in pairs]
        swept = []  # (variants table, predictions table per test set), one per operator
        for op in operators:
            drawing = {"dataset": dataset, "levels": per_operator[op], "draws": draws[op],
                       "study_seed": seed, "options": options.get(op, {})}
            if op in catalog.ACTIVATION_OPERATORS:
                rows = sweeps.variant_rows(marked, layers, op, **drawing)
                results = [predict.table_results(marked, rows, x, y, dev, **engine)
                           for x, y in pairs]
            else:
                _, rows, results = predict.sweep_layers(marked, pairs, dev, layers=layers,
                                                        perturbation=op, **drawing, **engine)
            swept.append(predict.sweep_tables(rows, [y for _, y in pairs], results))
    long = pd.concat([metrics.study_metrics(dataset, marked.lesion_name, cleans[i],
                                            [(v, per_set[i]) for v, per_set in swept], testset)
                      for i, (testset, _, _) in enumerate(sets)], ignore_index=True)
    if not predictions:
        return long
    frames = [table.to_pandas().assign(testset=testset)
              for i, (testset, _, _) in enumerate(sets)
              for table in [cleans[i], *(per_set[i] for _, per_set in swept)]]
    per_image = pd.concat(frames, ignore_index=True)
    per_image["variant"] = per_image["variant"].astype(str)
    return long, per_image[["testset", "variant", "image", "label", "top5", "loss"]]


class Results:
    """A results directory, read lazily: a subdirectory is an attribute (`study.mlp.faults`),
    and so is a Parquet table, as a DataFrame whose `attrs` hold the table's metadata (its
    kind, the step that wrote it, and where recorded the precision and device). Names that
    are not Python identifiers are items: `study["FC10-1e-4"].metrics`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _entries(self) -> dict[str, Path]:
        return {(p.stem if p.suffix == ".parquet" else p.name): p
                for p in sorted(self.path.iterdir(), key=lambda p: (p.suffix == ".parquet", p.name))
                if p.is_dir() or p.suffix == ".parquet"}

    def keys(self) -> list[str]:
        """The tables and directories here."""
        return list(self._entries())

    def __getitem__(self, key: str) -> Results | pd.DataFrame:
        entries = self._entries()
        if key not in entries:
            raise KeyError(f"{self.path}: no table or directory {key!r}; expected one of "
                           f"{sorted(entries)}")
        path = entries[key]
        if path.is_dir():
            return Results(path)
        table = files.read_table(path)
        frame = table.to_pandas()
        frame.attrs = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()
                       if k != b"pandas"}
        return frame

    def __getattr__(self, key: str) -> Results | pd.DataFrame:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(err.args[0]) from None

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *(k for k in self._entries() if k.isidentifier())]

    def __repr__(self) -> str:
        return f"Results({str(self.path)!r}: {', '.join(self.keys())})"


def load(path: str | os.PathLike) -> Results:
    """A study's results (`results/{dataset}`, or any directory below it) as `Results`.

    >>> study = lesion.load(results)
    >>> study.mlp.metrics.attrs["lesion.table"]
    'metrics'
    """
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{path}: no such directory; expected a study's results "
                                "directory, e.g. results/digits")
    return Results(path)
