"""Weight operators of Cheney et al. (2017), as pure functions.

An operator takes a layer's tensors (`{"weight": W, "bias": b}`), a level and
a seeded `torch.Generator`, and returns new tensors. It never modifies its
input, never touches the global RNG and never does I/O, so every variant is
built from the original weights (the seed code let perturbations accumulate)
and is reproducible from its seed alone. Weights and biases are perturbed
separately, each by the same rule; the generator is consumed in sorted name
order, so the result is a function of (tensors, level, seed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import torch

from lesion.catalog import OPERATOR_LEVELS

Tensors = Mapping[str, torch.Tensor]
Operator = Callable[[Tensors, float, torch.Generator], dict[str, torch.Tensor]]


def _count(level: float, n: int) -> int:
    """How many of `n` entries a fraction `level` selects (rounded to nearest)."""
    return min(n, int(round(level * n)))


def _choose(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """`k` distinct indices out of `n`, uniformly at random."""
    return torch.randperm(n, generator=generator)[:k]


def synapse_knockout(tensors: Tensors, level: float, generator: torch.Generator) -> dict:
    """Set a random fraction `level` of each tensor's entries to zero."""
    out = {}
    for name in sorted(tensors):
        flat = tensors[name].detach().clone().reshape(-1)
        flat[_choose(flat.numel(), _count(level, flat.numel()), generator)] = 0
        out[name] = flat.reshape(tensors[name].shape)
    return out


def node_knockout(tensors: Tensors, level: float, generator: torch.Generator) -> dict:
    """Remove a random fraction `level` of the layer's output units.

    An output unit (a dense unit, a conv filter) is dimension 0 of the weight
    and the matching bias entry: both are zeroed. Inputs are left alone (the
    seed code also zeroed input rows of dense layers).
    """
    weight = tensors["weight"]
    units = _choose(weight.shape[0], _count(level, weight.shape[0]), generator)
    out = {name: t.detach().clone() for name, t in tensors.items()}
    for t in out.values():
        t[units] = 0
    return out


def gaussian(tensors: Tensors, level: float, generator: torch.Generator) -> dict:
    """Add N(0, (level * std(T))^2) noise to each tensor T ("mutateGaussian").

    std is the population standard deviation of the unperturbed tensor, as
    numpy's `np.std` in the original code.
    """
    out = {}
    for name in sorted(tensors):
        t = tensors[name].detach()
        std = t.std(correction=0) if t.numel() > 1 else torch.zeros((), dtype=t.dtype)
        noise = torch.randn(t.shape, generator=generator, dtype=t.dtype, device=t.device)
        out[name] = t + noise * (level * std)
    return out


def redraw(tensors: Tensors, level: float, generator: torch.Generator) -> dict:
    """Replace a random fraction `level` of each tensor's entries ("draw").

    The new values are drawn without replacement from the entries of the same
    unperturbed tensor.
    """
    out = {}
    for name in sorted(tensors):
        flat = tensors[name].detach().reshape(-1)
        k = _count(level, flat.numel())
        targets = _choose(flat.numel(), k, generator)
        sources = _choose(flat.numel(), k, generator)
        new = flat.clone()
        new[targets] = flat[sources]
        out[name] = new.reshape(tensors[name].shape)
    return out


OPERATORS: dict[str, Operator] = {
    "synapse_knockout": synapse_knockout,
    "node_knockout": node_knockout,
    "gaussian": gaussian,
    "redraw": redraw,
}
assert set(OPERATORS) == set(OPERATOR_LEVELS)


def variant_seed(study_seed: int, model: str, layer: str, perturbation: str, level: float,
                 draw: int) -> int:
    """A 63-bit seed derived by hashing what names the variant, never from RNG state."""
    key = f"{int(study_seed)}/{model}/{layer}/{perturbation}/{float(level)!r}/{int(draw)}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def variant_id(model: str, layer: str, perturbation: str, level: float, draw: int | None) -> str:
    """The seed study's readable name; without a draw it names the draw average."""
    base = f"{model}-{layer}-{perturbation}{level:.2f}"
    return base if draw is None else f"{base}-num{draw}"


def apply(perturbation: str, tensors: Tensors, level: float, seed: int) -> dict:
    """Apply operator `perturbation` with a CPU generator seeded by `seed`.

    The generator lives on the CPU whatever the device, so a variant drawn on
    a GPU machine is the same as on a laptop.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    cpu = {name: t.detach().cpu() for name, t in tensors.items()}
    return OPERATORS[perturbation](cpu, level, generator)
