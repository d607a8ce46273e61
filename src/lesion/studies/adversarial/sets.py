"""Adversarial test sets: the first N test images attacked, as a drop-in test set file.

A set is `results/{dataset}/adversarial/{attack}/{model}.safetensors` with the
tensors of a test split (`images` float32 NCHW in [0, 1], `labels`, `index`:
the image's index in the raw dataset, as in the test split), so every step
that reads a test set reads it, plus `position` (the image's row in the test
split), `targets` (the L-BFGS target class; -1 for untargeted attacks),
`distortion` (sqrt(sum((x' - x)^2) / n) per image, Szegedy et al.) and
`success` (1 where the attack reached its goal: the target for L-BFGS, any
wrong class for FGSM and PGD).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch

from lesion import attacks, data, models, tensorfiles
from lesion.catalog import ATTACKS
from lesion.evaluate import pick_device

log = logging.getLogger(__name__)


def attack(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
           index: torch.Tensor, name: str, options: Mapping, *, seed: int,
           num_classes: int) -> dict[str, torch.Tensor]:
    """The set's tensors for `images` attacked by attack `name` with its `options`
    (attack_result)."""
    tensors = attacks.test_set(attack_result(model, images, labels, index, name, options,
                                             seed=seed, num_classes=num_classes), labels, index)
    tensors["position"] = torch.arange(len(labels))
    return tensors


def attack_result(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  index: torch.Tensor, name: str, options: Mapping, *, seed: int,
                  num_classes: int) -> attacks.AttackResult:
    """`images` attacked by attack `name` with its `options` (the set step and
    `lesion.attack` both run this).

    Seeds: L-BFGS targets are drawn per image from (seed, index); PGD's random
    start from a CPU generator seeded with `seed` (a GPU's would draw another).
    """
    if name == "lbfgs":
        targets = attacks.random_targets(labels, index, num_classes, seed)
        return attacks.lbfgs(model, images, labels, targets, **options)
    if name == "fgsm":
        return attacks.untargeted(model, images, labels,
                                  attacks.fgsm(model, images, labels, **options))
    if name == "pgd":
        generator = torch.Generator().manual_seed(seed)  # on the CPU: the same start anywhere
        return attacks.untargeted(model, images, labels, attacks.pgd(
            model, images, labels, generator=generator, **options))
    raise ValueError(f"attack {name!r} is unknown; expected one of {list(ATTACKS)}")


def write_sets(dataset: str, weights: str | os.PathLike, test: str | os.PathLike,
               attacks: Mapping[str, tuple[Mapping, str | os.PathLike]], *, images: int | None,
               seed: int, device: str, precision: str) -> None:
    """Attack the first `images` test images (all when None) of `weights`' network with
    every attack of `attacks` (name -> (options, output file)): the network and the test
    split are loaded once for all of them."""
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise ValueError(f"attack {unknown[0]!r} is unknown; expected one of {list(ATTACKS)}")
    spec = data.get(dataset, split=test)
    dev = pick_device(device, precision)
    model = models.load_weights(weights, num_classes=spec.num_classes,
                                input_shape=spec.input_shape).to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = data.load_split(test, dataset)
    index = tensorfiles.load_tensors(test).get("index", torch.arange(len(y)))
    n = len(y) if images is None else min(images, len(y))
    for name, (options, out) in attacks.items():
        tensors = attack(model, x[:n].to(dev), y[:n].to(dev), index[:n].to(dev), name, options,
                         seed=seed, num_classes=spec.num_classes)
        success = tensors["success"].float().mean().item()
        log.info("%s on %s: %d images, success %.3f, mean distortion %.4f", name,
                 model.lesion_name, n, success, tensors["distortion"].mean().item())
        tensorfiles.save_tensors(tensors, out, {"dataset": dataset, "model": model.lesion_name,
                                       "arch": model.lesion_arch, "attack": name,
                                       "options": dict(options), "seed": seed, "split": "test",
                                       "precision": precision, **data.carried(dataset, spec)})
