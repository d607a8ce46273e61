"""lesion's Python API (lesion.api, docs/python.md): the DAG's numbers, networks given back as
they came, errors that say what was expected, docstring examples that run."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision

import lesion
from lesion import api, config, models, tensorfiles

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study(built_study) -> Path:
    """The tiny faults study (.test/faults.yaml: crash and bit-flip sweeps of mlp's fc2),
    built by the real workflow."""
    return built_study("faults") / "results" / "digits"


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["testset", "perturbation", "layer", "level", "draw", "metric"]
    return frame.sort_values(keys).reset_index(drop=True)


def test_sweep_gives_the_rows_of_the_dags_metrics_table_value_for_value(study):
    net = lesion.network(study / "mlp" / "weights.safetensors")
    ours = lesion.sweep(net, study / "tensors" / "test.safetensors", operators=["crash", "bitflip"],
                        layers=["fc2"], levels={"crash": [0.1, 0.5], "bitflip": [0.001, 0.01]},
                        draws={"crash": 2, "bitflip": 1}, seed=0,
                        options={"bitflip": {"bits": ["exponent"]}}, device="cpu")
    dag = pd.read_parquet(study / "mlp" / "metrics.parquet")
    assert len(dag) == 35
    pd.testing.assert_frame_equal(_sorted(ours), _sorted(dag), check_exact=True)


def test_a_variant_is_the_row_and_tensors_the_dag_drew(study):
    net = lesion.network(study / "mlp" / "weights.safetensors")
    rows = pd.read_parquet(study / "mlp" / "variants" / "bitflip.parquet").to_dict("records")
    for row in rows:
        drawn = lesion.variant(net, row["layer"], "bitflip", row["level"], seed=0, draw=row["draw"],
                               dataset="digits", bits=["exponent"])
        pd.testing.assert_frame_equal(pd.DataFrame([drawn.row]), pd.DataFrame([row]),
                                      check_exact=True)  # NaN (exponent flips: inf) equals NaN
        assert tensorfiles.tensors_sha256(drawn.tensors) == row["sha256"]
        # inside perturb, the network's own tensors are the DAG's variant
        fc2 = net.get_submodule(models.layer_paths(net)["fc2"])
        with lesion.perturb(net, "fc2", "bitflip", row["level"], seed=0, draw=row["draw"],
                            bits=["exponent"]) as applied:
            assert applied["sha256"] == row["sha256"]
            live = {"weight": fc2.weight.detach(), "bias": fc2.bias.detach()}
            assert tensorfiles.tensors_sha256(live) == row["sha256"]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bit for bit (NaN included): the raw bytes."""
    return a.keys() == b.keys() and all(
        torch.equal(a[k].view(torch.uint8) if a[k].is_floating_point() else a[k],
                    b[k].view(torch.uint8) if b[k].is_floating_point() else b[k]) for k in a)


def test_perturb_restores_the_weights_bit_for_bit_after_the_block_and_after_an_exception(
        resnet18_bn):
    before = _state(resnet18_bn)
    bn1 = resnet18_bn.bn1
    with lesion.perturb(resnet18_bn, "conv1", "node_knockout", 0.5, seed=3) as row:
        # node knockout silences whole units: their BatchNorm scale and shift go to 0 with them
        assert row["tensors"] == "norm.bias,norm.weight,weight"  # conv1 has no bias
        assert int((bn1.weight == 0).sum()) == 32
        assert not _same(_state(resnet18_bn), before)
    assert _same(_state(resnet18_bn), before)
    with pytest.raises(RuntimeError, match="inside"):
        with lesion.perturb(resnet18_bn, "conv2", "bitflip", 0.05, seed=1):
            assert not _same(_state(resnet18_bn), before)
            raise RuntimeError("an error inside the block")
    assert _same(_state(resnet18_bn), before)


def test_sweep_gives_the_network_back_as_it_came(digits):
    torch.manual_seed(0)
    net = models.build("cnn", num_classes=10, input_shape=(1, 8, 8)).train()
    net.get_submodule(models.layer_paths(net)["conv1"]).eval()  # a mixed state, kept as it is
    modes = [m.training for m in net.modules()]
    before = _state(net)
    lesion.sweep(net, digits, operators=["gaussian", "node_knockout"], levels=[0.5], layers="all",
                 device="cpu")
    assert [m.training for m in net.modules()] == modes
    assert _same(_state(net), before)
    assert next(net.parameters()).device.type == "cpu"


def test_every_form_of_data_gives_the_same_table(digits, tmp_path):
    images, labels = digits
    torch.manual_seed(2)
    net = models.build("mlp", num_classes=10, input_shape=(1, 8, 8)).eval()
    dataset = torch.utils.data.TensorDataset(images, labels)
    forms = {"pair": (images, labels), "dataset": dataset,
             "loader": torch.utils.data.DataLoader(dataset, batch_size=64)}
    tables = {name: lesion.sweep(net, data, operators="synapse_knockout", levels=[0.3, 0.9],
                                 layers=["fc1", "fc3"], draws=2, device="cpu")
              for name, data in forms.items()}
    for name in ("dataset", "loader"):
        pd.testing.assert_frame_equal(tables[name], tables["pair"], check_exact=True)
    # an independent count: the clean top-1 is the network's own argmax accuracy
    clean = tables["pair"].query("perturbation == 'none' and metric == 'top1'")["value"]
    assert float(clean.iloc[0]) == pytest.approx(float((net(images).argmax(1) == labels).float().mean()))
    assert len(tables["pair"]) == (1 + 2 * 2 * 2) * 5  # (clean + layers x levels x draws) x metrics


def test_predictions_come_per_image_with_their_test_set(digits):
    images, labels = digits
    torch.manual_seed(2)
    net = models.build("mlp", num_classes=10, input_shape=(1, 8, 8)).eval()
    shifted = ((images + 0.1).clamp(0, 1), labels)
    table, per_image = lesion.sweep(net, digits, operators="gaussian", levels=[0.2], layers=["fc2"],
                                    testsets={"shifted": shifted}, predictions=True, device="cpu")
    assert set(table["testset"]) == {"clean", "shifted"}
    assert len(per_image) == 2 * 2 * len(labels)  # (clean network + 1 variant) x 2 sets
    clean = per_image.query("testset == 'shifted' and variant == 'mlp'")
    expected = net(shifted[0]).argmax(1).numpy()
    assert [int(t[0]) for t in clean["top5"]] == list(expected)


@pytest.mark.parametrize(("call", "message"), [
    (lambda net, d: lesion.variant(net, "fc4", "gaussian", 0.1), r"did you mean \['fc3'"),
    (lambda net, d: lesion.variant(net, "fc1", "gaussian", 0.1, bits="sign"),
     "option 'bits' does not apply to gaussian; expected no options"),
    (lambda net, d: lesion.variant(net, "fc1", "bitflip", 0.1, bit="sign"),
     r"option 'bit' does not apply to bitflip; expected \['bits'\]"),
    (lambda net, d: lesion.variant(net, "fc1", "gausian", 0.1), "perturbation 'gausian' is unknown"),
    (lambda net, d: lesion.variant(net, "fc1", "crash", 0.1), "acts on activations"),
    (lambda net, d: lesion.variant(net, "fc1", "redraw", 1.5), r"expected a number in \[0.0, 1.0\]"),
    (lambda net, d: lesion.sweep(net, d, operators=[], levels=[0.1]), "operators is empty"),
    (lambda net, d: lesion.sweep(net, d, operators="gaussian", levels=[0.1], layers=["fc9"]),
     "'fc9' is not a weight layer"),
    (lambda net, d: lesion.sweep(net, d, operators=["gaussian", "redraw"], levels={"gaussian": [1]}),
     "levels names no value for 'redraw'"),
    (lambda net, d: lesion.sweep(net, d, operators="gaussian", levels=[0.1], draws=0),
     "draws of gaussian = 0; expected an integer >= 1"),
    (lambda net, d: lesion.sweep(net, d, operators="gaussian", levels=[0.1],
                                 options={"bitflip": {"bits": "sign"}}), "not swept"),
    (lambda net, d: lesion.sweep(net, [1, 2, 3], operators="gaussian", levels=[0.1]),
     "data is a list; expected a torch Dataset"),
    (lambda net, d: lesion.sweep(net, (d[0], d[1][:5]), operators="gaussian", levels=[0.1]),
     "5 labels of dtype torch.int64 for 200 images"),
    (lambda net, d: lesion.sweep(net, d, operators="gaussian", levels=[0.1], device="cuda:0"),
     "no CUDA GPU is available"),
    (lambda net, d: lesion.attack(net, d[0], d[1], "fgsm", epsilon=0.1),
     r"option 'epsilon' does not apply to fgsm; expected some of \['eps'\]"),
    (lambda net, d: lesion.attack(net, d[0], d[1], "deepfool"), "method 'deepfool' is unknown"),
    (lambda net, d: lesion.crash(net, d, "fc1", levels=[0.1], repetitions=1), "at least 2"),
    (lambda net, d: lesion.bounds(net, d, "fc7", levels=[0.1]), "did you mean"),
    (lambda net, d: lesion.filter_scores(net, d, layers=["fc1", "al"]), "'al' is not a weight layer"),
    (lambda net, d: lesion.load("/nonexistent/results"), "no such directory"),
    (lambda net, d: lesion.sweep(3, d, operators="gaussian", levels=[0.1]),
     "model is a int; expected a torch.nn.Module"),
])
def test_a_wrong_argument_gets_one_clear_message(mlp, digits, call, message):
    before = _state(mlp)
    with pytest.raises((ValueError, TypeError, RuntimeError, OSError), match=message):
        call(mlp, digits)
    assert _same(_state(mlp), before)


def test_the_api_defaults_are_the_config_schemas(tmp_path):
    """No second source of defaults: each equals the schema's."""
    path = tmp_path / "config.yaml"
    path.write_text("dataset: {name: digits}\nmodels: {mlp: {}}\n"
                    "faults: {models: [mlp], levels: [0.1]}\nfiltering: {models: [mlp]}\n")
    schema = config.load_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml")
    filled = config.canonical(config._read_yaml(path), schema)
    from lesion.studies.faults import api as faults_api
    from lesion.studies.filtering import api as filtering_api

    assert (api.BATCH_SIZE, api.VARIANTS_PER_PASS, api.CACHE_GB, api.PRECISION) == tuple(
        filled["evaluate"][k] for k in ("batch_size", "variants_per_pass", "cache_gb", "precision"))
    assert faults_api.REPETITIONS == filled["faults"]["repetitions"]
    assert (filtering_api.EPS, filtering_api.TOL) == (filled["filtering"]["eps"],
                                                      filled["filtering"]["tol"])


PUBLIC = sorted(set(lesion.__all__) - {"__version__"})


def test_all_lists_exactly_what_docs_python_md_documents():
    text = (ROOT / "docs" / "python.md").read_text()
    documented = set(re.findall(r"^### `lesion\.(\w+)", text, flags=re.M))
    assert documented == set(PUBLIC)
    # the engine's from lesion.api, each study's from the api module its Study names
    homes = {name: getattr(lesion, name).__module__ for name in PUBLIC}
    assert {homes[n] for n in lesion.ENGINE_API} == {"lesion.api"}
    assert homes["crash"] == homes["bounds"] == "lesion.studies.faults.api"
    assert homes["attack"] == "lesion.studies.adversarial.api"
    assert homes["filter_scores"] == "lesion.studies.filtering.api"


@pytest.mark.parametrize("name", [n for n in PUBLIC if n[0].islower()])
def test_every_public_functions_docstring_example_runs(name, study, tmp_path, monkeypatch):
    from lesion import data

    spec = data.get("digits")
    raw = spec.raw()
    net = lesion.network(study / "mlp" / "weights.safetensors")
    monkeypatch.chdir(tmp_path)
    scope = {"lesion": lesion, "torch": torch, "torchvision": torchvision, "net": net,
             "images": spec.preprocess(raw["images"][:100]), "labels": raw["labels"][:100],
             "weights": str(study / "mlp" / "weights.safetensors"), "results": str(study)}
    [test] = doctest.DocTestFinder().find(getattr(lesion, name), name, globs=scope)
    assert test.examples, f"lesion.{name} has no example in its docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_the_examples_of_docs_python_md_run(tmp_path, monkeypatch):
    """The page's ```python blocks in order, in one namespace, in a fresh directory."""
    blocks = _blocks((ROOT / "docs" / "python.md").read_text())
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python.md", "exec"), scope)  # noqa: S102 (our own docs)
    assert (tmp_path / "resnet18_gaussian.png").stat().st_size > 0
    per_epoch = scope["per_epoch"]
    assert sorted(set(per_epoch["epoch"])) == [1, 2, 3]
