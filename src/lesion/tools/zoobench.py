"""`python -m lesion bench zoo`: what training nets together buys, and how time grows with N.

For each group size G it samples G nets that share an architecture and a
batch size (the default digits zoo's table, batch size fixed), trains them
once together (`grouped.train_group`, vmap over the stacked weights) and
once one by one (`loop.train_net`, nn.Module and torch.optim), in the same
run on the same data, and prints nets/s of both and their ratio. The
grouped time against G is how a shard's time scales with its nets; the zoo's
total is the sum over its groups.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch

from lesion import data
from lesion.studies.zoo import grouped, loop, sample


def _digits(study_seed: int) -> grouped.Data:
    """digits split as the default study splits it (75/25, seeded)."""
    from sklearn.model_selection import train_test_split

    spec = data.get("digits")
    raw = spec.raw()
    images, labels = spec.preprocess(raw["images"]), raw["labels"]
    train, test = train_test_split(range(len(labels)), test_size=0.25, stratify=labels.numpy(),
                                   random_state=study_seed)
    train, test = torch.tensor(sorted(train)), torch.tensor(sorted(test))
    return grouped.Data.build((images[train], labels[train]), (images[test], labels[test]),
                              spec.num_classes, study_seed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def zoo_speed(zoo: Mapping, *, sizes: Sequence[int], batch_size: int, epochs: int,
              snapshots: int, loop_limit: int, study_seed: int = 0,
              device: str = "cpu") -> list[dict]:
    """Time grouped against looped training for each group size; print and return the rows.

    The loop is timed on at most `loop_limit` nets (its time per net does not
    depend on G) and reported per net.
    """
    from lesion.evaluate import pick_device

    dev = pick_device(device, "ieee")
    ds = _digits(study_seed).to(dev)
    choices = {**zoo["choices"], "batch_size": [batch_size]}
    rows_all = sample.table({**zoo, "choices": choices, "nets": max(sizes)}, study_seed)
    print(f"bench zoo: digits, batch size {batch_size}, {epochs} epoch(s), "
          f"{len(ds.train_labels)} training images, on {dev} ({torch.get_num_threads()} CPU thread(s))")
    print(f"{'nets':>5} {'grouped s':>10} {'nets/s':>8} {'loop s/net':>11} {'nets/s':>8} {'ratio':>6}")
    per_net = None
    out = []
    for g in sizes:
        rows = rows_all[:g]
        start = time.perf_counter()
        grouped.train_group(rows, ds, epochs=epochs, snapshots=snapshots, device=dev)
        _sync(dev)
        together = time.perf_counter() - start
        if per_net is None:
            timed = rows_all[:min(loop_limit, max(sizes))]
            start = time.perf_counter()
            for r in timed:
                loop.train_net(r, ds, epochs=epochs, snapshots=snapshots, device=dev)
            _sync(dev)
            per_net = (time.perf_counter() - start) / len(timed)
        row = {"nets": g, "grouped_s": together, "grouped_nets_per_s": g / together,
               "loop_s_per_net": per_net, "loop_nets_per_s": 1 / per_net,
               "ratio": (g / together) * per_net}
        out.append(row)
        print(f"{g:>5} {together:>10.2f} {g / together:>8.2f} {per_net:>11.3f} "
              f"{1 / per_net:>8.2f} {row['ratio']:>5.1f}x")
    return out
