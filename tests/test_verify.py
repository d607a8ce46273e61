"""`python -m lesion tools verify` on a built study damaged after its jobs finished, as
Snakemake cannot see: each damaged file is named with what is wrong with it, `--repair`
removes exactly those, and the study rebuilt from there equals an untouched one, value for
value (docs/reliability.md's table of faults).

One copy of the shared tiny fault study (.test/faults.yaml) takes every damage at once, so
that the suite pays for one verify, one repair and one partial rebuild.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lesion import files, kinds, tensorfiles
from lesion.tools import compare, verify
from test_workflow import planned_jobs, snakemake

pytestmark = pytest.mark.workflow

MLP = "results/digits/mlp"
TOLERANT = f"{MLP}/faults/regimes/tolerant"
# file -> the words its verify line must hold (what is wrong with it); the damages share
# jobs (one sweep's two tables, one regime's chain) so that the rebuild stays short
DAMAGES = {
    f"{MLP}/metrics.parquet": "not a readable Parquet file",                   # truncated
    f"{TOLERANT}/weights.safetensors": "its content changed since its job wrote it",  # a bit flipped
    f"{TOLERANT}/training.parquet": "a training curve of 2 epochs; expected 3 epochs",  # cut short
    f"{TOLERANT}/bounds.parquet":                                              # another kind's
        "a fault errors table (written by `python -m lesion faults bounds`); expected a fault bounds",
    f"{MLP}/faults/figures/tolerance.png": "missing",                          # deleted
    f"{MLP}/variants/bitflip.parquet": "seeds differ from the hash of their variant's name",
    f"{MLP}/predictions/bitflip.parquet": "rows; expected",                    # a row dropped
    f"{MLP}/variants/crash.parquet": "regenerated tensors hash to",            # a sha256 edited
    f"{MLP}/predictions/crash.parquet": "missing values (null or NaN) in column 'label'",
}


def _edit(path, column: str, change) -> None:
    """Rewrite a table with one column changed, its schema's metadata (the kind stamp) kept,
    so that only the edit is wrong with it."""
    table = pq.read_table(path)
    values = change(table.column(column).to_pylist())
    table = table.set_column(table.schema.get_field_index(column), column,
                             pa.array(values, table.schema.field(column).type))
    pq.write_table(table, path)


def _damage(root) -> None:
    metrics = root / f"{MLP}/metrics.parquet"
    metrics.write_bytes(metrics.read_bytes()[: metrics.stat().st_size // 2])
    weights = root / f"{TOLERANT}/weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4] ^= 0x01  # the lowest mantissa bit of the last float32: the file still loads
    weights.write_bytes(bytes(data))
    shutil.copyfile(root / f"{TOLERANT}/errors.parquet", root / f"{TOLERANT}/bounds.parquet")
    (root / f"{MLP}/faults/figures/tolerance.png").unlink()
    _edit(root / f"{MLP}/variants/bitflip.parquet", "seed", lambda s: [s[0] + 1, *s[1:]])
    _edit(root / f"{MLP}/variants/crash.parquet", "sha256", lambda h: ["0" * 64, *h[1:]])
    predictions = files.read_table(root / f"{MLP}/predictions/bitflip.parquet")
    files.write_table(predictions.slice(0, predictions.num_rows - 1),
                      root / f"{MLP}/predictions/bitflip.parquet", kind=kinds.PREDICTIONS)
    _edit(root / f"{MLP}/predictions/crash.parquet", "label", lambda labels: [None, *labels[1:]])
    curve = files.read_table(root / f"{TOLERANT}/training.parquet", kinds.TRAINING)
    last = pc.equal(curve.column("epoch"), pc.max(curve.column("epoch")))
    files.write_table(curve.filter(pc.invert(last)), root / f"{TOLERANT}/training.parquet",
                      kind=kinds.TRAINING)


def _files(root) -> set[str]:
    return {str(p.relative_to(root)) for p in (root / "results").rglob("*") if p.is_file()}


def test_verify_names_each_damaged_file_repair_removes_them_and_the_rebuild_equals_an_untouched_study(
        built_study, tmp_path, monkeypatch, capsys):
    untouched = built_study("faults")
    root = tmp_path / "study"
    shutil.copytree(untouched, root, symlinks=True)  # the files keep their times
    _damage(root)
    before = _files(root)

    monkeypatch.chdir(root)
    assert verify.main() == 1  # found, nothing removed: the hint names both spellings
    assert "run again with --repair (make verify REPAIR=1)" in capsys.readouterr().out
    assert _files(root) == before
    assert verify.main(do_repair=True) == 0  # repaired: make study's to rebuild
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if not line.startswith("verify")]
    named = {line.split(": ", 1)[0] for line in lines}
    assert named == set(DAMAGES), out
    for path, words in DAMAGES.items():
        assert any(line.startswith(f"{path}: ") and words in line for line in lines), (path, out)
    # removed: exactly the bad files (the deleted figure was missing already)
    assert before - _files(root) == set(DAMAGES) - {f"{MLP}/faults/figures/tolerance.png"}

    jobs = Counter(rule for rule, _ in planned_jobs(root))
    assert jobs == Counter({"sweep": 2, "metrics": 1, "perturbation_figures": 1, "claims": 1,
                            "train_regime": 1, "regime_bounds": 1, "fault_figure": 1, "all": 1}), jobs
    snakemake(root)
    assert compare.table_differences(untouched / "results", root / "results") == {}
    # the retrained weights: the same tensors (their header's key order may differ)
    rebuilt, original = (tensorfiles.load_tensors(study / f"{TOLERANT}/weights.safetensors")
                         for study in (root, untouched))
    assert rebuilt.keys() == original.keys() and all(rebuilt[k].equal(original[k]) for k in original)
    listed = verify.outputs()
    assert verify.verify(listed=listed).problems == []
    # every table of the study has the kind its step's output expects (none left unchecked)
    assert all(verify.expected_kind(o) for o in listed if o.path.endswith(".parquet"))


def test_the_incomplete_marker_is_where_snakemake_looks_for_it(tmp_path):
    """verify --repair writes Snakemake's marker itself (the library never imports
    Snakemake): its place must be the one Snakemake's file persistence reads, for a short
    path and for one whose key is longer than a file name may be."""
    from snakemake.persistence.file import FilePersistence

    root = tmp_path / ".snakemake" / "incomplete"
    root.mkdir(parents=True)
    persistence = FilePersistence.__new__(FilePersistence)  # only its path arithmetic
    persistence._max_len = None
    for path in ("results/digits/mlp/metrics.parquet", "results/" + "deep/" * 60 + "x.parquet"):
        verify.mark_incomplete(path, root)
        expected = persistence._record_path(str(root), path)
        assert os.path.isfile(expected), (path, sorted(root.rglob("*")))
        assert json.loads(open(expected).read()) == {"external_jobid": None}
