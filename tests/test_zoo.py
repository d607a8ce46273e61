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
    "choices": {"dataset": ["plain", "inverted", "noisy", "blurred"], "batch_size": [32, 64],
                "augmentation": [False, True], "optimizer": list(space.OPTIMIZERS),
                "activation": list(space.ACTIVATIONS),
                "initialization": list(space.INITIALIZATIONS),
                **{k: [v] for k, v in ARCH.items()}},
    "meta": {"properties": "all", "slice_length": 64, "snapshots": [2, 3], "steps": 20,
             "batch_size": 16, "learning_rate": 0.001, "positions": 2, "trees": 20},
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
    activation, initialisation, derived dataset and augmentation."""
    out = []
    for i in range(8):
        r = {"net": i, **ARCH, "batch_size": 32,
             "optimizer": space.OPTIMIZERS[i % 3], "activation": space.ACTIVATIONS[i % 4],
             "initialization": space.INITIALIZATIONS[(i // 2) % 4],
             "dataset": space.DATASETS[i % len(space.DATASETS)],
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


def test_low_contrast_noisy_and_blurred_are_as_documented(digits):
    plain = digits.train[0].numpy().astype(np.float64)
    low = digits.train[digits.index("low_contrast")].numpy()
    np.testing.assert_allclose(low, 0.5 + 0.5 * (plain - 0.5), rtol=0, atol=4 * tolerance.U32)
    padded = np.pad(plain, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    k = np.array([0.25, 0.5, 0.25])
    blurred = sum(k[i] * k[j] * padded[:, :, i:i + 8, j:j + 8] for i in range(3) for j in range(3))
    np.testing.assert_allclose(digits.train[digits.index("blurred")].numpy(), blurred, rtol=0,
                               atol=16 * tolerance.U32)
    noisy = digits.train[digits.index("noisy")].numpy()
    assert noisy.min() >= 0 and noisy.max() <= 1
    inside = (noisy > 0) & (noisy < 1)  # not clipped: the noise itself
    assert abs(np.std(noisy[inside] - plain[inside]) - 0.2) < 0.02
    # the noise is drawn once per image from (study seed, split): train and test differ
    images = torch.zeros(4, 1, 8, 8)
    first = nets.derive(images, "noisy", 0, "train")
    assert torch.equal(first, nets.derive(images, "noisy", 0, "train"))
    assert not torch.equal(first, nets.derive(images, "noisy", 0, "test"))
    assert not torch.equal(first, nets.derive(images, "noisy", 1, "train"))


def test_the_default_derived_datasets_change_the_input_statistics_and_the_symmetries_do_not(digits):
    """A net can only adapt its weights to what tells a dataset apart: the default versions
    move the input mean or std; transposed and permuted keep both (options, not defaults)."""
    defaults = SCHEMA["properties"]["zoo"]["properties"]["choices"]["properties"]["dataset"]["default"]
    shipped = yaml.safe_load(open("config/config.yaml"))["zoo"]["choices"]["dataset"]
    plain = digits.train[0].double()
    for name in {*defaults, *shipped} - {"plain"}:
        other = digits.train[digits.index(name)].double()
        moved = max(abs(other.mean() - plain.mean()), abs(other.std() - plain.std()))
        assert moved > 0.03, name
    for name in ("transposed", "permuted"):
        assert name not in defaults and name not in shipped
        other = digits.train[digits.index(name)].double()
        assert abs(other.mean() - plain.mean()) < 1e-12 and abs(other.std() - plain.std()) < 1e-12


def test_only_the_chosen_derived_datasets_are_built(digits):
    x, y = digits.train[0][:10], digits.train_labels[:10]
    built = grouped.Data.build((x, y), (x, y), 10, 0, names=["noisy", "plain"])
    assert built.names == ("plain", "noisy") and built.train.shape[0] == 2
    assert torch.equal(built.train[built.index("noisy")], nets.derive(x, "noisy", 0, "train"))
    with pytest.raises(ValueError, match="dataset = 'blurred' was not derived"):
        built.index("blurred")


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
        # the same weights up to 1e-10 classify the 128 test images alike, and the last
        # epoch's training batches as they trained
        assert together["test_accuracy"][i] == alone["test_accuracy"]
        assert together["train_accuracy"][i] == alone["train_accuracy"]
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


# --- exclusion ------------------------------------------------------------

def test_the_excluded_share_is_reported_per_property_value(tmp_path, caplog):
    """8 hand-made nets: 1, 4, 5 and 7 below min_accuracy, 2 with weights that are not finite."""
    accuracy = [0.9, 0.1, 0.8, 0.7, 0.1, 0.15, 0.9, 0.05]
    rows = [{"net": i, "optimizer": "adam" if i < 4 else "momentum", "activation": ["relu", "tanh"][i % 2],
             "augmentation": False, "learning_rate": 0.001 * (i + 1), "test_accuracy": accuracy[i],
             "finite": i != 2} for i in range(8)]
    path = tmp_path / "0.parquet"
    files.write_table(pa.Table.from_pylist(rows), path, kind=kinds.SHARD)
    with caplog.at_level("INFO", logger="lesion.studies.zoo.merge"):
        table = merge.merge([path], ["0.safetensors"], nets=8, min_accuracy=0.2, test_fraction=0.5,
                            study_seed=0, out=tmp_path / "nets.parquet",
                            excluded_out=tmp_path / "excluded.parquet").to_pandas()
    assert sorted(table.loc[~table["converged"], "net"]) == [1, 2, 4, 5, 7]
    shares = files.read_table(tmp_path / "excluded.parquet", kinds.EXCLUDED).to_pandas()
    got = {(r.property, r.value): (r.nets, r.excluded, r.share) for r in shares.itertuples()}
    assert got == {
        ("all", "all"): (8, 5, 0.625),
        ("optimizer", "adam"): (4, 2, 0.5), ("optimizer", "momentum"): (4, 3, 0.75),
        ("activation", "relu"): (4, 2, 0.5), ("activation", "tanh"): (4, 3, 0.75),
        # the learning rate's quartiles: nets (0, 1), (2, 3), (4, 5), (6, 7)
        ("learning_rate", "[0.001, 0.002]"): (2, 1, 0.5), ("learning_rate", "[0.003, 0.004]"): (2, 1, 0.5),
        ("learning_rate", "[0.005, 0.006]"): (2, 2, 1.0), ("learning_rate", "[0.007, 0.008]"): (2, 1, 0.5),
    }  # augmentation has one value: no rows
    assert shares.loc[shares["value"] == "adam", "ci95"].item() == pytest.approx(1.96 * (0.25 / 4) ** 0.5)
    assert "excluded 5 of 8 nets (62.5%)" in caplog.text
    assert "excluded share by optimizer: adam 50.0%, momentum 75.0%" in caplog.text


# --- meta-classifiers ----------------------------------------------------

def test_slices_are_stratified_by_tensor_and_cover_every_tensor():
    """The default digits net is 79% fc1: uniform starts would hardly ever see conv1.
    Each tensor is overlapped by at least its 1/T share of the training slices, and by
    `positions` of the slices a meta-test net is read at."""
    row = {"filter_size": 3, "conv_depth": 3, "fc_depth": 2, "conv_width": 2, "fc_width": 32}
    tensors = [(a, b) for _, a, b in space.spans(row, (1, 8, 8), 10)]
    total, length = tensors[-1][1], 512
    assert total == space.size(row, (1, 8, 8), 10) == 5218 and len(tensors) == 12
    ranges = meta.start_ranges(tensors, total, length)
    starts = meta.draw_starts(ranges[None], torch.tensor([len(tensors)]), torch.zeros(6000, dtype=torch.long),
                              torch.Generator().manual_seed(0))
    assert starts.min() >= 0 and starts.max() <= total - length
    for a, b in tensors:
        overlap = ((starts < b) & (starts + length > a)).double().mean()
        assert overlap >= 0.9 / len(tensors), (a, b)
    spread = meta.spread_starts(ranges, 3)
    assert len(spread) == 3 * len(tensors) and spread.min() >= 0 and spread.max() <= total - length
    for a, b in tensors:
        assert ((spread < b) & (spread + length > a)).sum() >= 3, (a, b)


def planted(n: int, seed: int, readable: bool) -> tuple[dict, dict, dict]:
    """n nets of three tensors (20, 300 and 80 weights) and 3 snapshots of N(0, 0.1)
    weights. readable: class 1 nets have 0.1 added to the first (smallest) tensor's
    weights; otherwise the labels are a coin flip, unrelated to the weights."""
    gen = torch.Generator().manual_seed(seed)
    labels = {i: int(torch.randint(2, (), generator=gen)) for i in range(n)}
    weights = {i: 0.1 * torch.randn(3, 400, generator=gen) for i in range(n)}
    for i in range(n):
        if readable and labels[i] == 1:
            weights[i][:, :20] += 0.1
    return weights, labels, {i: [(0, 20), (20, 320), (320, 400)] for i in range(n)}


def fit_statistics(weights, labels, tensors):
    n = len(labels)
    train = meta.balanced(labels, list(range(n // 2)), "train", 0)
    test = meta.balanced(labels, list(range(n // 2, n)), "test", 0)
    features = meta.net_statistics(weights, tensors)
    assert next(iter(features.values())).shape == (3, 3 * len(meta.STATISTICS))
    return meta.forest(features, labels, train, test, 2, window=(1, 2), trees=100, seed=0), test


def test_the_statistics_classifier_reads_a_constant_added_to_one_layer():
    result, test = fit_statistics(*planted(120, 0, readable=True))
    assert result["chance"] == 0.5 and len(test) >= 50
    assert result["accuracy"] > 0.9 and result["accuracy"] - result["ci95"] > result["chance"] + 0.3
    assert len(result["per_snapshot"]) == 3


def test_the_statistics_classifier_of_a_random_label_scores_at_chance_within_its_interval():
    result, test = fit_statistics(*planted(120, 1, readable=False))
    assert abs(result["accuracy"] - result["chance"]) <= result["ci95"]


def test_the_statistics_are_each_tensors_mean_std_mean_abs_and_quantiles():
    flat = torch.tensor([[1.0, -3.0, 2.0, 0.0, 5.0]])
    got = meta.statistics(flat, [(0, 2), (2, 5)])[0].tolist()
    assert got[:8] == [-1.0, 2.0, 2.0, -3.0, -2.0, -1.0, 0.0, 1.0]
    assert got[8:] == pytest.approx([7 / 3, np.std([2.0, 0.0, 5.0]), 7 / 3, 0.0, 1.0, 2.0, 3.5, 5.0])


def test_the_learning_rate_regression_reads_a_planted_rate_and_not_a_random_one():
    weights, _, tensors = planted(120, 2, readable=False)
    gen = torch.Generator().manual_seed(3)
    rates = {i: -3 + float(torch.rand((), generator=gen)) for i in weights}  # log10, in [-3, -2]
    for i in weights:
        weights[i][:, :20] += 0.4 * (rates[i] + 2.5)
    features = meta.net_statistics(weights, tensors)
    train, test = list(range(60)), list(range(60, 120))
    read = meta.regression(features, rates, train, test, window=(1, 2), trees=100, seed=0)
    assert read["r2"] > 0.8 and read["r2_low"] > 0.6 and read["r2_low"] <= read["r2"] <= read["r2_high"]
    unrelated = {i: -3 + float(torch.rand((), generator=gen)) for i in weights}
    random = meta.regression(features, unrelated, train, test, window=(1, 2), trees=100, seed=0)
    assert random["r2"] < 0.1 and random["r2_low"] < 0
    assert random["baseline"] == pytest.approx(np.mean([unrelated[i] for i in train]))



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


def test_the_meta_step_writes_both_classifiers_per_property_and_the_learning_rates_r2(shards, tmp_path):
    root, zoo, parts = shards
    merge.merge([str(t) for t, _ in parts], [str(s) for _, s in parts], nets=12, min_accuracy=0.0,
                test_fraction=0.5, study_seed=0, out=tmp_path / "nets.parquet")
    meta.study(tmp_path / "nets.parquet", dataset="digits", properties=["augmentation", "batch_size"],
               slice_length=64, window=(2, 3), steps=5, batch_size=8, learning_rate=0.001, positions=2,
               trees=10, study_seed=0, out=tmp_path / "meta.parquet",
               snapshots_out=tmp_path / "snapshots.parquet")
    summary = files.read_table(tmp_path / "meta.parquet", kinds.META).to_pandas()
    classified = summary[summary["task"] == "classification"]
    assert sorted(zip(classified["property"], classified["classifier"], strict=True)) == [
        (p, c) for p in ("augmentation", "batch_size") for c in ("cnn", "statistics")]
    assert (classified.loc[classified["classifier"] == "cnn", "slice_length"] == 64).all()
    assert (classified.loc[classified["classifier"] == "statistics", "trees"] == 10).all()
    rate = summary[summary["task"] == "regression"].iloc[0]
    assert (rate["property"], rate["classifier"]) == ("learning_rate", "statistics")
    assert rate["r2_low"] <= rate["r2"] <= rate["r2_high"] and np.isnan(rate["accuracy"])
    per_snapshot = files.read_table(tmp_path / "snapshots.parquet", kinds.META_SNAPSHOTS).to_pandas()
    for (prop, name), part in per_snapshot.groupby(["property", "classifier"]):
        assert list(part["snapshot"]) == [0, 1, 2, 3], (prop, name)


def test_the_claims_judge_accuracy_against_chance_and_the_learning_rates_r2_against_zero(tmp_path):
    from lesion import claims as judged
    from lesion.studies.zoo import claims

    rows = [{"property": "optimizer", "classifier": "statistics", "task": "classification", "n_classes": 3,
             "chance": 1 / 3, "accuracy": 0.8, "ci95": 0.06},
            {"property": "dataset", "classifier": "cnn", "task": "classification", "n_classes": 4,
             "chance": 0.25, "accuracy": 0.3, "ci95": 0.07},
            {"property": "dataset", "classifier": "statistics", "task": "classification", "n_classes": 1},
            {"property": "learning_rate", "classifier": "statistics", "task": "regression", "n_classes": 0,
             "r2": 0.67, "r2_low": 0.6, "r2_high": 0.74}]
    files.write_table(pa.Table.from_pylist(rows, schema=meta.SUMMARY_SCHEMA), tmp_path / "meta.parquet",
                      kind=kinds.META)
    table = judged.table(claims.claims({"meta": tmp_path / "meta.parquet"}))
    assert list(table["subject"]) == ["optimizer, statistics", "dataset, cnn", "learning_rate, statistics"]
    assert list(table["estimate"]) == pytest.approx([0.8 - 1 / 3, 0.05, 0.67])
    assert list(table["verdict"]) == ["reproduced", "inconclusive", "reproduced"]
    assert (table["low"].iloc[2], table["high"].iloc[2]) == (0.6, 0.74)


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


def test_the_default_study_has_a_zoo_of_at_least_600_nets_that_passes_its_check():
    """600 nets: about 180 meta-test nets, which every property's interval needs (docs/studies.md)."""
    cfg = yaml.safe_load(open("config/config.yaml"))
    zoo = canonical(cfg, SCHEMA)["zoo"]
    assert zoo["nets"] >= 600 and zoo["min_accuracy"] < 0.2
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
    properties = {"dataset", "batch_size", "augmentation", "optimizer", "activation", "initialization"}
    assert set(summary["property"]) == {*properties, "learning_rate"}
    assert set(zip(summary["property"], summary["classifier"], strict=True)) == {
        *((p, c) for p in properties for c in ("cnn", "statistics")), ("learning_rate", "statistics")}
    assert {"chance", "accuracy", "ci95", "r2", "n_test_nets", "slice_length", "snapshots",
            "trees"} <= set(summary.columns)
    per_snapshot = pd.read_parquet(out / "meta_snapshots.parquet")
    assert sorted(set(per_snapshot["snapshot"])) == [0, 1, 2, 3]
    assert set(per_snapshot["classifier"]) == {"cnn", "statistics"}
    excluded = pd.read_parquet(out / "excluded.parquet")
    assert {"all", *properties, "learning_rate"} <= set(excluded["property"])
    claimed = pd.read_parquet(tmp_path / "results" / "digits" / "claims.parquet")
    zoo_claims = claimed[claimed["study"].str.startswith("zoo")]
    assert len(zoo_claims) == summary["accuracy"].notna().sum() + summary["r2"].notna().sum()
    for name in ("accuracy", "snapshots"):
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    # a shard reruns only for what makes its nets: a meta-classifier or merge setting
    # reruns what reads it, an epoch more retrains every shard
    # (and the claims table, which reads meta.parquet)
    for edit, expected in (({"meta": {**ZOO["meta"], "steps": 30}},
                            {"zoo_meta": 1, "zoo_figures": 1, "claims": 1}),
                           ({"min_accuracy": 0.1}, {"zoo_merge": 1, "zoo_meta": 1, "zoo_figures": 1,
                                                    "claims": 1}),
                           ({"epochs": 2}, {"zoo_shard": 2, "zoo_merge": 1, "zoo_meta": 1,
                                            "zoo_figures": 1, "claims": 1})):
        (tmp_path / "edit.yaml").write_text(yaml.safe_dump({"zoo": edit}))
        jobs = planned_jobs(tmp_path, "--configfile", "config/config.yaml", "edit.yaml")
        assert Counter(rule for rule, _ in jobs) == {**expected, "all": 1}, edit


@pytest.mark.workflow
def test_a_bad_zoo_config_stops_the_workflow_before_any_job_with_one_message(tmp_path):
    from test_workflow import snakemake, study_copy

    study_copy(tmp_path, config(meta={**ZOO["meta"], "slice_length": 100000}))
    out = snakemake(tmp_path, "--dry-run", expect_failure=True)
    assert "config error: zoo.meta.slice_length = 100000 is longer than the smallest net" in out
