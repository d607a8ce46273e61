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
import scipy.optimize
import torch

from lesion import data, files, models, tensorfiles
from lesion import kinds as engine_kinds
from lesion.evaluate import pick_device
from lesion.intervals import t_interval


@torch.no_grad()
def error(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
          batch_size: int = 1024) -> float:
    """Share of `images` that `model` misclassifies."""
    wrong = sum(int((model(x).argmax(1) != y).sum())
                for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True))
    return wrong / len(labels)


def amplify(clean: torch.Tensor, adversarial: torch.Tensor, sigma: float) -> torch.Tensor:
    """x + s * (x' - x) with s = max(1, sigma * sqrt(n) / ||x' - x||_2), clamped to [0, 1].

    The adversarial change scaled up to a distortion of sigma (its RMS
    sqrt(sum(r^2) / n) = sigma before clamping), comparable with Gaussian noise of
    RMS sigma. Szegedy et al. amplify, never shrink: an example whose own distortion
    is already sigma or more stays as it is, and so does one whose attack changed
    nothing. Each pixel moves on in its own direction, so clamping never brings it
    back: the result's RMS is at least the example's own.
    """
    r = (adversarial - clean).flatten(1)
    norm = r.norm(dim=1, keepdim=True)
    scale = torch.where(norm > 0, sigma * math.sqrt(r.shape[1]) / norm.clamp_min(1e-30),
                        torch.ones_like(norm)).clamp_min(1.0)
    return (clean + (r * scale).reshape(clean.shape)).clamp(0.0, 1.0)


def gaussian(clean: torch.Tensor, sigma: float, seed: int) -> tuple[torch.Tensor, float]:
    """x + s * z per pixel, z ~ N(0, 1) from a generator seeded with `seed`, clamped to
    [0, 1], with the noise scale s that makes the measured RMS distortion (the
    mean over images of sqrt(sum((x' - x)^2) / n), as for the adversarial sets) sigma:
    clamping shrinks noise of standard deviation sigma (0.1 measured 0.081 on digits),
    so s is usually above sigma.

    Returns the images and s (scipy's brentq on the RMS, which grows with s).
    """
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    x = clean.detach().to("cpu", torch.float64)

    def rms(scale: float) -> float:
        return _rms(x, (x + scale * z).clamp(0.0, 1.0))

    high = sigma
    while rms(high) < sigma:
        if high > 1e3 * sigma:
            raise ValueError(f"Gaussian noise cannot reach an RMS distortion of {sigma} on these "
                             f"images clamped to [0, 1] (at most {rms(high):.4f}); expected a "
                             "smaller sigma")
        high *= 2
    scale = scipy.optimize.brentq(lambda s: rms(s) - sigma, 0.0, high, xtol=1e-12 * sigma)
    noisy = (x + scale * z).clamp(0.0, 1.0).to(clean.device, clean.dtype)
    return noisy, float(scale)


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
    """Table 1: one row per model (its curve, weights and L-BFGS set, same order). A curve
    `none` (a network imported with its weights: nothing trained it) leaves the model's
    train and test error empty (NaN)."""
    rows = []
    for curve, weight, path in zip(curves, weights, sets, strict=True):
        meta = tensorfiles.load_metadata(weight)
        last = final_accuracy(curve) if curve != "none" else {"train": math.nan, "test": math.nan}
        tensors = tensorfiles.load_tensors(path)
        success = tensors["success"].bool()
        # an image the model already gives the target class is a success at distortion 0:
        # it says nothing of how far the nearest adversarial example is, so it is counted
        # (n_at_target) and left out of the mean
        at_target = success & (tensors["distortion"] == 0)
        hit = tensors["distortion"][success & ~at_target]
        rows.append({
            "model": meta["model"], "arch": meta.get("arch", meta["model"]),
            "weight_decay": float(meta.get("weight_decay", 0.0)),
            "train_split": meta.get("train_split", "all"),
            "train_error": 1.0 - float(last["train"]), "test_error": 1.0 - float(last["test"]),
            "mean_distortion": float(hit.mean()) if len(hit) else math.nan,
            "success_rate": float(success.float().mean()), "n_images": len(success),
            "n_at_target": int(at_target.sum()),
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
                             "amplified": amplified, "sigma": sigma, "noise_std": math.nan,
                             "error": err, "mean_distortion": _rms(s["clean"], images)})
    labels = study.load_set(sets[0])["labels"]
    for i, sigma in enumerate(sigmas):
        rows += [{"source": "gaussian", "target": target, "attack": "gaussian", **row}
                 for target, row in _noise_rows(study, clean, labels, targets, sigma, seed + i)]
    return pa.Table.from_pylist(rows)


def _noise_rows(study: Study, clean: torch.Tensor, labels: torch.Tensor, targets: Sequence[str],
                sigma: float, seed: int):
    """(target, row) of the Gaussian control of RMS `sigma` on `clean`, for every target."""
    noisy, scale = gaussian(clean, sigma, seed)
    for target, err in study.errors(noisy, labels, targets).items():
        yield target, {"amplified": False, "sigma": float(sigma), "noise_std": scale,
                       "error": err, "mean_distortion": _rms(clean, noisy)}


def cross_training_table(study: Study, sets: Sequence[str], sigma: float, seed: int) -> pa.Table:
    """Table 4: the examples of each model trained on P1 or P2 fed to the others, as they
    are and amplified to `sigma`, and Gaussian noise of RMS `sigma` on the same images
    (source "gaussian") for every model."""
    splits = {name: m.lesion_metadata.get("train_split", "all") for name, m in study.models.items()}
    targets = list(study.models)
    rows = []
    for path in sets:
        s = study.load_set(path)
        for amplified, images in ((False, s["images"]), (True, amplify(s["clean"], s["images"], sigma))):
            for target, err in study.errors(images, s["labels"], targets).items():
                rows.append({"source": s["source"], "source_split": splits[s["source"]],
                             "target": target, "target_split": splits[target],
                             "amplified": amplified, "sigma": float(sigma) if amplified else math.nan,
                             "noise_std": math.nan,
                             "error": err, "mean_distortion": _rms(s["clean"], images)})
    rows += [{"source": "gaussian", "source_split": "none", "target": target,
              "target_split": splits[target], **row}
             for target, row in _noise_rows(study, s["clean"], s["labels"], targets, sigma, seed)]
    return pa.Table.from_pylist(rows)


def training_table(labels: Sequence[str], weights: Sequence[str], curves: Sequence[str]) -> pa.Table:
    """§4.1: the final train and test error of each regime's network, one row per network
    (a regime trained from several seeds has several, `replicate` 0, 1, ...), with each
    regime's mean test error over its networks and its 95% t interval on every row."""
    rows, seen = [], {}
    for label, weight, curve in zip(labels, weights, curves, strict=True):
        meta = tensorfiles.load_metadata(weight)
        last = final_accuracy(curve)
        seen[label] = seen.get(label, -1) + 1
        rows.append({"model": meta["model"], "regime": label, "replicate": seen[label],
                     "seed": int(meta["seed"]),
                     "weight_decay": float(meta.get("weight_decay", 0.0)),
                     "dropout": float(meta.get("dropout", 0.0)),
                     "adversarial": meta.get("adversarial", "none"),
                     "train_error": 1.0 - float(last["train"]),
                     "test_error": 1.0 - float(last["test"])})
    for label in seen:
        errors = [r["test_error"] for r in rows if r["regime"] == label]
        mean, low, high = t_interval(errors)
        for r in rows:
            if r["regime"] == label:
                r.update(test_error_mean=mean, test_error_low=low, test_error_high=high)
    return pa.Table.from_pylist(rows)
