"""The four Cheney et al. operators do exactly what the paper defines."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lesion import operators
from lesion.catalog import ACTIVATION_OPERATORS, FILTERS


def half_up(level: float, n: int) -> int:
    """level * n rounded half up, in exact fractions of the level as written (docs/studies.md)."""
    return int(Fraction(str(level)) * n + Fraction(1, 2))

LEVELS = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
SEEDS = st.integers(min_value=0, max_value=2**63 - 1)
SHAPES = st.sampled_from([(7,), (12, 5), (6, 3, 3, 3), (1,)])


def bit_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and the same bits (NaN equals NaN of the same pattern)."""
    return a.shape == b.shape and torch.equal(a.contiguous().view(torch.uint8),
                                              b.contiguous().view(torch.uint8))


def layer_tensors(shape, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Values bounded away from 0, so "set to 0" is always a visible change.
    weight = (torch.rand(shape, generator=g) + 0.5) * torch.sign(torch.randn(shape, generator=g))
    return {"weight": weight, "bias": torch.rand(shape[0], generator=g) + 0.5}


@settings(max_examples=60, deadline=None)
@given(shape=SHAPES, level=LEVELS, seed=SEEDS)
def test_synapse_knockout_zeroes_exactly_the_requested_fraction_of_each_tensor(shape, level, seed):
    base = layer_tensors(shape)
    out = operators.apply("synapse_knockout", base, level, seed)
    for name, t in base.items():
        assert int((out[name] == 0).sum()) == half_up(level, t.numel())
        kept = out[name] != 0
        assert torch.equal(out[name][kept], t[kept])


@settings(max_examples=60, deadline=None)
@given(shape=SHAPES, level=LEVELS, seed=SEEDS)
def test_node_knockout_zeroes_whole_units_and_their_biases_only(shape, level, seed):
    base = layer_tensors(shape)
    out = operators.apply("node_knockout", base, level, seed)
    units = shape[0]
    dead = out["bias"] == 0
    assert int(dead.sum()) == half_up(level, units)
    flat = out["weight"].reshape(units, -1)
    assert torch.equal((flat == 0).all(dim=1), dead)  # a unit's weights die with its bias
    assert torch.equal(flat[~dead], base["weight"].reshape(units, -1)[~dead])


def test_node_knockout_leaves_inputs_of_dense_layers_alone():
    """The seed code also zeroed input rows of dense layers; we must not."""
    base = layer_tensors((4, 6))
    out = operators.apply("node_knockout", base, 0.5, seed=3)
    zero_columns = (out["weight"] == 0).all(dim=0)
    assert not zero_columns.any()


def test_node_knockout_of_conv_layer_zeroes_whole_filters():
    base = layer_tensors((8, 3, 3, 3))
    out = operators.apply("node_knockout", base, 0.25, seed=5)
    dead = (out["weight"] == 0).flatten(1).all(dim=1)
    assert int(dead.sum()) == 2
    assert torch.equal(dead, out["bias"] == 0)
    assert not (out["weight"][~dead] == 0).any()


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, level=LEVELS, seed=SEEDS)
def test_redraw_replaces_the_fraction_with_values_of_the_same_tensor(shape, level, seed):
    base = layer_tensors(shape)
    out = operators.apply("redraw", base, level, seed)
    for name, t in base.items():
        changed = int((out[name] != t).sum())
        assert changed <= half_up(level, t.numel())
        assert set(out[name].reshape(-1).tolist()) <= set(t.reshape(-1).tolist())


def test_redraw_draws_without_replacement():
    """Every value of the original appears at most as often as it did (distinct values)."""
    base = {"weight": torch.arange(1000, dtype=torch.float32)}
    out = operators.apply("redraw", base, 0.6, seed=11)["weight"]
    new_positions = out != base["weight"]
    assert len(set(out[new_positions].tolist())) == int(new_positions.sum())


def test_gaussian_noise_has_std_level_times_tensor_std():
    g = torch.Generator().manual_seed(0)
    base = {"weight": torch.randn(400, 500, generator=g) * 3 + 1}
    out = operators.apply("gaussian", base, 0.5, seed=7)["weight"]
    noise = out - base["weight"]
    expected = 0.5 * base["weight"].std(correction=0)
    assert noise.std().item() == pytest.approx(expected.item(), rel=0.01)
    assert noise.mean().item() == pytest.approx(0.0, abs=0.01)


def test_gaussian_level_zero_is_the_identity():
    base = layer_tensors((5, 4))
    out = operators.apply("gaussian", base, 0.0, seed=1)
    for name in base:
        assert torch.equal(out[name], base[name])


@pytest.mark.parametrize("operator", sorted(operators.OPERATORS))
def test_same_seed_same_variant_and_base_untouched(operator):
    base = layer_tensors((16, 4, 3, 3))
    before = {k: v.clone() for k, v in base.items()}
    first = operators.apply(operator, base, 0.4, seed=123)
    second = operators.apply(operator, base, 0.4, seed=123)
    other = operators.apply(operator, base, 0.4, seed=124)
    for name in base:
        assert bit_equal(first[name], second[name])  # bit faults may make NaNs
        assert torch.equal(base[name], before[name])
    # a crash leaves the weights alone; the synaptic filters are deterministic
    if operator not in (*ACTIVATION_OPERATORS, *FILTERS):
        assert any(not bit_equal(first[n], other[n]) for n in base)


@pytest.mark.parametrize("operator", sorted(operators.OPERATORS))
def test_draws_are_independent_not_accumulated(operator):
    """Draw k of a sweep equals the same draw made alone: nothing carries over."""
    from lesion import sweeps

    base = layer_tensors((10, 8))
    _, variants = sweeps.variant_table(base, dataset="d", model="m", layer="fc1",
                                      perturbation=operator, levels=[0.3, 0.5], draws=3,
                                      study_seed=0)
    seed = operators.variant_seed(0, "m", "fc1", operator, 0.5, 2)
    alone = operators.apply(operator, base, 0.5, seed)
    for name in base:
        assert bit_equal(variants[-1][name], alone[name])


def test_operators_never_touch_the_global_rng():
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    for operator in operators.OPERATORS:
        operators.apply(operator, layer_tensors((6, 6)), 0.5, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_variant_seed_depends_on_every_part_of_the_variant_name():
    seeds = {
        operators.variant_seed(0, "cnn", "fc1", "gaussian", 0.5, 0),
        operators.variant_seed(1, "cnn", "fc1", "gaussian", 0.5, 0),
        operators.variant_seed(0, "mlp", "fc1", "gaussian", 0.5, 0),
        operators.variant_seed(0, "cnn", "fc2", "gaussian", 0.5, 0),
        operators.variant_seed(0, "cnn", "fc1", "redraw", 0.5, 0),
        operators.variant_seed(0, "cnn", "fc1", "gaussian", 0.6, 0),
        operators.variant_seed(0, "cnn", "fc1", "gaussian", 0.5, 1),
    }
    assert len(seeds) == 7
    assert operators.variant_seed(0, "cnn", "fc1", "gaussian", 1, 0) == operators.variant_seed(
        0, "cnn", "fc1", "gaussian", 1.0, 0)


def test_variant_ids_follow_the_seed_naming():
    assert operators.variant_id("alexnet", "conv1", "redraw", 0.1, 3) == "alexnet-conv1-redraw0.10-num3"
    assert operators.variant_id("alexnet", "conv1", "redraw", 0.5, None) == "alexnet-conv1-redraw0.50"


# (level, entries, count): level * n rounded to nearest, halves up (docs/studies.md),
# written out by hand where the seed code's floor differs, and a tie that halves to even
# (Python's round) would give as 2
COUNTS_WHERE_FLOOR_DIFFERS = [(0.3, 12, 4), (0.29, 100, 29), (0.5, 7, 4), (0.15, 10, 2),
                              (0.35, 10, 4), (0.25, 10, 3)]


@pytest.mark.parametrize(("level", "n", "count"), COUNTS_WHERE_FLOOR_DIFFERS)
def test_a_fraction_selects_the_nearest_whole_number_of_entries(level, n, count):
    base = {"weight": torch.arange(1, n + 1, dtype=torch.float32).reshape(n, 1),
            "bias": torch.arange(1, n + 1, dtype=torch.float32)}
    knocked = operators.apply("synapse_knockout", base, level, seed=0)
    assert int((knocked["bias"] == 0).sum()) == count
    units = operators.apply("node_knockout", base, level, seed=0)
    assert int((units["bias"] == 0).sum()) == count


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv8"])  # stem, in a block, a downsample
def test_node_knockout_silences_channels_after_their_batchnorm(layer):
    """Zeroing a conv filter alone leaves its BatchNorm emitting a constant; the knocked-out
    channels must be exactly 0 after the BatchNorm, for any input."""
    from lesion import models, sweeps

    torch.manual_seed(0)
    model = models.build("resnet18", num_classes=10, input_shape=(3, 32, 32)).eval()
    norm = models.norm_after(model, layer)
    assert isinstance(norm, torch.nn.BatchNorm2d)
    with torch.no_grad():  # running statistics of a trained network: non-zero mean
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    base = sweeps.base_tensors(model, layer, "node_knockout")
    assert sorted(base) == ["norm.bias", "norm.weight", "weight"]  # resnet convs have no bias
    out = operators.apply("node_knockout", base, 0.5, seed=4)
    dead = (out["weight"] == 0).flatten(1).all(dim=1)
    assert int(dead.sum()) == half_up(0.5, len(dead))
    with torch.no_grad():
        models.layer(model, layer).weight.copy_(out["weight"])
        norm.weight.copy_(out["norm.weight"])
        norm.bias.copy_(out["norm.bias"])
    seen = {}
    norm.register_forward_hook(lambda m, a, y: seen.setdefault("y", y))
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32) * 5)
    assert (seen["y"][:, dead] == 0).all()
    assert (seen["y"][:, ~dead] != 0).any()


def test_variant_seed_is_the_documented_hash_of_the_variant_name():
    """Pinned: a table row's seed must regenerate its variant in every later version."""
    import hashlib

    digest = hashlib.sha256(b"0/cnn/fc1/gaussian/0.5/3").digest()
    assert operators.variant_seed(0, "cnn", "fc1", "gaussian", 0.5, 3) == \
        int.from_bytes(digest[:8], "little") >> 1


def test_filters_zero_a_one_entry_tensor_and_pass_an_empty_one_on():
    """A lone entry is the tensor's min and max, so every threshold selects it (the pulse's
    band, of width 0, nothing); an empty tensor comes back empty and the tensors after it
    are filtered all the same."""
    one = {"w": torch.tensor([0.3])}
    for name in ("highpass", "lowpass"):
        assert operators.apply(name, one, 0.5, seed=0)["w"].tolist() == [0.0], name
    assert operators.apply("pulse", one, 0.5, seed=0)["w"].tolist() == pytest.approx([0.3])
    out = operators.apply("highpass", {"a": torch.empty(0), "b": torch.tensor([1.0, 2.0, 3.0])}, 0.5,
                        seed=0)
    assert out["a"].shape == (0,) and out["b"].tolist() == [0.0, 0.0, 3.0]  # alpha = 2


def test_the_pulse_band_holds_its_lower_edge_and_not_its_upper():
    """Entries 0..25: width 1, so at level 0.5 the band is [12, 13), edges exact in float."""
    t = {"w": torch.arange(26, dtype=torch.float32)}
    out = operators.apply("pulse", t, 0.5, seed=0)["w"]
    assert torch.nonzero(out == 0).flatten().tolist() == [0, 12]  # 0 was 0 already


def test_an_unknown_option_is_refused_naming_the_operators_own():
    tensors = {"w": torch.ones(3, 3)}
    with pytest.raises(ValueError, match=r"option 'draws' does not apply to bitflip; expected \['bits'\]"):
        operators.apply("bitflip", tensors, 0.1, seed=0, draws=1)


@pytest.mark.parametrize("name", FILTERS)
def test_a_filter_leaves_an_empty_tensor_empty_and_filters_the_tensors_after_it(name):
    """An empty tensor has no min or max: it is copied as it is, and the next tensor (in
    name order) is still filtered; a one-entry tensor is filtered like any other."""
    empty = torch.zeros(0, 3)
    weight = torch.linspace(-1, 1, 101)
    single = torch.tensor([0.5])
    out = operators.apply(name, {"a.empty": empty, "b.weight": weight, "c.single": single}, 0.5, 0)
    assert out["a.empty"].shape == (0, 3)
    assert out["b.weight"] is not weight and torch.count_nonzero(out["b.weight"] == 0) > 1
    # one value: min = max = alpha, which the high- and low-pass remove and the pulse's empty
    # band [alpha, alpha) keeps
    assert out["c.single"].tolist() == ([0.5] if name == "pulse" else [0.0])


def test_the_pulse_band_is_half_open_at_the_tensors_own_width():
    """alpha - w/2 <= entry < alpha + w/2 with w = (max - min) / 25: on the grid 1..101 (w = 4,
    alpha = 51 at level 0.5) 49 is removed and 53 is kept, as the authors' code has it."""
    grid = torch.arange(1, 102, dtype=torch.float64)
    out = operators.apply("pulse", {"w": grid}, 0.5, 0)["w"]
    assert grid[out == 0].tolist() == [49, 50, 51, 52]


def test_an_option_of_another_operator_names_the_operators_own():
    with pytest.raises(ValueError, match=r"option 'eps' does not apply to bitflip; expected \['bits'\]"):
        operators.apply("bitflip", {"w": torch.ones(3)}, 0.1, 0, eps=0.1)
