"""The model registry: one obvious way to build, name and split a network.

Like torchvision's `get_model`, `build(name, ...)` returns an `nn.Module`.
Every network, lesion's own or brought (`build_source`: torchvision, timm, a
user's factory; see lesion.networks), is read from its traced graph
(lesion.graph): its weight layers in forward order, the norm that follows
each, and `split`, the cut in front of a layer that lets a sweep cache the
clean prefix and run only the suffix per variant. The catalog's networks
name their layers conv1..convN, fc1..fcM (the seed study's conv_1 ..
dense_3); any other network's layers are named by module path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lesion import files, graph, tensorfiles
from lesion.catalog import ALL_LAYERS, MODELS, ModelInfo

log = logging.getLogger(__name__)


def _cnn(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Sequential:
    """Two 3x3 convolutions and two dense layers, sized for small images."""
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * (height // 2) * (width // 2), 64), nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def _mlp(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Sequential:
    """FC100-100-10 of Szegedy et al. (2013)."""
    size = input_shape[0] * input_shape[1] * input_shape[2]
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(size, 100), nn.ReLU(),
        nn.Linear(100, 100), nn.ReLU(),
        nn.Linear(100, num_classes),
    )


def _fc(*hidden: int, activation: type[nn.Module] = nn.Sigmoid):
    """A fully connected network with `hidden` sigmoid layers and a softmax output
    (Szegedy et al. 2013: FC10 is softmax regression, FC100-100-10 has two hidden layers)."""

    def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Sequential:
        sizes = [input_shape[0] * input_shape[1] * input_shape[2], *hidden]
        body = [m for a, b in zip(sizes, sizes[1:], strict=False) for m in (nn.Linear(a, b), activation())]
        return nn.Sequential(nn.Flatten(), *body, nn.Linear(sizes[-1], num_classes))
    return build


def _torchvision(name: str) -> Callable[[int, tuple[int, int, int]], nn.Module]:
    def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        import torchvision  # costs 2 s of start-up: only for the models that need it

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    return build


def _resnet18_cifar(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """torchvision's resnet18 for 32x32 inputs (He et al. 2016, CIFAR setting).

    The 7x7 stride-2 stem and its max-pool would shrink a 32x32 image to 8x8
    before the first block; a 3x3 stride-1 stem without max-pool keeps 32x32.
    Everything else, and so the layer names, is resnet18's.
    """
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


# How each family of the catalog is built, (info) -> (num_classes, input_shape) -> network.
FAMILIES: dict[str, Callable[[ModelInfo], Callable[[int, tuple[int, int, int]], nn.Module]]] = {
    "cnn": lambda info: _cnn,
    "mlp": lambda info: _mlp,
    "fc": lambda info: _fc(*info.hidden),
    "resnet18_cifar": lambda info: _resnet18_cifar,
    "torchvision": lambda info: _torchvision(info.name),
}
# Architecture name -> its builder, one per model of the catalog (lesion.catalog.MODELS).
ARCHITECTURES: dict[str, Callable[[int, tuple[int, int, int]], nn.Module]] = {
    name: FAMILIES[info.family](info) for name, info in MODELS.items()}


def list_models() -> list[str]:
    return sorted(ARCHITECTURES)


def _architecture(name: str) -> Callable[[int, tuple[int, int, int]], nn.Module]:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"model {name!r} is unknown; expected one of {list_models()}") from None


def build(arch: str, *, num_classes: int = 1000,
          input_shape: tuple[int, int, int] = (3, 224, 224), name: str | None = None) -> nn.Module:
    """A freshly initialised network of architecture `arch` (uses the global torch RNG: seed it first).

    `name` is what a study calls this network (a config's model key, e.g.
    "FC10-1e-4" for an `fc10`); it defaults to the architecture.
    """
    model = _architecture(arch)(num_classes, tuple(input_shape))
    model.lesion_arch = arch  # the catalog's short layer names apply
    model.lesion_name = name or arch  # the network's name in tables and variant ids
    model.lesion_input_shape = tuple(input_shape)  # of the example pass that traces it
    return model


def build_source(source, *, num_classes: int, input_shape: tuple[int, ...],
                 name: str | None = None) -> nn.Module:
    """A freshly initialised network from a lesion.networks.Source (seed torch first).

    lesion's own architectures keep their short layer names; any other network
    is adopted (`adopt`).
    """
    if source.scheme == "lesion":
        if source.name not in ARCHITECTURES:
            from lesion.networks import SourceError

            raise SourceError(f"source {source}: no such lesion network; expected one of "
                              f"{list_models()}")
        return build(source.name, num_classes=num_classes, input_shape=input_shape, name=name)
    from lesion import networks

    return adopt(networks.build(source, num_classes, input_shape), input_shape=input_shape,
                 name=name or str(source), source=source)


def adopt(model: nn.Module, *, input_shape: tuple[int, ...] | None, name: str = "model",
          source=None) -> nn.Module:
    """Mark any network for the engine: its layers, norms and cuts then come from its
    traced graph (lesion.graph), its layers are named by module path. `input_shape` is
    one input without the batch (None: not known yet, enough for its layers, not for a
    cut; lesion.api sets it from the data); `source` (lesion.networks.Source) is
    recorded with its weights so that a step can build it again."""
    model.lesion_arch = None
    model.lesion_name = name
    model.lesion_source = source
    model.lesion_input_shape = None if input_shape is None else tuple(input_shape)
    return model


def _described(model: nn.Module) -> bool:
    """Whether the catalog describes the network (its short layer names apply)."""
    return getattr(model, "lesion_arch", None) in ARCHITECTURES


def traced_graph(model: nn.Module):
    """The network's traced graph (graph.traced), or None where fx cannot trace it;
    traced once and kept on the network (not as a submodule: the state dict stays)."""
    if "_lesion_traced" not in model.__dict__:
        try:
            model.__dict__["_lesion_traced"] = graph.traced(model, model.lesion_input_shape)
        except graph.Uncuttable:
            model.__dict__["_lesion_traced"] = None
    return model.__dict__["_lesion_traced"]


def layer_table(model: nn.Module) -> list[graph.Layer]:
    """The network's layer table, from its graph, kept on the network."""
    table = model.__dict__.get("_lesion_layers")
    if table is None and model.lesion_input_shape is None:  # adopted without a shape (lesion.api)
        table = model.__dict__["_lesion_layers"] = graph.layer_table(model)
    if table is None:
        example = torch.zeros(1, *model.lesion_input_shape,
                              dtype=next(model.parameters()).dtype)
        table = graph.layer_table(model, example=example, traced=traced_graph(model))
        model.__dict__["_lesion_layers"] = table
    return table


def layer_paths(model: nn.Module) -> dict[str, str]:
    """Each weight layer's name -> its module path, in forward order: the catalog's
    short names (conv1.., fc1..: convolutions and dense layers counted apart), or the
    path itself for any other network."""
    if not _described(model):
        return {layer.name: layer.name for layer in layer_table(model)}
    counts = {"conv": 0, "fc": 0}
    out = {}
    for layer in layer_table(model):
        kind = "fc" if layer.type == "Linear" else "conv"
        counts[kind] += 1
        out[f"{kind}{counts[kind]}"] = layer.name
    return out


def layers(model: nn.Module) -> dict[str, nn.Module]:
    """The named weight layers (Conv, Linear) in forward order (`layer_paths`)."""
    return {name: model.get_submodule(path) for name, path in layer_paths(model).items()}


def layer(model: nn.Module, name: str) -> nn.Module:
    named = layers(model)
    if name not in named:
        raise ValueError(graph.unknown_layer(name, list(named)))
    return named[name]


def layer_tensors(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The layer's parameters as `{"weight": W, "bias": b}` (no bias if it has none)."""
    module = layer(model, name)
    return {k: p.detach() for k, p in module.named_parameters(recurse=False)}


def weight_tensors(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The Conv/Linear weights a synaptic filter acts on (never biases or BatchNorm):
    `{"weight": W}` of layer `name`, or for ALL_LAYERS ("all") every weight layer's
    as `{"conv1.weight": W1, ...}`."""
    if name == ALL_LAYERS:
        return {f"{n}.weight": m.weight.detach() for n, m in layers(model).items()}
    return {"weight": layer(model, name).weight.detach()}


NORM = "norm."  # key prefix of a unit's normalisation tensors (unit_tensors)


def norm_after(model: nn.Module, name: str) -> nn.Module | None:
    """The norm (graph.UNIT_NORMS) that normalises layer `name`'s output units: the one
    that alone reads the layer's output in the graph, wherever it is registered."""
    layer(model, name)  # an unknown name is refused with the nearest names
    path = layer_paths(model)[name]
    norm = next(row.norm for row in layer_table(model) if row.name == path)
    return None if norm is None else model.get_submodule(norm)


def unit_tensors(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """What makes up the layer's output units: its tensors, and its BatchNorm's scale and
    shift as "norm.weight" and "norm.bias" where one follows (norm_after).

    Zeroing a unit's weights leaves its BatchNorm to emit beta - gamma * mean /
    sqrt(var + eps), a constant, not silence; with gamma and beta zeroed too,
    the unit's normalised output is exactly 0.
    """
    out = layer_tensors(model, name)
    norm = norm_after(model, name)
    if norm is not None:
        out |= {NORM + k: p.detach() for k, p in norm.named_parameters(recurse=False)}
    return out


def parameter_names(container: nn.Module, model: nn.Module, name: str,
                    keys: list[str]) -> dict[str, str]:
    """The parameter name in `container` (the model, or a suffix of it from `split`) of each
    variant tensor: `keys` of layer_tensors, unit_tensors or weight_tensors."""
    paths = {id(m): n for n, m in container.named_modules()}
    if name == ALL_LAYERS:  # keys "{layer}.weight" of weight_tensors (a layer's name may hold dots)
        named = layers(model)
        return {key: f"{paths[id(named[key.rsplit('.', 1)[0]])]}.{key.rsplit('.', 1)[1]}"
                for key in keys}
    owners = {"": layer(model, name), NORM: norm_after(model, name)}
    out = {}
    for key in keys:
        prefix = NORM if key.startswith(NORM) else ""
        owner = owners[prefix]
        if owner is None or id(owner) not in paths:
            raise ValueError(f"variant tensor {key!r} of layer {name!r} is not in the network "
                             "after the layer; expected the layer's own tensors or its norm's")
        out[key] = f"{paths[id(owner)]}.{key.removeprefix(prefix)}"
    return out


def split(model: nn.Module, layer_name: str) -> tuple[nn.Module, nn.Sequential, str]:
    """Cut `model` in front of layer `layer_name` (lesion.graph.split).

    Returns (prefix, suffix, prefix of the layer's parameter names inside
    `suffix`): nothing in `prefix` depends on the layer, so its output can be
    computed once and reused for every variant of that layer. ALL_LAYERS
    ("all", every layer at once) has an empty prefix: the whole network runs.
    Where the network cannot be cut (fx cannot trace it, or the layer is
    called twice), the whole network runs per variant, and the log says so.
    """
    cuts = model.__dict__.setdefault("_lesion_cuts", {})
    if layer_name == ALL_LAYERS:
        cuts[layer_name] = "whole network (every layer varies)"
        return nn.Sequential(), nn.Sequential(model), ""
    target = layer(model, layer_name)
    try:
        traced = traced_graph(model)
        if traced is None:
            raise graph.Uncuttable(f"{type(model).__name__} cannot be traced by torch.fx")
        cuts[layer_name] = "prefix cached (torch.fx graph)"
        return graph.split(traced, layer_paths(model)[layer_name])
    except graph.Uncuttable as err:
        log.warning("%s, layer %s: %s; the whole network runs once per variant (no prefix "
                    "cache)", model.lesion_name, layer_name, err)
        cuts[layer_name] = f"whole network per variant ({err})"
        whole = nn.Sequential(model)
        return nn.Sequential(), whole, next(n for n, m in whole.named_modules() if m is target)


def cut_of(model: nn.Module, layer_name: str) -> str:
    """How `split` cut the network at a layer (a table's metadata says so): the prefix
    cached, or the whole network per variant and why."""
    return model.__dict__.get("_lesion_cuts", {}).get(layer_name, "not cut")


def save_weights(model: nn.Module, path: str | os.PathLike, **metadata: Any) -> None:
    """Store the state dict (copied to the CPU, the model stays where it is) as safetensors,
    with its provenance as metadata."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    source = getattr(model, "lesion_source", None)
    if not _described(model) and source is None:
        raise ValueError(f"network {model.lesion_name!r} has no source to rebuild it from; "
                         "expected one adopted with source= (lesion.networks.Source)")
    if source is not None:  # a brought network: how to build it again
        metadata = {"source": str(source), "source_path": source.path,
                    "source_kwargs": dict(source.kwargs),
                    "input_shape": list(model.lesion_input_shape), **metadata}
    if getattr(model, "lesion_normalize", None):  # rebuilt with it by load_weights
        metadata = {"input_normalize": model.lesion_normalize, **metadata}
    tensorfiles.save_tensors(state, path, {"model": model.lesion_name, "arch": model.lesion_arch, **metadata})


def load_weights(path: str | os.PathLike, *, num_classes: int,
                 input_shape: tuple[int, int, int]) -> nn.Module:
    """Rebuild the network the file's metadata names (its `arch`, or for files
    without one its `model`) and load its weights (eval mode)."""
    meta = tensorfiles.load_metadata(path)
    if "model" not in meta:
        raise files.InputFileError(f"{path}: no 'model' entry in the safetensors metadata")
    if meta.get("source"):
        return _load_brought(path, meta, num_classes)
    arch = meta.get("arch", meta["model"])
    if arch not in ARCHITECTURES:
        raise files.InputFileError(f"{path}: architecture {arch!r} is unknown; expected one of "
                                   f"{list_models()}")
    model = build(arch, num_classes=num_classes, input_shape=input_shape, name=meta["model"])
    return _loaded(model, path, meta)


def _loaded(model: nn.Module, path, meta: dict) -> nn.Module:
    """`model` with the file's input normalisation and weights (eval mode)."""
    from lesion import networks

    if meta.get("input_normalize"):
        networks.normalise_input(model, **meta["input_normalize"],
                                 input_shape=model.lesion_input_shape)
    networks.load_state(model, tensorfiles.load_tensors(path), str(path))
    model.lesion_metadata = meta
    return model.eval()


def _load_brought(path, meta: dict, num_classes: int) -> nn.Module:
    """A brought network rebuilt from the source its weights file records, weights loaded."""
    from lesion import networks

    source = networks.Source.parse(meta["source"], path=meta.get("source_path"),
                                   kwargs=meta.get("source_kwargs"))
    model = build_source(source, num_classes=num_classes, input_shape=tuple(meta["input_shape"]),
                         name=meta["model"])
    return _loaded(model, path, meta)
