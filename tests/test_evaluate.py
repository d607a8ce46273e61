"""Prefix caching and variant batching give the same answers as the naive way."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lesion import evaluate, models, operators, sweeps
from lesion.catalog import ACTIVATION_OPERATORS

CPU = torch.device("cpu")
# The schemes and the whole network run the same layers in another order (stacked,
# folded, one product per variant), so they are compared in float64 (issue 21): a loss
# of magnitude <= 1e2 through <= 20 layers of fan-in <= 600 is within
# 20 * 600 * 1.1e-16 * 1e2 ~ 1e-10 of the exact value on either side (Higham's gamma_n,
# tests/tolerance.py); 1e-9 is 10^3 below float32 rounding, so a float32 step in any
# scheme fails. Losses of bit faults reach 1e300 in float64: rtol covers them.
F64 = {"rtol": 1e-12, "atol": 1e-9}


def naive(model, layer, tensors, x, y):
    """Deep-copy, write the variant in, run the whole network."""
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in tensors.items():  # "norm.weight" is the layer's BatchNorm's
            owner = models.norm_after(clone, layer) if name.startswith("norm.") else \
                models.layer(clone, layer)
            getattr(owner, name.removeprefix("norm.")).copy_(t)
        return evaluate.summarise(clone(x), y)


@pytest.mark.parametrize("scheme", evaluate.SCHEMES)
@pytest.mark.parametrize("model_fixture", ["cnn", "mlp"])
@pytest.mark.parametrize("per_pass", [1, 3])
def test_prefix_cached_sweep_equals_full_network(request, digits, model_fixture, per_pass,
                                                 scheme):
    model = copy.deepcopy(request.getfixturevalue(model_fixture)).double()
    x, y = digits[0].double(), digits[1]
    for layer in models.layers(model):
        base = models.layer_tensors(model, layer)
        variants = [operators.apply(op, base, 0.5, seed) for seed, op in
                    enumerate(sorted(operators.OPERATORS))]
        prefix, suffix, _ = models.split(model, layer)
        activations = evaluate.run_batched(prefix, x, 64, CPU)
        names = models.parameter_names(suffix, model, layer, list(base))
        got = list(evaluate.sweep_suffix(suffix, names, variants, activations, y,
                                         batch_size=70, variants_per_pass=per_pass,
                                         scheme=scheme))
        assert len(got) == len(variants)
        for tensors, (top, loss) in zip(variants, got, strict=True):
            ref_top, ref_loss = naive(model, layer, tensors, x, y)
            assert torch.equal(top, ref_top)
            # bit faults can make outputs non-finite: a NaN loss on both sides
            assert torch.allclose(loss, ref_loss, **F64, equal_nan=True)


@pytest.mark.parametrize("scheme", evaluate.SCHEMES)
def test_prefix_excludes_the_perturbed_layer_in_a_residual_network(scheme):
    """BatchNorm after every conv; heads of one conv (the stem), a residual block's first
    and second conv with and without a downsample branch and its downsample conv (stacked:
    `_stacked_packed`; loop: one call per variant), a conv and its BatchNorm (node
    knockout), the classifier."""
    torch.manual_seed(0)
    model = models.build("resnet18", num_classes=10, input_shape=(3, 32, 32)).eval().double()
    for m in model.modules():  # running statistics, scales and shifts not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    x, y = torch.randn(6, 3, 32, 32, dtype=torch.float64), torch.arange(6)
    # the stem, a block's conv1 and conv2 (without, then with a downsample branch), the
    # downsample conv, the head
    for layer in ("conv1", "conv4", "conv5", "conv6", "conv7", "conv8", "fc1"):
        prefix, suffix, _ = models.split(model, layer)
        target = models.layer(model, layer)
        assert not any(m is target for m in prefix.modules())
        for operator in ("gaussian", "node_knockout"):  # node knockout: with the BatchNorm
            base = sweeps.base_tensors(model, layer, operator)
            variants = [operators.apply(operator, base, 0.8, seed) for seed in range(3)]
            activations = evaluate.run_batched(prefix, x, 4, CPU)
            names = models.parameter_names(suffix, model, layer, list(base))
            got = list(evaluate.sweep_suffix(suffix, names, variants, activations, y,
                                             batch_size=4, variants_per_pass=3, scheme=scheme))
            assert len(got) == len(variants)
            for tensors, (top, loss) in zip(variants, got, strict=True):
                ref_top, ref_loss = naive(model, layer, tensors, x, y)
                assert torch.equal(top, ref_top), (layer, operator)
                assert torch.allclose(loss, ref_loss, **F64), (layer, operator)


def test_clean_prefix_is_what_the_layer_receives(cnn, digits):
    cnn, x = copy.deepcopy(cnn).double(), digits[0].double()  # batches of 64 against 200: F64
    seen = {}
    layer = models.layer(cnn, "fc1")
    handle = layer.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        cnn(x)
    handle.remove()
    prefix, _, _ = models.split(cnn, "fc1")
    assert torch.allclose(evaluate.run_batched(prefix, x, 64, CPU), seen["x"], **F64)


def test_cuda_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        evaluate.pick_device("cuda", "ieee")
    assert evaluate.pick_device("auto", "ieee") == CPU


@pytest.fixture
def restore_precision():
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)
    saved = [b.fp32_precision for b in backends]
    yield
    for backend, value in zip(backends, saved, strict=True):
        backend.fp32_precision = value


def test_precision_sets_cuda_matmuls_and_cudnn_convolutions(restore_precision):
    # PyTorch's own default lets cuDNN convolutions use TF32 (10 mantissa bits)
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    evaluate.set_precision("ieee")
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    evaluate.set_precision("tf32")
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    with pytest.raises(ValueError, match=r"precision = 'fp16' is unknown; expected one of"):
        evaluate.set_precision("fp16")


def test_the_predict_step_applies_the_precision_and_records_it(restore_precision, tmp_path, cnn):
    import pyarrow.parquet as pq

    from lesion import data, predict

    data.export("digits", tmp_path / "raw.safetensors")
    data.make_tensors("digits", tmp_path / "raw.safetensors", tmp_path / "train.safetensors",
                      tmp_path / "test.safetensors", test_fraction=0.1, seed=0)
    models.save_weights(cnn, tmp_path / "w.safetensors")
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    predict.predict_clean("digits", tmp_path / "w.safetensors", tmp_path / "test.safetensors",
                          tmp_path / "none.parquet", device="cpu", batch_size=64, precision="ieee")
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    metadata = pq.read_schema(tmp_path / "none.parquet").metadata
    assert metadata[b"precision"] == b"ieee" and metadata[b"device"] == b"cpu"


@pytest.mark.parametrize("operator", ["gaussian", "node_knockout"])
def test_a_residual_blocks_conv_runs_as_a_wide_conv_not_vmap(operator):
    """The stacked scheme's choice is structural: a lone conv or linear layer runs as one
    wide conv or one product per variant, also inside a residual block where the cut packs
    the skip connection beside it (`_stacked_packed`); a conv with its BatchNorm (node
    knockout) is vmap-ed."""
    model = models.build("resnet18", num_classes=10, input_shape=(3, 32, 32))
    for layer, expected in (("conv1", evaluate._stacked_conv), ("conv4", evaluate._stacked_packed),
                            ("conv7", evaluate._stacked_packed), ("conv8", evaluate._stacked_packed),
                            ("fc1", evaluate._stacked_linear)):
        _, suffix, _ = models.split(model, layer)
        base = sweeps.base_tensors(model, layer, operator)
        names = models.parameter_names(suffix, model, layer, list(base))
        head = suffix[:evaluate._head_length(names)]
        runner = evaluate._head_runner(head, "stacked", set(names.values()))
        with_norm = operator == "node_knockout" and layer != "fc1"
        assert getattr(runner, "func", None) is (None if with_norm else expected), layer


def _brought_networks():
    """Networks lesion does not describe: one of one's own (skip connection across the
    layer, two branches merged, a BatchNorm registered elsewhere, in-place writes) and a
    tiny vision transformer (class token, attention, LayerNorm)."""
    import torchvision

    from test_graph import SkipAndBranches, randomised

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2,
                                               hidden_dim=8, mlp_dim=16, num_classes=10)
    from test_graph import Branching, Shared

    return {"own": (randomised(SkipAndBranches()), (4, 8, 8)), "vit": (randomised(vit), (3, 16, 16)),
            "untraceable": (randomised(Branching()), (3,)), "shared": (randomised(Shared()), (4,))}


@pytest.mark.parametrize("scheme", evaluate.SCHEMES)
@pytest.mark.parametrize("which", ["own", "vit", "untraceable", "shared"])
def test_a_brought_network_sweeps_like_the_whole_network(which, scheme):
    """The graph's cut (lesion.graph.split) through the engine: every operator on every
    layer, three variants per pass, equals each variant run through the whole network;
    a network that cannot be cut (untraceable, a layer called twice) runs whole per
    variant and gives the same."""
    model, shape = _brought_networks()[which]
    models.adopt(model, input_shape=shape, name=which)
    x = torch.rand(7, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = torch.arange(7) % model(x[:1]).shape[1]
    for layer in models.layers(model):
        for operator in sorted(operators.OPERATORS):
            if operator in ACTIVATION_OPERATORS:
                continue
            base = sweeps.base_tensors(model, layer, operator)
            variants = [operators.apply(operator, base, 0.5, seed) for seed in range(3)]
            prefix, suffix, _ = models.split(model, layer)
            activations = evaluate.run_batched(prefix, x, 4, CPU)
            names = models.parameter_names(suffix, model, layer, list(base))
            got = list(evaluate.sweep_suffix(suffix, names, variants, activations, y, batch_size=4,
                                             variants_per_pass=3, scheme=scheme))
            for tensors, (top, loss) in zip(variants, got, strict=True):
                ref_top, ref_loss = naive(model, layer, tensors, x, y)
                assert torch.equal(top, ref_top), (layer, operator)
                assert torch.allclose(loss, ref_loss, **F64, equal_nan=True), (layer, operator)


def test_node_knockout_silences_a_unit_after_its_norm_found_in_the_graph():
    """conv_a's BatchNorm is registered in a ModuleDict far from it; the graph finds it, so
    knocked-out units are exactly 0 after the norm (not beta - gamma * mean / sigma)."""
    from test_graph import SkipAndBranches, randomised

    model = models.adopt(randomised(SkipAndBranches()), input_shape=(4, 8, 8))
    base = sweeps.base_tensors(model, "conv_a", "node_knockout")
    assert set(base) == {"weight", "bias", "norm.weight", "norm.bias"}
    variant = operators.apply("node_knockout", base, 0.5, seed=1)
    knocked = (variant["weight"].flatten(1) == 0).all(1)
    assert knocked.sum() == 2
    clone = copy.deepcopy(model)
    seen = {}
    clone.norms["after_a"].register_forward_hook(lambda m, a, out: seen.setdefault("y", out))
    with torch.no_grad():
        clone.conv_a.weight.copy_(variant["weight"])
        clone.conv_a.bias.copy_(variant["bias"])
        clone.norms["after_a"].weight.copy_(variant["norm.weight"])
        clone.norms["after_a"].bias.copy_(variant["norm.bias"])
        clone(torch.rand(3, 4, 8, 8, dtype=torch.float64))
    assert (seen["y"][:, knocked] == 0).all() and (seen["y"][:, ~knocked] != 0).any()
