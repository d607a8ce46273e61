"""Adversarial training (Szegedy et al. 2013, §4.1): each batch with adversarial examples
of the network as it is at that step mixed in, regenerated at every step."""

from __future__ import annotations

import torch
from torch import nn

from lesion import attacks
from lesion.catalog import ATTACKS


def mix_adversarial(attack: str, eps: float, *, seed: int, num_classes: int):
    """A train.BatchHook: the batch followed by its adversarial copies (labels kept).

    fgsm and pgd use `eps` (PGD: 10 steps of eps/4); lbfgs aims each image at a
    random other class (fresh per step, from a generator seeded with `seed`).
    The examples are made in eval mode (no dropout), so they are the network's,
    not one dropout mask's.
    """
    if attack not in ATTACKS:
        raise ValueError(f"adversarial training attack {attack!r} is unknown; expected one of "
                         f"{list(ATTACKS)}")
    generator = torch.Generator().manual_seed(seed)

    def hook(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        model.eval()
        if attack == "fgsm":
            adversarial = attacks.fgsm(model, x, y, eps)
        elif attack == "pgd":
            adversarial = attacks.pgd(model, x, y, eps=eps, step_size=eps / 4, steps=10,
                                      generator=generator)
        else:
            shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
            adversarial = attacks.lbfgs(model, x, y, (y + shift) % num_classes).images
        return torch.cat([x, adversarial.detach()]), torch.cat([y, y])

    return hook
