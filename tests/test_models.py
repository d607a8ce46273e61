"""The registry: named layers in forward order, stages that compose, weights I/O."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lesion import catalog, files, models


@pytest.mark.parametrize("name", models.list_models())
def test_every_registry_model_names_its_layers_as_the_catalog_says(name):
    small = name in ("cnn", "mlp")
    torch.manual_seed(0)
    model = models.build(name, num_classes=10 if small else 1000,
                         input_shape=(1, 8, 8) if small else (3, 224, 224))
    assert list(models.layers(model)) == catalog.layer_names(name)


@pytest.mark.parametrize("name", models.list_models())
def test_stages_compose_to_the_whole_network(name):
    small = name in ("cnn", "mlp")
    shape = (1, 8, 8) if small else (3, 64, 64)
    torch.manual_seed(0)
    model = models.build(name, num_classes=10, input_shape=shape).eval().double()
    x = torch.randn(2, *shape, dtype=torch.float64)
    # float64 (issue 21): the stages may run a block's ops in another grouping; float64
    # rounding through these <= 60-layer networks stays below 1e-9 (tests/tolerance.py)
    with torch.no_grad():
        assert torch.allclose(nn.Sequential(*models.stages(model))(x), model(x), rtol=1e-12, atol=1e-9)


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
    assert len(prefix) == 4 and path.endswith("conv1")


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
