"""Run many weight variants of one layer fast.

Everything in front of the perturbed layer is the same for every variant, so
its output (the clean activations at the layer's input) is computed once per
sweep; each variant then runs only the suffix. Variants are evaluated several
at a time (`variants_per_pass`), in two parts: the head of the suffix (the
stages that hold the variant's tensors) sees the same clean input for every
variant, so it runs once for the group (a convolution V times wider, see
SCHEMES); everything after it has clean weights shared by all variants, so it
runs once with the variants folded into the batch dimension (or, in a
residual network, once per variant: `_fold`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from itertools import islice

import torch
from torch import nn
from torch.func import functional_call

from lesion import graph

TOPK = 5
log = logging.getLogger(__name__)


def set_threads(n: int) -> None:
    """Torch's CPU threads for this process (a job's `threads`)."""
    torch.set_num_threads(n)


def set_precision(precision: str) -> None:
    """Float32 matmuls and cuDNN convolutions in full IEEE precision, or TF32 (catalog.PRECISIONS).

    On CUDA, PyTorch lets cuDNN convolutions use TF32 by default, which rounds
    away the low 13 mantissa bits that bit-fault studies flip, so every step
    that runs a network sets this explicitly before it starts. Harmless on the
    CPU (the settings only apply to CUDA kernels).
    """
    from lesion.catalog import PRECISIONS

    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r} is unknown; expected one of {list(PRECISIONS)}")
    torch.backends.cuda.matmul.fp32_precision = precision
    torch.backends.cudnn.conv.fp32_precision = precision


def pick_device(name: str, precision: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU; `cuda` without a GPU is an error.

    Every step that runs a network starts here, so this is also where its
    float32 `precision` is set (set_precision).
    """
    set_precision(precision)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but no CUDA GPU is available")
    return torch.device(name)


@torch.no_grad()
def run_batched(module: nn.Module, x: torch.Tensor, batch_size: int,
                device: torch.device) -> torch.Tensor:
    """`module(x)` in batches of `batch_size` on `device`; the result stays there."""
    module = module.to(device).eval()
    return torch.cat([module(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def images_per_chunk(prefix: nn.Module, images: torch.Tensor, budget_bytes: float, batch_size: int,
                     device: torch.device, count: int | None = None, layer: str = "the layer") -> int:
    """How many images' clean activations fit in `budget_bytes`, a multiple of `batch_size`,
    or all `count` images (default: those of `images`) when they fit; ValueError, naming
    `layer`, the size and the settings, when not even one batch fits (the cap holds: a
    sweep never grows past it until the kernel kills it).

    The prefix cache of an early layer of an ImageNet network is far larger
    than any GPU (vgg16's conv2 input is 12.8 MB per image, 640 GB for the
    validation set), so a sweep caches the prefix of one chunk of images at a
    time. A multiple of the batch size keeps the batches, and so the results,
    the same as with one chunk.
    """
    sample = prefix.to(device).eval()(images[:1].to(device))
    per_image = sample.numel() * sample.element_size()
    total = len(images) if count is None else count
    batch = min(batch_size, total)
    if per_image * batch > budget_bytes:
        raise ValueError(f"{layer}: the clean activations in front of it take "
                         f"{per_image * batch / 2**30:.3g} GB for one batch of {batch} images "
                         f"({per_image / 2**20:.3g} MB each), more than evaluate.cache_gb = "
                         f"{budget_bytes / 2**30:g}; expected a larger evaluate.cache_gb or a "
                         "smaller evaluate.batch_size")
    batches = int(budget_bytes // (per_image * batch_size))
    return min(total, max(batches, 1) * batch_size)


def summarise(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the top-k classes (k = min(5, classes)) and the cross-entropy loss.

    The loss is NaN exactly where the output is not finite: a NaN or an
    infinite logit, or finite logits so far apart that the float32 loss
    overflows (a bit flip in an exponent can give logits of 1e38). The
    metrics count such outputs (`nonfinite`) from the NaN, as wrong, and
    keep them out of the mean loss, which so stays finite. The loss is
    computed in float32 at least (a float64 network's in float64).
    """
    k = min(TOPK, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).to(torch.promote_types(logits.dtype, torch.float32)),
        labels.expand(*logits.shape[:-1]).reshape(-1), reduction="none",
    ).reshape(logits.shape[:-1])
    finite = torch.isfinite(logits).all(dim=-1) & torch.isfinite(loss)
    return top, torch.where(finite, loss, torch.nan)


# How the perturbed stages (the head of the suffix) run a group of variants:
#   stacked  one pass with the variants stacked: a lone Conv2d as one dense
#            convolution V times wider (weights stacked along the output
#            channels), a lone Linear as one matrix product per variant into one
#            output, also where the cut packs other values beside the layer's
#            input (lesion.graph: a skip connection); anything else (a layer
#            and its norm under node knockout) `torch.vmap`-ed over the variants
#   loop     one functional call of the head per variant (what stacked falls back
#            to where vmap cannot batch a head)
# `python -m lesion bench sweep` times both: stacked was as fast or faster on
# every layer of AlexNet and every conv of resnet18's blocks, so it is the
# default; a group of one variant (variants_per_pass 1) runs the plain network.
# Either way the tail (clean weights shared by all variants) runs once for the
# group with the variants folded into the batch dimension, or once per variant
# where values merge in it (`_fold`).
SCHEMES = ("stacked", "loop")


def _head_length(names: dict[str, str]) -> int:
    """How many leading stages of the suffix hold a variant tensor (their paths start "i.")."""
    return 1 + max(int(path.split(".", 1)[0]) for path in names.values())


def _plain(head: nn.Sequential, keys: set[str]) -> tuple[nn.Conv2d | nn.Linear, str] | None:
    """(the head's lone dense layer, its parameters' prefix in the head) when only its
    weight and bias vary, else None. The layer stands alone or inside a
    graph.PackedLayer (a cut that packs other values beside its input)."""
    if len(head) != 1:
        return None
    layer, prefix = head[0], "0."
    if isinstance(layer, graph.PackedLayer):
        layer, prefix = layer.layer, "0.layer."
    if not keys <= {prefix + "weight", prefix + "bias"}:
        return None
    if type(layer) is nn.Linear:
        return layer, prefix
    if type(layer) is nn.Conv2d and layer.groups == 1 and layer.padding_mode == "zeros":
        return layer, prefix
    return None


def _wide_conv(conv: nn.Conv2d, weights: list[torch.Tensor], biases: list[torch.Tensor | None],
               x: torch.Tensor) -> torch.Tensor:
    """[V, N, C, H, W]: one convolution of `x` with the V variants' filters side by side."""
    bias = None if biases[0] is None else torch.cat(biases)
    y = nn.functional.conv2d(x, torch.cat(weights), bias, conv.stride, conv.padding, conv.dilation)
    return y.unflatten(1, (len(weights), -1)).transpose(0, 1)


def _stacked_conv(conv: nn.Conv2d, prefix: str, group: list[dict[str, torch.Tensor]],
                  x: torch.Tensor) -> torch.Tensor:
    """[V, N, C, H, W]: the head's lone convolution, its variants as one wide convolution."""
    return _wide_conv(conv, [v.get(prefix + "weight", conv.weight) for v in group],
                      [v.get(prefix + "bias", conv.bias) for v in group], x)


def _stacked_linear(linear: nn.Linear, prefix: str, group: list[dict[str, torch.Tensor]],
                    x: torch.Tensor) -> torch.Tensor:
    """[V, N, out]: x W_v^T per variant into one output, then its bias.

    A product per variant rather than one with the weights concatenated: the
    concatenation would copy every variant of a large layer (AlexNet's fc1 is
    150 MB) for a product that reads each weight once either way. The bias is
    added after the product, as vmap's linear does (not fused).
    """
    out = x.new_empty(len(group), *x.shape[:-1], linear.out_features)
    for i, v in enumerate(group):
        torch.matmul(x, v.get(prefix + "weight", linear.weight).t(), out=out[i])
        if linear.bias is not None:
            out[i] += v.get(prefix + "bias", linear.bias)
    return out


def _stacked_packed(packed: graph.PackedLayer, stacked, group: list[dict[str, torch.Tensor]],
                    x: torch.Tensor) -> torch.Tensor:
    """[V, N, packed]: a packed head's layer stacked on the layer's input (the values'
    first), each variant's output packed in front of the values as PackedLayer does."""
    y = stacked(group, packed.unpack(x)[0])
    return torch.cat([y.flatten(2), x.expand(len(group), -1, -1)], dim=2)


def _head_runner(head: nn.Sequential, scheme: str, keys: set[str]):
    """A function (group of variants as {parameter: tensor}, x) -> head output [V, N, ...];
    `keys` are the head's parameters that the variants replace."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme = {scheme!r} is unknown; expected one of {list(SCHEMES)}")
    base = {**dict(head.named_parameters()), **dict(head.named_buffers())}

    def one(variant: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(head, {**base, **variant}, (x,))

    def loop(group: list[dict[str, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        return torch.stack([one(v, x) for v in group])

    if scheme == "loop":
        return loop
    vmapped, use_vmap = torch.vmap(one, in_dims=(0, None)), True

    def stacked(group: list[dict[str, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        """vmap over the head; where it cannot batch the head (an in-place op mixing
        batched and unbatched tensors, as in torchvision's ResNet when a downsample
        conv is perturbed), one call per variant from then on."""
        nonlocal use_vmap
        if use_vmap and len(group) > 1:
            keys = list(group[0])
            try:
                return vmapped({k: torch.stack([v[k] for v in group]) for k in keys}, x)
            except RuntimeError as err:
                log.warning("vmap cannot batch this layer's block (%s); one variant per pass",
                            err)
                use_vmap = False
        return loop(group, x)

    plain = _plain(head, keys)
    if plain is None:
        return stacked
    layer, prefix = plain
    run = partial(_stacked_conv if isinstance(layer, nn.Conv2d) else _stacked_linear, layer, prefix)
    return partial(_stacked_packed, head[0], run) if prefix != "0." else run


def _fold(tail: nn.Sequential) -> bool:
    """Whether the tail runs with a group's variants folded into the batch dimension (one
    vmap-ed pass), rather than once per variant.

    Folding reads the tail's weights once for the group, which pays where
    they dominate (AlexNet's and VGG's dense layers: 3.4x naive on AlexNet).
    Where values merge in the tail (residual adds, concatenated branches,
    attention) the network carries large activations through many small
    operations: a batch V times larger falls out of cache and measured up to
    1.7x slower than V passes (resnet18 at 16 images; folding timm's
    ConvNeXt-atto and ViT-tiny measured 1.10x and 1.44x the limit, per
    variant 0.95x and 1.00x, `bench sweep --model timm:...`), so such a
    tail runs per variant. A choice by structure (graph.is_chain), not by
    timing, so that the code path does not depend on the machine.
    """
    return all(graph.is_chain(m) for m in tail.modules() if isinstance(m, torch.fx.GraphModule))


@torch.no_grad()
def sweep_suffix(suffix: nn.Sequential, names: dict[str, str],
                 variants: Iterable[dict[str, torch.Tensor]], activations: torch.Tensor,
                 labels: torch.Tensor, *, batch_size: int, variants_per_pass: int,
                 scheme: str = "stacked", bounds: Sequence[int] | None = None,
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (top-k classes [N, k], losses [N]) per variant, in order.

    `variants` are replacement tensors (e.g. `{"weight": ..., "bias": ...}`)
    for the parameters of `suffix` that `names` maps their keys to
    (models.parameter_names), consumed lazily, `variants_per_pass` at a time,
    so a sweep over a large layer never holds more than one group;
    `activations` are the clean inputs of `suffix`, already on the evaluation
    device. The stages of `suffix` up to the last that holds a variant tensor
    (the head) run per `scheme` (SCHEMES); the rest runs once per batch of
    images for the whole group, variants folded into the batch dimension.
    `bounds` ([0, ..., len(activations)]) cut the images into segments (the
    test sets of one pass) whose batches start at the segment's start, so that
    each segment is batched as it would be alone.
    """
    device = activations.device
    suffix = suffix.to(device).eval()
    cut = _head_length(names)
    head, tail = suffix[:cut], suffix[cut:]
    run_head = _head_runner(head, scheme, set(names.values()))
    labels = labels.to(device)
    run_tail = torch.vmap(tail) if _fold(tail) else (lambda h: torch.stack([tail(y) for y in h]))
    base = {**dict(head.named_parameters()), **dict(head.named_buffers())}

    def logits(group: list[dict[str, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        """[V, N, classes]. A group of one runs the plain network (the one-variant path);
        a group of several, the head per `scheme` and the tail vmap-ed over the
        variants, which folds them into the batch dimension of every convolution
        and product (and adds a linear layer's bias after its product, as one
        vmap-ed pass of the whole suffix did: the same results to the bit)."""
        if len(group) == 1:
            return tail(functional_call(head, {**base, **group[0]}, (x,)))[None]
        return run_tail(run_head(group, x))

    bounds = list(bounds or (0, len(activations)))
    if bounds[0] != 0 or bounds[-1] != len(activations) or bounds != sorted(bounds):
        raise ValueError(f"bounds = {bounds}; expected ascending from 0 to {len(activations)}, "
                         "the number of images")
    batches = [(i, min(i + batch_size, stop))
               for start, stop in itertools.pairwise(bounds) for i in range(start, stop, batch_size)]
    remaining = iter(variants)
    while group := list(islice(remaining, variants_per_pass)):
        group = [{names[k]: t.to(device) for k, t in v.items()} for v in group]
        tops, losses = [], []
        for i, j in batches:
            top, loss = summarise(logits(group, activations[i:j]), labels[i:j])
            tops.append(top)
            losses.append(loss)
        top, loss = torch.cat(tops, dim=1).cpu(), torch.cat(losses, dim=1).cpu()
        yield from zip(top, loss, strict=True)
