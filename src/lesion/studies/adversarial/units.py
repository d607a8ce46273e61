"""Unit inspection (Szegedy et al. 2013, §3): the test images that most activate one
unit of a hidden layer (a natural basis direction e_i of its activation space)
and those that most activate a random direction v of the same space.

The paper found both sets equally coherent: a single unit is no more
semantically meaningful than a random combination of units.
"""

from __future__ import annotations

import os

import torch

from lesion import activations, data, models, tensorfiles


@torch.no_grad()
def layer_outputs(model: torch.nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """The activations phi(x) after `layer`'s non-linearity, one row per image."""
    prefix, _ = activations.crash_split(model, layer)
    return activations.neurons_of(prefix, prefix(images)).flatten(1)


def inspect(model: torch.nn.Module, layer: str, images: torch.Tensor, *, unit: int, top: int,
            seed: int) -> dict[str, torch.Tensor]:
    """Indices (into `images`) of the `top` images maximising <phi(x), e_unit> and
    <phi(x), v>, v a unit-length Gaussian direction seeded by `seed`; and v itself."""
    phi = layer_outputs(model, layer, images)
    if not 0 <= unit < phi.shape[1]:
        raise ValueError(f"unit {unit} is out of range; expected 0..{phi.shape[1] - 1} for {layer}")
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(phi.shape[1], generator=generator)
    direction = (direction / direction.norm()).to(phi)
    return {"unit": phi[:, unit].topk(top).indices, "random": (phi @ direction).topk(top).indices,
            "direction": direction}


def write_units(dataset: str, weights: str | os.PathLike, test: str | os.PathLike,
                out: str | os.PathLike, *, layer: str, unit: int, top: int, seed: int) -> None:
    spec = data.get(dataset, split=test)
    model = models.load_weights(weights, num_classes=spec.num_classes, input_shape=spec.input_shape)
    images, _ = data.load_split(test)
    found = inspect(model, layer, images, unit=unit, top=top, seed=seed)
    tensorfiles.save_tensors({"unit_images": images[found["unit"]], "random_images": images[found["random"]],
                     "unit_index": found["unit"], "random_index": found["random"],
                     "direction": found["direction"]}, out,
                    {"model": model.lesion_name, "layer": layer, "unit": unit, "seed": seed})
