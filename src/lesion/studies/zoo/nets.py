"""A zoo net as a pure function of its flat weight vector, and what it trains on.

`forward(flat, x, activations, net)` runs a group of nets of one
architecture, each a row of flat weights in `space.layout` order.
Initialisation, the derived datasets and the augmentation are shared by the
grouped trainer and the plain loop, so both start from the same weights and
see the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch.func import vmap

from lesion.studies.zoo.space import DATASETS, layers, layout, net_seed

Shapes = list[tuple[str, tuple]]


def unflatten(flat: torch.Tensor, shapes: Shapes) -> dict[str, torch.Tensor]:
    """Views of `flat` (last dimension) as the named tensors of `shapes`, in order."""
    sizes = [math.prod(shape) for _, shape in shapes]
    if flat.shape[-1] != sum(sizes):
        raise ValueError(f"a flat vector of {flat.shape[-1]} weights; expected {sum(sizes)} "
                         "for this architecture")
    parts = torch.split(flat, sizes, dim=-1)
    return {name: part.reshape(*flat.shape[:-1], *shape)
            for (name, shape), part in zip(shapes, parts, strict=True)}


def flatten(tensors: Mapping[str, torch.Tensor], shapes: Shapes) -> torch.Tensor:
    """The flat vector of named tensors, in `shapes` order (row-major each)."""
    return torch.cat([tensors[name].reshape(-1) for name, _ in shapes])


ACTIVATION_FUNCTIONS = {"relu": F.relu, "elu": F.elu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def runs(names: Sequence[str]) -> list[tuple[str, int, int]]:
    """(name, start, stop) of each run of equal names (nets sorted by activation: one run each)."""
    out: list[tuple[str, int, int]] = []
    for i, name in enumerate(names):
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1], i + 1)
        else:
            out.append((name, i, i + 1))
    return out


def _activate(h: torch.Tensor, segments: list[tuple[str, int, int]]) -> torch.Tensor:
    """Each net's activation on its rows of h, one call per run of nets sharing one."""
    if len(segments) == 1:
        return ACTIVATION_FUNCTIONS[segments[0][0]](h)
    return torch.cat([ACTIVATION_FUNCTIONS[name](h[a:b]) for name, a, b in segments])


def forward(flat: torch.Tensor, x: torch.Tensor, activations: Sequence[str],
            net: list[dict]) -> torch.Tensor:
    """Logits (G, B, classes) of G nets of one architecture (`net`, from space.layers).

    flat (G, P): each net's weights in layout order; x (G, B, C, H, W): each
    net's own images; activations: each net's activation name. The layers
    are `torch.func.vmap`-ed over the nets (a conv becomes a grouped conv, a
    linear layer a batched matmul); the activations are applied per run of
    nets that share one, so nets sorted by activation pay for one each.
    """
    shapes = [(f"{layer['name']}.{part}", shape) for layer in net
              for part, shape in (("weight", _weight_shape(layer)), ("bias", (layer["out"],)))]
    params = unflatten(flat, shapes)
    segments = runs(activations)
    h = x
    for layer in net:
        w, b = params[f"{layer['name']}.weight"], params[f"{layer['name']}.bias"]
        if layer["kind"] == "conv":
            conv = partial(F.conv2d, padding=layer["k"] // 2)
            h = _activate(vmap(conv)(h, w, b), segments)
            if layer["pool"]:
                h = F.max_pool2d(h.flatten(0, 1), 2, ceil_mode=True).unflatten(0, h.shape[:2])
            continue
        h = torch.baddbmm(b[:, None, :], h.flatten(2), w.transpose(1, 2))
        if layer["name"] != "out":
            h = _activate(h, segments)
    return h


def _weight_shape(layer: dict) -> tuple:
    if layer["kind"] == "conv":
        return (layer["out"], layer["in"], layer["k"], layer["k"])
    return (layer["out"], layer["in"])


def architecture(row: Mapping, input_shape: Sequence[int], classes: int) -> list[dict]:
    return layers(row, input_shape, classes)


def init(row: Mapping, input_shape: Sequence[int], classes: int,
         gen: torch.Generator) -> torch.Tensor:
    """A net's initial flat weights, drawn from `gen` layer by layer in layout order.

    As the original's weight_variable: constant 0.1; normal N(0, 1)
    (TensorFlow's random_normal_initializer); Glorot uniform and Glorot
    normal (torch.nn.init.xavier_*: the original's Glorot normal was
    truncated). Biases start at 0 in every scheme.
    """
    tensors = {}
    for name, shape in layout(row, input_shape, classes):
        t = torch.zeros(shape)
        if name.endswith(".weight"):
            kind = row["initialization"]
            if kind == "constant":
                t.fill_(0.1)
            elif kind == "normal":
                t.normal_(0.0, 1.0, generator=gen)
            elif kind == "glorot_uniform":
                torch.nn.init.xavier_uniform_(t, generator=gen)
            elif kind == "glorot_normal":
                torch.nn.init.xavier_normal_(t, generator=gen)
            else:
                raise ValueError(f"initialization = {kind!r}; expected one of "
                                 "constant, normal, glorot_uniform, glorot_normal")
        tensors[name] = t
    return flatten(tensors, layout(row, input_shape, classes))


NOISE_STD = 0.2  # noisy: the std of the added Gaussian noise (images in [0, 1])
LOW_CONTRAST = 0.5  # low_contrast: the contrast factor about mid-grey 0.5
BLUR = (0.25, 0.5, 0.25)  # blurred: the binomial kernel along each axis


def derive(images: torch.Tensor, name: str, study_seed: int, split: str = "train") -> torch.Tensor:
    """A documented derived version of a dataset's images (values in [0, 1], NCHW).

    Versions that change the input statistics (the default choices):
    plain: as they are; inverted: 1 - x (the mean becomes 1 - mean);
    low_contrast: 0.5 + 0.5 (x - 0.5) (the mean moves halfway to 0.5, the std
    halves); noisy: x + N(0, 0.2^2) per pixel, drawn once per image from a
    generator seeded by (study seed, split), clipped to [0, 1] (the std grows,
    and the clipped background brightens); blurred: a 3x3 binomial blur
    ([1, 2, 1] / 4 along each axis, edges replicated), each channel on its
    own (the std shrinks, neighbouring pixels correlate more).
    Symmetries that keep every pixel's statistics (options, not defaults):
    transposed: rows and columns swapped; permuted: one fixed permutation of
    the pixel positions (the same for every image and channel), drawn from a
    generator seeded by the study seed alone.
    """
    if name == "plain":
        return images
    if name == "inverted":
        return 1.0 - images
    if name == "low_contrast":
        return 0.5 + LOW_CONTRAST * (images - 0.5)
    if name == "noisy":
        gen = torch.Generator().manual_seed(net_seed(study_seed, "noisy", split))
        noise = torch.randn(images.shape, generator=gen, dtype=images.dtype)
        return (images + NOISE_STD * noise).clamp(0.0, 1.0)
    if name == "blurred":
        c = images.shape[1]
        k = torch.tensor(BLUR, dtype=images.dtype)
        kernel = (k[:, None] * k[None, :]).expand(c, 1, 3, 3)
        return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
    if name == "transposed":
        return images.transpose(-1, -2).contiguous()
    if name == "permuted":
        n, c, h, w = images.shape
        gen = torch.Generator().manual_seed(net_seed(study_seed, "permuted"))
        order = torch.randperm(h * w, generator=gen)
        return images.reshape(n, c, h * w)[:, :, order].reshape(n, c, h, w)
    raise ValueError(f"dataset = {name!r} is not a derived dataset; expected one of {list(DATASETS)}")


def shift(height: int) -> int:
    """Augmentation's largest translation in pixels: a tenth of the image (the original's 3 of 32)."""
    return max(1, round(height / 10))


def epoch_draws(gen: torch.Generator, n: int, batch_size: int, augmentation: bool,
                height: int) -> dict[str, torch.Tensor]:
    """One epoch's draws of a net, in this order: the image order, then (augmented nets
    only) per image a translation (dy, dx) and a brightness and contrast change."""
    steps = n // batch_size
    out = {"order": torch.randperm(n, generator=gen)[:steps * batch_size].reshape(steps, batch_size)}
    if augmentation:
        s = shift(height)
        out["offsets"] = torch.randint(0, 2 * s + 1, (steps, batch_size, 2), generator=gen)
        out["brightness"] = torch.empty(steps, batch_size).uniform_(-0.2, 0.2, generator=gen)
        out["contrast"] = torch.empty(steps, batch_size).uniform_(0.5, 1.5, generator=gen)
    return out


def augment(x: torch.Tensor, offsets: torch.Tensor, brightness: torch.Tensor,
            contrast: torch.Tensor) -> torch.Tensor:
    """Images x (M, C, H, W) translated by offsets - shift (zero fill), their contrast
    scaled about each image's mean and their brightness shifted, clipped to [0, 1]."""
    m, c, h, w = x.shape
    s = shift(h)
    padded = F.pad(x, (s, s, s, s))
    span = partial(torch.arange, device=x.device)
    rows = offsets[:, 0, None] + span(h)
    cols = offsets[:, 1, None] + span(w)
    moved = padded[span(m)[:, None, None, None], span(c)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    mean = moved.mean(dim=(1, 2, 3), keepdim=True)
    out = (moved - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    return out.clamp(0.0, 1.0)


