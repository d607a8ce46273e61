"""Any network's layers and its cut in front of one (lesion.graph), against the whole network.

The reference is the network itself, run whole on the same input in float64
(the cut runs the same operations in the same order, so the outputs are
equal to the bit; float64 keeps the comparison meaningful should an order
ever change). BatchNorm statistics and affine parameters are randomised so
that a norm left out or applied twice shows.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lesion import graph, models, predict


def randomised(model: nn.Module) -> nn.Module:
    """float64, eval, every BatchNorm with statistics, scale and shift far from the identity."""
    model = model.double().eval()
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


class SkipAndBranches(nn.Module):
    """A Linear that runs before any conv but is registered after one; a skip connection
    across conv_a; a BatchNorm registered far from its conv; two branches merged;
    functional ReLUs; in-place writes into values computed before a cut (an `add_`
    after conv_b, an in-place ReLU after `right` when `left` is cut)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 10)  # registered first, runs last
        self.norms = nn.ModuleDict({"after_a": nn.BatchNorm2d(4)})
        self.conv_a = nn.Conv2d(4, 4, 3, padding=1)
        self.embed = nn.Linear(8, 8)  # registered after conv_a, runs first (over rows)
        self.conv_b = nn.Conv2d(4, 4, 1)
        self.left = nn.Conv2d(4, 2, 1)
        self.right = nn.Conv2d(4, 2, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.embed(x)
        y = F.relu(self.norms["after_a"](self.conv_a(x))) + x
        kept = y * 2
        kept.add_(self.conv_b(y))  # writes into a value of the prefix when conv_b is cut
        right = self.right(kept)
        z = torch.cat([self.left(kept), self.act(right)], dim=1)
        return self.head(z.mean((2, 3)).repeat(1, 4))


def whole_and_cuts(model: nn.Module, shape: tuple[int, ...]):
    x = torch.randn(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gm = graph.traced(model, shape)
    with torch.no_grad():
        return x, model(x), {layer.name: graph.cut(gm, layer.name) for layer in graph.layer_table(model)}


LESION_SHAPES = {"cnn": (1, 8, 8), "mlp": (1, 8, 8), "fc10": (1, 8, 8), "fc100_100_10": (1, 8, 8),
                 "fc200_200_10": (1, 8, 8), "fc123_456_10": (1, 8, 8), "ae400_10": (1, 8, 8),
                 "resnet18_cifar": (3, 16, 16),
                 # ImageNet's networks at the smallest size every pooling stage still takes
                 # (a cut does not depend on the image size; float64 at 64 px took seconds)
                 "alexnet": (3, 64, 64)}
IMAGENET_SHAPE = (3, 32, 32)


@pytest.mark.parametrize("name", models.list_models())
def test_every_cut_of_every_catalog_network_equals_the_whole_network(name):
    """Forward order and norms as the catalog's names have them; every cut runs the network."""
    shape = LESION_SHAPES.get(name, IMAGENET_SHAPE)
    torch.manual_seed(0)
    model = randomised(models.build(name, num_classes=10, input_shape=shape))
    x, whole, cuts = whole_and_cuts(model, shape)
    paths = {id(m): p for p, m in model.named_modules()}
    table = graph.layer_table(model)
    assert [layer.name for layer in table] == [paths[id(m)] for m in models.layers(model).values()]
    for short, layer in zip(models.layers(model), table, strict=True):
        norm = models.norm_after(model, short)
        assert layer.norm == (None if norm is None else paths[id(norm)]), short
    with torch.no_grad():
        for path, c in cuts.items():
            assert torch.equal(c(x), whole), path


def test_a_network_of_ones_own_in_forward_order_with_its_norm_from_the_graph():
    model = randomised(SkipAndBranches())
    table = graph.layer_table(model)
    assert [layer.name for layer in table] == ["embed", "conv_a", "conv_b", "right", "left", "head"]
    assert {layer.name: layer.norm for layer in table}["conv_a"] == "norms.after_a"
    assert all(layer.norm is None for layer in table if layer.name != "conv_a")
    row = table[1]
    assert (row.type, row.parameters, row.out_features) == ("Conv2d", 4 * 4 * 9 + 4, 4)
    x, whole, cuts = whole_and_cuts(model, (4, 8, 8))
    with torch.no_grad():
        for path, c in cuts.items():
            assert torch.equal(c(x), whole), path


def test_values_handed_over_once_serve_every_variant():
    """The prefix runs once; the tail runs per variant of the layer on the same values and
    gives each variant's whole network, also where the forward adds in place into a value
    computed before the cut."""
    model = randomised(SkipAndBranches())
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    for path in ("conv_a", "conv_b", "embed", "left"):
        c = graph.cut(model, path, (4, 8, 8))
        with torch.no_grad():
            values = c.prefix(x)
            before = [v.clone() for v in values]
            for scale in (0.0, 2.0, -1.0):
                variant = copy.deepcopy(model)
                variant.get_submodule(path).weight.mul_(scale)
                got = c.tail(variant.get_submodule(path)(values[0]), *values)
                assert torch.equal(got, variant(x)), (path, scale)
            assert all(torch.equal(a, b) for a, b in zip(values, before, strict=True)), path


def test_a_vision_transformer_cuts_at_every_layer():
    """torchvision's VisionTransformer: the class token and position embedding are read with
    get_attr and the batch size from the input, so the tail recomputes them."""
    import torchvision

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                               hidden_dim=16, mlp_dim=32, num_classes=10)
    model = randomised(vit)
    x, whole, cuts = whole_and_cuts(model, (3, 32, 32))
    assert list(cuts)[0] == "conv_proj" and list(cuts)[-1] == "heads.head" and len(cuts) == 6
    with torch.no_grad():
        for path, c in cuts.items():
            assert torch.equal(c(x), whole), path


@pytest.mark.parametrize("name", ["convnext_atto", "vit_tiny_patch16_224", "resnet10t"])
def test_timm_networks_cut_at_every_layer(name):
    timm = pytest.importorskip("timm", reason="timm is an optional extra (pip install -e '.[timm]')")
    torch.manual_seed(0)
    kwargs = {"img_size": 32} if name.startswith("vit") else {}
    model = randomised(timm.create_model(name, pretrained=False, num_classes=10, **kwargs))
    x, whole, cuts = whole_and_cuts(model, (3, 32, 32))
    assert len(cuts) > 10
    with torch.no_grad():
        for path, c in cuts.items():
            assert torch.equal(c(x), whole), path


class Branching(nn.Module):
    """Data-dependent control flow: fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.second = nn.Linear(4, 2)  # registered first, runs second
        self.first = nn.Linear(3, 4)

    def forward(self, x):
        h = self.first(x)
        if h.sum() > 0:
            h = -h
        return self.second(h)


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.twice = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.twice(self.twice(x)))


def test_an_untraceable_network_is_listed_by_a_forward_pass_and_refuses_a_cut(caplog):
    model = Branching()
    with caplog.at_level(logging.WARNING, logger="lesion.graph"):
        table = graph.layer_table(model, example=torch.zeros(1, 3))
    assert [layer.name for layer in table] == ["first", "second"]
    assert "cannot trace Branching" in caplog.text and "runs whole per variant" in caplog.text
    with pytest.raises(ValueError, match="cannot be traced by torch.fx"):
        graph.cut(model, "first", (3,))


def test_a_shared_layer_and_an_unknown_name_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"'twice' is called 2 times .*shared weights"):
        graph.cut(Shared(), "twice", (4,))
    with pytest.raises(ValueError, match=r"'conv_aa' is not a weight layer .*did you mean \['conv_a'"):
        graph.cut(SkipAndBranches(), "conv_aa", (4, 8, 8))


@pytest.mark.parametrize(("make", "shape", "packed"), [
    (lambda: models.build("cnn", num_classes=10, input_shape=(1, 8, 8)), (1, 8, 8), []),
    (lambda: SkipAndBranches(), (4, 8, 8), ["conv_a", "conv_b", "right", "left"]),
])
def test_split_is_a_prefix_and_a_sequential_suffix_as_the_engine_runs_them(make, shape, packed):
    """Sequential networks hand over the layer's input alone (the suffix starts with the layer
    itself); others pack their values per image into one row."""
    torch.manual_seed(0)
    model = randomised(make())
    x = torch.randn(5, *shape, dtype=torch.float64)
    gm = graph.traced(model, shape)
    with torch.no_grad():
        whole = model(x)
        for layer in graph.layer_table(model):
            prefix, suffix, path = graph.split(gm, layer.name)
            assert isinstance(suffix, nn.Sequential)
            assert suffix.get_submodule(path) is model.get_submodule(layer.name)
            assert (path != "0") == (layer.name in packed), layer.name
            cached = prefix(x)
            assert cached.shape[0] == 5
            assert torch.equal(suffix(cached), whole), layer.name


def test_a_timm_vision_transformer_splits_for_the_engine():
    """timm's blocks take an optional `attn_mask=None`: an input the graph binds to its default."""
    timm = pytest.importorskip("timm", reason="timm is an optional extra (pip install -e '.[timm]')")
    torch.manual_seed(0)
    model = randomised(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10,
                                         img_size=32))
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    gm = graph.traced(model, (3, 32, 32))
    with torch.no_grad():
        whole = model(x)
        for layer in ("patch_embed.proj", "blocks.0.attn.qkv", "blocks.11.mlp.fc2", "head"):
            prefix, suffix, _ = graph.split(gm, layer)
            assert torch.equal(suffix(prefix(x)), whole), layer


def test_how_a_network_was_cut_is_recorded_for_the_tables(caplog):
    """predict writes models.cut_of of each swept layer into the variants and predictions
    tables' metadata: key "cuts", a JSON object layer -> cut, in forward order."""
    untraceable = models.adopt(Branching(), input_shape=(3,), name="branching")
    with caplog.at_level(logging.WARNING):
        prefix, suffix, _ = models.split(untraceable, "first")
    assert len(prefix) == 0 and suffix[0] is untraceable
    assert models.cut_of(untraceable, "first").startswith("whole network per variant (Branching")
    assert "whole network runs once per variant" in caplog.text
    cnn = models.build("cnn", num_classes=10, input_shape=(1, 8, 8))
    for layer in ("conv1", "fc2"):
        models.split(cnn, layer)
    assert models.cut_of(cnn, "fc2") == "prefix cached (torch.fx graph)"
    assert json.loads(predict._cuts(cnn, ["conv1", "fc2"])["cuts"]) == {
        "conv1": "prefix cached (torch.fx graph)", "fc2": "prefix cached (torch.fx graph)"}
    assert json.loads(predict._cuts(untraceable, ["first"])["cuts"]) == {
        "first": models.cut_of(untraceable, "first")}
