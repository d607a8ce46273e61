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


def test_a_named_studys_benchmarks_beside_the_defaults_are_left_out_and_named(tmp_path, capsys):
    """benchmarks/NAME/<rule>/... of a study named NAME in the same checkout: its jobs are not
    rules of the default study; asked for by its own directory, they are summed."""
    bench(tmp_path, "tensors/digits.tsv", 1.0, 1.0)
    bench(tmp_path, "train/digits/mlp.tsv", 10.0, 9.0)
    bench(tmp_path, "cnn-only/tensors/digits.tsv", 2.0, 2.0)
    bench(tmp_path, "cnn-only/train/digits/cnn.tsv", 20.0, 18.0)
    table = jobs.job_costs(tmp_path)
    assert list(table.index) == ["tensors", "train", "total"]
    assert table.loc["total"].iloc[:3].tolist() == [2, 11.0, 10.0]
    assert "study 'cnn-only', left out" in capsys.readouterr().err
    named = jobs.job_costs(tmp_path / "cnn-only")
    assert named.loc["total"].iloc[:3].tolist() == [2, 22.0, 20.0]


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
