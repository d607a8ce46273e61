"""The study's tables (Szegedy et al. 2013, Tables 1-4), from weights, curves and sets.

distortion: per model, train and test error and the mean minimum distortion
    of its L-BFGS examples (Table 1).
transfer: every set fed to every model (Table 2), as it is and amplified
    (`amplified`, to per-pixel RMS `sigma`; `attack` is the attack that made
    the examples), and Gaussian-noise controls (attack `gaussian`).
cross_training: the same for the models trained on the halves P1, P2 (Table 4).
adversarial_training: test error of a network trained with adversarial
    examples mixed in, beside weight decay and dropout (§4.1).

`error` is always the share of images a model gets wrong (prediction !=
true label), in [0, 1].
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import pyarrow as pa
import torch

from lesion import data, files, models, tensorfiles
from lesion import kinds as engine_kinds
from lesion.evaluate import pick_device


@torch.no_grad()
def error(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
          batch_size: int = 1024) -> float:
    """Share of `images` that `model` misclassifies."""
    wrong = sum(int((model(x).argmax(1) != y).sum())
                for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True))
    return wrong / len(labels)


def amplify(clean: torch.Tensor, adversarial: torch.Tensor, sigma: float) -> torch.Tensor:
    """x + sigma * sqrt(n) * (x' - x) / ||x' - x||_2, clamped to [0, 1].

    The direction of the adversarial change scaled to a distortion of sigma
    (sqrt(sum(r^2) / n) = sigma before clamping), comparable with Gaussian
    noise of standard deviation sigma; an image whose attack changed nothing
    stays as it is.
    """
    r = (adversarial - clean).flatten(1)
    norm = r.norm(dim=1, keepdim=True)
    scale = torch.where(norm > 0, sigma * math.sqrt(r.shape[1]) / norm.clamp_min(1e-30),
                        torch.zeros_like(norm))
    return (clean + (r * scale).reshape(clean.shape)).clamp(0.0, 1.0)


def gaussian(clean: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """x + N(0, sigma^2) per pixel, clamped to [0, 1], from a generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(clean.shape, generator=generator) * sigma
    return (clean + noise.to(clean.device)).clamp(0.0, 1.0)


def _rms(clean: torch.Tensor, other: torch.Tensor) -> float:
    return float(((other - clean).flatten(1).pow(2).mean(1).sqrt()).mean())


class Study:
    """The networks and sets of one adversarial study, loaded once."""

    def __init__(self, dataset: str, test: str | os.PathLike, weights: Sequence[str],
                 device: str, precision: str):
        self.spec = data.get(dataset, split=test)
        self.device = pick_device(device, precision)
        self.images, self.labels = data.load_split(test)
        self.models = {}
        for path in weights:
            model = models.load_weights(path, num_classes=self.spec.num_classes,
                                        input_shape=self.spec.input_shape).to(self.device)
            self.models[model.lesion_name] = model

    def load_set(self, path: str | os.PathLike) -> dict[str, torch.Tensor]:
        tensors = tensorfiles.load_tensors(path)
        missing = [k for k in ("images", "labels", "position", "success", "distortion")
                   if k not in tensors]
        if missing:
            raise files.InputFileError(f"{path}: no {missing[0]!r} tensor; expected an adversarial "
                                       "set written by `python -m lesion adversarial attack`")
        tensors["source"] = tensorfiles.load_metadata(path).get("model")
        tensors["clean"] = self.images[tensors["position"]]
        return tensors

    def errors(self, images: torch.Tensor, labels: torch.Tensor, targets: Sequence[str]):
        x, y = images.to(self.device), labels.to(self.device)
        return {t: error(self.models[t], x, y) for t in targets}


def final_accuracy(curve: str | os.PathLike):
    """The last epoch's accuracy per split ("train", "test") of a training curve."""
    table = files.read_table(curve, engine_kinds.TRAINING).to_pandas()
    return table[table["epoch"] == table["epoch"].max()].set_index("split")["accuracy"]


def distortion_table(curves: Sequence[str], weights: Sequence[str], sets: Sequence[str]) -> pa.Table:
    """Table 1: one row per model (its curve, weights and L-BFGS set, same order)."""
    rows = []
    for curve, weight, path in zip(curves, weights, sets, strict=True):
        meta = tensorfiles.load_metadata(weight)
        last = final_accuracy(curve)
        tensors = tensorfiles.load_tensors(path)
        success = tensors["success"].bool()
        hit = tensors["distortion"][success]
        rows.append({
            "model": meta["model"], "arch": meta.get("arch", meta["model"]),
            "weight_decay": float(meta.get("weight_decay", 0.0)),
            "train_split": meta.get("train_split", "all"),
            "train_error": 1.0 - float(last["train"]), "test_error": 1.0 - float(last["test"]),
            "mean_distortion": float(hit.mean()) if len(hit) else math.nan,
            "success_rate": float(success.float().mean()), "n_images": len(success),
            "attack": tensorfiles.load_metadata(path).get("attack"),
        })
    return pa.Table.from_pylist(rows)


def transfer_table(study: Study, sets: Sequence[str], sigmas: Sequence[float], seed: int) -> pa.Table:
    """Table 2 and its controls: each set, and each set amplified to every sigma, fed to
    every model; and Gaussian noise of every sigma on the same clean images."""
    targets = list(study.models)
    rows = []
    clean = None
    for path in sets:
        s = study.load_set(path)
        clean = s["clean"] if clean is None else clean
        attack = tensorfiles.load_metadata(path).get("attack")
        versions = [(False, math.nan, s["images"])]
        versions += [(True, float(sigma), amplify(s["clean"], s["images"], sigma))
                     for sigma in sigmas]
        for amplified, sigma, images in versions:
            for target, err in study.errors(images, s["labels"], targets).items():
                rows.append({"source": s["source"], "target": target, "attack": attack,
                             "amplified": amplified, "sigma": sigma, "error": err,
                             "mean_distortion": _rms(s["clean"], images)})
    labels = study.load_set(sets[0])["labels"]
    for i, sigma in enumerate(sigmas):
        noisy = gaussian(clean, sigma, seed + i)
        for target, err in study.errors(noisy, labels, targets).items():
            rows.append({"source": "gaussian", "target": target, "attack": "gaussian",
                         "amplified": False, "sigma": float(sigma), "error": err,
                         "mean_distortion": _rms(clean, noisy)})
    return pa.Table.from_pylist(rows)


def cross_training_table(study: Study, sets: Sequence[str], sigma: float) -> pa.Table:
    """Table 4: the examples of each model trained on P1 or P2 fed to the others,
    as they are and amplified to `sigma`."""
    splits = {name: m.lesion_metadata.get("train_split", "all") for name, m in study.models.items()}
    rows = []
    for path in sets:
        s = study.load_set(path)
        for amplified, images in ((False, s["images"]), (True, amplify(s["clean"], s["images"], sigma))):
            for target, err in study.errors(images, s["labels"], list(study.models)).items():
                rows.append({"source": s["source"], "source_split": splits[s["source"]],
                             "target": target, "target_split": splits[target],
                             "amplified": amplified, "sigma": float(sigma) if amplified else math.nan,
                             "error": err, "mean_distortion": _rms(s["clean"], images)})
    return pa.Table.from_pylist(rows)


def training_table(labels: Sequence[str], weights: Sequence[str], curves: Sequence[str]) -> pa.Table:
    """§4.1: the final train and test error of each regime's network."""
    rows = []
    for label, weight, curve in zip(labels, weights, curves, strict=True):
        meta = tensorfiles.load_metadata(weight)
        last = final_accuracy(curve)
        rows.append({"model": meta["model"], "regime": label,
                     "weight_decay": float(meta.get("weight_decay", 0.0)),
                     "dropout": float(meta.get("dropout", 0.0)),
                     "adversarial": meta.get("adversarial", "none"),
                     "train_error": 1.0 - float(last["train"]),
                     "test_error": 1.0 - float(last["test"])})
    return pa.Table.from_pylist(rows)
