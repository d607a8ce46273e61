"""Networks a user brings (lesion.networks, models.build_source/load_weights): sources,
weights from safetensors and PyTorch checkpoints, and one clear line for each bad input."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lesion import files, models, networks


class Pickled:
    """Not a tensor: a checkpoint holding it needs unpickling, which lesion never does."""


FACTORY = '''
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    """A skip connection across conv2 and a BatchNorm."""

    def __init__(self, width=4, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.bn(self.conv2(h))) + h
        return self.fc(h.mean((2, 3)))


def build(width=4):
    return Net(width)


def broken():
    raise RuntimeError("no GPU here")
'''


@pytest.fixture
def user_dir(tmp_path):
    (tmp_path / "mynet.py").write_text(FACTORY)
    (tmp_path / "bad.py").write_text("import not_a_module_anywhere\n")
    return tmp_path


def source(text: str, user_dir, **kwargs) -> networks.Source:
    return networks.Source.parse(text, path=str(user_dir), kwargs=kwargs)


def test_a_factory_of_ones_own_builds_with_its_kwargs_and_is_read_from_its_graph(user_dir):
    torch.manual_seed(0)
    model = models.build_source(source("python:mynet:build", user_dir, width=6), num_classes=10,
                                input_shape=(1, 8, 8), name="mine")
    assert type(model).__name__ == "Net" and model.conv1.out_channels == 6
    assert list(models.layers(model)) == ["conv1", "conv2", "fc"]  # module paths, forward order
    assert models.norm_after(model, "conv2") is model.bn
    assert models.norm_after(model, "conv1") is None
    assert "mynet" not in sys.modules  # imported under its own file path


@pytest.mark.parametrize(("key", "prefix", "wrap"), [
    (None, None, lambda s: s),                                   # a plain state dict
    ("state_dict", "module.", lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()},
                                         "epoch": 3}),          # DDP keys inside a checkpoint
    ("state_dict", "model.", lambda s: {"state_dict": {f"model.{k}": v for k, v in s.items()}}),
])
def test_weights_from_a_checkpoint_load_and_the_network_predicts_as_the_original(
        user_dir, tmp_path, key, prefix, wrap):
    torch.manual_seed(1)
    parsed = networks.Source.parse("python:mynet:Net", path=str(user_dir))
    original = networks.build(parsed, 10, (1, 8, 8))
    original.bn.running_mean.uniform_(-0.5, 0.5)
    original.eval()
    torch.save(wrap(original.state_dict()), tmp_path / "net.pth")
    state = networks.read_state(tmp_path / "net.pth", state_dict_key=key, strip_prefix=prefix)
    model = models.build_source(source("python:mynet:Net", user_dir), num_classes=10,
                                input_shape=(1, 8, 8), name="mine")
    networks.load_state(model, state, "net.pth")
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), original(x))
    # saved as lesion's weights, rebuilt from the source it records
    models.save_weights(model, tmp_path / "weights.safetensors")
    again = models.load_weights(tmp_path / "weights.safetensors", num_classes=10, input_shape=(1, 8, 8))
    assert type(again).__name__ == "Net" and again.lesion_name == "mine"
    with torch.no_grad():
        assert torch.equal(again(x), original(x))


def test_the_input_normalisation_runs_inside_the_network_and_is_rebuilt_from_its_weights(
        user_dir, tmp_path):
    torch.manual_seed(3)
    mean, std = [0.3], [0.2]
    parsed = networks.Source.parse("python:mynet:Net", path=str(user_dir),
                                   normalize={"mean": mean, "std": std})
    model = models.build_source(parsed, num_classes=10, input_shape=(1, 8, 8), name="mine")
    plain = networks.build(networks.Source.parse("python:mynet:Net", path=str(user_dir)), 10,
                           (1, 8, 8))
    plain.load_state_dict(model.state_dict())  # the same keys: mean and std are not saved
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), plain.eval()((x - 0.3) / 0.2), rtol=0, atol=0)
    assert type(model).__name__ == type(model).__mro__[1].__name__ == "Net"  # a subclass
    assert list(models.layers(model)) == ["conv1", "conv2", "fc"]  # paths unchanged
    # the normalisation is in the prefix a sweep caches: the cut network equals the whole
    prefix, suffix, _ = models.split(model, "conv2")
    with torch.no_grad():
        assert torch.equal(suffix(prefix(x)), model(x))
    assert models.cut_of(model, "conv2") == "prefix cached (torch.fx graph)"
    assert [n.op for n in models.traced_graph(model).graph.nodes][:4] == [
        "placeholder", "get_attr", "call_function", "get_attr"]  # x - mean, then / std
    models.save_weights(model, tmp_path / "w.safetensors")
    again = models.load_weights(tmp_path / "w.safetensors", num_classes=10, input_shape=(1, 8, 8))
    assert again.lesion_metadata["input_normalize"] == {"mean": mean, "std": std}
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


@pytest.mark.parametrize(("text", "normalize", "message"), [
    ("python:mynet:Net", "source", "has no input normalisation of its own"),
    ("python:mynet:Net", {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]},
     "normalize has 3 channels"),
])
def test_a_normalisation_that_cannot_apply_says_why(user_dir, text, normalize, message):
    parsed = networks.Source.parse(text, path=str(user_dir), normalize=normalize)
    with pytest.raises(networks.SourceError, match=message):
        networks.build(parsed, 10, (1, 8, 8))


def test_a_sources_own_normalisation_is_the_librarys():
    import torchvision

    parsed = networks.Source.parse("torchvision:resnet18", normalize="source")
    model = networks.build(parsed, 10, (3, 32, 32))
    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    assert model.lesion_normalize == {"mean": list(preset.mean), "std": list(preset.std)}
    timm = pytest.importorskip("timm")
    parsed = networks.Source.parse("timm:resnet10t", normalize="source")
    model = networks.build(parsed, 10, (3, 32, 32))
    cfg = timm.create_model("resnet10t", pretrained=False).pretrained_cfg
    assert model.lesion_normalize == {"mean": list(cfg["mean"]), "std": list(cfg["std"])}


def test_safetensors_weights_load(user_dir, tmp_path):
    torch.manual_seed(2)
    parsed = networks.Source.parse("python:mynet:Net", path=str(user_dir))
    original = networks.build(parsed, 10, (1, 8, 8))
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, tmp_path / "w.safetensors")
    state = networks.read_state(tmp_path / "w.safetensors")
    assert all(torch.equal(state[k], v) for k, v in original.state_dict().items())


def test_torchvision_and_timm_sources_build_with_the_class_count():
    torch.manual_seed(0)
    net = models.build_source(networks.Source.parse("torchvision:mobilenet_v3_small"),
                              num_classes=7, input_shape=(3, 32, 32))
    assert net.lesion_name == "torchvision:mobilenet_v3_small"
    assert list(models.layers(net))[0] == "features.0.0" and list(models.layers(net))[-1] == "classifier.3"
    assert models.layer(net, "classifier.3").out_features == 7
    timm = pytest.importorskip("timm", reason="timm is an optional extra (pip install -e '.[timm]')")
    assert timm
    net = models.build_source(networks.Source.parse("timm:resnet10t"), num_classes=7,
                              input_shape=(3, 32, 32))
    assert models.layer(net, "fc").out_features == 7


@pytest.mark.parametrize(("text", "kwargs", "message"), [
    ("mynet:Net", {}, r"expected <scheme>:<name> with a scheme of"),
    ("python:mynet", {}, r"expected python:<module>:<callable>"),
    ("python:bad:build", {}, r"bad.py does not import \(ModuleNotFoundError: No module named "
                             r"'not_a_module_anywhere'\)"),
    ("python:missing:build", {}, r"no module file .*missing.py"),
    ("python:mynet:nothing", {}, r"has no callable 'nothing'"),
    ("python:mynet:broken", {}, r"broken\(\*\*\{\}\) raised RuntimeError: no GPU here"),
    ("python:mynet:build", {"depth": 3}, r"raised TypeError: .*unexpected keyword argument 'depth'"),
    ("torchvision:resnet81", {}, r"not a torchvision classification model \(did you mean .*resnet18"),
    ("lesion:mlpp", {}, r"no such lesion network; expected one of"),
])
def test_a_source_that_cannot_be_built_says_why_in_one_line(user_dir, text, kwargs, message):
    with pytest.raises(networks.SourceError, match=message) as err:
        models.build_source(source(text, user_dir, **kwargs), num_classes=10, input_shape=(1, 8, 8))
    assert "\n" not in str(err.value)


def test_a_timm_source_without_timm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(networks.SourceError, match=r"timm is not installed; .*pip install -e '\.\[timm\]'"):
        networks.build(networks.Source.parse("timm:resnet10t"), 10, (3, 32, 32))


def test_weights_that_do_not_fit_name_the_keys(user_dir, tmp_path):
    torch.manual_seed(0)
    model = models.build_source(source("python:mynet:Net", user_dir), num_classes=10, input_shape=(1, 8, 8))
    state = dict(model.state_dict())
    state.pop("fc.bias")
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(8, 1, 3, 3)
    with pytest.raises(files.InputFileError) as err:
        networks.load_state(model, state, "w.pth")
    text = str(err.value)
    assert "missing (1): ['fc.bias']" in text and "unexpected (1): ['extra.weight']" in text
    assert "conv1.weight (8, 1, 3, 3) != (4, 1, 3, 3)" in text
    many = {f"x{i}": torch.zeros(1) for i in range(9)}
    with pytest.raises(files.InputFileError, match=r"unexpected \(9\): \['x0', 'x1', 'x2', 'x3', 'x4'\]\)"):
        networks.load_state(nn.Linear(1, 1), {**nn.Linear(1, 1).state_dict(), **many}, "w.pth")


def test_weights_files_that_are_not_state_dicts_are_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "ckpt.pth")
    with pytest.raises(networks.SourceError, match=r"not a mapping of names to tensors; .*state_dict_key"):
        networks.read_state(tmp_path / "ckpt.pth")
    with pytest.raises(networks.SourceError, match=r"state_dict_key = 'model': .*has no 'model'; "
                                                   r"expected one of \['state_dict'\]"):
        networks.read_state(tmp_path / "ckpt.pth", state_dict_key="model")
    torch.save({"w": Pickled()}, tmp_path / "pickled.pth")
    with pytest.raises(networks.SourceError, match=r"not a PyTorch checkpoint of plain tensors"):
        networks.read_state(tmp_path / "pickled.pth")
    with pytest.raises(networks.SourceError, match=r"no such file"):
        networks.read_state(tmp_path / "absent.pth")


def test_a_layer_the_network_lacks_is_refused_with_the_nearest_names(user_dir):
    model = models.build_source(source("python:mynet:Net", user_dir), num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"'conv3' is not a weight layer .*did you mean \['conv2'"):
        models.layer(model, "conv3")


def test_the_untraceable_runs_whole_and_the_log_says_so(tmp_path, caplog):
    (tmp_path / "branchy.py").write_text(textwrap.dedent('''
        from torch import nn

        class Branchy(nn.Module):
            def __init__(self):
                super().__init__()
                self.b = nn.Linear(4, 3)
                self.a = nn.Linear(64, 4)

            def forward(self, x):
                h = self.a(x.flatten(1))
                if h.sum() > 0:
                    h = -h
                return self.b(h)
    '''))
    model = models.build_source(networks.Source.parse("python:branchy:Branchy", path=str(tmp_path)),
                                num_classes=3, input_shape=(1, 8, 8))
    with caplog.at_level("WARNING", logger="lesion.graph"):
        assert list(models.layers(model)) == ["a", "b"]  # from a forward pass with hooks
    assert "cannot trace Branchy" in caplog.text
