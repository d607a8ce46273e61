"""Neuron sites of a network: where a layer's neurons are, and crashes of them.

The engine's view of activations, shared by the predict step (crash sweeps),
training (dropout and extra loss terms at hidden neurons) and the fault
study. The neurons of weight layer L are its outputs after everything that
follows it elementwise (normalisation, nonlinearity, dropout); see
lesion.studies.faults.bounds for why, and for the bounds on crash errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from lesion import models

# Modules that act elementwise (or per channel) on a layer's output: they
# belong to the layer's neurons, so the crash happens after them.
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
               nn.Hardtanh, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Identity)
# Elementwise maps with |f(a) - f(b)| <= |a - b|, and reshapes: b1 and b2 hold through them.
def opened(module: nn.Module) -> list[nn.Module]:
    if type(module) is nn.Sequential:
        return [m for child in module.children() for m in opened(child)]
    return [module]


def flat_stages(model: nn.Module) -> list[nn.Module]:
    """models.stages with nn.Sequential stages opened up (their composition is the same)."""
    return [m for stage in models.stages(model) for m in opened(stage)]


def crash_site(model: nn.Module, layer: str) -> int:
    """Index into flat_stages(model) of the last stage that belongs to `layer`'s neurons."""
    target = models.layer(model, layer)
    parts = flat_stages(model)
    index = next((i for i, part in enumerate(parts) if part is target), None)
    if index is None:
        alone = [name for name, m in models.layers(model).items() if any(m is p for p in parts)]
        raise ValueError(
            f"layer {layer!r} of {model.lesion_name} sits inside a composite block (e.g. a "
            f"residual block), so its neurons cannot be cut out for crash faults; expected one "
            f"of {alone}")
    while index + 1 < len(parts) and isinstance(parts[index + 1], ELEMENTWISE):
        index += 1
    return index


def crash_split(model: nn.Module, layer: str) -> tuple[nn.Sequential, nn.Sequential]:
    """(prefix, suffix): prefix(x) is `layer`'s neurons, suffix maps them to the output."""
    parts, site = flat_stages(model), crash_site(model, layer)
    return nn.Sequential(*parts[:site + 1]).eval(), nn.Sequential(*parts[site + 1:]).eval()


def keep_mask(shape: Sequence[int], p: float, generator: torch.Generator) -> torch.Tensor:
    """True where a neuron survives: each crashes (False) independently with probability p."""
    return torch.rand(tuple(shape), generator=generator) >= p


@torch.no_grad()
def crashed_logits(suffix: nn.Module, activations: torch.Tensor,
                   repetitions: Sequence[tuple[float, int]], *, batch_size: int,
                   reps_per_pass: int) -> Iterator[torch.Tensor]:
    """Yield the output [N, K] of every repetition (p, seed), in order.

    `activations` are the clean neurons [N, ...] of the crashed layer, on the
    evaluation device. Repetition r draws its masks from a CPU generator
    seeded by its seed, batch after batch in input order, so its masks depend
    on (seed, p, batch_size) only, never on how many repetitions share a
    pass; `reps_per_pass` repetitions run through the suffix together, as one
    batch of reps x inputs.
    """
    device = activations.device
    suffix = suffix.to(device).eval()
    for start in range(0, len(repetitions), reps_per_pass):
        group = repetitions[start:start + reps_per_pass]
        generators = [torch.Generator().manual_seed(int(seed)) for _, seed in group]
        outputs = []
        for i in range(0, len(activations), batch_size):
            x = activations[i:i + batch_size]
            keep = torch.stack([keep_mask(x.shape, p, g) for g, (p, _) in zip(generators, group,
                                                                               strict=True)])
            crashed = keep.to(device=device, dtype=x.dtype) * x
            y = suffix(crashed.reshape(-1, *x.shape[1:]))
            outputs.append(y.reshape(len(group), len(x), *y.shape[1:]))
        yield from torch.cat(outputs, dim=1)


def hidden_sites(model: nn.Module) -> list[int]:
    """Crash sites (indices into flat_stages) of every weight layer but the last."""
    names = list(models.layers(model))[:-1]
    return [crash_site(model, name) for name in names]


def forward_with_sites(parts: Sequence[nn.Module], x: torch.Tensor, sites: Sequence[int], *,
                       dropout: float = 0.0, training: bool = False,
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The network's output and the neurons at `sites`, dropout applied after each site."""
    acts = []
    for i, part in enumerate(parts):
        x = part(x)
        if i in sites:
            acts.append(x)
            if dropout:
                x = nn.functional.dropout(x, dropout, training=training)
    return x, acts
