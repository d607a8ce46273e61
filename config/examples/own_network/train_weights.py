"""How residual.pt was made (not run by the study): the example network trained with plain
PyTorch on the training part of the study's own digits split (seed 0, 25% test, so the
study's test images were never seen), saved as a DDP-style checkpoint
({"state_dict": {"module.<key>": tensor}}) to show state_dict_key and strip_prefix.

    .venv/bin/python config/examples/own_network/train_weights.py
"""

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from residual import build

from lesion import data

HERE = Path(__file__).resolve().parent

with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    data.export("digits", tmp / "raw.safetensors")
    data.make_tensors("digits", tmp / "raw.safetensors", tmp / "train.safetensors",
                      tmp / "test.safetensors", test_fraction=0.25, seed=0)
    train_x, train_y = data.load_split(tmp / "train.safetensors")
torch.manual_seed(0)
model = build(width=8)
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for _epoch in range(15):
    order = torch.randperm(len(train_x))
    for i in range(0, len(order), 64):
        batch = order[i:i + 64]
        opt.zero_grad()
        F.cross_entropy(model(train_x[batch]), train_y[batch]).backward()
        opt.step()
model.eval()
torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 15},
           HERE / "residual.pt")
