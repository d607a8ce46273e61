"""The registry: named layers in forward order, stages that compose, weights I/O."""

from __future__ import annotations

import pytest
import torch

from lesion import catalog, files, models
from test_graph import IMAGENET_SHAPE, LESION_SHAPES


@pytest.mark.parametrize("name", models.list_models())
def test_every_registry_model_names_its_layers_as_the_catalog_says(name):
    small = name in ("cnn", "mlp")
    torch.manual_seed(0)
    model = models.build(name, num_classes=10 if small else 1000,
                         input_shape=(1, 8, 8) if small else (3, 224, 224))
    assert list(models.layers(model)) == catalog.layer_names(name)


@pytest.mark.parametrize("name", models.list_models())
def test_every_split_of_every_catalog_network_runs_the_whole_network(name):
    """The engine's (prefix, suffix) cut from the graph, at every layer and for "all"; in
    float64, where the same operations in the same order are equal to the bit."""
    shape = LESION_SHAPES.get(name, IMAGENET_SHAPE)
    torch.manual_seed(0)
    model = models.build(name, num_classes=10, input_shape=shape).eval().double()
    x = torch.randn(2, *shape, dtype=torch.float64)
    with torch.no_grad():
        whole = model(x)
        for layer in [*models.layers(model), catalog.ALL_LAYERS]:
            prefix, suffix, path = models.split(model, layer)
            if layer != catalog.ALL_LAYERS:
                assert suffix.get_submodule(path) is models.layer(model, layer)
            assert torch.equal(suffix(prefix(x)), whole), layer


def test_short_names_follow_the_forward_pass_through_residual_blocks():
    """resnet18: the stem, then each BasicBlock's conv1, conv2 and, where it has one, its
    downsample convolution (torchvision's forward order), then fc; every conv has its
    BatchNorm (registered beside it, found in the graph)."""
    model = models.build("resnet18", num_classes=10, input_shape=(3, 32, 32))
    paths = {id(m): p for p, m in model.named_modules()}
    names = {n: paths[id(m)] for n, m in models.layers(model).items()}
    assert names["conv1"] == "conv1" and names["conv2"] == "layer1.0.conv1"
    assert names["conv5"] == "layer1.1.conv2" and names["conv8"] == "layer2.0.downsample.0"
    assert names["conv20"] == "layer4.1.conv2" and names["fc1"] == "fc"
    norms = {n: paths[id(models.norm_after(model, n))] for n in names if n != "fc1"}
    assert norms["conv8"] == "layer2.0.downsample.1" and norms["conv5"] == "layer1.1.bn2"
    assert models.norm_after(model, "fc1") is None


def test_resnet18_cifar_keeps_32x32_inputs_at_full_resolution_into_its_first_block():
    torch.manual_seed(0)
    model = models.build("resnet18_cifar", num_classes=10, input_shape=(3, 32, 32)).eval()
    conv1 = models.layer(model, "conv1")
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1)
    seen = {}
    model.layer1.register_forward_hook(lambda m, i, o: seen.update(layer1=o.shape))
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert seen["layer1"] == (2, 64, 32, 32)
    prefix, suffix, path = models.split(model, "conv2")  # the clean stem is a cacheable prefix
    with torch.no_grad():
        assert prefix(torch.zeros(2, 3, 32, 32)).shape == (2, 64 * 32 * 32)  # packed: the block's input
    assert suffix.get_submodule(path) is model.layer1[0].conv1


def test_layers_are_in_forward_order(cnn):
    order = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: order.append(n))
             for n, m in models.layers(cnn).items()]
    cnn(torch.zeros(1, 1, 8, 8))
    for h in hooks:
        h.remove()
    assert order == ["conv1", "conv2", "fc1", "fc2"]


def test_unknown_model_and_layer_name_the_valid_ones(cnn):
    with pytest.raises(ValueError, match="expected one of .*'cnn'"):
        models.build("lenet")
    with pytest.raises(ValueError, match=r"'conv7'.*\['conv1', 'conv2', 'fc1', 'fc2'\]"):
        models.layer(cnn, "conv7")


def test_weights_round_trip_with_provenance(tmp_path, cnn):
    path = tmp_path / "w.safetensors"
    models.save_weights(cnn, path, dataset="digits", seed=3)
    loaded = models.load_weights(path, num_classes=10, input_shape=(1, 8, 8))
    assert loaded.lesion_metadata == {"model": "cnn", "arch": "cnn", "dataset": "digits", "seed": 3}
    for key, value in cnn.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_weights_of_the_wrong_shape_are_refused(tmp_path, cnn):
    path = tmp_path / "w.safetensors"
    models.save_weights(cnn, path)
    with pytest.raises(files.InputFileError, match="do not fit model 'cnn'.*wrong shape"):
        models.load_weights(path, num_classes=7, input_shape=(1, 8, 8))


def test_truncated_weights_file_is_refused(tmp_path, cnn):
    path = tmp_path / "w.safetensors"
    models.save_weights(cnn, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(files.InputFileError, match="not a readable safetensors file"):
        models.load_weights(path, num_classes=10, input_shape=(1, 8, 8))
