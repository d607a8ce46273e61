"""Numbers checked against independent references, never against the code under test.

Each reference is a short restatement of a definition (numpy arithmetic, a
full-network run with a hook) that shares nothing with the code it checks
but the random stream: where a definition draws from a seeded generator,
the reference draws the same calls in the order the definition prescribes
(sorted tensor names, one generator per variant), so positions and values
are checked exactly, not only counts or bounds.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import tolerance
from lesion import activations, data, evaluate, metrics, models, operators, predict, sweeps, train
from lesion.predict import _table
from lesion.studies.faults import bounds

# --- evaluation: top-k and cross-entropy against hand-written logits ---------

LOGITS = torch.tensor([
    [0.0, 3.0, 1.0, -2.0, 5.0, 4.0, 2.0],      # order: 4 5 1 6 2 0 3
    [1.5, -1.0, 0.5, 2.5, -3.0, 0.0, 1.0],     # order: 3 0 6 2 5 1 4
])
LABELS = torch.tensor([2, 4])


def cross_entropy(logits: np.ndarray, label: int) -> float:
    """-log softmax(logits)[label], in float64 from the formula."""
    logits = np.asarray(logits, dtype=np.float64)
    return float(np.log(np.exp(logits).sum()) - logits[label])


def test_summarise_gives_the_five_most_likely_classes_best_first_and_the_cross_entropy():
    top, loss = evaluate.summarise(LOGITS, LABELS)
    assert top.tolist() == [[4, 5, 1, 6, 2], [3, 0, 6, 2, 5]]
    expected = [cross_entropy(row, int(y)) for row, y in zip(LOGITS.tolist(), LABELS, strict=True)]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)
    # worked by hand: 5 + log(1 + e^-1 + e^-2 + e^-3 + e^-4 + e^-5 + e^-7) - 1
    assert expected[0] == pytest.approx(4.456771, rel=1e-6)


def test_summarise_of_a_batch_of_variants_is_per_variant_and_per_image():
    stacked = torch.stack([LOGITS, -LOGITS])
    top, loss = evaluate.summarise(stacked, LABELS)
    assert top[1].tolist() == [[3, 0, 2, 6, 1], [4, 1, 5, 2, 6]]
    assert loss[1, 1].item() == pytest.approx(cross_entropy(-LOGITS[1].numpy(), 4), rel=1e-6)


def test_a_half_precision_networks_loss_is_computed_in_float32():
    """float16 logits (a half-precision network): the loss of the same values in float32,
    against the float64 formula; a float16 loss would round to 3 significant digits."""
    logits = (LOGITS * 1.37).half()
    _, loss = evaluate.summarise(logits, LABELS)
    assert loss.dtype == torch.float32
    expected = [cross_entropy(row, int(y)) for row, y in zip(logits.double().tolist(), LABELS,
                                                             strict=True)]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)


def test_an_overflowing_loss_of_finite_logits_counts_as_non_finite():
    logits = torch.tensor([[3e38, -3e38, 0.0], [1e38, -1e38, 0.0], [1.0, 2.0, 3.0]])
    assert torch.isfinite(logits).all()
    assert torch.isinf(nn.functional.cross_entropy(logits[:1], torch.tensor([1])))  # 6e38
    _, loss = evaluate.summarise(logits, torch.tensor([1, 1, 1]))
    assert torch.isnan(loss).tolist() == [True, False, False]
    assert loss[1].item() == pytest.approx(2e38, rel=1e-6)


def test_summarise_marks_exactly_the_non_finite_outputs():
    logits = LOGITS.clone().repeat(2, 1)
    logits[1, 3], logits[2, 0] = torch.inf, torch.nan
    _, loss = evaluate.summarise(logits, torch.tensor([2, 4, 2, 4]))
    assert torch.isnan(loss).tolist() == [False, True, True, False]


# --- operators: exact results given the generator ------------------------------

def layer(shape=(12, 5), seed=0) -> dict[str, torch.Tensor]:
    """Distinct, non-zero values; the bias with its own scale (std about 10x the weight's)."""
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape))
    weight = (torch.randperm(n, generator=g).float() + 1).reshape(shape) / n
    bias = (torch.randperm(shape[0], generator=g).float() + 1) * 10
    return {"weight": weight, "bias": bias}


def fresh(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# (level, entries) -> how many the operator selects: level * n rounded half up,
# worked out by hand here (no tie at these sizes).
COUNTS = {(0.3, 60): 18, (0.3, 12): 4, (0.55, 60): 33, (0.55, 12): 7}


@pytest.mark.parametrize("level", [0.3, 0.55])
def test_synapse_knockout_zeroes_the_generators_positions_bias_first(level):
    base = layer()
    out = operators.apply("synapse_knockout", base, level, seed=5)
    g = fresh(5)
    for name in ("bias", "weight"):  # sorted names: one stream, bias drawn first
        ref = base[name].numpy().ravel().copy()
        n = ref.size
        ref[torch.randperm(n, generator=g)[:COUNTS[(level, n)]].numpy()] = 0
        assert np.array_equal(out[name].numpy().ravel(), ref), name
        assert int((out[name] == 0).sum()) == COUNTS[(level, n)]


@pytest.mark.parametrize("level", [0.3, 0.55])
def test_node_knockout_zeroes_the_generators_units(level):
    base = layer()
    out = operators.apply("node_knockout", base, level, seed=8)
    units = torch.randperm(12, generator=fresh(8))[:COUNTS[(level, 12)]].numpy()
    weight, bias = base["weight"].numpy().copy(), base["bias"].numpy().copy()
    weight[units], bias[units] = 0, 0
    assert np.array_equal(out["weight"].numpy(), weight)
    assert np.array_equal(out["bias"].numpy(), bias)


@pytest.mark.parametrize(("operator", "shape", "level", "expected"), [
    ("node_knockout", (5, 3), 0.5, 3),  # 2.5 units: the tie goes up (to even: 2)
    ("node_knockout", (25, 2), 0.58, 15),  # 14.5 as written, 14.4999... in binary
    ("synapse_knockout", (1, 5), 0.5, 3),  # 2.5 of the weight's 5 entries
    ("node_knockout", (12, 5), 0.3, 4),  # 3.6: the nearest, not the seed code's floor 3
])
def test_a_level_selects_its_share_rounded_half_up(operator, shape, level, expected):
    """Counts worked out by hand from the level as written (docs/studies.md)."""
    out = operators.apply(operator, layer(shape), level, seed=1)
    zeroed = (out["weight"] == 0).all(1).sum() if operator == "node_knockout" else (
        out["weight"] == 0).sum()
    assert int(zeroed) == expected


def test_gaussian_scales_each_tensors_noise_by_its_own_std():
    base = layer()
    level = 0.7
    out = operators.apply("gaussian", base, level, seed=3)
    g = fresh(3)
    for name in ("bias", "weight"):
        t = base[name].numpy().astype(np.float64)
        noise = torch.randn(base[name].shape, generator=g).numpy()
        expected = t + noise * level * np.std(t)  # np.std: the population std
        # float32 against float64: the std of n values within gamma_2n (its sums), the
        # scaled noise and the sum rounded once or twice more (tests/tolerance.py)
        scaled = np.abs(noise * level * np.std(t))
        bound = tolerance.U32 * np.abs(expected) + scaled * (3 * tolerance.U32 + tolerance.gamma(2 * t.size))
        assert (np.abs(out[name].numpy() - expected) <= bound).all(), name
    # the bias's std is 10x the weight's here, so a swap would show
    assert np.std(base["bias"].numpy()) > 5 * np.std(base["weight"].numpy())


def test_gaussian_draws_a_float64_layers_noise_in_float64():
    """A float64 network's noise is drawn in float64 (not float32 and widened), so
    its variants carry the precision of its weights."""
    base = {name: t.double() for name, t in layer().items()}
    out = operators.apply("gaussian", base, 0.7, seed=3)
    g = fresh(3)
    for name in ("bias", "weight"):
        t = base[name].numpy()
        noise = torch.randn(base[name].shape, generator=g, dtype=torch.float64).numpy()
        assert out[name].dtype == torch.float64
        assert np.allclose(out[name].numpy(), t + noise * 0.7 * np.std(t), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("level", [0.3, 0.55])
def test_redraw_copies_values_from_the_generators_sources_to_its_targets(level):
    base = layer()
    out = operators.apply("redraw", base, level, seed=13)
    g = fresh(13)
    for name in ("bias", "weight"):
        old = base[name].numpy().ravel()
        k = COUNTS[(level, old.size)]
        targets = torch.randperm(old.size, generator=g)[:k].numpy()
        sources = torch.randperm(old.size, generator=g)[:k].numpy()
        ref = old.copy()
        ref[targets] = old[sources]
        assert np.array_equal(out[name].numpy().ravel(), ref), name
        # distinct values: every target whose source is another entry changed
        assert int((out[name].numpy().ravel() != old).sum()) == int((targets != sources).sum())


def bit_reference(t: torch.Tensor, level: float, positions: list[int], g: torch.Generator,
                  kind: str) -> np.ndarray:
    """float32 bits as uint32; every listed bit of every entry hit with probability `level`."""
    hits = torch.rand((t.numel(), len(positions)), generator=g).numpy() < level
    mask = np.zeros(t.numel(), dtype=np.uint64)
    for column, bit in enumerate(positions):
        mask |= hits[:, column].astype(np.uint64) << np.uint64(bit)
    mask = mask.astype(np.uint32)
    raw = t.numpy().ravel().view(np.uint32)
    new = {"flip": raw ^ mask, "zero": raw & ~mask, "one": raw | mask}[kind]
    return new.view(np.float32).reshape(t.shape)


@pytest.mark.parametrize(("operator", "kind"), [("bitflip", "flip"), ("stuck_at_zero", "zero"),
                                                ("stuck_at_one", "one")])
@pytest.mark.parametrize("bits", ["all", "exponent", [0, 7, 31]])
def test_bit_faults_hit_the_generators_bits_with_one_stream_for_weight_and_bias(operator, kind,
                                                                                bits):
    base = layer()
    positions = {"all": list(range(32)), "exponent": list(range(23, 31))}.get(str(bits), bits)
    out = operators.apply(operator, base, 0.3, seed=21, bits=bits)
    g = fresh(21)
    for name in ("bias", "weight"):
        ref = bit_reference(base[name], 0.3, positions, g, kind)
        assert np.array_equal(out[name].numpy().view(np.uint32), ref.view(np.uint32)), name


@pytest.mark.parametrize("operator", ["synapse_knockout", "gaussian", "redraw", "bitflip"])
def test_weight_and_bias_draws_are_independent(operator):
    """Equal weight and bias get different hits: the stream goes on, it is not restarted."""
    values = torch.arange(1, 41, dtype=torch.float32)
    out = operators.apply(operator, {"weight": values, "bias": values.clone()}, 0.5, seed=2)
    assert not torch.equal(out["weight"], out["bias"])


def test_crash_keep_mask_is_the_generators_uniforms_at_or_above_p():
    mask = activations.keep_mask((50, 7), 0.3, fresh(4))
    reference = torch.rand((50, 7), generator=fresh(4)).numpy() >= 0.3
    assert np.array_equal(mask.numpy(), reference)
    assert 0.2 < 1 - reference.mean() < 0.4


# --- metrics: positions and non-finite rows -------------------------------------

def test_a_label_at_the_fifth_place_counts_for_top5_not_top1():
    labels = torch.tensor([7, 7, 7, 7])
    tops = torch.tensor([[1, 2, 3, 4, 7], [7, 1, 2, 3, 4], [1, 2, 3, 4, 5], [1, 7, 2, 3, 4]])
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    table = _table(["v"], labels, [tops], [losses])
    row = metrics.variant_metrics(table, np.array([1, 7, 2, 9])).iloc[0]
    assert row["top1"] == 0.25      # image 1
    assert row["top5"] == 0.75      # images 0 (fifth place), 1, 3
    assert row["agreement"] == 0.5  # images 0 and 1 keep the clean top-1
    assert row["loss"] == 2.5
    assert row["nonfinite"] == 0


def test_non_finite_outputs_are_wrong_even_where_their_ranking_is_right():
    labels = torch.tensor([3, 3, 3, 3])
    tops = torch.tensor([[3, 0, 1, 2, 4]] * 4)  # every image ranks the label first
    losses = torch.tensor([0.5, float("nan"), float("nan"), 1.5])
    table = _table(["v"], labels, [tops], [losses])
    row = metrics.variant_metrics(table, np.array([3, 3, 3, 3])).iloc[0]
    assert row["top1"] == 0.5
    assert row["top5"] == 0.5
    assert row["agreement"] == 0.5
    assert row["nonfinite"] == 0.5
    assert row["loss"] == 1.0  # the mean over the two finite losses


# --- predict: every row against a full-network run of its own variant ----------

def full_network_rows(model: nn.Module, layer_name: str, tensors: dict, images, labels):
    """top5 and loss per image of `model` with `tensors` written into `layer_name`, and the
    perturbed network (for its float32 error bound)."""
    clone = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, t in tensors.items():
            getattr(models.layer(clone, layer_name), name).copy_(t)
        logits = clone(images).double().numpy()
    top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    loss = [cross_entropy(row, int(y)) for row, y in zip(logits, labels, strict=True)]
    return top5, np.array(loss), clone


def assert_rows_match(top, loss, ref_top, ref_loss, network, images, what):
    """The engine's rows against the whole network's, both float32 in another order: the
    losses within tolerance.loss_tolerance; the top-5 equal on every image whose top six
    exact logits lie further apart than twice the logit bound (elsewhere rounding may
    order them either way), which leaves most images (about 80% for the untrained cnn,
    whose logits lie close). The bound is the worst case (some 1e-3 on a loss here): the
    tight check of the same evaluation code is test_evaluate's, in float64."""
    assert (np.abs(loss - ref_loss) <= tolerance.loss_tolerance(network, images).numpy()).all(), what
    logits, err = tolerance.forward_bound(network, images, tolerance.U32)
    top6 = logits.topk(6, dim=1).values
    decided = ((top6[:, :-1] - top6[:, 1:]).amin(1) > 2 * err.amax(1)).numpy()
    assert decided.mean() > 0.5, what
    assert np.array_equal(top[decided], ref_top[decided]), what


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("references")
    data.export("digits", root / "raw.safetensors")
    data.make_tensors("digits", root / "raw.safetensors", root / "train.safetensors",
                      root / "test.safetensors", test_fraction=0.1, seed=0)
    return root


def rows_of(table, variant):
    frame = table.to_pandas()
    part = frame[frame["variant"] == variant].sort_values("image")
    return np.stack(part["top5"].to_numpy()), part["loss"].to_numpy()


@pytest.mark.parametrize(("perturbation", "layer_name"), [("gaussian", "conv2"),
                                                          ("synapse_knockout", "fc1"),
                                                          ("node_knockout", "conv1")])
def test_each_predicted_row_is_its_own_variant_run_through_the_whole_network(
        split, cnn, perturbation, layer_name):
    weights = split / "cnn.safetensors"
    models.save_weights(cnn, weights)
    variants = split / f"{perturbation}.parquet"
    sweeps.write_variants("digits", str(weights), layer_name, perturbation, levels=[0.3, 0.9],
                         draws=2, study_seed=0, out=str(variants))
    out = split / f"{perturbation}-predictions.parquet"
    predict.predict_sweep("digits", weights, split / "test.safetensors", variants, out,
                          device="cpu", batch_size=64, variants_per_pass=3, cache_gb=1.0,
                          precision="ieee")
    table = pq.read_table(out)
    images, labels = data.load_split(split / "test.safetensors")
    base = models.layer_tensors(cnn, layer_name)
    seen = []
    for row in pq.read_table(variants).to_pylist():
        tensors = operators.apply(row["perturbation"], base, row["level"], row["seed"])
        ref_top, ref_loss, network = full_network_rows(cnn, layer_name, tensors, images, labels)
        top, loss = rows_of(table, row["variant"])
        assert_rows_match(top, loss, ref_top, ref_loss, network, images, row["variant"])
        seen.append(loss)
    # four variants, four different sets of answers
    assert len({answers.tobytes() for answers in seen}) == len(seen)


def test_each_crash_row_is_the_network_with_its_own_seeds_masks(split, mlp):
    """A crash row: the neurons after fc1's ReLU zeroed by masks from the row's seed,
    drawn batch after batch (activations.crashed_logits), through the whole network."""
    weights = split / "mlp.safetensors"
    models.save_weights(mlp, weights)
    variants = split / "crash.parquet"
    sweeps.write_variants("digits", str(weights), "fc1", "crash", levels=[0.2, 0.6], draws=2,
                         study_seed=0, out=str(variants))
    out = split / "crash-predictions.parquet"
    batch = 64
    predict.predict_sweep("digits", weights, split / "test.safetensors", variants, out,
                          device="cpu", batch_size=batch, variants_per_pass=3, cache_gb=1.0,
                          precision="ieee")
    table = pq.read_table(out)
    images, labels = data.load_split(split / "test.safetensors")
    relu = mlp[2]
    assert isinstance(relu, nn.ReLU) and mlp[1] is models.layer(mlp, "fc1")
    seen = []
    for row in pq.read_table(variants).to_pylist():
        g = torch.Generator().manual_seed(row["seed"])
        clone = copy.deepcopy(mlp).eval()
        clone[2].register_forward_hook(
            lambda m, a, y, g=g, p=row["level"]: y * (torch.rand(y.shape, generator=g) >= p))
        with torch.no_grad():
            logits = torch.cat([clone(images[i:i + batch]) for i in range(0, len(images), batch)])
        logits = logits.double().numpy()
        ref_top = np.argsort(-logits, axis=1, kind="stable")[:, :5]
        ref_loss = [cross_entropy(r, int(y)) for r, y in zip(logits, labels, strict=True)]
        top, loss = rows_of(table, row["variant"])
        # the bound of the uncrashed mlp holds for its crashed versions (tolerance.py)
        assert_rows_match(top, loss, ref_top, ref_loss, mlp, images, row["variant"])
        seen.append(loss)
    assert len({answers.tobytes() for answers in seen}) == len(seen)


def test_a_crash_row_of_a_layer_inside_a_residual_block_crashes_its_neurons_only(resnet18_bn):
    """predict's crash rows where the crash prefix packs the neurons with the skip
    connection (resnet18's conv3, layer1.0.conv2: its neurons are bn2's output): each row
    is the whole network with bn2's output masked by the row's seed (a forward hook, no
    graph); crashing the packed skip values as well would change every row."""
    resnet = resnet18_bn
    images = torch.randn(6, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(6) % 10
    base = sweeps.base_tensors(resnet, "conv3", "crash")
    table, _ = sweeps.variant_table(base, dataset="digits", model="resnet18", layer="conv3",
                                   perturbation="crash", levels=[0.3, 0.6], draws=1, study_seed=0)
    rows = table.to_pylist()
    got = list(predict._crash_results(resnet, "conv3", base, rows, images, labels,
                                      torch.device("cpu"), batch_size=6, reps_per_pass=2))
    assert len(got) == len(rows)
    for row, (top, loss) in zip(rows, got, strict=True):
        mask = activations.keep_mask((6, 64, 4, 4), row["level"],
                                     torch.Generator().manual_seed(row["seed"]))
        handle = resnet.layer1[0].bn2.register_forward_hook(lambda m, i, o, k=mask: o * k)
        with torch.no_grad():
            logits = resnet(images).numpy()
        handle.remove()
        assert np.array_equal(top.numpy(), np.argsort(-logits, axis=1, kind="stable")[:, :5])
        expected = [cross_entropy(z, int(y)) for z, y in zip(logits, labels, strict=True)]
        assert loss.numpy() == pytest.approx(expected, rel=1e-12), row["variant"]


# --- training's loss terms ---------------------------------------------------------

def mlp_by_hand(model: nn.Sequential, x: torch.Tensor, dropout: float):
    """The mlp's forward pass written out: neurons after each hidden ReLU, dropout after each."""
    h1 = torch.relu(model[1](x.flatten(1)))
    h1_out = nn.functional.dropout(h1, dropout, training=True) if dropout else h1
    h2 = torch.relu(model[3](h1_out))
    h2_out = nn.functional.dropout(h2, dropout, training=True) if dropout else h2
    return model[5](h2_out), [h1, h2]


def test_training_loss_applies_dropout_after_every_hidden_layer(mlp, digits):
    x, y = digits[0][:32], digits[1][:32]
    torch.manual_seed(7)
    got = train._loss(mlp, x, y, 0.3, [])  # not 0.5: that is dropout's own default
    torch.manual_seed(7)
    logits, _ = mlp_by_hand(mlp, x, 0.3)
    expected = nn.functional.cross_entropy(logits, y)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    plain = nn.functional.cross_entropy(mlp(x), y)
    assert abs(got.item() - plain.item()) > 1e-3  # dropout did something


def test_training_loss_adds_the_studys_term_on_the_hidden_neurons(mlp, digits):
    x, y = digits[0][:32], digits[1][:32]

    def extra(logits, acts):
        return 0.01 * sum(a.square().sum() for a in acts) + logits.abs().mean()

    got = train._loss(mlp, x, y, 0.0, [extra])
    logits, acts = mlp_by_hand(mlp, x, 0.0)
    expected = nn.functional.cross_entropy(logits, y) + extra(logits, acts)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_b3_variance_is_the_sum_of_squared_jacobian_times_neuron_terms(mlp, digits):
    """sum over layers, outputs and neurons of ((dy_k/dx_i) x_i)^2, mean over inputs,
    against per-input Jacobians from torch.autograd.functional."""
    x = digits[0][:6]
    with torch.no_grad():
        _, (h1, h2) = mlp_by_hand(mlp, x, 0.0)
    expected = 0.0
    for a1, a2 in zip(h1, h2, strict=True):
        j1 = torch.autograd.functional.jacobian(lambda a: mlp[5](torch.relu(mlp[3](a))), a1)
        j2 = torch.autograd.functional.jacobian(lambda a: mlp[5](a), a2)
        expected += float((j1 * a1).square().sum() + (j2 * a2).square().sum())
    expected /= len(x)
    h1 = h1.clone().requires_grad_()
    h2 = torch.relu(mlp[3](h1))
    logits = mlp[5](h2)
    got = bounds.b3_variance(logits, [h1, h2])
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert bounds.b3_loss(0.5)(logits, [h1, h2]).item() == pytest.approx(0.5 * expected, rel=1e-5)


# --- the split ------------------------------------------------------------------------

def test_train_and_test_splits_are_disjoint_complete_and_stratified(split):
    from lesion import tensorfiles

    raw = tensorfiles.load_tensors(split / "raw.safetensors")
    parts = {name: tensorfiles.load_tensors(split / f"{name}.safetensors") for name in ("train", "test")}
    train_index, test_index = (set(parts[n]["index"].tolist()) for n in ("train", "test"))
    assert not train_index & test_index
    assert train_index | test_index == set(range(len(raw["labels"])))
    for part in parts.values():  # each split's labels are those of its raw rows
        assert torch.equal(part["labels"], raw["labels"][part["index"]])
    counts = np.bincount(raw["labels"].numpy(), minlength=10)
    test_counts = np.bincount(parts["test"]["labels"].numpy(), minlength=10)
    # stratified: every class's test share within one image of 10%
    assert np.all(np.abs(test_counts - 0.1 * counts) <= 1)


def test_a_variants_row_records_what_changed_counted_by_numpy():
    base = layer()
    table, variants = sweeps.variant_table(base, dataset="digits", model="cnn", layer="fc1",
                                          perturbation="synapse_knockout", levels=[0.3],
                                          draws=1, study_seed=0)
    row = table.to_pylist()[0]
    old = np.concatenate([base[k].numpy().ravel() for k in ("bias", "weight")]).astype(np.float64)
    new = np.concatenate([variants[0][k].numpy().ravel() for k in ("bias", "weight")])
    assert row["changed"] == int((new != old).sum()) == COUNTS[(0.3, 60)] + COUNTS[(0.3, 12)]
    assert row["weights"] == 72
    assert row["rel_l1"] == pytest.approx(np.abs(new - old).sum() / np.abs(old).sum())
    assert row["rel_l2"] == pytest.approx(np.linalg.norm(new - old) / np.linalg.norm(old))
    assert (row["dataset"], row["model"], row["layer"]) == ("digits", "cnn", "fc1")
    assert row["tensors"] == "bias,weight"


@pytest.mark.parametrize("operator", ["gaussian", "redraw"])
def test_a_variants_row_of_a_layer_of_many_windows_against_numpy(monkeypatch, operator):
    """Windows of 7 entries: pieces straddle the bias/weight boundary, the last is short."""
    monkeypatch.setattr(sweeps, "_WINDOW", 7)
    base = layer()
    table, variants = sweeps.variant_table(base, dataset="digits", model="cnn", layer="fc1",
                                          perturbation=operator, levels=[0.55], draws=2,
                                          study_seed=3)
    old = np.concatenate([base[k].numpy().ravel() for k in ("bias", "weight")]).astype(np.float64)
    for row, variant in zip(table.to_pylist(), variants, strict=True):
        new = np.concatenate([variant[k].numpy().ravel() for k in ("bias", "weight")])
        assert row["changed"] == int((new != old).sum())
        assert row["rel_l1"] == pytest.approx(np.abs(new - old).sum() / np.abs(old).sum(),
                                              rel=1e-12)
        assert row["rel_l2"] == pytest.approx(np.linalg.norm(new - old) / np.linalg.norm(old),
                                              rel=1e-12)


def test_the_b3_loss_weight_may_be_zero_but_not_infinite():
    bounds.b3_loss(0.0)  # a regime without the regulariser
    with pytest.raises(ValueError, match=r"b3_variance = inf is out of range; expected a finite"):
        bounds.b3_loss(float("inf"))


# --- crash bounds and their statistics, by hand on a linear layer ------------------

W3 = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
X3 = np.array([[2.0, 1.0, 4.0], [0.5, 3.0, 1.0]])


def test_every_bound_on_a_linear_suffix_against_its_formula():
    """After a dense layer y = W x + b, crashing neuron i changes y by d_i = -W[:, i] x_i
    exactly, so b3 and b4 are exact and every bound has a closed form."""
    # float64 against numpy's float64 formulas (issue 21): both sides round at 1.1e-16 over
    # sums of <= 3 terms, so rtol=1e-12 leaves 10^3 of margin and fails any float32 step
    suffix = nn.Sequential(nn.Linear(3, 2)).double()
    with torch.no_grad():
        suffix[0].weight.copy_(torch.tensor(W3))
        suffix[0].bias.copy_(torch.tensor([0.1, -0.2]))
    x = torch.tensor(X3, dtype=torch.float64)
    p = 0.2
    # 2 rows per pass: the 3 neurons are crashed in two blocks, which must add up
    terms = bounds._per_input_terms(suffix, x, suffix(x).detach(), rows_per_pass=2)
    got = {b: {s: v.detach().numpy() for s, v in stats.items()}
           for b, stats in bounds.bounds_per_input(suffix, x, p, terms).items()}
    mean = -p * X3 @ W3.T                                     # E Delta = -p W x
    std = np.sqrt(p * (1 - p) * X3**2 @ (W3**2).T)           # Bernoulli variance
    # the same, exactly: Delta = -W (c * x) over all 2^3 crash patterns c, each with its
    # probability p^|c| (1 - p)^(3 - |c|)
    patterns = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float)
    chance = np.prod(np.where(patterns == 1, p, 1 - p), axis=1)
    deltas = -np.einsum("cj,nj,kj->cnk", patterns, X3, W3)
    exact_mean = np.einsum("c,cnk->nk", chance, deltas)
    exact_std = np.sqrt(np.einsum("c,cnk->nk", chance, (deltas - exact_mean) ** 2))
    assert np.allclose(mean, exact_mean, rtol=1e-12) and np.allclose(std, exact_std, rtol=1e-12)
    for bound in ("b3", "b4"):
        assert np.allclose(got[bound]["mean"], mean, rtol=1e-12), bound
        assert np.allclose(got[bound]["std"], std, rtol=1e-12), bound
    assert np.allclose(got["b2"]["mean"], p * np.abs(X3) @ np.abs(W3).T, rtol=1e-12)
    # b2's variance, p(1 - p) prod W^2 x^2 (issue 24: was p, the paper's small-p form), is
    # exact where one dense layer follows
    assert np.allclose(got["b2"]["std"], exact_std, rtol=1e-12)
    l1, l2 = np.abs(X3).sum(1), np.linalg.norm(X3, axis=1)
    for stat, order in (("norm_l1", 1), ("norm_l2", 2), ("norm_linf", np.inf)):
        assert np.allclose(got["b1"][stat], p * l1 * np.linalg.norm(W3, order), rtol=1e-12), stat
    jensen = np.minimum(p * l1, np.sqrt(p) * l2) * np.linalg.norm(W3, 2)
    assert np.allclose(got["b1_jensen"]["norm_l2"], jensen, rtol=1e-12)


class _PackedSuffix(nn.Module):
    """A non-linear suffix that reads [neurons flattened, rest], as a packed crash prefix's
    does: y = W2 tanh(W1 x + V rest)."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(4)
        self.w1 = nn.Parameter(torch.randn(5, 4, generator=generator, dtype=torch.float64))
        self.v = nn.Parameter(torch.randn(5, 2, generator=generator, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(3, 5, generator=generator, dtype=torch.float64))

    def forward(self, packed):
        x, rest = packed[:, :4], packed[:, 4:]
        return torch.tanh(x @ self.w1.T + rest @ self.v.T) @ self.w2.T


@pytest.mark.parametrize("rows_per_pass", [1, 3, 8, 4096])
def test_per_input_terms_of_a_packed_non_linear_suffix_against_one_input_at_a_time(rows_per_pass):
    """b3's and b4's sums for neurons of shape [2, 2] with a `rest` the suffix also reads,
    against each input's Jacobian (torch.autograd.functional) and each neuron crashed alone
    in its own forward pass, whatever the inputs and neurons per pass (1, 3: blocks of 3
    and 1 neurons, 8: two inputs of four neurons and one left over, all at once)."""
    suffix = _PackedSuffix()
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, 2, generator=generator, dtype=torch.float64)
    rest = torch.randn(3, 2, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        y = suffix(torch.cat([x.flatten(1), rest], 1))
    terms = bounds._per_input_terms(suffix, x, y, rows_per_pass=rows_per_pass,
                                    rest=rest)
    for n in range(3):
        def f(flat, n=n):
            return suffix(torch.cat([flat, rest[n]]).unsqueeze(0)).squeeze(0)
        flat = x[n].flatten()
        g = torch.autograd.functional.jacobian(f, flat) * flat  # [K, 4]: (dy/dx_i) x_i
        with torch.no_grad():
            d = torch.stack([f(flat * (torch.arange(4) != i)) - y[n] for i in range(4)], 1)
        for name, want in (("g_sum", g.sum(1)), ("g_sq", (g ** 2).sum(1)),
                           ("d_sum", d.sum(1)), ("d_sq", (d ** 2).sum(1))):
            assert torch.allclose(terms[name][n], want, rtol=1e-12, atol=1e-14), (name, n)
    assert not any(t.requires_grad for t in terms.values())


def test_aggregate_is_a_root_mean_square_with_the_monte_carlo_excess_removed():
    per_input = {"mean": torch.tensor([[1.0, -2.0], [3.0, 0.0]]),
                 "std": torch.tensor([[1.0, 1.0], [2.0, 0.0]]),
                 "norm_l1": torch.tensor([1.0, 3.0])}
    plain = bounds.aggregate(per_input)
    assert plain["mean"] == pytest.approx(np.sqrt(14 / 4))
    assert plain["std"] == pytest.approx(np.sqrt(6 / 4))
    assert plain["norm_l1"] == pytest.approx(2.0)
    # with R = 2 repetitions each squared mean loses std^2 / R: (0.5 + 3.5 + 7 + 0) / 4
    assert bounds.aggregate(per_input, 2)["mean"] == pytest.approx(np.sqrt(11 / 4))
    tiny = {"mean": torch.tensor([[0.1]]), "std": torch.tensor([[1.0]])}
    assert bounds.aggregate(tiny, 2)["mean"] == 0.0  # clamped at 0, never imaginary


def test_monte_carlo_statistics_of_three_repetitions():
    deltas = torch.tensor([[[1.0, 2.0]], [[3.0, -2.0]], [[2.0, 0.0]]])  # [R=3, N=1, K=2]
    got = {k: v.numpy() for k, v in bounds.monte_carlo(deltas).items()}
    assert got["mean"].tolist() == [[2.0, 0.0]]
    assert got["std"].tolist() == [[1.0, 2.0]]  # sample std (R - 1)
    assert got["norm_l1"].tolist() == pytest.approx([10 / 3])
    assert got["norm_l2"].tolist() == pytest.approx([(np.sqrt(5) + np.sqrt(13) + 2) / 3])
    assert got["norm_linf"].tolist() == pytest.approx([7 / 3])


def test_sites_without_training_apply_no_dropout(mlp, digits):
    x = digits[0][:16]
    out, _ = activations.forward_with_sites(mlp, x, dropout=0.5, training=False)
    assert torch.equal(out, mlp(x))


# --- bit faults on large tensors, and what a bad bit request says --------------------

def test_bit_faults_on_a_tensor_of_several_chunks_match_the_reference():
    n = 2 * operators._CHUNK + 7
    base = {"weight": torch.linspace(-1, 1, n)}
    out = operators.apply("bitflip", base, 0.01, seed=3, bits=[0, 30])
    g = fresh(3)
    hits = np.concatenate([torch.rand((min(operators._CHUNK, n - s), 2), generator=g).numpy() < 0.01
                           for s in range(0, n, operators._CHUNK)])
    mask = hits[:, 0].astype(np.uint32) | (hits[:, 1].astype(np.uint32) << np.uint32(30))
    expected = base["weight"].numpy().view(np.uint32) ^ mask
    assert np.array_equal(out["weight"].numpy().view(np.uint32), expected)


@pytest.mark.parametrize(("tensors", "bits", "words"), [
    ({"weight": torch.zeros(3, dtype=torch.int32)}, "all",
     r"bit faults need a float tensor; got dtype torch.int32, expected one of \['torch.float32'"),
    ({"weight": torch.zeros(3)}, [40],
     r"bits = 40 is not a bit of torch.float32; expected one of "
     r"\['all', 'sign', 'exponent', 'mantissa'\] or an index in 0\.\.31"),
    ({"weight": torch.zeros(3)}, [], r"bits = \[\] selects no bit; expected at least one"),
])
def test_a_bad_bit_request_says_what_is_allowed(tensors, bits, words):
    with pytest.raises(ValueError, match=words):
        operators.apply("bitflip", tensors, 0.1, seed=0, bits=bits)


# --- the tables' types ----------------------------------------------------------------

def test_predictions_and_summary_columns_have_their_documented_types():
    table = _table(["a", "b"], torch.tensor([1, 2]), [torch.tensor([[1, 2, 3, 4, 5]] * 2)] * 2,
                   [torch.tensor([0.5, 1.5])] * 2)
    import pyarrow as pa

    assert table.schema.field("variant").type == pa.dictionary(pa.int32(), pa.string())
    assert table.schema.field("image").type == pa.int32()
    assert table.schema.field("label").type == pa.int16()
    assert table.schema.field("top5").type == pa.list_(pa.int32(), 5)
    assert table.schema.field("loss").type == pa.float32()
    import pandas as pd

    long = pd.DataFrame({"dataset": "d", "model": "m", "testset": "clean", "perturbation": ["none", "g", "g"],
                         "layer": "l", "level": [0.0, 0.5, 0.5], "variant": ["m", "v-num0", "v-num1"],
                         "metric": "top1", "value": [0.9, 0.5, 0.7]})
    summary = metrics.summarise(long)
    assert summary["ci95"].dtype == np.float64 and np.isnan(summary["ci95"].iloc[0])


# --- the GPU path, where a GPU is present --------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_a_sweep_on_cuda_equals_the_cpu_one(split, cnn):
    """Variants are drawn on the CPU whatever the device (bit for bit the same tensors);
    evaluated on CUDA in IEEE float32 they give the same rows within the float32 bound
    (tests/tolerance.py, as the CPU rows against the whole network)."""
    weights = split / "cnn-gpu.safetensors"
    models.save_weights(cnn, weights)
    variants = split / "gpu-variants.parquet"
    sweeps.write_variants("digits", str(weights), "conv2", "gaussian", levels=[0.3, 0.9], draws=2,
                         study_seed=0, out=str(variants))
    tables = {}
    for device in ("cpu", "cuda"):
        out = split / f"gpu-{device}.parquet"
        predict.predict_sweep("digits", weights, split / "test.safetensors", variants, out,
                              device=device, batch_size=64, variants_per_pass=3, cache_gb=1.0,
                              precision="ieee")
        tables[device] = pq.read_table(out)
    images, labels = data.load_split(split / "test.safetensors")
    base = models.layer_tensors(cnn, "conv2")
    for row in pq.read_table(variants).to_pylist():  # float32 on two devices: the bound
        tensors = operators.apply("gaussian", base, row["level"], row["seed"])
        ref_top, ref_loss, network = full_network_rows(cnn, "conv2", tensors, images, labels)
        on = {device: rows_of(table, row["variant"]) for device, table in tables.items()}
        assert_rows_match(*on["cuda"], *on["cpu"], network, images, row["variant"])
    for row in pq.read_table(variants).to_pylist():  # drawn on the CPU, hash-checked
        on_gpu = {k: v.cuda() for k, v in base.items()}
        again = sweeps.regenerate(row, on_gpu)
        assert all(torch.equal(again[k], operators.apply("gaussian", base, row["level"],
                                                       row["seed"])[k]) for k in base)
