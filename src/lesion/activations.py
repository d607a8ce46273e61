"""Neuron sites of a network: where a layer's neurons are, and crashes of them.

The engine's view of activations, shared by the predict step (crash sweeps),
training (dropout and extra loss terms at hidden neurons) and the fault
study. The neurons of weight layer L are its outputs after everything that
follows it elementwise (normalisation, nonlinearity, dropout); see
lesion.studies.faults.bounds for why, and for the bounds on crash errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import fx, nn

from lesion import graph, models


def _traced(model: nn.Module) -> fx.GraphModule:
    gm = models.traced_graph(model)
    if gm is None:
        raise ValueError(f"{model.lesion_name}: torch.fx cannot trace {type(model).__name__}, so "
                         "its neurons cannot be cut out for crash faults or hidden-unit training; "
                         "expected a network without data-dependent control flow")
    return gm


def _site(model: nn.Module, layer: str) -> fx.Node:
    """The graph node of `layer`'s neurons (graph.neurons)."""
    models.layer(model, layer)  # an unknown name is refused with the nearest names
    return graph.neurons(_traced(model), models.layer_paths(model)[layer])


def crash_split(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module]:
    """(prefix, suffix): prefix(x) is `layer`'s neurons, suffix maps them to the output.

    Where the rest of the network reads more than the neurons (a skip
    connection around them), prefix(x) packs the neurons first with those
    values, one row per input, and `prefix.packed` is True; `prefix.neurons`
    is the neurons' shape per input either way (`neurons_of`).
    """
    prefix, suffix, shape, packed = graph.split_after(_traced(model), _site(model, layer))
    prefix.neurons = shape
    return prefix.eval(), suffix.eval()


def neurons_of(prefix: nn.Module, cache: torch.Tensor) -> torch.Tensor:
    """The neurons [N, *shape] in a crash prefix's output (packed or not)."""
    shape = prefix.neurons
    if not prefix.packed:
        return cache
    return cache[:, :math.prod(shape)].reshape(len(cache), *shape)


def keep_mask(shape: Sequence[int], p: float, generator: torch.Generator) -> torch.Tensor:
    """True where a neuron survives: each crashes (False) independently with probability p."""
    return torch.rand(tuple(shape), generator=generator) >= p


@torch.no_grad()
def crashed_logits(suffix: nn.Module, activations: torch.Tensor,
                   repetitions: Sequence[tuple[float, int]], *, batch_size: int,
                   reps_per_pass: int, neurons: tuple[int, ...] | None = None,
                   ) -> Iterator[torch.Tensor]:
    """Yield the output [N, K] of every repetition (p, seed), in order.

    `activations` are the crash prefix's output on the evaluation device: the
    clean neurons [N, ...] of the crashed layer, or, with `neurons` (their
    shape per input, where the prefix packs them with other values), the
    packed rows, whose leading prod(neurons) columns are the neurons.
    Repetition r draws its masks from a CPU generator seeded by its seed,
    batch after batch in input order, so its masks depend on (seed, p,
    batch_size) only, never on how many repetitions share a pass, nor on
    packing; `reps_per_pass` repetitions run through the suffix together, as
    one batch of reps x inputs.
    """
    device = activations.device
    suffix = suffix.to(device).eval()
    for start in range(0, len(repetitions), reps_per_pass):
        group = repetitions[start:start + reps_per_pass]
        generators = [torch.Generator().manual_seed(int(seed)) for _, seed in group]
        outputs = []
        for i in range(0, len(activations), batch_size):
            x = activations[i:i + batch_size]
            shape = x.shape if neurons is None else (len(x), *neurons)
            keep = torch.stack([keep_mask(shape, p, g) for g, (p, _) in zip(generators, group,
                                                                             strict=True)])
            keep = keep.to(device=device, dtype=x.dtype)
            if neurons is None:
                crashed = keep * x
            else:  # the neurons crash, the other values pass as they are
                size = math.prod(neurons)
                crashed = torch.cat([keep.flatten(2) * x[:, :size],
                                     x[:, size:].expand(len(group), -1, -1)], dim=2)
            y = suffix(crashed.reshape(-1, *x.shape[1:]))
            outputs.append(y.reshape(len(group), len(x), *y.shape[1:]))
        yield from torch.cat(outputs, dim=1)


class _AtSites(fx.Interpreter):
    """Runs a traced network; the value of each site node goes through `at(i, value)`
    (the i-th site in graph order), whose result the rest of the network reads."""

    def __init__(self, gm: fx.GraphModule, sites: Sequence[fx.Node],
                 at: Callable[[int, torch.Tensor], torch.Tensor]):
        super().__init__(gm)
        self.sites, self.at = {node: i for i, node in enumerate(sites)}, at

    def run_node(self, node: fx.Node):
        out = super().run_node(node)
        return self.at(self.sites[node], out) if node in self.sites else out


def forward_at(model: nn.Module, layers: Sequence[str], x: torch.Tensor,
               at: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The network's output with the neurons of `layers[i]` replaced by `at(i, neurons)`."""
    gm = _traced(model).train(model.training)  # its own copies of in-place activations too
    return _AtSites(gm, [_site(model, name) for name in layers], at).run(x)


def forward_with_sites(model: nn.Module, x: torch.Tensor, *, dropout: float = 0.0,
                       training: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The network's output and the neurons of every weight layer but the last (the hidden
    units), dropout applied to each after it is recorded."""
    acts: list[torch.Tensor] = []

    def record(i: int, h: torch.Tensor) -> torch.Tensor:
        acts.append(h)
        return nn.functional.dropout(h, dropout, training=training) if dropout else h

    out = forward_at(model, list(models.layers(model))[:-1], x, record)
    return out, acts
