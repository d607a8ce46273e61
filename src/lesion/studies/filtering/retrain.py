"""Selective retraining from the class map, and the FGSM test sets it is judged on.

From a checkpoint, retrain N epochs four ways (WAYS): `none` (the
checkpoint as it is), `all` (every parameter), `selected` (only the weights
of robust and antifragile layers, the paper's proposal) and `fragile` (only
those of fragile layers, the control). Selective ways train through the
engine's masked training (a lesion.train.Hook with masks): a mask holds every
parameter of the network, True on the selected layers' weights and False
elsewhere, so biases, BatchNorm and unselected weights stay bit for bit as
they were (the classes characterise the Conv/Linear weights the filters
removed, and nothing else). Retraining restarts Adam (checkpoints hold no
optimiser state) and uses the model's train settings. Every way that trains
does so `seeds` times (replicates); replicate k's seed (initial batch order,
dropout) is shared by all ways, so the ways are compared pair by pair.

Each network is judged on the clean test set, on an FGSM set regenerated
against itself (so that a gain is not a stale test set) and on the
checkpoint's FGSM set, the one its filtering scores used. A selective way
that selects every layer is `all` under another name, one that selects none
is `none`: the table's `warning` says so, and so does the log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import torch
from torch import nn

from lesion import attacks, data, evaluate, files, models, tensorfiles, train
from lesion.seeds import network_seed
from lesion.studies.filtering import kinds
from lesion.studies.filtering.scores import selected_layers

log = logging.getLogger(__name__)

WAYS = ("none", "all", "selected", "fragile")
# The classes whose layers each selective way trains.
SELECTIONS: dict[str, tuple[str, ...]] = {"selected": ("robust", "antifragile"),
                                          "fragile": ("fragile",)}


def layer_masks(model: nn.Module, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """A bool mask per parameter of `model`: all True on the weights of `layers`, all False
    on every other parameter (biases, BatchNorm, other layers' weights)."""
    named = models.layers(model)
    unknown = [layer for layer in layers if layer not in named]
    if unknown:
        raise ValueError(f"layer {unknown[0]!r} is not a weight layer of this model; expected "
                         f"some of {list(named)}")
    chosen = {id(named[layer].weight) for layer in layers}
    return {name: torch.full(p.shape, id(p) in chosen, dtype=torch.bool)
            for name, p in model.named_parameters()}


@torch.no_grad()
def _top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
          device: torch.device) -> float:
    logits = evaluate.run_batched(model, images, batch_size, device)
    return float((logits.argmax(1).cpu() == labels).double().mean())


def replicate_seed(study_seed: int, model: str, replicate: int) -> int:
    """Replicate k's retraining seed: a hash of the study seed, the model and k."""
    return network_seed(study_seed, f"{model}/retraining/{replicate}")


def selection_warning(way: str, layers: Sequence[str], every: Sequence[str]) -> str:
    """Why a selective way compares nothing: it selects every layer or none ("" if fine)."""
    if way not in SELECTIONS:
        return ""
    if not layers:
        return f"{way} selects no layer: the same network as none"
    if set(layers) == set(every):
        return f"{way} selects every layer: the same training as all"
    return ""


def retrain(dataset: str, model_name: str, checkpoints: Mapping[int, str | os.PathLike], *,
            scores: str | os.PathLike, train_path: str | os.PathLike,
            test_path: str | os.PathLike, adversarial: Mapping[int, str | os.PathLike],
            out_dir: str | os.PathLike, out: str | os.PathLike, epochs: int, seeds: int,
            filter: str, score: str, eps: float, batch_size: int, learning_rate: float,
            weight_decay: float, seed: int, device: str, precision: str,
            eval_batch_size: int) -> None:
    """The retraining step: every way from every checkpoint (epoch -> weights file), the
    ways that train `seeds` times; `adversarial` maps each epoch to its checkpoint's FGSM set.

    Writes `out_dir`/epoch{E}/{way}/{replicate}/weights.safetensors and
    training.parquet (ways that train), `out_dir`/epoch{E}/{way}/masks.safetensors
    (selective ways), and the table `out`: one row per (epoch, way, replicate).
    """
    if epochs < 1 or seeds < 1:
        raise ValueError(f"retraining epochs = {epochs!r}, seeds = {seeds!r}; expected at "
                         "least 1 each")
    missing = sorted(set(checkpoints) - set(adversarial))
    if missing:
        raise ValueError(f"epoch {missing[0]}: no FGSM set; expected one per checkpoint")
    dev = evaluate.pick_device(device, precision)
    spec = data.get(dataset, split=test_path)
    table = files.read_table(scores, kinds.SCORES).to_pandas()
    images, labels = data.load_split(test_path)
    rows = []
    for epoch, checkpoint in sorted(checkpoints.items()):
        start = models.load_weights(checkpoint, num_classes=spec.num_classes,
                                    input_shape=spec.input_shape)
        if start.lesion_name != model_name:
            raise ValueError(f"{checkpoint}: weights of {start.lesion_name}; expected "
                             f"{model_name}'s")
        stale_images, stale_labels = data.load_split(adversarial[epoch])
        every = list(models.layers(start))
        for way in WAYS:
            layers, masks = every, None
            if way in SELECTIONS:
                layers = selected_layers(table, epoch=epoch, filter=filter, score=score,
                                         classes=SELECTIONS[way])
                masks = layer_masks(start, layers)
                tensorfiles.save_tensors(masks, Path(out_dir) / f"epoch{epoch}" / way /
                                         "masks.safetensors",
                                         {"layers": layers, "epoch": epoch, "filter": filter,
                                          "score": score})
            warning = selection_warning(way, layers, every)
            if warning:
                log.warning("%s from epoch %d: %s (filter %s, score %s)", model_name, epoch,
                            warning, filter, score)
            for replicate in range(1 if way == "none" else seeds):
                network, count, run_seed = start, 0, None
                if way != "none":
                    run_seed = replicate_seed(seed, model_name, replicate)
                    where = Path(out_dir) / f"epoch{epoch}" / way / str(replicate)
                    if not layers:  # a selection of none trains nothing: the checkpoint
                        models.save_weights(start, where / "weights.safetensors")
                    else:
                        network = _retrained(start, checkpoint, dataset, train_path, test_path,
                                             where, masks, way, epoch, train.Settings(
                                                 epochs=epochs, batch_size=batch_size,
                                                 learning_rate=learning_rate,
                                                 weight_decay=weight_decay, seed=run_seed,
                                                 device=device, precision=precision), spec)
                        count = (sum(int(m.sum()) for m in masks.values()) if masks is not None
                                 else sum(p.numel() for p in network.parameters()))
                fresh = attacks.fgsm_batched(network, images, labels, eps,
                                             batch_size=eval_batch_size, device=dev)
                rows.append({
                    "dataset": dataset, "model": model_name, "epoch": epoch, "retrained": way,
                    "replicate": replicate, "seed": run_seed,
                    "epochs_retrained": 0 if way == "none" else epochs,
                    "layers": ",".join(layers) if way != "none" else "", "parameters": count,
                    "top1_clean": _top1(network, images, labels, eval_batch_size, dev),
                    "top1_adversarial": _top1(network, fresh, labels, eval_batch_size, dev),
                    "top1_original_adversarial": _top1(network, stale_images, stale_labels,
                                                       eval_batch_size, dev),
                    "warning": warning,
                })
                log.info("%s", rows[-1])
    files.write_table(pa.Table.from_pylist(rows), out,
                      {"filter": filter, "score": score, "eps": repr(eps), "seeds": str(seeds)},
                      kind=kinds.RETRAINING)


def _retrained(start: nn.Module, checkpoint, dataset: str, train_path, test_path, where: Path,
               masks, way: str, epoch: int, settings: train.Settings, spec) -> nn.Module:
    """One retraining run from `checkpoint` (masked for a selective way), loaded back."""
    network = train.Network(start.lesion_name, arch=start.lesion_arch,
                            source=getattr(start, "lesion_source", None), init=checkpoint)
    hook = train.Hook(masks=masks, metadata={"retrained": way, "from_epoch": epoch})
    train.train(network, dataset, train_path, test_path, where / "weights.safetensors",
                where / "training.parquet", settings, hooks=[hook])
    return models.load_weights(where / "weights.safetensors", num_classes=spec.num_classes,
                               input_shape=spec.input_shape)
