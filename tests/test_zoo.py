"""The weight-space study (Eilertsen et al. 2020): the zoo's table, its nets, their
grouped training, the shards and their merge, the meta-classifiers, the workflow.

References are independent of the code under test: the plain loop
(nn.Module + torch.optim, `zoo.loop`) for the vmap-ed group training, the
original's TensorFlow flattening loop restated in numpy for the layout,
numpy for the derived datasets and the augmentation.
"""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
import yaml

import tolerance
from lesion import data, files, tensorfiles
from lesion.config import ConfigError, canonical, check, load_schema
from lesion.studies.zoo import grouped, kinds, loop, merge, meta, nets, sample, shard, space

SCHEMA = load_schema("workflow/schemas/config.schema.yaml")
ARCH = {"filter_size": 3, "conv_depth": 4, "fc_depth": 2, "conv_width": 2, "fc_width": 16}
ZOO = {
    "nets": 12, "shards": 2, "epochs": 1, "snapshots": 4, "min_accuracy": 0.0,
    "test_fraction": 0.3, "learning_rate": {"min": 0.001, "max": 0.01, "log": True},
    "choices": {"dataset": list(space.DATASETS), "batch_size": [32, 64],
                "augmentation": [False, True], "optimizer": list(space.OPTIMIZERS),
                "activation": list(space.ACTIVATIONS),
                "initialization": list(space.INITIALIZATIONS),
                **{k: [v] for k, v in ARCH.items()}},
    "meta": {"properties": "all", "slice_length": 64, "snapshots": [2, 3], "steps": 20,
             "batch_size": 16, "learning_rate": 0.001, "positions": 4},
}


def config(**zoo) -> dict:
    return {"dataset": {"name": "digits"}, "models": {"mlp": {}}, "zoo": {**copy.deepcopy(ZOO), **zoo}}


@pytest.fixture(scope="module")
def digits() -> grouped.Data:
    """The digits, a small split of them (256 train, 128 test), in every derived version."""
    spec = data.get("digits")
    raw = spec.raw()
    images, labels = spec.preprocess(raw["images"]), raw["labels"]
    return grouped.Data.build((images[:256], labels[:256]), (images[256:384], labels[256:384]),
                              10, study_seed=0)


def rows_of(**fixed) -> list[dict]:
    """Rows of one group (one architecture, batch size 32) covering every optimiser,
    activation, initialisation, dataset and augmentation."""
    out = []
    for i in range(8):
        r = {"net": i, **ARCH, "batch_size": 32,
             "optimizer": space.OPTIMIZERS[i % 3], "activation": space.ACTIVATIONS[i % 4],
             "initialization": space.INITIALIZATIONS[(i // 2) % 4], "dataset": space.DATASETS[i % 4],
             "augmentation": i % 3 == 1, "learning_rate": 0.002 + 0.001 * i, "seed": 100 + i}
        out.append({**r, **fixed})
    return out


# --- the table -----------------------------------------------------------

def test_the_table_is_reproducible_from_the_seed_and_a_row_does_not_depend_on_the_zoo_size():
    zoo = canonical(config(), SCHEMA)["zoo"]
    first = sample.table(zoo, study_seed=3)
    assert first == sample.table(zoo, study_seed=3)
    assert sample.table({**zoo, "nets": 5}, study_seed=3) == first[:5]
    assert first != sample.table(zoo, study_seed=4)
    assert len({r["seed"] for r in first}) == len(first)
    for r in first:
        for prop in space.PROPERTIES:
            assert r[prop] in zoo["choices"][prop]
        assert 0.001 <= r["learning_rate"] <= 0.01


def test_properties_are_drawn_uniformly_and_the_learning_rate_log_uniformly():
    zoo = {**canonical(config(nets=2000), SCHEMA)["zoo"]}
    rows = sample.table(zoo, study_seed=0)
    counts = pd.Series([r["activation"] for r in rows]).value_counts()
    assert set(counts.index) == set(space.ACTIVATIONS)
    assert (abs(counts / 2000 - 0.25) < 0.04).all()  # 4 sigma of a binomial share
    logs = np.log10([r["learning_rate"] for r in rows])
    assert abs(np.mean(logs < -2.5) - 0.5) < 0.05  # the midpoint in log scale splits it in half


def test_the_shards_partition_the_table_and_keep_groups_together():
    zoo = canonical(config(nets=40), SCHEMA)["zoo"]
    parts = [sample.shard_rows(zoo, 0, k, 3) for k in range(3)]
    nets_seen = sorted(r["net"] for part in parts for r in part)
    assert nets_seen == list(range(40))
    keys = [space.group_key(r) for part in parts for r in part]
    assert keys == sorted(keys)  # contiguous in group order: a group spans at most 2 shards
    with pytest.raises(ValueError, match="shard 3 is out of range"):
        sample.shard_rows(zoo, 0, 3, 3)


# --- the nets ------------------------------------------------------------

def original_flattening(module: torch.nn.Module) -> np.ndarray:
    """The original's model.print_all_vars, restated: TensorFlow layouts (conv
    kh, kw, in, out; dense in, out), for each output i (and input j) the slice
    W[:, :, j, i] or W[:, i] row-major, then the bias."""
    out = []
    for layer in module:
        if not isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
            continue
        w = layer.weight.detach().numpy()
        tf = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T
        for i in range(tf.shape[-1]):
            if tf.ndim == 4:
                for j in range(tf.shape[-2]):
                    out.append(tf[:, :, j, i].reshape(-1))
            else:
                out.append(tf[:, i])
        out.append(layer.bias.detach().numpy())
    return np.concatenate(out)


def test_the_flattening_order_is_the_originals_and_pytorchs_parameter_order():
    row = {**ARCH, "activation": "relu"}
    torch.manual_seed(0)
    module = loop.module(row, (1, 8, 8), 10)
    flat = torch.nn.utils.parameters_to_vector(module.parameters())
    assert np.array_equal(original_flattening(module), flat.detach().numpy())
    shapes = space.layout(row, (1, 8, 8), 10)
    named = dict(zip([name for name, _ in shapes], module.parameters(), strict=True))
    assert nets.flatten(named, shapes).equal(flat)
    assert [tuple(p.shape) for p in module.parameters()] == [s for _, s in shapes]
    assert space.size(row, (1, 8, 8), 10) == flat.numel()


def test_the_architecture_follows_the_originals_blocks_and_pools_down_to_4x4():
    assert space.block_depths(3) == [1, 1, 1]
    assert space.block_depths(4) == [1, 1, 2]
    assert space.block_depths(5) == [1, 2, 2]
    net = space.layers({**ARCH, "conv_depth": 5, "conv_width": 4}, (3, 32, 32), 10)
    convs = [(layer["out"], layer["pool"]) for layer in net if layer["kind"] == "conv"]
    assert convs == [(4, True), (8, False), (8, True), (16, False), (16, True)]
    assert net[5]["in"] == 16 * 4 * 4  # 32 -> 16 -> 8 -> 4
    digits_net = space.layers(ARCH, (1, 8, 8), 10)
    assert [layer["pool"] for layer in digits_net if layer["kind"] == "conv"] == [True, False, False, False]
    assert digits_net[4]["in"] == 8 * 4 * 4


@pytest.mark.parametrize("activation", space.ACTIVATIONS)
def test_a_flat_vector_runs_the_same_net_as_the_module(activation, digits):
    row = {**ARCH, "activation": activation}
    torch.manual_seed(1)
    module = loop.module(row, (1, 8, 8), 10)
    flat = torch.nn.utils.parameters_to_vector(module.parameters()).detach()
    module, flat = module.double(), flat.double()  # in float64 (issue 21), see F64_ATOL
    x = digits.train[0, :50].double()
    got = nets.forward(flat[None], x[None], [activation], space.layers(row, (1, 8, 8), 10))[0]
    torch.testing.assert_close(got, module(x), rtol=0, atol=F64_ATOL)


def test_initialisations_are_as_defined(digits):
    def weights(kind):
        flat = nets.init({**ARCH, "initialization": kind}, (1, 8, 8), 10, torch.Generator().manual_seed(0))
        return nets.unflatten(flat, space.layout(ARCH, (1, 8, 8), 10))
    assert (weights("constant")["conv1.weight"] == 0.1).all()
    assert all((t == 0).all() for name, t in weights("normal").items() if name.endswith(".bias"))
    fc1 = weights("glorot_uniform")["fc1.weight"]  # fan_in 128, fan_out 16
    bound = (6 / (128 + 16)) ** 0.5
    assert fc1.abs().max() <= bound and fc1.abs().max() > 0.9 * bound
    assert abs(weights("glorot_normal")["fc1.weight"].std() - (2 / 144) ** 0.5) < 0.01
    assert abs(weights("normal")["fc1.weight"].std() - 1.0) < 0.05


def test_derived_datasets_are_as_documented(digits):
    plain = digits.train[0].numpy()
    assert np.array_equal(digits.train[1].numpy(), 1.0 - plain)
    assert np.array_equal(digits.train[2].numpy(), plain.transpose(0, 1, 3, 2))
    permuted = digits.train[3].numpy().reshape(len(plain), -1)
    index = np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8) / 64
    order = (nets.derive(torch.from_numpy(index), "permuted", 0).numpy().reshape(-1) * 64).round()
    assert sorted(order.astype(int)) == list(range(64)) and not np.array_equal(order, np.arange(64))
    assert np.array_equal(permuted, plain.reshape(len(plain), -1)[:, order.astype(int)])


def test_augmentation_translates_with_zero_fill_then_scales_contrast_and_shifts_brightness():
    x = torch.rand(3, 1, 8, 8)
    offsets = torch.tensor([[0, 2], [1, 1], [2, 0]])  # shift(8) = 1: offset 1 is no move
    contrast, brightness = torch.tensor([1.0, 1.0, 0.5]), torch.tensor([0.0, 0.0, 0.1])
    got = nets.augment(x, offsets, brightness, contrast).numpy()
    img = x.numpy()[:, 0]
    moved0 = np.zeros((8, 8), np.float32)
    moved0[1:, :7] = img[0][:7, 1:]  # dy = -1, dx = +1: rows come from above, columns from the right
    # contrast 1, brightness 0: (a - mean) * 1 + mean + 0 rounds twice, |a|, |mean| <= 1
    np.testing.assert_allclose(got[0, 0], moved0, rtol=0, atol=4 * tolerance.U32)
    np.testing.assert_allclose(got[1, 0], img[1], rtol=0, atol=4 * tolerance.U32)
    moved2 = np.zeros((8, 8), np.float32)
    moved2[:7, 1:] = img[2][1:, :7]
    exact = moved2.astype(np.float64)
    expect = np.clip((exact - exact.mean()) * 0.5 + exact.mean() + 0.1, 0, 1)
    # against float64: the float32 mean of 64 values (gamma_64) and four roundings of
    # values <= 1.6 (tests/tolerance.py)
    np.testing.assert_allclose(got[2, 0], expect, rtol=0,
                               atol=(tolerance.gamma(64) + 4 * tolerance.U32) * 1.6)


# --- grouped training ----------------------------------------------------

# Float64 tolerance of the group-against-alone comparisons. Both paths do the same
# arithmetic in another order (vmap-ed layers, stacked optimiser updates against
# nn.Module and torch.optim), so they differ by rounding alone: in float64 the unit
# roundoff is 1.1e-16, and the weights (|w| <= 4) after 16 Adam steps were seen to differ
# by 3e-13 (an amplification of ~1e3; float32 shows the same ~1e3 over its 6e-8, which
# is why a float32 comparison cannot be tight). 1e-10 leaves a 300x margin for growth on
# another machine's kernels, and is 10^4 below the smallest real difference seen: a learning
# rate rounded to float32 moves the weights by 3e-10 after one step and 1.6e-6 after 16.
F64_ATOL = 1e-10


@pytest.fixture(scope="module")
def digits64(digits) -> grouped.Data:
    """The same data in float64: the nets then train in float64 (their weights take the
    images' dtype)."""
    return digits.to("cpu", torch.float64)


def test_vmapped_group_training_equals_training_the_nets_one_by_one(digits64):
    rows = rows_of()
    together = grouped.train_group(rows, digits64, epochs=2, snapshots=5)
    assert together["snapshots"].dtype == torch.float64
    for i, row in enumerate(rows):
        alone = loop.train_net(row, digits64, epochs=2, snapshots=5)
        torch.testing.assert_close(together["snapshots"][i], alone["snapshots"], rtol=0,
                                   atol=F64_ATOL)
        # the same weights up to 1e-10 classify the 128 test images alike
        assert together["test_accuracy"][i] == alone["test_accuracy"]
    # the snapshots moved: the nets trained
    assert (together["snapshots"][:, -1] != together["snapshots"][:, 0]).any(dim=1).all()


def test_group_training_is_deterministic_and_a_net_retrained_from_its_row_alone_agrees(digits,
                                                                                   digits64):
    rows = rows_of()
    first = grouped.train_group(rows, digits, epochs=1, snapshots=3)
    again = grouped.train_group(rows, digits, epochs=1, snapshots=3)
    assert torch.equal(first["snapshots"], again["snapshots"])
    # a group of one against the group of eight: other shapes, so compared in float64
    alone = grouped.train_group([rows[5]], digits64, epochs=1, snapshots=3)
    among = grouped.train_group(rows, digits64, epochs=1, snapshots=3)
    torch.testing.assert_close(alone["snapshots"][0], among["snapshots"][5], rtol=0, atol=F64_ATOL)
    assert torch.equal(first["snapshots"][:, 0], torch.stack([
        nets.init(r, (1, 8, 8), 10, torch.Generator().manual_seed(r["seed"])) for r in rows]))


def test_a_group_of_two_architectures_is_refused(digits):
    rows = rows_of()
    rows[1] = {**rows[1], "filter_size": 5}
    with pytest.raises(ValueError, match="2 architectures or batch sizes"):
        grouped.train_group(rows, digits, epochs=1, snapshots=2)


# --- shards, merge and split ----------------------------------------------

@pytest.fixture(scope="module")
def shards(tmp_path_factory, digits):
    """A 12-net zoo trained in 2 shards (the digits' small split as tensor files)."""
    root = tmp_path_factory.mktemp("zoo")
    for split, (x, y) in (("train", (digits.train[0], digits.train_labels)),
                          ("test", (digits.test[0], digits.test_labels))):
        tensorfiles.save_tensors({"images": x, "labels": y}, root / f"{split}.safetensors")
    zoo = canonical(config(), SCHEMA)["zoo"]
    out = []
    for k in range(2):
        shard.build(zoo, dataset="digits", train=root / "train.safetensors",
                    test=root / "test.safetensors", study_seed=0, shard=k, shards=2,
                    snapshots_out=root / f"{k}.safetensors", table_out=root / f"{k}.parquet")
        out.append((root / f"{k}.parquet", root / f"{k}.safetensors"))
    return root, zoo, out


def test_snapshots_reload_bit_identically_and_the_first_is_the_initialisation(shards, digits):
    root, zoo, parts = shards
    table = pd.read_parquet(parts[0][0])
    saved = tensorfiles.load_tensors(parts[0][1])
    row = table.iloc[0].to_dict()
    weights = saved[f"net{row['net']}"]
    assert weights.shape == (zoo["snapshots"], row["weights"])
    start = nets.init(row, (1, 8, 8), 10, torch.Generator().manual_seed(int(row["seed"])))
    assert torch.equal(weights[0], start)
    members = [r for r in pd.concat(pd.read_parquet(t) for t, _ in parts).to_dict("records")
               if space.group_key(r) == space.group_key(row) and r["shard"] == row["shard"]]
    again = grouped.train_group(members, digits, epochs=zoo["epochs"], snapshots=zoo["snapshots"])
    i = [r["net"] for r in members].index(row["net"])
    assert torch.equal(again["snapshots"][i], weights)
    assert tensorfiles.load_metadata(parts[0][1])["order"].startswith("layer by layer")


def test_shards_merge_into_one_table_with_no_net_lost_or_doubled(shards, tmp_path):
    root, zoo, parts = shards
    tables, snaps = [str(t) for t, _ in parts], [str(s) for _, s in parts]
    table = merge.merge(tables, snaps, nets=12, min_accuracy=0.0, test_fraction=0.3,
                        study_seed=0, out=tmp_path / "nets.parquet").to_pandas()
    assert sorted(table["net"]) == list(range(12))
    assert table.set_index("net")["snapshots"].to_dict() == {
        n: s for t, s in zip(tables, snaps, strict=True) for n in pd.read_parquet(t)["net"]}
    with pytest.raises(files.InputFileError, match=r"doubled \[") as err:
        merge.merge([tables[0], *tables], [snaps[0], *snaps], nets=12, min_accuracy=0.0,
                    test_fraction=0.3, study_seed=0, out=tmp_path / "bad.parquet")
    assert "missing []" in str(err.value)
    with pytest.raises(files.InputFileError, match=r"missing \["):
        merge.merge(tables[:1], snaps[:1], nets=12, min_accuracy=0.0, test_fraction=0.3,
                    study_seed=0, out=tmp_path / "bad.parquet")


def test_meta_train_and_meta_test_are_disjoint_seeded_and_exclude_unconverged_nets(tmp_path):
    rows = [{"net": i, "test_accuracy": i / 40} for i in range(40)]
    path = tmp_path / "0.parquet"
    files.write_table(pa.Table.from_pylist(rows), path, kind=kinds.SHARD)
    split = {}
    for seed in (0, 1):
        t = merge.merge([path], ["0.safetensors"], nets=40, min_accuracy=0.5, test_fraction=0.25,
                        study_seed=seed, out=tmp_path / f"nets{seed}.parquet").to_pandas()
        assert (t["converged"] == (t["test_accuracy"] >= 0.5)).all()
        assert set(t.loc[~t["converged"], "split"]) == {"excluded"}
        test = set(t.loc[t["split"] == "meta-test", "net"])
        train = set(t.loc[t["split"] == "meta-train", "net"])
        assert not test & train and test | train == set(range(20, 40)) and len(test) == 5
        split[seed] = test
    assert split[0] != split[1]


# --- meta-classifiers ----------------------------------------------------

def synthetic(n: int, seed: int, readable: bool) -> tuple[dict, dict]:
    """n nets of 400 weights and 3 snapshots. readable: class 1 nets are constant
    0.1 (a constant initialisation), class 0 nets N(0, 0.1); otherwise every net
    is N(0, 0.1) noise and the labels are a coin flip, unrelated to the weights."""
    gen = torch.Generator().manual_seed(seed)
    labels = {i: int(torch.randint(2, (), generator=gen)) for i in range(n)}
    weights = {}
    for i in range(n):
        noise = 0.1 * torch.randn(3, 400, generator=gen)
        weights[i] = torch.full((3, 400), 0.1) if readable and labels[i] == 1 else noise
    return weights, labels


def fit(weights, labels, n):
    train, test = list(range(n // 2)), list(range(n // 2, n))
    train = meta.balanced(labels, train, "train", 0)
    test = meta.balanced(labels, test, "test", 0)
    return meta.classify(weights, labels, train, test, 2, slice_length=64, window=(1, 2),
                         steps=60, batch_size=32, learning_rate=0.003, positions=4, seed=0), test


def test_a_meta_classifier_reads_a_constant_initialisation():
    result, test = fit(*synthetic(60, 0, readable=True), 60)
    assert result["chance"] == 0.5 and len(test) >= 20
    assert result["accuracy"] > 0.95
    assert len(result["per_snapshot"]) == 3


def test_a_meta_classifier_of_a_random_label_scores_at_chance_within_its_interval():
    result, test = fit(*synthetic(120, 1, readable=False), 120)
    assert abs(result["accuracy"] - result["chance"]) <= result["ci95"]
    spread = result["accuracy"] * (1 - result["accuracy"]) / len(test)
    assert result["ci95"] == pytest.approx(1.96 * spread ** 0.5)


def test_classes_are_balanced_by_subsampling():
    labels = {i: int(i < 30) for i in range(40)}
    kept = meta.balanced(labels, list(range(40)), "x", 0)
    assert sum(labels[n] for n in kept) == 10 and len(kept) == 20


# --- config --------------------------------------------------------------

def zoo_error(**zoo) -> str:
    """The zoo's own check's message, and the config check's: the same, before any job."""
    cfg = config(**zoo)
    with pytest.raises(space.ZooConfigError) as err:
        space.check(canonical(cfg, SCHEMA)["zoo"], *space.check_dataset("digits"))
    with pytest.raises(ConfigError) as checked:
        check(cfg, SCHEMA)
    assert str(checked.value) == f"config error: {err.value}"
    return str(err.value)


def test_a_slice_longer_than_the_smallest_net_is_refused():
    least = space.smallest(ZOO["choices"], (1, 8, 8), 10)
    message = zoo_error(meta={**ZOO["meta"], "slice_length": least + 1})
    assert f"zoo.meta.slice_length = {least + 1}" in message and f"at most {least}" in message


def test_too_few_nets_for_a_property_is_refused():
    message = zoo_error(nets=6, shards=1)
    assert "zoo.nets = 6 is too few for 'dataset' (4 classes)" in message


def test_an_unknown_property_or_choice_is_refused_by_the_schema():
    bad = config(meta={**ZOO["meta"], "properties": ["colour"]})
    with pytest.raises(ConfigError, match="zoo.meta.properties"):
        check(bad, SCHEMA)
    bad = config(choices={**ZOO["choices"], "optimizer": ["adagrad"]})
    with pytest.raises(ConfigError, match=r"zoo.choices.optimizer\[0\] = 'adagrad' is not allowed"):
        check(bad, SCHEMA)


def test_a_fixed_property_is_refused_as_a_meta_target():
    assert "'filter_size' has one choice" in zoo_error(meta={**ZOO["meta"], "properties": ["filter_size"]})


def test_the_default_study_has_a_zoo_of_at_least_200_nets_that_passes_its_check():
    cfg = yaml.safe_load(open("config/config.yaml"))
    zoo = canonical(cfg, SCHEMA)["zoo"]
    assert zoo["nets"] >= 200
    space.check(zoo, *space.check_dataset(cfg["dataset"]["name"]))


def test_the_zoos_dataset_shapes_are_lesion_datas():
    for name, (shape, classes) in space.INPUTS.items():
        assert (data.get(name).input_shape, data.get(name).num_classes) == (shape, classes)


# --- the workflow ----------------------------------------------------------

@pytest.mark.workflow
def test_the_zoo_part_of_the_workflow_builds_end_to_end(tmp_path):
    from test_workflow import planned_jobs, snakemake, study_copy

    study_copy(tmp_path, {**config(nets=16), "seed": 0, "device": "cpu"})
    snakemake(tmp_path)
    out = tmp_path / "results" / "digits" / "zoo"
    nets_table = pd.read_parquet(out / "nets.parquet")
    assert sorted(nets_table["net"]) == list(range(16))
    assert set(nets_table["shard"]) == {0, 1}
    summary = pd.read_parquet(out / "meta.parquet")
    assert set(summary["property"]) == {"dataset", "batch_size", "augmentation", "optimizer",
                                        "activation", "initialization"}
    assert {"chance", "accuracy", "n_test_nets", "slice_length", "snapshots"} <= set(summary.columns)
    per_snapshot = pd.read_parquet(out / "meta_snapshots.parquet")
    assert sorted(set(per_snapshot["snapshot"])) == [0, 1, 2, 3]
    for name in ("accuracy", "snapshots"):
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    # a shard reruns only for what makes its nets: a meta-classifier or merge setting
    # reruns what reads it, an epoch more retrains every shard
    for edit, expected in (({"meta": {**ZOO["meta"], "steps": 30}},
                            {"zoo_meta": 1, "zoo_figures": 1}),
                           ({"min_accuracy": 0.1}, {"zoo_merge": 1, "zoo_meta": 1, "zoo_figures": 1}),
                           ({"epochs": 2}, {"zoo_shard": 2, "zoo_merge": 1, "zoo_meta": 1,
                                            "zoo_figures": 1})):
        (tmp_path / "edit.yaml").write_text(yaml.safe_dump({"zoo": edit}))
        jobs = planned_jobs(tmp_path, "--configfile", "config/config.yaml", "edit.yaml")
        assert Counter(rule for rule, _ in jobs) == {**expected, "all": 1}, edit


@pytest.mark.workflow
def test_a_bad_zoo_config_stops_the_workflow_before_any_job_with_one_message(tmp_path):
    from test_workflow import snakemake, study_copy

    study_copy(tmp_path, config(meta={**ZOO["meta"], "slice_length": 100000}))
    out = snakemake(tmp_path, "--dry-run", expect_failure=True)
    assert "config error: zoo.meta.slice_length = 100000 is longer than the smallest net" in out
