"""`python -m lesion bench tables`: are two builds of a study's tables the same, value for value?

A refactor must change no result: build the study at the old and the new
commit, then compare every Parquet table under both `results/`. Tables are
compared by their values (column by column, NaN equal to NaN), not their
bytes, so metadata (e.g. the precision a step recorded) does not count;
a column that differs is reported with its largest difference, added or
removed columns and a changed row count by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _column_difference(old: pd.Series, new: pd.Series) -> str | None:
    """None when equal; else how they differ."""
    if pd.api.types.is_numeric_dtype(old) and pd.api.types.is_numeric_dtype(new):
        a, b = old.to_numpy(dtype=float), new.to_numpy(dtype=float)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if same.all():
            return None
        return f"{int((~same).sum())} values differ, largest by {np.nanmax(np.abs(a - b)):.3g}"
    old_text, new_text = old.astype(str).to_numpy(), new.astype(str).to_numpy()
    missing = old.isna().to_numpy() & new.isna().to_numpy()  # a null equals a null (pandas' str
    differ = int(((old_text != new_text) & ~missing).sum())  # dtype keeps it NaN through astype)
    return f"{differ} values differ" if differ else None


def table_differences(before: str | Path, after: str | Path) -> dict[str, str]:
    """{table path: how it differs} for every Parquet table under either `results/`."""
    before, after = Path(before), Path(after)
    paths = sorted({p.relative_to(root) for root in (before, after)
                    for p in root.rglob("*.parquet")})
    out = {}
    for path in paths:
        if not (before / path).is_file() or not (after / path).is_file():
            out[str(path)] = "only in " + ("after" if (after / path).is_file() else "before")
            continue
        old, new = pd.read_parquet(before / path), pd.read_parquet(after / path)
        notes = [f"{label} {cols}" for label, cols in (
            ("columns added", [c for c in new.columns if c not in old.columns]),
            ("columns removed", [c for c in old.columns if c not in new.columns])) if cols]
        if len(old) != len(new):
            notes.append(f"rows {len(old)} -> {len(new)}")
        else:  # the shared columns, value for value
            notes += [f"{c}: {d}" for c in old.columns if c in new.columns
                      and (d := _column_difference(old[c].reset_index(drop=True),
                                                   new[c].reset_index(drop=True)))]
        if notes:
            out[str(path)] = "; ".join(notes)
    return out


def compare(before: str, after: str) -> int:
    """Print the tables that differ; the number of tables compared is printed too."""
    differences = table_differences(before, after)
    count = len({p.relative_to(r) for r in (Path(before), Path(after))
                 for p in Path(r).rglob("*.parquet")})
    for path, how in differences.items():
        print(f"{path}: {how}")
    print(f"{count} tables compared, {len(differences)} differ")
    return len(differences)
