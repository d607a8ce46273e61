"""`python -m lesion census count ...`: the census's one step."""

from __future__ import annotations

from lesion.cli.args import non_negative, option, require, steps


def _count(args):
    require(args.weights)
    import numpy as np
    import pyarrow as pa
    from safetensors.numpy import load_file

    from lesion.files import write_table
    from lesion_census.kinds import CENSUS

    tensors = load_file(args.weights)
    names = sorted(tensors)
    table = pa.table({
        "tensor": names,
        "parameters": [int(tensors[n].size) for n in names],
        "near_zero": [int(np.count_nonzero(np.abs(tensors[n]) <= args.near)) for n in names],
    })
    write_table(table, args.out, kind=CENSUS)


def register(groups) -> None:
    step = steps(groups.add_parser("census", help="Parameter census (a plugin study)."))
    s = step("count", _count, "Count a network's parameters per tensor and those near zero.")
    option(s, "--weights", help="the network's weights (.safetensors)")
    s.add_argument("--near", type=non_negative, default=1e-3,
                   help="magnitude at or below which a parameter is near zero (default: 0.001)")
    option(s, "--out", help="the census table to write (.parquet)")
