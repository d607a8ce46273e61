"""The zoo's table: one row of sampled hyper-parameters per net, reproducible from the seed.

Net i draws its properties from its own generator, seeded by hashing (study
seed, i), so a row does not depend on how many nets the zoo has or on which
shard trains it; its `seed` column seeds everything its training draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from lesion.studies.zoo.space import PROPERTIES, group_key, net_seed


def _pick(choices, gen: torch.Generator):
    return choices[int(torch.randint(len(choices), (1,), generator=gen))]


def row(net: int, zoo: Mapping, study_seed: int) -> dict:
    """Net `net`'s properties: each drawn uniformly from its choices, in PROPERTIES order,
    then the learning rate from its range (uniform, or log-uniform with `log: true`)."""
    gen = torch.Generator().manual_seed(net_seed(study_seed, net, "properties"))
    out: dict = {"net": net}
    for prop in PROPERTIES:
        out[prop] = _pick(zoo["choices"][prop], gen)
    rate = zoo["learning_rate"]
    u = float(torch.rand((), generator=gen, dtype=torch.float64))
    if rate["log"]:
        out["learning_rate"] = math.exp(math.log(rate["min"]) + u * math.log(rate["max"] / rate["min"]))
    else:
        out["learning_rate"] = rate["min"] + u * (rate["max"] - rate["min"])
    out["seed"] = net_seed(study_seed, net, "training")
    return out


def table(zoo: Mapping, study_seed: int) -> list[dict]:
    """Every net's row, net 0 to zoo['nets'] - 1."""
    return [row(i, zoo, study_seed) for i in range(zoo["nets"])]


def shard_rows(zoo: Mapping, study_seed: int, shard: int, shards: int) -> list[dict]:
    """The nets of shard `shard` of `shards`: the table sorted by group key (then net id)
    and cut into `shards` contiguous, near-equal parts, so nets that can train
    together mostly land in the same shard."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is out of range; expected 0..{shards - 1}")
    rows = sorted(table(zoo, study_seed), key=lambda r: (group_key(r), r["net"]))
    bounds = [round(i * len(rows) / shards) for i in range(shards + 1)]
    return rows[bounds[shard]:bounds[shard + 1]]
