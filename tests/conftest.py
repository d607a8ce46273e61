"""Shared fixtures: small real networks and data, no mocks."""

from __future__ import annotations

import os

import pytest
import torch

from lesion import models

# Under pytest-xdist (`make test` runs one worker per core) each worker computes with one
# thread, so the workers share the cores instead of fighting over them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build("cnn", num_classes=10, input_shape=(1, 8, 8)).eval()


@pytest.fixture(scope="session")
def mlp() -> torch.nn.Module:
    torch.manual_seed(1)
    return models.build("mlp", num_classes=10, input_shape=(1, 8, 8)).eval()


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """A slice of the real digits data, preprocessed as the study does."""
    from lesion import data

    spec = data.get("digits")
    raw = spec.raw()
    return spec.preprocess(raw["images"][:200]), raw["labels"][:200]
