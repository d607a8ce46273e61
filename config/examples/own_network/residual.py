"""A network of one's own for lesion's example configs (config/examples/own_network.yaml,
config/examples/own_data.yaml).

A small residual CNN for 8x8 greyscale images: a stem convolution, one
residual block whose second convolution is followed by a BatchNorm and whose
skip connection crosses both convolutions, then a linear classifier.
Functional ReLUs, as people write them. lesion reads its layers from its
graph: stem, block.conv1, block.conv2 (with its norm block.bn2), head.
"""

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        return F.relu(self.bn2(self.conv2(h)) + x)


class Residual(nn.Module):
    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.block = Block(width)
        self.head = nn.Linear(width * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(F.relu(self.stem(x)))
        return self.head(F.max_pool2d(h, 2).flatten(1))


def build(width: int = 8, classes: int = 10) -> Residual:
    return Residual(width, classes)
