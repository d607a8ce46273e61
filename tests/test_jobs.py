"""`bench jobs`: job costs summed per rule from Snakemake benchmark files."""

from __future__ import annotations

import pandas as pd
import pytest

from lesion.tools import jobs

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(root, path, s, cpu, rss="1"):
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(HEADER + f"{s}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_job_costs_sum_per_rule_and_in_total(tmp_path):
    bench(tmp_path, "sweep/digits/mlp/gaussian/fc1.tsv", 1.5, 1.25, rss="812.5")
    bench(tmp_path, "sweep/digits/mlp/gaussian/fc2.tsv", 2.0, 1.75, rss="640.25")
    bench(tmp_path, "train/digits/mlp.tsv", 10.0, 9.0, rss="NA")  # not measured
    table = jobs.job_costs(tmp_path)
    assert table.loc["sweep"].tolist() == [2, 3.5, 3.0, 812.5]  # the larger job's peak
    assert table.loc["train"].iloc[:3].tolist() == [1, 10.0, 9.0]
    assert pd.isna(table.loc["train", "max_rss_mb"])
    assert table.loc["total"].tolist() == [3, 13.5, 12.0, 812.5]


def test_no_benchmark_files_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no benchmark files; expected the benchmarks/"):
        jobs.job_costs(tmp_path)


def test_tables_differ_only_where_a_value_does(tmp_path):
    import pandas as pd

    from lesion.tools import compare

    for side, values in (("before", [1.0, float("nan"), 3.0]), ("after", [1.0, float("nan"), 3.5])):
        (tmp_path / side / "m").mkdir(parents=True)
        pd.DataFrame({"name": ["a", "b", "c"], "value": values, "note": ["x", None, None]}).to_parquet(
            tmp_path / side / "m" / "x.parquet")
        pd.DataFrame({"n": [1, 2]}).to_parquet(tmp_path / side / "same.parquet")
    pd.DataFrame({"n": [1, 2, 3], "extra": 0}).to_parquet(tmp_path / "after" / "grown.parquet")
    pd.DataFrame({"n": [1, 2]}).to_parquet(tmp_path / "before" / "grown.parquet")
    (tmp_path / "after" / "new.parquet").write_bytes(
        (tmp_path / "after" / "same.parquet").read_bytes())
    assert compare.table_differences(tmp_path / "before", tmp_path / "after") == {
        "m/x.parquet": "value: 1 values differ, largest by 0.5", "new.parquet": "only in after",
        "grown.parquet": "columns added ['extra']; rows 2 -> 3"}
