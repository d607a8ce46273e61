"""The layer atlas (lesion.atlas): each measure recomputed by hand from a built study's
tables, the rank correlation against scipy's, a planted network whose first layer is the
fragile one by construction, the refusal of a network one study covers, and the rebuild
when (and only when) a source table changes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.stats
import torch
import yaml

import lesion
from lesion import atlas, files
from lesion.kinds import LAYERS, METRICS
from lesion.studies.faults.kinds import BOUNDS
from lesion.studies.filtering.kinds import SCORES
from test_workflow import planned_jobs, snakemake, study_copy, tiny_config

CONFIG = tiny_config("atlas")
SETTINGS = CONFIG["atlas"]
TARGETS = [f"results/digits/atlas/figures/{name}.{ext}"
           for name in ("heat_mlp", "agreement", "depth") for ext in ("png", "pdf")]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """`.test/atlas.yaml` built up to its atlas (the studies' own figures left out)."""
    root = tmp_path_factory.mktemp("atlas")
    study_copy(root, CONFIG)
    snakemake(root, *TARGETS)
    return root


def read(root: Path, path: str, kind) -> pd.DataFrame:
    return files.read_table(root / "results" / "digits" / path, kind).to_pandas()


def test_the_atlas_and_its_figures_are_built(study):
    for target in TARGETS:
        assert (study / target).stat().st_size > 1000, target
    table = read(study, "atlas/atlas.parquet", atlas.ATLAS)
    assert sorted(table["study"].unique()) == ["faults", "filtering", "perturbation"]
    assert table["layer"].drop_duplicates().tolist() == ["fc1", "fc2", "fc3"]  # forward order


def test_each_measure_equals_its_recomputation_from_the_study_tables(study):
    table = read(study, "atlas/atlas.parquet", atlas.ATLAS).set_index(["layer", "measure"])
    metrics = read(study, "mlp/metrics.parquet", METRICS)
    top1 = metrics[(metrics["metric"] == "top1") & (metrics["testset"] == "clean")]
    clean = top1[top1["perturbation"] == "none"]["value"].item()
    levels = CONFIG["perturbations"]["gaussian"]["levels"]  # [0.5, 2.0]
    for layer in ("fc1", "fc2", "fc3"):
        rows = top1[(top1["perturbation"] == "gaussian") & (top1["layer"] == layer)]
        areas, tolerances = [], []
        for _, draw in rows.groupby("draw"):
            a, b = (draw[draw["level"] == lv]["value"].item() / clean for lv in levels)
            # trapezoids from (0, 1) to (0.5, a) to (2.0, b), over the range 2.0
            areas.append((0.5 * (1 + a) / 2 + 1.5 * (a + b) / 2) / 2.0)
            ok = [v >= 1 - 0.05 / clean for v in (a, b)]
            tolerances.append(2.0 if all(ok) else 0.5 if ok[0] else 0.0)
        row = table.loc[(layer, "gaussian.area")]
        assert row["value"] == pytest.approx(np.mean(areas), abs=1e-12)
        half = scipy.stats.t.ppf(0.975, len(areas) - 1) * np.std(areas, ddof=1) / np.sqrt(len(areas))
        assert (row["low"], row["high"]) == pytest.approx((np.mean(areas) - half, np.mean(areas) + half))
        assert table.loc[(layer, "gaussian.tolerance"), "value"] == pytest.approx(np.mean(tolerances))
        flips = top1[(top1["perturbation"] == "bitflip") & (top1["layer"] == layer)
                     & (top1["level"] == SETTINGS["bit_level"])]["value"]
        assert table.loc[(layer, "bitflip.loss"), "value"] == pytest.approx(clean - flips.mean())
        assert table.loc[(layer, "bitflip.loss"), "n"] == len(flips) == 2

    bounds = read(study, "mlp/faults/bounds.parquet", BOUNDS)
    b3 = bounds[(bounds["bound"] == "b3") & (bounds["statistic"] == "std")
                & (bounds["p"] == SETTINGS["crash_level"])].set_index("layer")
    scores = read(study, "mlp/filtering/scores.parquet", SCORES)
    scores = scores[(scores["epoch"] == 2) & (scores["filter"] == "pulse")].set_index("layer")
    layers = read(study, "mlp/layers.parquet", LAYERS).set_index("name")
    for depth, layer in enumerate(("fc1", "fc2", "fc3")):
        assert table.loc[(layer, "crash.error"), "value"] == b3.loc[layer, "mc"]
        assert table.loc[(layer, "crash.b3"), "value"] == b3.loc[layer, "value"]
        for testset in ("clean", "adversarial", "difference"):
            row = table.loc[(layer, f"pulse.{testset}")]
            assert row["value"] == scores.loc[layer, f"score_{testset}"]
            assert row["class"] == scores.loc[layer, f"class_{testset}"]
        assert table.loc[(layer, "crash.b3"), "depth"] == depth / 2
        assert table.loc[(layer, "crash.b3"), "parameters"] == layers.loc[layer, "parameters"]


def test_ranks_and_agreement_follow_the_values(study):
    table = read(study, "atlas/atlas.parquet", atlas.ATLAS)
    agreement = read(study, "atlas/agreement.parquet", atlas.AGREEMENT)
    wide = table.pivot(index="layer", columns="measure", values="value")
    # rank 1: the lowest area (fragile end low), the largest crash error (fragile end high)
    ranks = table.set_index(["measure", "layer"])["rank"]
    assert ranks[("gaussian.area", wide["gaussian.area"].idxmin())] == 1
    assert ranks[("crash.error", wide["crash.error"].idxmax())] == 1
    # oriented: an area (low = fragile) against an error (high = fragile) is negated
    pair = agreement[(agreement["model"] == "mlp") & (agreement["measure_a"] == "crash.area")
                     & (agreement["measure_b"] == "crash.error")]
    if pair.empty:
        pair = agreement[(agreement["model"] == "mlp") & (agreement["measure_a"] == "crash.error")
                         & (agreement["measure_b"] == "crash.area")]
    expected = scipy.stats.spearmanr(-wide["crash.area"], wide["crash.error"]).statistic
    assert pair["rho"].item() == pytest.approx(expected)
    assert pair["layers"].item() == 3
    depth = agreement[(agreement["model"] == "mlp") & (agreement["measure_b"] == "depth")
                      & (agreement["measure_a"] == "crash.b3")]
    order = table.drop_duplicates("layer").set_index("layer")["depth"]
    assert depth["rho"].item() == pytest.approx(
        scipy.stats.spearmanr(wide["crash.b3"], order[wide.index]).statistic)
    finite = agreement.dropna(subset=["low"])
    assert (finite["low"] <= finite["high"]).all() and len(finite) > 0
    assert set(agreement["model"]) == {"mlp", atlas.POOLED}


def test_rank_correlation_equals_scipys_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (200, 6)).astype(float)  # many ties
    b = rng.normal(size=(200, 6))
    ours = atlas.rank_correlation(a, b)
    for i in range(len(a)):
        theirs = scipy.stats.spearmanr(a[i], b[i]).statistic
        if np.isnan(theirs):
            assert np.isnan(ours[i])
        else:
            assert ours[i] == pytest.approx(theirs, abs=1e-12)


def test_a_network_one_study_covers_is_refused_with_one_line(study, tmp_path):
    paths = {"metrics": str(study / "results/digits/mlp/metrics.parquet")}
    with pytest.raises(ValueError, match=r"atlas: model 'mlp' is covered by one study "
                                         r"\(perturbation\); expected two or more"):
        atlas.write_atlas({"perturbation": {"mlp": paths}},
                          {"mlp": study / "results/digits/mlp/layers.parquet"},
                          {**SETTINGS, "within": 0.05, "seed": 0}, "digits",
                          tmp_path / "a.parquet", tmp_path / "b.parquet")
    assert not (tmp_path / "a.parquet").exists()
    config = {k: v for k, v in CONFIG.items() if k not in ("faults", "filtering")}
    config["atlas"] = {"models": ["mlp"]}
    (study / "single.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(study, "--dry-run", "--configfile", "single.yaml", expect_failure=True)
    lines = [line for line in out.splitlines() if "atlas.models" in line]
    assert lines == ["config error: atlas.models: 'mlp' is covered by ['perturbation']; expected "
                     "models two or more studies cover (now [])"], out[-2000:]


@pytest.mark.parametrize("source", ["mlp/metrics.parquet", "mlp/faults/bounds.parquet",
                                    "mlp/filtering/scores.parquet", "mlp/layers.parquet"])
def test_the_atlas_rebuilds_when_a_source_table_changes_and_not_otherwise(study, source):
    assert planned_jobs(study, *TARGETS) == []
    path = study / "results" / "digits" / source
    original, stat = path.read_bytes(), path.stat()
    table = pq.read_table(path)
    try:  # the same rows with one more metadata key: other bytes, a changed table
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"edit": b"1"}), path)
        planned = {rule for rule, _ in planned_jobs(study, *TARGETS)}
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned == {"atlas_table", "atlas_figures"}
    later = time.time() + 60  # touched, not changed: its checksum is the same
    os.utime(path, (later, later))
    assert planned_jobs(study, *TARGETS) == []


def planted_network() -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A digits classifier whose first layer is its only fragile one by construction: fc1 is
    a 4-unit bottleneck, fc2 and fc3 hold 16 jittered copies of a small network's later
    layers (fc3 also averages over the copies, and a parameter-free mean over 16 output
    copies gives the logits), so damage to any part of them averages out, while damage to
    fc1 reaches every copy alike."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target)
    torch.manual_seed(0)
    core = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4), torch.nn.ReLU(),
                               torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    optimiser = torch.optim.Adam(core.parameters(), lr=0.02)
    for _ in range(300):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(core(images), labels).backward()
        optimiser.step()
    copies = 16
    jitter = torch.Generator().manual_seed(1)

    def jittered(t):
        return t * (0.5 + torch.rand(t.shape, generator=jitter))

    class MeanOfCopies(torch.nn.Module):
        def forward(self, x):
            return x.view(x.shape[0], copies, 10).mean(1)

    fc2, fc3 = torch.nn.Linear(4, 16 * copies), torch.nn.Linear(16 * copies, 10 * copies)
    with torch.no_grad():
        fc2.weight.copy_(jittered(core[3].weight.repeat(copies, 1)))
        fc2.bias.copy_(jittered(core[3].bias.repeat(copies)))
        fc3.weight.copy_(jittered(core[5].weight.repeat(copies, copies) / copies))
        fc3.bias.copy_(jittered(core[5].bias.repeat(copies)))
    net = torch.nn.Sequential()
    for name, module in (("flatten", torch.nn.Flatten()), ("fc1", core[1]), ("relu1", torch.nn.ReLU()),
                         ("fc2", fc2), ("relu2", torch.nn.ReLU()), ("fc3", fc3), ("mean", MeanOfCopies())):
        net.add_module(name, module)
    return net.eval(), (images[:200], labels[:200])


# Bit flips are left out: a flip hits each bit of every parameter with the same
# probability, so their loss grows with a layer's parameter count (fc3 has the most).
PLANTED_OPERATORS = {"gaussian": [0.5, 1.0], "synapse_knockout": [0.3, 0.6],
                     "node_knockout": [0.3, 0.6], "crash": [0.3, 0.6]}


def test_a_planted_fragile_first_layer_comes_out_first_on_every_measure(tmp_path):
    net, data = planted_network()
    metrics = lesion.sweep(net, data, operators=list(PLANTED_OPERATORS), levels=PLANTED_OPERATORS,
                           draws=2, dataset="digits", name="planted")
    bounds = pd.concat([lesion.bounds(net, data, layer, levels=[0.3], repetitions=10, inputs=50,
                                      dataset="digits", name="planted")
                        for layer in ("fc1", "fc2", "fc3")])
    _, scores = lesion.filter_scores(net, data, filters=["pulse"], dataset="digits", name="planted")
    tables = {}
    for name, frame, kind in (("metrics", metrics, METRICS), ("bounds", bounds, BOUNDS),
                              ("scores", scores.assign(epoch=1), SCORES),
                              ("layers", lesion.layers(net), LAYERS)):
        tables[name] = tmp_path / f"{name}.parquet"
        files.write_table(pa.Table.from_pandas(frame, preserve_index=False), tables[name], kind=kind)
    table = atlas.write_atlas(
        {"perturbation": {"planted": {"metrics": tables["metrics"]}},
         "faults": {"planted": {"bounds": tables["bounds"]}},
         "filtering": {"planted": {"scores": tables["scores"]}}},
        {"planted": tables["layers"]}, {"within": 0.05, "crash_level": 0.3, "bootstrap": 0, "seed": 0},
        "digits", tmp_path / "atlas.parquet", tmp_path / "agreement.parquet")
    # the filters' adversarial scores ask another question (does filtering help against
    # FGSM?), which the construction does not decide
    judged = table[~table["measure"].str.endswith((".adversarial", ".difference"))]
    first = judged[judged["layer"] == "fc1"].set_index("measure")["rank"]
    assert len(first) == 2 * len(PLANTED_OPERATORS) + 2 + 1
    assert (first == 1).all(), first[first != 1]
    areas = judged[judged["measure"].str.endswith(".area")
                   | judged["measure"].isin(["crash.error", "crash.b3"])]
    strict = areas.groupby("measure")["rank"].apply(lambda r: sorted(r) == [1, 2, 3])
    assert strict.all(), strict  # no tie: fc1 alone is first on the areas and crash errors
