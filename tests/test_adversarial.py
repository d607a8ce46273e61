"""The adversarial study (Szegedy et al. 2013): named models and their training halves,
autoencoder pretraining, adversarial sets, the tables' numbers against hand computations,
adversarial training's batches, unit inspection, the config's checks and the study end to end.

The attacks themselves (FGSM, PGD, L-BFGS) are checked in tests/test_attacks.py.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import tolerance
from lesion import attacks, data, models, pretrain, tensorfiles, train
from lesion.config import ConfigError, check, load_schema
from lesion.studies.adversarial import sets, tables, units
from lesion.studies.adversarial.training import mix_adversarial
from test_workflow import REPO, tiny_config

SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    data.export("digits", root / "raw.safetensors")
    data.make_tensors("digits", root / "raw.safetensors", root / "train.safetensors",
                      root / "test.safetensors", test_fraction=0.25, seed=0)
    return root


def fit(root, name, arch, *, epochs=5, train_split="all", split_seed=None, batch_hook=None):
    """Train `arch` as `name` on the digits split in `root`; return the weights path."""
    out = root / f"{name}.safetensors"
    settings = train.Settings(epochs=epochs, batch_size=64, learning_rate=0.01, weight_decay=0.0,
                              seed=0, train_split=train_split, split_seed=split_seed)
    train.train(train.Network(name, arch=arch), "digits", root / "train.safetensors",
                root / "test.safetensors", out, root / f"{name}.parquet", settings,
                hooks=[train.Hook(batch=batch_hook)] if batch_hook else [])
    return out


# --- the training halves P1 and P2 ---------------------------------------------------------

def test_the_halves_are_disjoint_cover_the_split_keep_the_classes_and_are_seeded():
    labels = torch.tensor([c for c in range(5) for _ in range(7 + c)])  # 7..11 per class
    p1, p2 = (data.training_part(labels, part, seed=3) for part in ("P1", "P2"))
    assert set(p1.tolist()).isdisjoint(p2.tolist())
    assert sorted(p1.tolist() + p2.tolist()) == list(range(len(labels)))
    for c in range(5):  # the smaller half of each class goes to P1
        n = 7 + c
        assert int((labels[p1] == c).sum()) == n // 2 and int((labels[p2] == c).sum()) == n - n // 2
    assert torch.equal(p1, data.training_part(labels, "P1", seed=3))
    assert not torch.equal(p1, data.training_part(labels, "P1", seed=4))
    assert torch.equal(data.training_part(labels, "all", seed=3), torch.arange(len(labels)))
    with pytest.raises(ValueError, match=r"train split 'P3' is unknown; expected one of "
                                         r"\['all', 'P1', 'P2'\]"):
        data.training_part(labels, "P3", seed=0)


def test_a_model_trained_on_a_half_sees_exactly_that_half(split):
    seen = []

    def record(model, x, y):
        seen.append(x.flatten(1))
        return x, y

    fit(split, "half", "fc10", epochs=1, train_split="P2", split_seed=7, batch_hook=record)
    images, labels = data.load_split(split / "train.safetensors")
    # the reference: P2 by hand, each class's images in the seeded order, the larger half
    generator = torch.Generator().manual_seed(7)
    expected = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        expected += members[len(members) // 2:].tolist()
    got = torch.cat(seen)
    assert len(got) == len(expected)
    reference = images[sorted(expected)].flatten(1)
    assert torch.equal(torch.sort(got, dim=0).values, torch.sort(reference, dim=0).values)
    meta = tensorfiles.load_metadata(split / "half.safetensors")
    assert (meta["model"], meta["arch"], meta["train_split"]) == ("half", "fc10", "P2")


def test_a_named_model_is_rebuilt_from_its_architecture_and_keeps_its_name(split):
    path = fit(split, "FC10-1e-4", "fc10", epochs=1)
    model = models.load_weights(path, num_classes=10, input_shape=(1, 8, 8))
    assert (model.lesion_name, model.lesion_arch) == ("FC10-1e-4", "fc10")
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear]  # softmax regression
    wide = models.build("fc123_456_10", num_classes=10, input_shape=(1, 8, 8))
    assert [m.out_features for m in models.layers(wide).values()] == [123, 456, 10]
    hidden = models.build("fc200_200_10", num_classes=10, input_shape=(1, 8, 8))
    assert [m.out_features for m in models.layers(hidden).values()] == [200, 200, 10]
    assert sum(isinstance(m, nn.Sigmoid) for m in hidden) == 2


# --- autoencoder pretraining ----------------------------------------------------------------

def test_pretraining_trains_fc1_as_an_encoder_and_leaves_the_rest_freshly_initialised(split):
    out = split / "ae.safetensors"
    pretrain.pretrain("ae400_10", "digits", split / "train.safetensors", out, name="AE",
                      epochs=3, batch_size=64, learning_rate=0.01, seed=5)
    torch.manual_seed(5)
    fresh = models.build("ae400_10", num_classes=10, input_shape=(1, 8, 8))
    state = tensorfiles.load_tensors(out)
    assert torch.equal(state["3.weight"], fresh[3].weight) and torch.equal(state["3.bias"], fresh[3].bias)
    assert not torch.equal(state["1.weight"], fresh[1].weight)
    # the reconstruction error it reports is well below that of an untrained encoder
    images, _ = data.load_split(split / "train.safetensors")
    flat = images.flatten(1)
    torch.manual_seed(0)
    decoder = nn.Linear(400, 64)
    with torch.no_grad():
        untrained = nn.functional.mse_loss(torch.sigmoid(decoder(torch.sigmoid(fresh[1](flat)))), flat)
    assert tensorfiles.load_metadata(out)["reconstruction_mse"] < 0.5 * float(untrained)
    with pytest.raises(ValueError, match="no dense first layer"):
        pretrain.pretrain("cnn", "digits", split / "train.safetensors", out, name="x", epochs=1,
                          batch_size=64, learning_rate=0.01, seed=0)


def test_the_sparsity_penalty_is_the_kl_divergence_of_each_units_mean_activation():
    code = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.7, 0.5]], dtype=torch.float64)
    rho = np.array([0.2, 0.8, 0.5])  # each unit's mean, by hand
    by_hand = sum(0.05 * np.log(0.05 / r) + 0.95 * np.log(0.95 / (1 - r)) for r in rho)
    assert float(pretrain.kl_sparsity(code, 0.05)) == pytest.approx(by_hand, rel=1e-12)
    assert float(pretrain.kl_sparsity(torch.full((4, 3), 0.05, dtype=torch.float64), 0.05)) == pytest.approx(
        0, abs=1e-15)


def test_a_sparse_autoencoders_code_is_sparser_than_a_plain_ones(split):
    """The penalty pulls the code's mean activation towards the target (0.05), well below
    the plain autoencoder's."""
    means = {}
    for sparsity in (0.0, 3.0):
        out = split / f"ae-{sparsity}.safetensors"
        pretrain.pretrain("ae400_10", "digits", split / "train.safetensors", out, name="AE",
                          epochs=3, batch_size=64, learning_rate=0.01, seed=5, sparsity=sparsity)
        model = models.load_weights(out, num_classes=10, input_shape=(1, 8, 8))
        images, _ = data.load_split(split / "train.safetensors")
        with torch.no_grad():  # measured here, not read from the metadata the step writes
            means[sparsity] = float(torch.sigmoid(model[1](images.flatten(1))).mean())
    assert means[3.0] < 0.15 < means[0.0]


# --- adversarial sets and the tables ----------------------------------------------------------

@pytest.fixture(scope="module")
def two_models(split):
    return [fit(split, "A", "fc10", epochs=5), fit(split, "B", "fc100_100_10", epochs=5)]


def make_set(split, weights, name, **options):
    out = split / f"{name}-{tensorfiles.load_metadata(weights)['model']}.safetensors"
    sets.write_sets("digits", weights, split / "test.safetensors", {name: (options, out)},
                    images=40, seed=0, device="cpu", precision="ieee")
    return out


def test_an_fgsm_set_is_a_test_set_of_the_attacked_images_and_reloads_bit_identically(split, two_models):
    path = make_set(split, two_models[0], "fgsm", eps=0.1)
    s = tensorfiles.load_tensors(path)
    test = tensorfiles.load_tensors(split / "test.safetensors")
    model = models.load_weights(two_models[0], num_classes=10, input_shape=(1, 8, 8))
    expected = attacks.fgsm(model, test["images"][:40], test["labels"][:40], 0.1)
    assert torch.equal(s["images"], expected)
    assert torch.equal(s["labels"], test["labels"][:40]) and torch.equal(s["index"], test["index"][:40])
    assert torch.equal(s["position"], torch.arange(40)) and (s["targets"] == -1).all()
    rms = ((expected.double() - test["images"][:40].double()).flatten(1) ** 2).mean(1).sqrt()
    # both in float64 (rounding ~1e-16), then the stored float32: within one float32 ulp
    assert torch.allclose(s["distortion"].double(), rms, rtol=2 * tolerance.U32, atol=0)
    with torch.no_grad():
        wrong = model(expected).argmax(1) != test["labels"][:40]
    assert torch.equal(s["success"].bool(), wrong)
    images, labels = data.load_split(path)  # a drop-in test set
    assert images.shape == (40, 1, 8, 8) and labels.dtype == torch.int64
    again = make_set(split, two_models[0], "fgsm", eps=0.1)
    assert tensorfiles.tensors_sha256(tensorfiles.load_tensors(again)) == tensorfiles.tensors_sha256(s)


def test_amplified_examples_have_the_asked_size_and_the_adversarial_direction():
    generator = torch.Generator().manual_seed(0)
    clean = 0.3 + 0.4 * torch.rand(6, 1, 8, 8, generator=generator)  # far from the box's edges
    adversarial = clean + 0.01 * torch.randn(6, 1, 8, 8, generator=generator)
    out = tables.amplify(clean, adversarial, 0.05)
    # measured in float64 on the float32 images: out = clean + r * scale rounds each pixel
    # by <= U32 (|out| <= 1), so out - clean is off by <= 2 U32 per pixel, and the scale
    # carries the float32 norm's gamma_64 and two more roundings (tests/tolerance.py)
    change = (out.double() - clean.double()).flatten(1)
    rms = (change ** 2).mean(1).sqrt()
    bound = 2 * tolerance.U32 + 0.05 * (tolerance.gamma(64) + 3 * tolerance.U32)
    assert torch.allclose(rms, torch.full((6,), 0.05, dtype=torch.float64), rtol=0, atol=bound)
    # those per-pixel errors (<= 2 U32 * 8 in norm against a change of norm 0.4) turn the
    # direction by < 3e-6 rad, so 1 - cosine < 1e-11
    cosine = nn.functional.cosine_similarity(change, (adversarial - clean).flatten(1).double())
    assert torch.allclose(cosine, torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-11)
    assert torch.equal(tables.amplify(clean, clean, 0.1), clean)  # nothing to amplify
    assert tables.amplify(torch.zeros(1, 1, 2, 2), -torch.ones(1, 1, 2, 2), 0.5).min() == 0  # clamped


def test_amplification_never_shrinks_an_example():
    """An example already beyond sigma stays as it is; any amplified one, clamped or not,
    has an RMS distortion at least its own (checked pixel by pixel in float64)."""
    generator = torch.Generator().manual_seed(3)
    clean = torch.rand(50, 1, 8, 8, generator=generator)
    adversarial = (clean + 0.3 * torch.randn(50, 1, 8, 8, generator=generator)).clamp(0, 1)
    own = ((adversarial - clean).double().flatten(1) ** 2).mean(1).sqrt()
    assert own.min() > 0.05
    assert torch.equal(tables.amplify(clean, adversarial, 0.05), adversarial)
    small = (clean + 0.02 * (adversarial - clean)).clamp(0, 1)  # RMS about 0.005
    out = tables.amplify(clean, small, 0.1)
    mine = ((small - clean).double().flatten(1) ** 2).mean(1).sqrt()
    theirs = ((out - clean).double().flatten(1) ** 2).mean(1).sqrt()
    assert (theirs >= mine).all() and (theirs > 5 * mine).all()
    # each pixel moved on in its own direction, never back past where the example had it
    d_small, d_out = (small - clean).double(), (out - clean).double()
    assert (d_out * d_small >= d_small * d_small - 1e-12).all()


def test_gaussian_controls_are_seeded_clamped_and_of_the_asked_measured_size():
    """Near the box's edges clamping shrinks noise of standard deviation sigma; the control's
    RMS distortion, measured by hand after clamping, is sigma all the same."""
    generator = torch.Generator().manual_seed(0)
    clean = (torch.rand(200, 1, 8, 8, generator=generator) < 0.5).float() * 0.95  # 0 or 0.95
    noisy, scale = tables.gaussian(clean, 0.1, seed=1)
    again, _ = tables.gaussian(clean, 0.1, seed=1)
    assert torch.equal(noisy, again) and not torch.equal(noisy, tables.gaussian(clean, 0.1, seed=2)[0])
    assert noisy.min() >= 0 and noisy.max() <= 1
    measured = ((noisy - clean).double().flatten(1) ** 2).mean(1).sqrt().mean()
    assert abs(float(measured) - 0.1) < 0.002  # within 2%: float32 images, an exact solve
    z = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain = ((clean.double() + 0.1 * z).clamp(0, 1) - clean.double()).flatten(1)
    assert float((plain ** 2).mean(1).sqrt().mean()) < 0.09  # unsolved noise measures less
    assert scale > 0.11
    with pytest.raises(ValueError, match="cannot reach an RMS distortion of 0.9"):
        tables.gaussian(clean, 0.9, seed=1)


def test_the_distortion_table_is_table_one_from_the_files(split, two_models):
    path = make_set(split, two_models[1], "fgsm", eps=0.05)
    s = tensorfiles.load_tensors(path)
    hit = s["success"].bool()
    # two successes at distortion 0 (images the model already gave the target): counted,
    # and left out of the mean
    first = torch.nonzero(hit).flatten()[:2]
    s["distortion"][first] = 0.0
    edited = split / "fgsm-B-at-target.safetensors"
    tensorfiles.save_tensors(s, edited, tensorfiles.load_metadata(path))
    table = tables.distortion_table([split / "B.parquet"], [two_models[1]], [edited]).to_pylist()
    curve = pd.read_parquet(split / "B.parquet")
    last = curve[curve["epoch"] == 5].set_index("split")["accuracy"]
    kept = hit.clone()
    kept[first] = False
    assert table == [{
        "model": "B", "arch": "fc100_100_10", "weight_decay": 0.0, "train_split": "all",
        "train_error": 1 - last["train"], "test_error": 1 - last["test"],
        "mean_distortion": pytest.approx(float(s["distortion"][kept].double().mean()), rel=1e-6),
        "success_rate": float(hit.float().mean()), "n_images": 40, "n_at_target": 2,
        "attack": "fgsm"}]


def test_the_transfer_table_feeds_every_set_to_every_model_with_its_controls(split, two_models):
    paths = [make_set(split, w, "fgsm", eps=0.1) for w in two_models]
    study = tables.Study("digits", split / "test.safetensors", two_models, "cpu", "ieee")
    df = tables.transfer_table(study, paths, [0.1, 0.3], seed=0).to_pandas()
    assert len(df) == 2 * 2 * (1 + 2) + 2 * 2  # sets x targets x (raw, 2 amplified) + noise
    assert set(df["attack"]) == {"fgsm", "gaussian"}
    assert df[df["attack"] == "fgsm"]["amplified"].sum() == 2 * 2 * 2  # each set x target x sigma
    assert sorted(set(df[df["attack"] == "gaussian"]["sigma"])) == [0.1, 0.3]
    # a model's error on its own set, from the set's success flags (untargeted: wrong)
    own = df[(df["source"] == "A") & (df["target"] == "A") & (df["attack"] == "fgsm")
               & ~df["amplified"]]
    success = tensorfiles.load_tensors(paths[0])["success"].float().mean()
    assert own["error"].item() == pytest.approx(float(success))
    # and B's error on A's set, by hand
    model_b = models.load_weights(two_models[1], num_classes=10, input_shape=(1, 8, 8))
    s = tensorfiles.load_tensors(paths[0])
    with torch.no_grad():
        by_hand = float((model_b(s["images"]).argmax(1) != s["labels"]).float().mean())
    cross = df[(df["source"] == "A") & (df["target"] == "B") & (df["attack"] == "fgsm")
               & ~df["amplified"]]
    assert cross["error"].item() == pytest.approx(by_hand)
    noise = df[df["attack"] == "gaussian"]
    assert noise["mean_distortion"].to_numpy() == pytest.approx(noise["sigma"].to_numpy(), rel=0.02)
    assert (noise["noise_std"] >= noise["sigma"]).all()
    assert df[df["attack"] == "fgsm"]["noise_std"].isna().all()


def test_the_cross_training_table_has_its_gaussian_control(split, two_models):
    paths = [make_set(split, w, "fgsm", eps=0.1) for w in two_models]
    study = tables.Study("digits", split / "test.safetensors", two_models, "cpu", "ieee")
    df = tables.cross_training_table(study, paths, 0.1, seed=0).to_pandas()
    assert len(df) == 2 * 2 * 2 + 2  # sets x (raw, amplified) x targets + noise per target
    noise = df[df["source"] == "gaussian"]
    assert sorted(noise["target"]) == ["A", "B"] and (noise["sigma"] == 0.1).all()
    assert noise["mean_distortion"].to_numpy() == pytest.approx([0.1, 0.1], rel=0.02)
    # the noise is the transfer table's control of the same size and seed, on the same images
    transfer = tables.transfer_table(study, paths, [0.1], seed=0).to_pandas()
    same = transfer[transfer["attack"] == "gaussian"].set_index("target")["error"]
    assert noise.set_index("target")["error"].to_dict() == same.to_dict()


def test_adversarial_training_batches_are_the_batch_and_its_fgsm_copies(split, two_models):
    model = models.load_weights(two_models[0], num_classes=10, input_shape=(1, 8, 8)).train()
    x, y = data.load_split(split / "test.safetensors")
    hook = mix_adversarial("fgsm", 0.2, seed=0, num_classes=10)
    bx, by = hook(model, x[:16], y[:16])
    assert torch.equal(bx[:16], x[:16]) and torch.equal(by, torch.cat([y[:16], y[:16]]))
    assert torch.equal(bx[16:], attacks.fgsm(model.eval(), x[:16], y[:16], 0.2))
    with pytest.raises(ValueError, match="adversarial training attack 'cw' is unknown"):
        mix_adversarial("cw", 0.1, seed=0, num_classes=10)


def test_unit_inspection_ranks_images_by_the_unit_and_by_a_seeded_direction(split, two_models):
    model = models.load_weights(two_models[1], num_classes=10, input_shape=(1, 8, 8))
    images, _ = data.load_split(split / "test.safetensors")
    found = units.inspect(model, "fc1", images, unit=3, top=5, seed=2)
    with torch.no_grad():  # the layer's activations by hand: sigmoid(W x + b)
        phi = torch.sigmoid(images.flatten(1) @ model[1].weight.T + model[1].bias).double().numpy()
    assert found["unit"].tolist() == list(np.argsort(-phi[:, 3], kind="stable")[:5])
    v = found["direction"].double().numpy()
    assert abs(np.linalg.norm(v) - 1) < 1e-6
    assert found["random"].tolist() == list(np.argsort(-(phi @ v), kind="stable")[:5])
    again = units.inspect(model, "fc1", images, unit=0, top=1, seed=2)["direction"]
    assert torch.equal(found["direction"], again)
    with pytest.raises(ValueError, match="unit 100 is out of range"):
        units.inspect(model, "fc1", images, unit=100, top=5, seed=2)


# --- the config -----------------------------------------------------------------------------

BASE = {
    "dataset": {"name": "digits"},
    "models": {"FC10-1e-4": {"arch": "fc10", "train": {"weight_decay": 0.0001}},
               "FC100-100-10": {"arch": "fc100_100_10"},
               "P1": {"arch": "fc100_100_10", "train_split": "P1"},
               "P2": {"arch": "fc100_100_10", "train_split": "P2"}},
    "adversarial": {"models": ["FC10-1e-4", "FC100-100-10"], "attacks": {"fgsm": {"eps": 0.1}},
                    "cross_training": {"models": ["P1", "P2"]},
                    "training": {"model": "FC100-100-10", "regimes": {"adv": {"attack": "fgsm"}}},
                    "units": {"model": "FC100-100-10", "layer": "fc1"}},
}


@pytest.mark.parametrize("change, message", [
    (lambda c: c["adversarial"]["attacks"].update(cw={}),
     r"unknown key 'cw' in adversarial.attacks; expected one of \['fgsm', 'lbfgs', 'pgd'\]"),
    (lambda c: c["models"]["P1"].update(train_split="P3"),
     r"models.P1.train_split = 'P3' is not allowed; expected one of \['all', 'P1', 'P2'\]"),
    (lambda c: c["models"]["FC10-1e-4"]["train"].update(weight_decay=-1),
     r"models.FC10-1e-4.train.weight_decay = -1 is out of range; expected a number >= 0"),
    (lambda c: c["models"]["FC100-100-10"].pop("arch"),
     r"models.FC100-100-10: 'FC100-100-10' is not a registry architecture, so it needs an `arch`"),
    (lambda c: c["models"]["FC100-100-10"].update(arch="resnet50"),
     r"dataset 'digits' cannot feed architecture 'resnet50'"),
    (lambda c: c["adversarial"]["models"].append("FC300"),
     r"adversarial.models\[2\] = 'FC300' is not a model of this study"),
    (lambda c: c["adversarial"]["training"].update(model="fc"),
     r"adversarial.training.model = 'fc' is not a model of this study"),
    (lambda c: c["adversarial"]["units"].update(layer="fc3"),
     r"adversarial.units.layer = 'fc3' is not a hidden layer of FC100-100-10; expected one of "
     r"\['fc1', 'fc2'\]"),
    (lambda c: c["adversarial"]["training"]["regimes"]["adv"].update(attack="deepfool"),
     r"adversarial.training.regimes.adv.attack = 'deepfool' is not allowed"),
    (lambda c: c["adversarial"]["attacks"]["fgsm"].update(eps=-0.1),
     r"adversarial.attacks.fgsm.eps = -0.1 is out of range"),
    (lambda c: c["models"]["P1"].update(pretrain={}, train={"init": "results/x.safetensors"}),
     r"models.P1: both pretrain and train.init"),
    (lambda c: c["adversarial"]["training"]["regimes"].update(base={"weight_decay": 0.1}),
     r"adversarial.training.regimes = 'base' is reserved; expected any other name than 'base'"),
    (lambda c: c["adversarial"]["training"].update(seeds=0),
     r"adversarial.training.seeds = 0 is out of range; expected an integer >= 1"),
])
def test_a_bad_adversarial_config_gets_one_clear_error(change, message):
    config = copy.deepcopy(BASE)
    check(config, SCHEMA)
    change(config)
    with pytest.raises(ConfigError, match=message):
        check(config, SCHEMA)


# --- end to end -----------------------------------------------------------------------------

ADV_CONFIG = tiny_config("adversarial")


@pytest.mark.workflow
def test_the_adversarial_study_builds_end_to_end(tmp_path):
    from test_workflow import snakemake, study_copy

    study_copy(tmp_path, ADV_CONFIG)
    snakemake(tmp_path)
    out = tmp_path / "results" / "digits" / "adversarial"
    distortion = pd.read_parquet(out / "distortion.parquet")
    assert list(distortion["model"]) == ["FC10", "AE"] and (distortion["n_images"] == 20).all()
    assert set(distortion["attack"]) == {"lbfgs"} and (distortion["success_rate"] >= 0.5).all()
    transfer = pd.read_parquet(out / "transfer.parquet")
    assert len(transfer) == 2 * 2 * 2 * 2 + 2  # (lbfgs, fgsm) x sources x targets x (raw, x0.2) + noise
    assert {"lbfgs", "fgsm", "gaussian"} == set(transfer["attack"])
    amplified = transfer[transfer["amplified"]]
    assert set(amplified["attack"]) == {"lbfgs", "fgsm"} and set(amplified["sigma"]) == {0.2}
    s = tensorfiles.load_tensors(out / "lbfgs" / "FC10.safetensors")
    assert (s["targets"] != s["labels"]).all() and (s["targets"] >= 0).all()
    cross = pd.read_parquet(out / "cross_training.parquet")
    assert set(zip(cross["source"], cross["source_split"], strict=True)) == {
        ("P1", "P1"), ("P2", "P2"), ("gaussian", "none")}
    # each network trains from its own seed: the study seed and its name hashed
    seeds = {name: int(tensorfiles.load_metadata(
        tmp_path / f"results/digits/{name}/weights.safetensors")["seed"]) for name in ("P1", "P2", "FC10")}
    assert seeds == {name: int.from_bytes(hashlib.sha256(f"0/network/{name}".encode()).digest()[:4],
                                          "little") >> 1 for name in seeds}
    assert len(set(seeds.values())) == 3
    regimes = pd.read_parquet(out / "adversarial_training.parquet")
    assert list(regimes["regime"]) == ["base", "base", "adv", "adv", "wd", "wd"]
    assert list(regimes["replicate"]) == [0, 1] * 3
    assert list(regimes["adversarial"]) == ["none", "none", "fgsm", "fgsm", "none", "none"]
    assert list(regimes["weight_decay"]) == [0.0, 0.0, 0.0, 0.0, 0.01, 0.01]
    # replicate k starts every regime from one seed (k = 0: the model's own), k = 1 another
    assert set(regimes[regimes["replicate"] == 0]["seed"]) == {seeds["FC10"]}
    assert regimes[regimes["replicate"] == 1]["seed"].nunique() == 1
    assert regimes[regimes["replicate"] == 1]["seed"].iloc[0] != seeds["FC10"]
    for _, group in regimes.groupby("regime"):  # two networks: mean ± 12.706 * sd / sqrt(2)
        errors = group["test_error"].to_numpy()
        half = 12.706204736174698 * errors.std(ddof=1) / np.sqrt(2)
        assert group["test_error_mean"].iloc[0] == pytest.approx(errors.mean())
        assert group["test_error_high"].iloc[0] == pytest.approx(errors.mean() + half)
    init = tensorfiles.load_metadata(tmp_path / "results/digits/AE/weights.safetensors")["init"]
    assert init.endswith("AE/pretrained.safetensors")
    for figure in ("transfer", "units", "examples/FC10", "examples/AE"):
        assert (out / "figures" / f"{figure}.png").read_bytes().startswith(b"\x89PNG")
    for table in ("distortion", "transfer", "cross_training", "adversarial_training"):
        assert pd.read_csv(out / f"{table}.csv").shape[0] > 0
