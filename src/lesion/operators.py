"""Weight operators of Cheney et al. (2017), as pure functions.

An operator takes a layer's tensors (`{"weight": W, "bias": b}`), a level and
a seeded `torch.Generator`, and returns new tensors. It never modifies its
input, never touches the global RNG and never does I/O, so every variant is
built from the original weights (the seed code let perturbations accumulate)
and is reproducible from its seed alone. Weights and biases are perturbed
separately, each by the same rule; the generator is consumed in sorted name
order, so the result is a function of (tensors, level, seed).

Hardware faults (what PyTorchFI, MRFI and PyTorchALFI offer for weights):
`bitflip`, `stuck_at_zero` and `stuck_at_one` act on the bits of the stored
floats, each selected bit of each entry independently with probability
`level`, optionally restricted to some bit positions (option `bits`). `crash`
is an activation fault (El-Mhamdi et al.): it leaves the weights alone and
its neuron masks are drawn when the variant is evaluated (`lesion.activations`).

Synaptic filters (Pravin et al. 2024): `highpass`, `lowpass` and `pulse`
remove weights by value, over a threshold alpha in each tensor's own
[min, max]; the level is the normalised alpha in [0, 1]. They are
deterministic (the generator is not used) and are given the Conv and Linear
weights only, never biases or BatchNorm (WEIGHT_OPERATORS, models.weight_tensors).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal

import torch

from lesion import catalog
from lesion.catalog import OPERATOR_OPTIONS

Tensors = Mapping[str, torch.Tensor]
Operator = Callable[..., dict[str, torch.Tensor]]  # (tensors, level, generator, **options)


def _count(level: float, n: int) -> int:
    """How many of `n` entries a fraction `level` selects: level * n rounded to the nearest
    integer, halves up (p = 0.5 of 5 units is 3), worked out on the level as written.

    The seed code took the floor, which undercounts (p = 0.3 of 12 units is 4,
    not 3) and trips on float error (0.29 * 100 = 28.999...: floor 28). Halves go
    up, not to even (Python's `round`), so that a level selects the same share of
    every odd layer size, and in decimal, so that 0.58 of 25 (14.4999... in binary)
    is the tie it is written as: 15.
    """
    exact = Decimal(str(float(level))) * n  # the shortest decimal that reads back as `level`
    return min(n, int(exact.to_integral_value(rounding=ROUND_HALF_UP)))


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

    An output unit (a dense unit, a conv filter) is dimension 0 of every
    tensor given: the weight, the bias and, where a BatchNorm normalises the
    layer, its scale and shift (`norm.weight`, `norm.bias`, see
    models.unit_tensors and UNIT_OPERATORS), all zeroed, so the unit outputs
    exactly 0. Inputs are left alone (the seed code also zeroed input rows of
    dense layers).
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
        std = t.std(correction=0)  # 0 for a one-entry tensor
        noise = torch.randn(t.shape, generator=generator, dtype=t.dtype, device=t.device)
        # t + noise * (level * std), in place: the same two roundings, no temporaries
        out[name] = noise.mul_(level * std).add_(t)
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


# Bit layout of the float formats a layer may be stored in: (integer view,
# width, exponent bits). Bit 0 is the least significant mantissa bit, the
# top bit is the sign; the exponent sits right below the sign.
_FLOAT_BITS: dict[torch.dtype, tuple[torch.dtype, int, int]] = {
    torch.float32: (torch.int32, 32, 8),
    torch.float64: (torch.int64, 64, 11),
    torch.float16: (torch.int16, 16, 5),
    torch.bfloat16: (torch.int16, 16, 8),
}
BIT_FIELDS = ("all", "sign", "exponent", "mantissa")
_CHUNK = 1 << 18  # entries per draw: bounds memory, and fixes the draw order


def bit_positions(bits: str | int | Sequence[str | int], dtype: torch.dtype) -> list[int]:
    """The bit positions `bits` names for `dtype`, sorted (0 = lowest mantissa bit).

    `bits` is a field name (all, sign, exponent, mantissa), a bit index, or a
    list of these; float32 has sign 31, exponent 23..30, mantissa 0..22.
    """
    if dtype not in _FLOAT_BITS:
        raise ValueError(f"bit faults need a float tensor; got dtype {dtype}, expected one of "
                         f"{[str(d) for d in _FLOAT_BITS]}")
    _, width, exponent = _FLOAT_BITS[dtype]
    fields = {"all": range(width), "sign": [width - 1],
              "exponent": range(width - 1 - exponent, width - 1),
              "mantissa": range(width - 1 - exponent)}
    out: set[int] = set()
    for item in [bits] if isinstance(bits, str | int) else list(bits):
        if isinstance(item, str) and item in fields:
            out.update(fields[item])
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < width:
            out.add(item)
        else:
            raise ValueError(f"bits = {item!r} is not a bit of {dtype}; expected one of "
                             f"{list(BIT_FIELDS)} or an index in 0..{width - 1}")
    if not out:
        raise ValueError(f"bits = {bits!r} selects no bit; expected at least one")
    return sorted(out)


def _bit_masks(t: torch.Tensor, level: float, positions: list[int],
               generator: torch.Generator) -> torch.Tensor:
    """An integer mask per entry of `t`: each bit in `positions` set with prob. `level`.

    Drawn chunk by chunk ([chunk, bits] uniforms at a time), vectorised over
    the whole tensor; the same (tensor shape, level, positions, generator
    state) always gives the same masks.
    """
    itype, width, _ = _FLOAT_BITS[t.dtype]
    # The hits are packed into the mask's bytes (8 hits a byte, bytes in the
    # machine's order), bit plane by bit plane, not summed as integers: the same
    # bits in a sixth of the time. Hits of some `positions` only are first put at
    # their bits of a [count, width] grid.
    full = positions == list(range(width))
    masks = torch.empty(t.numel(), dtype=itype)
    for start in range(0, t.numel(), _CHUNK):
        count = min(_CHUNK, t.numel() - start)
        hits = (torch.rand((count, len(positions)), generator=generator) < level).view(torch.uint8)
        if not full:
            grid = torch.zeros((count, width), dtype=torch.uint8)
            grid[:, positions] = hits
            hits = grid
        planes = hits.view(count, width // 8, 8).permute(2, 0, 1).contiguous()  # [8, count, bytes]
        packed = planes[0]
        for bit in range(1, 8):
            packed |= planes[bit] << bit
        if sys.byteorder == "big":
            packed = packed.flip(-1)
        masks[start:start + count] = packed.view(itype).reshape(-1)
    return masks.reshape(t.shape)


# What a bit fault does to the stored bits `raw` where `mask` has a 1.
_BIT_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "flip": lambda raw, mask: raw ^ mask,
    "zero": lambda raw, mask: raw & ~mask,
    "one": lambda raw, mask: raw | mask,
}


def _bit_fault(kind: str, tensors: Tensors, level: float, generator: torch.Generator,
               bits: str | int | Sequence[str | int]) -> dict:
    """Flip, clear or set (`kind`) the selected bits, one mask per tensor from one stream."""
    out = {}
    for name in sorted(tensors):
        t = tensors[name].detach()
        positions = bit_positions(bits, t.dtype)
        raw = t.contiguous().view(_FLOAT_BITS[t.dtype][0])
        mask = _bit_masks(t, level, positions, generator)
        out[name] = _BIT_OPS[kind](raw, mask).view(t.dtype).clone()
    return out


def bitflip(tensors: Tensors, level: float, generator: torch.Generator, *,
            bits: str | int | Sequence[str | int] = "all") -> dict:
    """Flip each selected bit of every entry (weights and biases) with probability `level`."""
    return _bit_fault("flip", tensors, level, generator, bits)


def stuck_at_zero(tensors: Tensors, level: float, generator: torch.Generator, *,
                  bits: str | int | Sequence[str | int] = "all") -> dict:
    """Clear each selected bit of every entry with probability `level` (a bit stuck at 0)."""
    return _bit_fault("zero", tensors, level, generator, bits)


def stuck_at_one(tensors: Tensors, level: float, generator: torch.Generator, *,
                 bits: str | int | Sequence[str | int] = "all") -> dict:
    """Set each selected bit of every entry with probability `level` (a bit stuck at 1)."""
    return _bit_fault("one", tensors, level, generator, bits)


def crash(tensors: Tensors, level: float, generator: torch.Generator) -> dict:
    """Neuron crashes leave the weights as they are (copied, so a variant never aliases them).

    The crash masks are drawn per input and repetition at evaluation, from the
    variant's seed (`lesion.activations.crashed_logits`).
    """
    return {name: tensors[name].detach().clone() for name in sorted(tensors)}


# Width of the pulse filter's band, as a share of a tensor's range (max - min):
# one step of the paper's 25-point alpha grid.
PULSE_WIDTH = 1 / 25


def _filter(tensors: Tensors, level: float, removed: Callable[..., torch.Tensor]) -> dict:
    """Zero, in every tensor, the entries `removed(values, alpha, low, high)` selects.

    low and high are the tensor's min and max, alpha = low + level * (high -
    low); all in float64 (a float32 difference and sum are exact there, so
    level 1 is exactly the maximum) and compared with the float64 values.
    """
    out = {}
    for name in sorted(tensors):
        t = tensors[name].detach()
        if t.numel() == 0:
            out[name] = t.clone()
            continue
        values = t.double()
        low, high = float(values.min()), float(values.max())
        alpha = low + level * (high - low)
        out[name] = torch.where(removed(values, alpha, low, high), torch.zeros_like(t), t)
    return out


def highpass(tensors: Tensors, level: float, generator: torch.Generator) -> dict:
    """Ideal high-pass filter: zero every entry <= alpha (level 0 removes the minimum only,
    level 1 everything)."""
    return _filter(tensors, level, lambda t, alpha, low, high: t <= alpha)


def lowpass(tensors: Tensors, level: float, generator: torch.Generator) -> dict:
    """Ideal low-pass filter: zero every entry >= alpha (level 0 removes everything,
    level 1 the maximum only)."""
    return _filter(tensors, level, lambda t, alpha, low, high: t >= alpha)


def pulse(tensors: Tensors, level: float, generator: torch.Generator) -> dict:
    """Pulse-wave filter: zero the band alpha - w/2 <= entry < alpha + w/2, with
    w = (max - min) / 25 of the tensor (half-open, as the authors' per-layer code).

    The authors' global version took a fixed range [-1, 1] and a band test that
    every value passes, so it zeroed nothing; here the band is each tensor's own.
    """
    def band(t, alpha, low, high):
        half = (high - low) * PULSE_WIDTH / 2
        return (t >= alpha - half) & (t < alpha + half)
    return _filter(tensors, level, band)


# Each operator of the catalog (lesion.catalog.OPERATORS: levels, sweep, what it acts on,
# options) is the function of its name above.
OPERATORS: dict[str, Operator] = {name: globals()[name] for name in catalog.OPERATORS}


def variant_seed(study_seed: int, model: str, layer: str, perturbation: str, level: float,
                 draw: int) -> int:
    """A 63-bit seed derived by hashing what names the variant, never from RNG state."""
    key = f"{int(study_seed)}/{model}/{layer}/{perturbation}/{float(level)!r}/{int(draw)}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def variant_id(model: str, layer: str, perturbation: str, level: float, draw: int | None) -> str:
    """The seed study's readable name; without a draw it names the draw average."""
    # Two decimals as in the seed study; finer levels (bit-flip rates) in full.
    text = f"{level:.2f}" if round(level, 2) == level else f"{level:g}"
    base = f"{model}-{layer}-{perturbation}{text}"
    return base if draw is None else f"{base}-num{draw}"


def apply(perturbation: str, tensors: Tensors, level: float, seed: int, **options) -> dict:
    """Apply operator `perturbation` with a CPU generator seeded by `seed`.

    The generator lives on the CPU whatever the device, so a variant drawn on
    a GPU machine is the same as on a laptop. `options` are the operator's
    own (OPERATOR_OPTIONS), e.g. `bits="exponent"` for bit faults. The level is
    trusted: a sweep's levels are checked once where they enter (catalog.check_sweep,
    by the CLI and the config check).
    """
    unknown = sorted(set(options) - set(OPERATOR_OPTIONS.get(perturbation, ())))
    if unknown:
        raise ValueError(f"option {unknown[0]!r} does not apply to {perturbation}; expected "
                         f"{list(OPERATOR_OPTIONS.get(perturbation, ())) or 'no options'}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    cpu = {name: t.detach().cpu() for name, t in tensors.items()}
    return OPERATORS[perturbation](cpu, level, generator, **options)
