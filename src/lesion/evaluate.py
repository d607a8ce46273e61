"""Run many weight variants of one layer fast.

Everything in front of the perturbed layer is the same for every variant, so
its output (the clean activations at the layer's input) is computed once per
sweep; each variant then runs only the suffix. Variants are evaluated several
at a time: their layer tensors are stacked and the suffix is `torch.vmap`-ed
over them with `torch.func.functional_call`, one pass for a group of variants.
Where vmap cannot batch a network (an in-place op mixing batched and
unbatched tensors, as in torchvision's ResNet when a downsample conv is
perturbed), the group falls back to one functional call per variant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import islice

import torch
from torch import nn
from torch.func import functional_call

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
                     device: torch.device) -> int:
    """How many images' clean activations fit in `budget_bytes`, a multiple of `batch_size`.

    The prefix cache of an early layer of an ImageNet network is far larger
    than any GPU (vgg16's conv2 input is 12.8 MB per image, 640 GB for the
    validation set), so a sweep caches the prefix of one chunk of images at a
    time. A multiple of the batch size keeps the batches, and so the results,
    the same as with one chunk.
    """
    sample = prefix.to(device).eval()(images[:1].to(device))
    per_image = sample.numel() * sample.element_size()
    batches = max(1, int(budget_bytes // (per_image * batch_size)))
    return min(len(images), batches * batch_size)


def summarise(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the top-k classes (k = min(5, classes)) and the cross-entropy loss.

    The loss is NaN exactly where the output is not finite: a NaN or an
    infinite logit, or finite logits so far apart that the float32 loss
    overflows (a bit flip in an exponent can give logits of 1e38). The
    metrics count such outputs (`nonfinite`) from the NaN, as wrong, and
    keep them out of the mean loss, which so stays finite.
    """
    k = min(TOPK, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.expand(*logits.shape[:-1]).reshape(-1), reduction="none",
    ).reshape(logits.shape[:-1])
    finite = torch.isfinite(logits).all(dim=-1) & torch.isfinite(loss)
    return top, torch.where(finite, loss, torch.nan)


@torch.no_grad()
def sweep_suffix(suffix: nn.Module, names: dict[str, str],
                 variants: Iterable[dict[str, torch.Tensor]], activations: torch.Tensor,
                 labels: torch.Tensor, *, batch_size: int,
                 variants_per_pass: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (top-k classes [N, k], losses [N]) per variant, in order.

    `variants` are replacement tensors (e.g. `{"weight": ..., "bias": ...}`)
    for the parameters of `suffix` that `names` maps their keys to
    (models.suffix_names), consumed lazily,
    `variants_per_pass` at a time, so a sweep over a large layer never holds
    more than one group; `activations` are the clean inputs of `suffix`,
    already on the evaluation device.
    """
    device = activations.device
    suffix = suffix.to(device).eval()
    base = {**dict(suffix.named_parameters()), **dict(suffix.named_buffers())}
    labels = labels.to(device)

    def forward(layer_params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(suffix, {**base, **layer_params}, (x,))

    vmapped = torch.vmap(forward, in_dims=(0, None))
    use_vmap = variants_per_pass > 1

    def batched(stacked: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits [variants, images, classes] of a group of variants."""
        nonlocal use_vmap
        if use_vmap:
            try:
                return vmapped(stacked, x)
            except RuntimeError as err:
                log.warning("vmap cannot batch this suffix (%s); one variant per pass", err)
                use_vmap = False
        count = len(next(iter(stacked.values())))
        return torch.stack([forward({k: v[i] for k, v in stacked.items()}, x) for i in range(count)])
    remaining = iter(variants)
    while group := list(islice(remaining, variants_per_pass)):
        stacked = {names[key]: torch.stack([v[key] for v in group]).to(device)
                   for key in group[0]}
        tops, losses = [], []
        for i in range(0, len(activations), batch_size):
            top, loss = summarise(batched(stacked, activations[i:i + batch_size]),
                                  labels[i:i + batch_size])
            tops.append(top)
            losses.append(loss)
        top, loss = torch.cat(tops, dim=1).cpu(), torch.cat(losses, dim=1).cpu()
        yield from zip(top, loss, strict=True)
