"""The adversarial study from Python: `lesion.attack` (docs/python.md), over the set step's
own `attack_result`."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from lesion import attacks, catalog
from lesion.api import PRECISION, Network, borrowed, mark, tensors_of
from lesion.studies.adversarial import sets


def _attack_options(method: str) -> list[str]:
    function = {"fgsm": attacks.fgsm, "pgd": attacks.pgd, "lbfgs": attacks.lbfgs}[method]
    taken = {"model", "images", "labels", "targets", "generator"}  # given by lesion
    return [p for p in inspect.signature(function).parameters if p not in taken]


def attack(model: Network, images: torch.Tensor, labels: torch.Tensor, method: str = "fgsm", *,
           seed: int = 0, index: torch.Tensor | None = None, device: str = "auto",
           precision: str = PRECISION, **options: Any) -> attacks.AttackResult:
    """Adversarial examples of `images` (in [0, 1]) as the adversarial study makes them:
    "fgsm" and "pgd" (untargeted, L-infinity, option `eps`; pgd also `step_size` and
    `steps`) or "lbfgs" (Szegedy et al.'s box-constrained L-BFGS towards a random other
    class, drawn per image from (seed, index)). Returns the examples with their targets,
    success and distortion, on the images' device.

    >>> result = lesion.attack(net, images, labels, "fgsm", eps=0.1)
    >>> tuple(result.images.shape) == tuple(images.shape)
    True
    """
    if method not in catalog.ATTACKS:
        raise ValueError(f"method {method!r} is unknown; expected one of {list(catalog.ATTACKS)}")
    valid = _attack_options(method)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"option {unknown[0]!r} does not apply to {method}; expected some of "
                         f"{valid}")
    x, y, _ = tensors_of((images, labels), "images and labels")
    marked = mark(model, tuple(x.shape[1:]))
    index = torch.arange(len(y)) if index is None else index
    with borrowed(marked, device, precision) as dev:
        marked.to(dev).eval()
        num_classes = int(marked(x[:1].to(dev)).shape[-1])
        result = sets.attack_result(marked, x.to(dev), y.to(dev), index.to(dev), method, options,
                                    seed=seed, num_classes=num_classes)
    home = images.device
    return attacks.AttackResult(*(t.to(home) for t in (
        result.images, result.targets, result.success, result.distortion, result.c)))


