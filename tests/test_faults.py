"""Crash faults (El-Mhamdi et al.): masks, the cut after a layer's neurons, bounds b1-b4
against Monte Carlo on a trained digits mlp, and the faults part of the workflow."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import tolerance
from lesion import activations, data, models, operators, tensorfiles, train
from lesion.studies.faults import bounds as faults
from lesion.tools import bench

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The digits mlp trained by the study's own code, seeded (about 2 s), and its test split."""
    root = tmp_path_factory.mktemp("trained")
    data.export("digits", root / "raw.safetensors")
    data.make_tensors("digits", root / "raw.safetensors", root / "train.safetensors",
                      root / "test.safetensors", test_fraction=0.25, seed=0)
    train.train(train.Network("mlp"), "digits", root / "train.safetensors",
                root / "test.safetensors", root / "w.safetensors", root / "curve.parquet",
                train.Settings(epochs=20, batch_size=64, learning_rate=1e-3, weight_decay=0.0,
                               seed=0))
    model = models.load_weights(root / "w.safetensors", num_classes=10, input_shape=(1, 8, 8))
    images, labels = data.load_split(root / "test.safetensors")
    return model, images, labels


def masks(p: float, seeds: list[int], shape=(300, 50), batch_size=64, per_pass=4) -> torch.Tensor:
    """The keep-masks [reps, inputs, neurons] the sweep draws: crash an identity suffix of ones."""
    reps = [(p, s) for s in seeds]
    return torch.stack(list(activations.crashed_logits(nn.Sequential(), torch.ones(shape), reps,
                                                  batch_size=batch_size, reps_per_pass=per_pass)))


def test_crash_masks_have_the_requested_rate_and_differ_across_inputs_and_repetitions():
    for p in (0.05, 0.3, 0.8):
        keep = masks(p, list(range(6)))
        assert set(keep.unique().tolist()) <= {0.0, 1.0}
        rate = 1 - float(keep.mean())
        assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / keep.numel())
        # independent inputs: neighbours share a mask with probability (p^2 + (1-p)^2)^n
        same = (keep[:, 1:] == keep[:, :-1]).all(-1).float().mean()
        assert float(same) <= (p**2 + (1 - p) ** 2) ** keep.shape[-1] + 0.03
        assert all(not torch.equal(keep[0], keep[r]) for r in range(1, 6))
    assert float(masks(0.0, [1]).mean()) == 1.0 and float(masks(1.0, [1]).mean()) == 0.0


def test_crash_masks_depend_on_the_seed_only_not_on_how_repetitions_are_batched():
    seeds = [operators.variant_seed(0, "mlp", "fc1", "crash", 0.2, r) for r in range(5)]
    assert torch.equal(masks(0.2, seeds, per_pass=1), masks(0.2, seeds, per_pass=5))
    assert torch.equal(masks(0.2, seeds[2:3]), masks(0.2, seeds)[2:3])


def test_crashed_neurons_are_the_activated_outputs_of_the_layer(mlp, cnn, digits):
    x, _ = digits
    seen = {}
    def keep(module, inputs, output):
        seen["relu1"] = output  # returns None: the output is left alone

    handle = mlp[2].register_forward_hook(keep)  # the ReLU after fc1
    with torch.no_grad():
        mlp(x)
    handle.remove()  # the fixture is shared
    prefix, _ = activations.crash_split(mlp, "fc1")
    assert torch.equal(prefix(x), seen["relu1"]) and not prefix.packed
    with torch.no_grad():
        for model, layer in ((mlp, "fc3"), (cnn, "fc2")):  # the last layer's neurons are the logits
            prefix, suffix = activations.crash_split(model, layer)
            assert torch.equal(prefix(x), model(x)) and torch.equal(suffix(prefix(x)), model(x))
        prefix, suffix = activations.crash_split(cnn, "conv1")
        assert torch.equal(prefix(x), torch.relu(cnn[0](x)))  # conv1, then its ReLU
        assert torch.equal(suffix(prefix(x)), cnn(x))


def test_a_layer_inside_a_residual_block_crashes_at_its_neurons_the_skip_unharmed(resnet18_bn):
    """resnet18's layer1.0.conv2 (conv3): its neurons are bn2's output, before the skip
    connection's add; the reference crashes them with a forward hook on bn2 in the whole
    network (no graph), with the masks the seeds draw."""
    resnet = resnet18_bn
    x = torch.randn(5, 3, 16, 16, dtype=torch.float64)
    prefix, suffix = activations.crash_split(resnet, "conv3")
    assert prefix.packed and prefix.neurons == (64, 4, 4)  # after the stride-2 stem and max-pool
    reps = [(0.3, 11), (0.6, 12)]
    with torch.no_grad():
        cache = prefix(x)
        got = list(activations.crashed_logits(suffix, cache, reps, batch_size=5, reps_per_pass=2,
                                              neurons=prefix.neurons))
        for (p, seed), logits in zip(reps, got, strict=True):
            mask = activations.keep_mask((5, 64, 4, 4), p, torch.Generator().manual_seed(seed))
            handle = resnet.layer1[0].bn2.register_forward_hook(lambda m, i, o, k=mask: o * k)
            expected = resnet(x)
            handle.remove()
            assert torch.equal(logits, expected), p
        seen = {}
        hook = lambda m, i, o: seen.update(bn2=o.clone())  # noqa: E731 (the block adds in place)
        handle = resnet.layer1[0].bn2.register_forward_hook(hook)
        resnet(x)
        handle.remove()
        assert torch.equal(activations.neurons_of(prefix, cache), seen["bn2"])


def test_batched_repetitions_equal_a_whole_network_loop(trained):
    """Compared in float64 (issue 21): the loop and the batched repetitions multiply in
    another order; float64 rounding of these logits (|z| < 1e2, fan-in <= 100, three
    layers) is below 3 * 100 * 1.1e-16 * 1e2 ~ 1e-11 (tests/tolerance.py), 1e-9 far
    below float32's."""
    model, images, _ = trained
    model, x = copy.deepcopy(model).double(), images[:100].double()
    for layer in ("fc1", "fc2"):
        reps = [(p, operators.variant_seed(0, "mlp", layer, "crash", p, r)) for p in (0.1, 0.5)
                for r in range(3)]
        loop = bench._crash_loop(model, layer, reps, x, 512, CPU)
        batched = bench._crash_prefix(model, layer, reps, x, 512, CPU, 6)
        assert torch.allclose(loop, batched, rtol=1e-12, atol=1e-9)


def monte_carlo(model, layer, images, p, repetitions, seed=0):
    """Per-input errors Delta [R, N, K] and the clean neurons / suffix of a layer."""
    prefix, suffix = activations.crash_split(model, layer)
    with torch.no_grad():
        x = prefix(images)
        y = suffix(x)
    reps = [(p, operators.variant_seed(seed, "mlp", layer, "crash", p, r)) for r in range(repetitions)]
    crashed = torch.stack(list(activations.crashed_logits(suffix, x, reps, batch_size=512,
                                                     reps_per_pass=250)))
    return crashed - y, x, y, suffix


def bootstrap_se(deltas: torch.Tensor, resamples: int = 30) -> dict[str, float]:
    """Standard error of the aggregated Monte Carlo mean and std, resampling repetitions."""
    g = torch.Generator().manual_seed(0)
    r = len(deltas)
    draws = []
    for _ in range(resamples):
        d = deltas[torch.randint(r, (r,), generator=g)]
        draws.append(faults.aggregate({"mean": d.mean(0), "std": d.std(0)}, r))
    return {k: float(np.std([d[k] for d in draws], ddof=1)) for k in draws[0]}


@pytest.mark.parametrize("layer", ["fc1", "fc2", "fc3"])
def test_b3_and_b4_agree_with_monte_carlo_at_small_p(trained, layer):
    # At p = 0.01 what b4 neglects is O(p) relative (Var = p(1 - p) sum_i ...,
    # pairs of crashes), so it must sit within three standard errors of the
    # Monte Carlo estimate plus p of its own value. b3 also carries its Taylor
    # remainder where a ReLU follows the layer (fc1: one crash can switch a
    # downstream unit), which is exactly its distance to b4: it must be small,
    # and zero where the rest of the network is linear (fc2, fc3).
    model, images, _ = trained
    p, repetitions = 0.01, 1000
    deltas, x, y, suffix = monte_carlo(model, layer, images[:100], p, repetitions)
    mc = faults.aggregate(faults.monte_carlo(deltas), repetitions)
    se = bootstrap_se(deltas)
    terms = faults._per_input_terms(suffix, x, y, rows_per_pass=4096)
    predicted = faults.bounds_per_input(suffix, x, p, terms)
    b3, b4 = faults.aggregate(predicted["b3"]), faults.aggregate(predicted["b4"])
    for stat in ("mean", "std"):
        allowed = 3 * se[stat] + p * b4[stat]
        assert abs(b4[stat] - mc[stat]) <= allowed, (stat, b4[stat], mc[stat], se[stat])
        taylor = abs(b3[stat] - b4[stat])
        # where the rest of the network is linear, b3 = b4 exactly: float32 sums of 100
        # neurons' terms in two orders (2 gamma_100, tests/tolerance.py)
        exact = 2 * tolerance.gamma(100)
        assert taylor <= (0.05 if layer == "fc1" else exact) * b4[stat], (stat, b3[stat], b4[stat])
        assert abs(b3[stat] - mc[stat]) <= allowed + taylor, (stat, b3[stat], mc[stat], se[stat])


def test_b4_std_is_the_bernoulli_variance_at_large_p(trained):
    """At fc2 the rest of the mlp is linear, so b4's std with p(1 - p) is exact;
    the paper's small-p form p would put it sqrt(1 / 0.7) = 1.195x too high."""
    model, images, _ = trained
    p, repetitions = 0.3, 400
    deltas, x, y, suffix = monte_carlo(model, "fc2", images[:100], p, repetitions)
    mc = faults.aggregate(faults.monte_carlo(deltas), repetitions)["std"]
    terms = faults._per_input_terms(suffix, x, y, rows_per_pass=4096)
    b4 = faults.aggregate(faults.bounds_per_input(suffix, x, p, terms)["b4"])["std"]
    assert b4 == pytest.approx(mc, rel=0.03)
    small_p = float((p * terms["d_sq"]).sqrt().square().mean().sqrt())
    assert abs(small_p / mc - 1) > 0.15


def test_b1_and_b2_are_never_below_the_monte_carlo_error(trained):
    model, images, labels = trained
    errors, bounds = faults.layer_study(model, "fc1", images[:150], labels[:150],
                                        levels=[0.01, 0.1, 0.5], repetitions=50, study_seed=0,
                                        batch_size=512, reps_per_pass=50, device=CPU)
    table = pd.DataFrame(bounds)
    assert set(table["bound"]) == {"b1", "b1_jensen", "b2", "b3", "b4"}
    assert set(table.loc[table["bound"] == "b1", "statistic"]) == {"norm_l1", "norm_l2", "norm_linf"}
    assert set(pd.DataFrame(errors)["statistic"]) >= {"mean", "std", "top1", "top1_drop"}
    for layer in ("fc1", "fc2", "fc3"):
        for p in (0.01, 0.1, 0.5):
            deltas, x, y, suffix = monte_carlo(model, layer, images[:150], p, 200)
            mc = faults.aggregate(faults.monte_carlo(deltas), 200)
            predicted = faults.bounds_per_input(suffix, x, p,
                                                faults._per_input_terms(suffix, x, y,
                                                                        rows_per_pass=4096))
            b1 = faults.aggregate(predicted["b1"])
            for stat, q in faults.NORMS.items():
                norms = torch.linalg.vector_norm(deltas, ord=q, dim=-1)
                se = float(norms.std()) / np.sqrt(norms.numel())
                # at the output layer b1's l1 form is exact, so only noise can cross it
                assert b1[stat] >= mc[stat] - 3 * se, (layer, p, stat, b1[stat], mc[stat])
            # the Jensen form: a bound too, and never above b1 (the min of two bounds)
            jensen = faults.aggregate(predicted["b1_jensen"])["norm_l2"]
            l2 = torch.linalg.vector_norm(deltas, ord=2, dim=-1)
            se = float(l2.std()) / np.sqrt(l2.numel())
            assert mc["norm_l2"] - 3 * se <= jensen <= b1["norm_l2"] * (1 + 1e-6), (layer, p)
            if p >= 0.1 and layer != "fc3":  # many neurons, p > 1/n: strictly tighter
                assert jensen < 0.8 * b1["norm_l2"], (layer, p, jensen, b1["norm_l2"])
            assert faults.aggregate(predicted["b2"])["mean"] >= mc["mean"] * 0.97, (layer, p)


def test_the_monte_carlo_interval_explains_a_bound_a_little_under_its_estimate(trained):
    from scipy import stats

    model, images, labels = trained
    _, rows = faults.layer_study(model, "fc3", images[:150], labels[:150], levels=[0.1],
                                 repetitions=40, study_seed=0, batch_size=512, reps_per_pass=40,
                                 device=CPU)
    table = pd.DataFrame(rows).set_index(["bound", "statistic"])
    deltas, *_ = monte_carlo(model, "fc3", images[:150], 0.1, 40)  # the same seeds
    per_repetition = np.abs(deltas.numpy()).sum(-1).mean(1)  # mean_x ||Delta||_1, one per draw
    half = stats.t.ppf(0.975, 39) * per_repetition.std(ddof=1) / np.sqrt(40)
    row = table.loc[("b1", "norm_l1")]
    assert row["mc_ci95"] == pytest.approx(half, rel=1e-4)
    # at the output layer b1's l1 form is exact (p ||y||_1): its estimate differs by noise only
    assert abs(row["value"] - row["mc"]) <= row["mc_ci95"], (row["value"], row["mc"])
    assert np.isnan(table.loc[("b2", "mean"), "mc_ci95"])


def test_b1_and_b2_are_left_out_where_the_rest_of_the_network_is_not_dense(cnn, digits):
    x, _ = digits
    prefix, suffix = activations.crash_split(cnn, "conv2")  # max-pooling follows
    with torch.no_grad():
        a = prefix(x[:8])
        terms = faults._per_input_terms(suffix, a, suffix(a), rows_per_pass=4096)
    assert set(faults.bounds_per_input(suffix, a, 0.1, terms)) == {"b3", "b4"}


def test_b3_variance_regulariser_is_b3s_variance_at_p_one(trained):
    """In float64 (issue 21): the regulariser and the per-input Jacobians sum ~3e4 float32
    terms in another order, whose worst case (gamma_n, tests/tolerance.py) is 2e-3; float64's
    is 4e-12, so rel=1e-9 fails any float32 step."""
    model, images, _ = trained
    model = copy.deepcopy(model).double()
    x = images[:32].double()
    # as training calls it (training=True), without dropout: the default rate is none
    logits, acts = activations.forward_with_sites(model, x, training=True)
    penalty = float(faults.b3_variance(logits, acts).detach())
    expected = 0.0
    for layer in ("fc1", "fc2"):
        prefix, suffix = activations.crash_split(model, layer)
        a = prefix(x).detach()
        terms = faults._per_input_terms(suffix, a, suffix(a).detach(), rows_per_pass=4096)
        expected += float(terms["g_sq"].sum(-1).mean())  # sum over outputs, mean over inputs
    assert penalty == pytest.approx(expected, rel=1e-9)


def test_fault_study_refuses_one_repetition(trained):
    model, images, labels = trained
    with pytest.raises(ValueError, match="repetitions = 1: expected at least 2"):
        faults.layer_study(model, "fc1", images, labels, levels=[0.1], repetitions=1,
                           study_seed=0, batch_size=64, reps_per_pass=1, device=CPU)


# The faults part of the workflow, end to end, in the tiny study .test/faults.yaml (built
# once for this file and tests/test_report.py): crash and bit-flip sweeps in the metrics
# table, bounds, a regime trained with dropout and the regulariser and a plain one (the
# study's own network), both figures.


@pytest.mark.workflow
def test_the_faults_part_of_the_workflow_builds_end_to_end(built_study):
    out = built_study("faults") / "results" / "digits" / "mlp"

    for name in ("bounds", "tolerance"):
        assert (out / "faults" / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / "faults" / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    bounds = pd.read_parquet(out / "faults" / "bounds.parquet")
    assert list(bounds.columns) == ["dataset", "model", "layer", "p", "bound", "statistic",
                                    "value", "mc", "mc_ci95"]
    assert set(bounds["layer"]) == {"fc2"} and sorted(set(bounds["p"])) == [0.05, 0.2]
    assert set(bounds["bound"]) == {"b1", "b1_jensen", "b2", "b3", "b4"}
    assert bounds[["value", "mc"]].notna().all().all()
    errors = pd.read_parquet(out / "faults" / "errors.parquet")
    assert {"mean", "std", "top1", "top1_drop"} <= set(errors["statistic"])
    # the plain regime is the study's network; the others are trained apart
    assert not (out / "faults" / "regimes" / "plain").exists()
    assert (out / "faults" / "regimes" / "tolerant" / "bounds.parquet").is_file()
    meta = tensorfiles.load_metadata(out / "faults" / "regimes" / "tolerant" / "weights.safetensors")
    assert (meta["dropout"], meta["b3_variance"]) == (0.5, 0.01)
    # ... and its effect: trained with dropout and the b3 regulariser from the same
    # seed, its crash errors are well below the plain network's (measured: 0.18 vs
    # 0.40 in norm_l2 at p = 0.05); a regime that ignored both would equal plain
    tolerant = pd.read_parquet(out / "faults" / "regimes" / "tolerant" / "errors.parquet")
    for statistic in ("norm_l2", "std"):
        plain_value, tolerant_value = (
            frame[frame["statistic"] == statistic].set_index("p")["value"]
            for frame in (errors, tolerant))
        assert (tolerant_value < 0.7 * plain_value).all(), statistic

    metrics = pd.read_parquet(out / "metrics.parquet")
    assert "nonfinite" in set(metrics["metric"])
    crash = metrics[metrics["perturbation"] == "crash"]
    assert sorted(set(crash["level"])) == [0.1, 0.5] and set(crash["draw"]) == {0, 1}
    flips = pd.read_parquet(out / "variants" / "bitflip.parquet")
    assert {json.loads(o)["bits"] == ["exponent"] for o in flips["options"]} == {True}
    assert set(metrics.loc[metrics["perturbation"] == "bitflip", "variant"]) >= {
        "mlp-fc2-bitflip0.001-num0", "mlp-fc2-bitflip0.01-num0"}


class _PackedSuffix(nn.Module):
    """A suffix that reads a layer's neurons [N, 2, 3] flattened, then 2 other values per input
    (`rest`, what a packed crash prefix passes beside the neurons), through a nonlinearity."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(6 + 2, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, packed):
        return self.out(torch.tanh(self.mix(packed)))


@pytest.mark.parametrize("rows_per_pass", [4096, 4])  # all at once; 1 input and 4 neurons per pass
def test_per_input_terms_of_a_suffix_that_reads_other_values_beside_the_neurons(rows_per_pass):
    """b3's and b4's sums against a loop over inputs and neurons: autograd's Jacobian of one
    input at a time, and each neuron set to 0 alone in a copy of the packed row."""
    torch.manual_seed(0)
    suffix = _PackedSuffix().double()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    rest = torch.randn(4, 2, dtype=torch.float64)

    def run(neurons, other):
        return suffix(torch.cat([neurons.reshape(1, -1), other.reshape(1, -1)], dim=1))[0]

    y = torch.stack([run(x[i], rest[i]) for i in range(4)]).detach()
    g_sum, g_sq, d_sum, d_sq = (torch.zeros(4, 3, dtype=torch.float64) for _ in range(4))
    for i in range(4):
        jac = torch.autograd.functional.jacobian(lambda a, r=rest[i]: run(a, r), x[i]).reshape(3, 6)
        g = jac * x[i].reshape(1, 6)
        g_sum[i], g_sq[i] = g.sum(1), g.square().sum(1)
        for neuron in range(6):
            crashed = x[i].reshape(6).clone()
            crashed[neuron] = 0
            d = run(crashed, rest[i]) - y[i]
            d_sum[i] += d.detach()
            d_sq[i] += d.detach().square()
    terms = faults._per_input_terms(suffix, x, y, rows_per_pass=rows_per_pass, rest=rest)
    for name, expected in {"g_sum": g_sum, "g_sq": g_sq, "d_sum": d_sum, "d_sq": d_sq}.items():
        torch.testing.assert_close(terms[name], expected, rtol=1e-12, atol=1e-12, msg=name)
