"""Adversarial examples for inputs in [0, 1] (normalisation lives inside the model).

Engine module: the adversarial study makes test sets and adversarial
training with these, the filtering study regenerates FGSM sets from
retrained networks. Every function takes a model in eval mode and returns
new images clamped to the [0, 1] box; none mutates its inputs or the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d(mean cross-entropy)/d(images), without touching the parameters' .grad."""
    x = images.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): x + eps * sign(grad), clamped to [0, 1].

    The Pravin et al. notebooks left the clamp out; an unclamped image is not
    an image, so it is always applied here.
    """
    if not eps >= 0:
        raise ValueError(f"FGSM eps {eps!r} is out of range; expected a number >= 0")
    grad = _input_gradient(model, images, labels)
    return (images + eps * grad.sign()).clamp(0.0, 1.0).detach()


def distortion(images: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    """Per image sqrt(sum((x' - x)^2) / n), n the values per image (Szegedy et al. 2013)."""
    return (adversarial - images).flatten(1).pow(2).mean(1).sqrt()
