"""Pretraining a network's first layer as the encoder of an autoencoder (config
`models.<name>.pretrain: autoencoder`; Szegedy et al.'s AE400-10).

Szegedy et al.'s AE400-10 is a softmax classifier on the 400-unit sigmoid
code of a single-layer autoencoder. Here the autoencoder is the network's
own fc1 (encoder, sigmoid) and a fresh linear decoder with a sigmoid output,
trained by mean squared reconstruction error on the training images plus the
sparse autoencoder's KL penalty (Ng's lecture notes, which the paper's sparse
autoencoder follows: beta * sum_j KL(rho || mean activation of unit j)); the
result is the network with fc1 pretrained and every other layer freshly
initialised, which training then fine-tunes (as from `train.init`).
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn
from tqdm import tqdm

from lesion import data, models

log = logging.getLogger(__name__)


def pretrain(arch: str, dataset: str, train_path: str | os.PathLike, out: str | os.PathLike, *,
             name: str, epochs: int, batch_size: int, learning_rate: float, seed: int,
             sparsity: float = 0.0, sparsity_target: float = 0.05) -> None:
    """Write `arch` with its fc1 trained as an autoencoder's encoder.

    `sparsity` (beta) weighs the KL penalty that pulls each code unit's mean
    activation over a batch towards `sparsity_target` (rho); 0 trains a plain one.
    """
    spec = data.get(dataset, split=train_path)
    torch.manual_seed(seed)
    network = models.build(arch, num_classes=spec.num_classes, input_shape=spec.input_shape,
                           name=name)
    first, encoder = next(iter(models.layers(network).items()))
    if first != "fc1":
        raise ValueError(f"architecture {arch!r} has no dense first layer to pretrain; expected "
                         "a fully connected network such as ae400_10")
    width = encoder.in_features
    decoder = nn.Linear(encoder.out_features, width)
    images, _ = data.load_split(train_path)
    flat = images.reshape(len(images), -1)
    if flat.shape[1] != width:
        raise ValueError(f"{train_path}: images of {flat.shape[1]} values; expected {width} for "
                         f"{arch} on {dataset}")
    params = [*encoder.parameters(), *decoder.parameters()]
    optimiser = torch.optim.Adam(params, lr=learning_rate)
    order = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc=f"autoencoder {name}", mininterval=1):
        for batch in torch.randperm(len(flat), generator=order).split(batch_size):
            x = flat[batch]
            code = torch.sigmoid(encoder(x))
            loss = nn.functional.mse_loss(torch.sigmoid(decoder(code)), x)
            if sparsity:
                loss = loss + sparsity * kl_sparsity(code, sparsity_target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        code = torch.sigmoid(encoder(flat))
        error = nn.functional.mse_loss(torch.sigmoid(decoder(code)), flat)
        mean_code = float(code.mean())
    log.info("autoencoder %s: reconstruction MSE %.4f after %d epochs", name, error.item(), epochs)
    log.info("autoencoder %s: mean code activation %.4f (sparsity target %g, weight %g)", name,
             mean_code, sparsity_target, sparsity)
    models.save_weights(network, out, dataset=dataset, pretrained="autoencoder fc1",
                        reconstruction_mse=float(error), mean_code=mean_code, epochs=epochs,
                        seed=seed, sparsity=sparsity, sparsity_target=sparsity_target)


def kl_sparsity(code: torch.Tensor, target: float) -> torch.Tensor:
    """sum_j KL(target || rho_j) between Bernoulli means, rho_j the mean of unit j of
    `code` (sigmoid activations, batch first) over the batch."""
    rho = code.mean(0).clamp(1e-6, 1 - 1e-6)
    return (target * torch.log(target / rho)
            + (1 - target) * torch.log((1 - target) / (1 - rho))).sum()
