"""Where a network comes from: a source string of the config, built into an nn.Module,
and weights a user already has, imported into it.

    lesion:<arch>                 lesion's own networks (models.ARCHITECTURES)
    torchvision:<builder>         any classification model torchvision.models lists
    timm:<name>                   timm.create_model(name, pretrained=False, in_chans=<the
                                  data's channels>, ...) (optional extra)
    python:<module>:<callable>    the user's own factory, called with the config's kwargs

A torchvision or timm network is built with `num_classes` (and `kwargs`); a
user's factory gets exactly its `kwargs`. Every failure is one line that
names the source and what was expected.

Images stay in [0, 1] everywhere (on disk, in the attacks' box); the mean/std
normalisation a network was trained with runs inside it (`normalise_input`),
recorded with its weights so that every step rebuilds it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lesion import files, tensorfiles
from lesion.network_source import SCHEMES, Source, SourceError  # noqa: F401 (re-exported)


def build(source: Source, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """A freshly initialised network (seed torch's global generator first), normalising its
    input where the source says so."""
    builders = {"lesion": _lesion, "torchvision": _torchvision, "timm": _timm, "python": _python}
    model = builders[source.scheme](source, num_classes, tuple(input_shape))
    if not isinstance(model, nn.Module):
        raise SourceError(f"source {source}: returned a {type(model).__name__}; expected a "
                          "torch.nn.Module")
    if source.normalize is not None:
        mean, std = _normalisation(source, model)
        if len(mean) != input_shape[0]:
            raise SourceError(f"source {source}: normalize has {len(mean)} channels ({mean}); "
                              f"expected the data's {input_shape[0]} (give mean and std)")
        model = normalise_input(model, mean, std, input_shape)
    return model


def _normalisation(source: Source, model: nn.Module) -> tuple[list[float], list[float]]:
    """The mean and std of `source.normalize`: as given, or the source library's own."""
    if source.normalize != "source":
        return [float(m) for m in source.normalize["mean"]], [float(s) for s in source.normalize["std"]]
    if source.scheme == "timm":
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if "mean" in cfg and "std" in cfg:
            return list(cfg["mean"]), list(cfg["std"])
    elif source.scheme == "torchvision":
        import torchvision

        try:
            preset = torchvision.models.get_model_weights(source.name).DEFAULT.transforms()
            return list(preset.mean), list(preset.std)
        except (ValueError, AttributeError):
            pass  # no published weights, or weights without a mean/std
    raise SourceError(f"source {source}: normalize: source, but the source has no input "
                      "normalisation of its own; expected normalize: {mean: [...], std: [...]}")


def normalise_input(model: nn.Module, mean, std, input_shape: tuple[int, ...]) -> nn.Module:
    """`model`, its forward now starting with (x - mean) / std per channel (input_shape: one
    input without the batch, channels first).

    The class is swapped for a subclass whose forward normalises first, so
    module paths and the state dict stay the network's own (mean and std are
    buffers left out of it) and torch.fx traces the normalisation as the
    graph's first nodes: the prefix every sweep caches. A wrapper module
    would rename every layer. `model.lesion_normalize` records mean and std.
    """
    base = type(model)

    def forward(self, x):  # one input, as everywhere in lesion (fx traces this signature)
        return base.forward(self, (x - self.lesion_mean) / self.lesion_std)

    model.__class__ = type(base.__name__, (base,), {"forward": forward,
                                                    "__module__": base.__module__})
    shape = (1, len(mean)) + (1,) * (len(input_shape) - 1)
    model.register_buffer("lesion_mean", torch.tensor(mean, dtype=torch.float32).view(shape),
                          persistent=False)
    model.register_buffer("lesion_std", torch.tensor(std, dtype=torch.float32).view(shape),
                          persistent=False)
    model.lesion_normalize = {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}
    return model


def _lesion(source: Source, num_classes: int, input_shape) -> nn.Module:
    from lesion import models

    return models.build_source(source, num_classes=num_classes, input_shape=input_shape)


def _torchvision(source: Source, num_classes: int, input_shape) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)  # classification only
    if source.name not in known:
        import difflib

        near = difflib.get_close_matches(source.name, known, n=3)
        raise SourceError(f"source {source}: not a torchvision classification model"
                          f"{f' (did you mean {near}?)' if near else ''}; expected one of "
                          "torchvision.models.list_models(module=torchvision.models)")
    return torchvision.models.get_model(source.name, weights=None, num_classes=num_classes,
                                        **source.kwargs)


def _timm(source: Source, num_classes: int, input_shape) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise SourceError(f"source {source}: timm is not installed; install the optional "
                          "extra with pip install -e '.[timm]'") from None
    if not timm.is_model(source.name):
        raise SourceError(f"source {source}: timm has no model {source.name!r}; expected a name "
                          "of timm.list_models()")
    # the dataset's channels unless the config says otherwise (timm builds 3 by default)
    kwargs = {"in_chans": input_shape[0], **source.kwargs}
    return timm.create_model(source.name, pretrained=False, num_classes=num_classes, **kwargs)


def _python(source: Source, num_classes: int, input_shape) -> nn.Module:
    module_name, attribute = source.name.split(":")
    where = Path(source.path or os.getcwd()).resolve()
    if not where.is_dir():
        raise SourceError(f"source {source}: path = {source.path!r} is not a directory; expected "
                          "the directory that holds the module")
    file = where / (module_name.replace(".", "/") + ".py")
    if not file.is_file():
        raise SourceError(f"source {source}: no module file {file}; expected "
                          f"{module_name.replace('.', '/')}.py in {where} (models.<name>.path)")
    # imported under its own file path, so two studies' modules of one name do not collide
    spec = importlib.util.spec_from_file_location(f"lesion_user.{module_name}", file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(where))  # the module may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise SourceError(f"source {source}: {file} does not import ({type(err).__name__}: "
                          f"{err})") from err
    finally:
        sys.path.remove(str(where))
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise SourceError(f"source {source}: {file} has no callable {attribute!r}; expected a "
                          "function or class that returns the network")
    try:
        return factory(**source.kwargs)
    except Exception as err:
        raise SourceError(f"source {source}: {attribute}(**{dict(source.kwargs)}) raised "
                          f"{type(err).__name__}: {err}") from err


def read_state(path: str | os.PathLike, *, state_dict_key: str | None = None,
               strip_prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: safetensors, or a PyTorch checkpoint loaded with
    weights_only=True (nothing is unpickled but tensors and plain containers).

    `state_dict_key` picks the state dict inside a checkpoint (Lightning's
    "state_dict"; a dotted path for nested ones); `strip_prefix` removes a
    prefix from every key that has it (DDP's "module.", Lightning's "model.").
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"weights = {str(path)!r}: no such file; expected a .safetensors file "
                          "or a PyTorch state dict (.pt, .pth, .ckpt)")
    if path.suffix == ".safetensors":
        state = tensorfiles.load_tensors(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise SourceError(f"weights = {str(path)!r}: not a PyTorch checkpoint of plain "
                              f"tensors ({type(err).__name__}: {str(err).splitlines()[0]}); "
                              "expected a state dict saved with torch.save") from None
    for part in (state_dict_key.split(".") if state_dict_key else []):
        if not isinstance(state, Mapping) or part not in state:
            keys = list(state)[:8] if isinstance(state, Mapping) else type(state).__name__
            raise SourceError(f"state_dict_key = {state_dict_key!r}: {path} has no {part!r}; "
                              f"expected one of {keys}")
        state = state[part]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SourceError(f"weights = {str(path)!r}: not a mapping of names to tensors; expected "
                          "a state dict (or name the one inside with state_dict_key)")
    if strip_prefix:
        state = {k.removeprefix(strip_prefix): v for k, v in state.items()}
    return dict(state)


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load `state` (read from `where`) into `model` strictly; a misfit names the network and
    at most five missing, unexpected and wrongly shaped keys each."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
             for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        details = "; ".join(f"{label} ({len(keys)}): {keys[:5]}" for label, keys in
                            (("missing", missing), ("unexpected", unexpected),
                             ("wrong shape", wrong)) if keys)
        arch, source = getattr(model, "lesion_arch", None), getattr(model, "lesion_source", None)
        origin = f"architecture {arch!r}" if arch else f"source {source}"
        raise files.InputFileError(f"{where}: tensors do not fit model "
                                   f"{getattr(model, 'lesion_name', type(model).__name__)!r} "
                                   f"({origin}; {details})")
    model.load_state_dict(state)


def import_network(name: str, dataset: str, source: Source, weights: str | os.PathLike,
                   out: str | os.PathLike, *, state_dict_key: str | None = None,
                   strip_prefix: str | None = None, split: str | os.PathLike | None = None) -> None:
    """A network the user brings with its weights, as lesion's weights file: built from
    `source`, loaded strictly, and written with its provenance (source, the weights
    file's name and sha256, the key mapping) so that every step rebuilds it. Nothing
    is trained. `split`: a split of a dataset of one's own (lesion.data.get)."""
    import hashlib

    from lesion import data, models

    spec = data.get(dataset, split=split)
    model = models.build_source(source, num_classes=spec.num_classes, input_shape=spec.input_shape,
                                name=name)
    state = read_state(weights, state_dict_key=state_dict_key, strip_prefix=strip_prefix)
    load_state(model, state, f"weights = {str(weights)!r}")
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    models.save_weights(model, out, dataset=dataset, imported={
        "file": Path(weights).name, "sha256": digest, "state_dict_key": state_dict_key,
        "strip_prefix": strip_prefix, "tensors": len(state)})


def layer_frame(model: nn.Module):
    """The network's weight layers as a table (name, type, parameters, out_features, norm,
    traced): what the workflow sweeps for `layers: all`."""
    import pandas as pd

    from lesion import graph, models

    if getattr(model, "lesion_arch", None) in models.ARCHITECTURES:  # the catalog's names
        paths = {id(m): path for path, m in model.named_modules()}
        rows = [{"name": n, "type": type(m).__name__,
                 "parameters": sum(p.numel() for p in m.parameters(recurse=False)),
                 "out_features": m.weight.shape[0],
                 "norm": paths.get(id(models.norm_after(model, n)))}
                for n, m in models.layers(model).items()]
        return pd.DataFrame(rows).assign(traced=True)
    traced = graph.trace(model) is not None
    frame = pd.DataFrame([vars(layer) for layer in models.layer_table(model)])
    return frame.assign(traced=traced)
