"""lesion.attacks against independent references.

FGSM and PGD against torchattacks 3.5.1 on the same model and inputs (the
random start drawn alike); L-BFGS against the closed-form minimum
perturbation of a linear model, against FGSM's distortion on a trained
network, and against its own one-image-at-a-time runs; the distortion
formula by hand; the target rule's invariants; the test-set file format.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
import torchattacks
from torch import nn

import tolerance
from lesion import attacks, data, models, tensorfiles


@pytest.fixture(scope="module")
def split() -> dict[str, torch.Tensor]:
    """The digits, 100 seeded test images and the rest for training."""
    spec = data.get("digits")
    raw = spec.raw()
    order = torch.randperm(len(raw["labels"]), generator=torch.Generator().manual_seed(0))
    images = spec.preprocess(raw["images"])
    test, train = order[:100], order[100:]
    return {"x_train": images[train], "y_train": raw["labels"][train],
            "x_test": images[test], "y_test": raw["labels"][test], "index": test}


@pytest.fixture(scope="module")
def trained(split) -> nn.Module:
    """FC100-100-10 trained for 20 seeded epochs on the digits (about 95% test accuracy)."""
    torch.manual_seed(0)
    model = models.build("mlp", num_classes=10, input_shape=(1, 8, 8))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(0)
    for _ in range(20):
        for batch in torch.randperm(len(split["y_train"]), generator=order).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(split["x_train"][batch]),
                                        split["y_train"][batch]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(split["x_test"]).argmax(1) == split["y_test"]).float().mean()
    assert accuracy > 0.9
    return model


# --- FGSM and PGD against torchattacks -------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_fgsm_equals_torchattacks(name, eps, request, digits):
    model = request.getfixturevalue(name)
    x, y = digits
    reference = torchattacks.FGSM(model, eps=eps)(x, y)
    assert torch.equal(attacks.fgsm(model, x, y, eps), reference)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_pgd_without_random_start_equals_torchattacks(name, request, digits):
    model = request.getfixturevalue(name)
    x, y = digits
    reference = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=7, random_start=False)(x, y)
    ours = attacks.pgd(model, x, y, eps=0.1, step_size=0.02, steps=7, generator=None,
                       random_start=False)
    assert torch.equal(ours, reference)


def test_pgd_with_random_start_equals_torchattacks_given_the_same_stream(mlp, digits):
    """torchattacks draws its start from the global CPU generator; seeded alike, ours must match."""
    x, y = digits
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        reference = torchattacks.PGD(mlp, eps=0.1, alpha=0.02, steps=5)(x, y)
    ours = attacks.pgd(mlp, x, y, eps=0.1, step_size=0.02, steps=5,
                       generator=torch.Generator().manual_seed(123))
    assert torch.equal(ours, reference)


def test_pgd_random_start_is_uniform_in_the_eps_box_and_clamped(mlp):
    """With step_size 0 the result is the start itself: x + U(-eps, eps), clamped to [0, 1]."""
    eps = 0.2
    x = torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(50, dtype=torch.int64)

    def start(seed):
        return attacks.pgd(mlp, x, y, eps=eps, step_size=0.0, steps=1,
                           generator=torch.Generator().manual_seed(seed))

    adv = start(5)
    assert adv.min() >= 0 and adv.max() <= 1
    assert ((adv - x).abs() <= eps + 1e-6).all()
    inner = (x > eps) & (x < 1 - eps)  # no clamp can reach these
    offsets = (adv - x)[inner].double().numpy()
    assert scipy.stats.kstest(offsets, scipy.stats.uniform(-eps, 2 * eps).cdf).pvalue > 1e-3
    edge = x < 0.05  # clamped at 0 about half the time (offsets below -x)
    assert 0.3 < (adv[edge] == 0).double().mean() < 0.7
    torch.manual_seed(999)  # global RNG state plays no part
    assert torch.equal(start(5), adv)
    assert not torch.equal(start(6), adv)


def test_pgd_stays_within_eps_of_the_image_and_in_the_box(trained, split):
    x, y = split["x_test"], split["y_test"]
    adv = attacks.pgd(trained, x, y, eps=0.1, step_size=0.03, steps=10,
                      generator=torch.Generator().manual_seed(0))
    assert adv.min() >= 0 and adv.max() <= 1
    assert ((adv - x).abs() <= 0.1 + 1e-6).all()
    with torch.no_grad():
        assert (trained(adv).argmax(1) != y).float().mean() > 0.5


# --- distortion, targets, test sets ----------------------------------------------------------

def test_distortion_is_the_root_mean_square_change_per_value():
    x = torch.zeros(2, 1, 2, 2)
    adv = x.clone()
    adv[0, 0, 0, 0], adv[0, 0, 1, 1] = 0.1, 0.3      # sqrt((0.01 + 0.09) / 4) = 0.1581139
    adv[1] = 0.5                                     # sqrt(4 * 0.25 / 4) = 0.5
    assert attacks.distortion(x, adv).tolist() == pytest.approx([0.1581139, 0.5], rel=1e-6)
    rgb = torch.zeros(1, 3, 2, 2)
    changed = rgb.clone()
    changed[0, 1, 0, 0] = 0.6                        # n = 12 values: sqrt(0.36 / 12) = 0.1732051
    assert attacks.distortion(rgb, changed).item() == pytest.approx(0.1732051, rel=1e-6)
    assert attacks.distortion(x, adv).dtype == torch.float32


def test_random_targets_are_never_the_label_and_reproducible_per_index():
    labels = torch.arange(3000) % 10
    index = torch.arange(3000) * 7 + 3
    targets = attacks.random_targets(labels, index, 10, seed=0)
    assert targets.dtype == torch.int64
    assert not (targets == labels).any()
    assert targets.min() >= 0 and targets.max() <= 9
    alone = [int(attacks.random_targets(labels[i:i + 1], index[i:i + 1], 10, seed=0))
             for i in (0, 17, 2999)]
    assert alone == [int(targets[0]), int(targets[17]), int(targets[2999])]
    shuffled = torch.randperm(3000, generator=torch.Generator().manual_seed(4))
    assert torch.equal(attacks.random_targets(labels[shuffled], index[shuffled], 10, seed=0),
                       targets[shuffled])
    assert (attacks.random_targets(labels, index, 10, seed=1) != targets).float().mean() > 0.8


def test_random_targets_are_uniform_over_the_other_classes():
    labels = torch.full((9000,), 3)
    targets = attacks.random_targets(labels, torch.arange(9000), 10, seed=0)
    counts = np.bincount(targets.numpy(), minlength=10)
    assert counts[3] == 0
    others = np.delete(counts, 3)
    assert scipy.stats.chisquare(others).pvalue > 1e-3  # expected 1000 each
    two = attacks.random_targets(torch.tensor([0, 1]), torch.tensor([5, 6]), 2, seed=0)
    assert two.tolist() == [1, 0]


def test_an_adversarial_test_set_reloads_bit_identically_and_works_as_a_test_split(
        tmp_path, trained, split):
    x, y, index = split["x_test"][:20], split["y_test"][:20], split["index"][:20]
    adv = attacks.fgsm(trained, x, y, 0.2)
    result = attacks.untargeted(trained, x, y, adv)
    with torch.no_grad():
        assert torch.equal(result.success, trained(adv).argmax(1) != y)
    assert (result.targets == -1).all()
    tensors = attacks.test_set(result, y, index)
    assert {k: v.dtype for k, v in tensors.items()} == {
        "images": torch.float32, "labels": torch.int64, "index": torch.int64,
        "targets": torch.int64, "distortion": torch.float32, "success": torch.uint8}
    path = tmp_path / "fgsm.safetensors"
    tensorfiles.save_tensors(tensors, path, {"attack": "fgsm"})
    back = tensorfiles.load_tensors(path)
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    images, labels = data.load_split(path)
    assert torch.equal(images, adv) and torch.equal(labels, y)


# --- L-BFGS ----------------------------------------------------------------------------------

def _binary_linear(w: np.ndarray, bias: float) -> nn.Module:
    """Two classes, logit_0 = 0 and logit_1 = w . x + bias: the margin of class 1 is linear in x."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(w.size, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1] = torch.from_numpy(w.ravel()).float()
        model[1].bias.copy_(torch.tensor([0.0, bias]))
    return model.eval()


def _boundary(x: np.ndarray, w: np.ndarray, bias: float) -> tuple[float, float]:
    """(c*, distortion) at the edge of success, from the KKT conditions, solved by brentq.

    Two classes, label 0, target 1: the cross-entropy to the target is
    softplus(-m) with the margin m(x') = w . x' + bias. Minimising
    c |r|^2 + softplus(-m(x + r)) over the box -x <= r <= 1 - x is a convex
    problem whose KKT conditions read, per pixel,
        r_i = clip(s w_i, -x_i, 1 - x_i)   with   s = sigmoid(-m) / (2 c)
    (each coordinate minimises the separable quadratic c r_i^2 - sigmoid(-m) w_i r_i
    on its interval). The margin falls as c grows (a larger c shrinks s), so
    the target is reached exactly for c below the c* where m = 0. There
    sigmoid(0) = 1/2, so s* solves  m(x) + sum_i w_i clip(s* w_i, -x_i, 1 - x_i) = 0
    (increasing in s*), and c* = 1 / (4 s*). Without active bounds this is
    closed form: s* = -m(x) / |w|^2, c* = |w|^2 / (4 |m(x)|), and the
    distortion |m(x)| / (|w| sqrt(n)) is the distance to the decision plane,
    the least any attack can achieve.
    """
    x, w = x.ravel().astype(np.float64), w.ravel().astype(np.float64)
    m0 = float(w @ x + bias)

    def margin(s):
        return m0 + float(w @ np.clip(s * w, -x, 1 - x))

    s_star = scipy.optimize.brentq(margin, 0.0, 1e3, xtol=1e-14)
    r = np.clip(s_star * w, -x, 1 - x)
    return 1.0 / (4.0 * s_star), float(np.sqrt(np.mean(r * r)))


def test_the_c_search_finds_the_boundary_c_of_a_linear_model(split):
    """Interior images (the box never binds: the closed form) and digits (it binds), in one batch."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=64)
    bias = -float(w @ np.full(64, 0.5)) - 2.0                 # margin -2 at the grey image
    grey = np.full((3, 1, 8, 8), 0.5) + rng.uniform(-0.05, 0.05, (3, 1, 8, 8))
    digits = split["x_test"][:5].double().numpy()
    x = np.concatenate([grey, digits])
    model = _binary_linear(w, bias)
    images = torch.from_numpy(x).float()
    with torch.no_grad():
        assert (model(images).argmax(1) == 0).all()          # every image is class 0
    labels, targets = torch.zeros(8, dtype=torch.int64), torch.ones(8, dtype=torch.int64)
    result = attacks.lbfgs(model, images, labels, targets, c_tolerance=0.01)
    expected = [_boundary(xi, w, bias) for xi in images.double().numpy()]
    c_star = np.array([c for c, _ in expected])
    d_star = np.array([d for _, d in expected])
    assert np.ptp(c_star) > 0.1 * c_star.mean()              # each image has its own c*
    assert result.success.all()
    c = result.c.numpy()
    assert (c <= c_star * 1.001).all() and (c >= c_star / 1.01 / 1.001).all()
    d = result.distortion.double().numpy()
    assert (d >= d_star * 0.999).all() and (d <= d_star * 1.01 * 1.002).all()
    for i in range(3):  # interior: the closed form, and no pixel at a bound
        m0 = float(w @ images[i].double().numpy().ravel() + bias)
        assert d_star[i] == pytest.approx(abs(m0) / np.linalg.norm(w) / 8, rel=1e-9)
    assert (result.images >= 0).all() and (result.images <= 1).all()


def test_lbfgs_reaches_every_target_within_the_box(trained, split):
    x, y, index = split["x_test"][:40], split["y_test"][:40], split["index"][:40]
    targets = attacks.random_targets(y, index, 10, seed=0)
    result = attacks.lbfgs(trained, x, y, targets)
    assert result.success.all()
    assert (result.images >= 0).all() and (result.images <= 1).all()
    with torch.no_grad():
        assert torch.equal(trained(result.images).argmax(1), targets)
    diff = (result.images - x).double().flatten(1).numpy()
    by_hand = np.sqrt((diff ** 2).sum(1) / 64)
    # both in float64 from the same float32 images, then stored as float32: one ulp
    assert result.distortion.numpy() == pytest.approx(by_hand, rel=2 * tolerance.U32)
    assert 0 < by_hand.mean() < 0.3
    assert torch.isfinite(result.c).all() and (result.c > 0).all()


def test_lbfgs_distortion_is_not_larger_than_fgsm_at_the_same_success(trained, split):
    """FGSM at the smallest eps (grid 0.01) that flips each label, then L-BFGS to the class it reached."""
    x, y = split["x_test"][:40], split["y_test"][:40]
    reached = torch.full_like(y, -1)
    fgsm_d = torch.full((len(y),), math.inf)
    for eps in np.arange(0.01, 1.0, 0.01):
        adv = attacks.fgsm(trained, x, y, float(eps))
        with torch.no_grad():
            pred = trained(adv).argmax(1)
        new = (reached < 0) & (pred != y)
        reached[new] = pred[new]
        fgsm_d[new] = attacks.distortion(x, adv)[new]
    hit = reached >= 0
    assert hit.float().mean() > 0.9
    result = attacks.lbfgs(trained, x[hit], y[hit], reached[hit])
    assert result.success.all()
    assert (result.distortion <= fgsm_d[hit] * 1.02).all()
    assert result.distortion.mean() < 0.8 * fgsm_d[hit].mean()


def test_lbfgs_of_a_batch_matches_one_image_at_a_time(trained, split):
    x, y, index = split["x_test"][:8], split["y_test"][:8], split["index"][:8]
    targets = attacks.random_targets(y, index, 10, seed=3)
    batch = attacks.lbfgs(trained, x, y, targets)
    alone = [attacks.lbfgs(trained, x[i:i + 1], y[i:i + 1], targets[i:i + 1]) for i in range(8)]
    assert torch.cat([r.success for r in alone]).all() and batch.success.all()
    single = torch.cat([r.distortion for r in alone])
    # not rounding: the batch is one L-BFGS-B problem with a joint stopping rule, so each
    # image stops elsewhere within the solver's tolerance (attacks._FTOL: every distortion
    # within 1.6% of the converged one, measured) and within the c bracket (ratio 1.02):
    # 2 x 1.6% + 2% = 5.2%, rounded to 5%
    assert batch.distortion.numpy() == pytest.approx(single.numpy(), rel=0.05)


def test_lbfgs_keeps_an_image_the_model_already_gives_the_target(trained, split):
    x = split["x_test"][:4]
    with torch.no_grad():
        pred = trained(x).argmax(1)
    labels = (pred + 1) % 10  # pretend labels, so that the prediction is a legal target
    result = attacks.lbfgs(trained, x, labels, pred)
    assert result.success.all() and torch.equal(result.images, x)
    assert (result.distortion == 0).all() and torch.isinf(result.c).all()


def test_lbfgs_reports_failure_when_the_box_cannot_reach_the_target():
    """A margin of -100 against |w|_1 = 64: no image in the box reaches class 1."""
    model = _binary_linear(np.ones(64), -100.0)
    x = torch.full((2, 1, 8, 8), 0.5)
    labels, targets = torch.zeros(2, dtype=torch.int64), torch.ones(2, dtype=torch.int64)
    result = attacks.lbfgs(model, x, labels, targets, bracket_steps=2)
    assert not result.success.any() and torch.isnan(result.c).all()
    # the strongest attempt is kept: every pixel pushed up, most of the way to 1
    assert (result.images > 0.9).all() and (result.images <= 1).all()


def test_lbfgs_keeps_each_image_its_own_outcome_in_a_mixed_batch():
    """Three classes: logit_0 = 0, logit_1 = sum(x) - 40, logit_2 = -100 (never reachable).

    A grey image (sum 32, margin -8) reaches class 1 at the plane sum(x') = 40:
    every pixel up by 8/64 = 0.125, distortion 0.125, c* = |w|^2 / (4 * 8) = 2
    (the binary closed form: class 2's term is e^-100 small). A 0.7 image is
    class 1 already; class 2 is out of reach for any image.
    """
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1] = 1.0
        model[1].bias.copy_(torch.tensor([0.0, -40.0, -100.0]))
    model.eval()
    x = torch.stack([torch.full((1, 8, 8), v) for v in (0.5, 0.0, 0.7, 0.5)])
    labels = torch.zeros(4, dtype=torch.int64)
    targets = torch.tensor([1, 2, 1, 2])
    result = attacks.lbfgs(model, x, labels, targets, c_tolerance=0.01)
    assert result.success.tolist() == [True, False, True, False]
    # the exact answer within the c bracket (ratio 1 + c_tolerance = 1.01) and rounding
    assert result.distortion[0].item() == pytest.approx(0.125, rel=0.012)
    assert result.c[0].item() == pytest.approx(2.0, rel=0.012) and result.c[0] <= 2.0 * 1.001
    assert torch.equal(result.images[2], x[2]) and result.distortion[2] == 0
    assert torch.isinf(result.c[2]) and torch.isnan(result.c[[1, 3]]).all()
    assert torch.equal(result.targets, targets)


# --- bad arguments: one clear ValueError each --------------------------------------------------

def _x():
    return torch.full((2, 1, 8, 8), 0.5)


Y = torch.tensor([0, 1])


@pytest.mark.parametrize("call, match", [
    (lambda m: attacks.fgsm(m, _x(), Y, -0.1), r"FGSM eps -0.1 is out of range; expected a number >= 0"),
    (lambda m: attacks.fgsm(m, _x(), Y, math.nan), r"FGSM eps nan is out of range"),
    (lambda m: attacks.pgd(m, _x(), Y, eps=-1.0, step_size=0.1, steps=3,
                           generator=torch.Generator()), r"PGD eps -1.0 is out of range"),
    (lambda m: attacks.pgd(m, _x(), Y, eps=0.1, step_size=0.1, steps=0,
                           generator=torch.Generator()),
     r"PGD steps 0 is out of range; expected an integer >= 1"),
    (lambda m: attacks.pgd(m, _x(), Y, eps=0.1, step_size=0.1, steps=2.5,
                           generator=torch.Generator()), r"PGD steps 2.5 is out of range"),
    (lambda m: attacks.pgd(m, _x(), Y, eps=0.1, step_size=-0.1, steps=2,
                           generator=torch.Generator()), r"PGD step_size -0.1 is out of range"),
    (lambda m: attacks.pgd(m, _x(), Y, eps=0.1, step_size=0.1, steps=2, generator=None),
     r"PGD generator is None; expected a torch.Generator"),
    (lambda m: attacks.lbfgs(m, _x(), Y, torch.tensor([3, 1])),
     r"L-BFGS targets\[1\] = 1 equals the image's label; expected another class"),
    (lambda m: attacks.lbfgs(m, _x() * 3, Y, torch.tensor([3, 4])),
     r"L-BFGS images span \[1.5, 1.5\]; expected values in the \[0, 1\] box"),
    (lambda m: attacks.lbfgs(m, _x(), Y, torch.tensor([3, 4]), c_tolerance=0.0),
     r"L-BFGS c_tolerance 0.0 is out of range; expected a number > 0"),
    (lambda m: attacks.lbfgs(m, _x(), Y, torch.tensor([3, 4]), c_factor=1.0),
     r"L-BFGS c_factor 1.0 is out of range; expected a number > 1"),
    (lambda m: attacks.lbfgs(m, _x(), Y, torch.tensor([3, 4]), max_iterations=0),
     r"L-BFGS max_iterations 0 is out of range; expected an integer >= 1"),
    (lambda m: attacks.lbfgs(m, _x(), Y, torch.tensor([3])),
     r"L-BFGS targets has shape \(1,\); expected \(2,\)"),
    (lambda m: attacks.random_targets(Y, torch.tensor([0, 1]), 1, seed=0),
     r"num_classes 1 is out of range; expected an integer >= 2"),
    (lambda m: attacks.random_targets(torch.tensor([0, 10]), torch.tensor([0, 1]), 10, seed=0),
     r"labels\[1\] = 10 is out of range; expected a class in 0..9"),
    (lambda m: attacks.test_set(attacks.untargeted(m, _x(), Y, _x()), Y, torch.tensor([0])),
     r"index has shape \(1,\); expected \(2,\)"),
])
def test_bad_arguments_are_one_clear_value_error(mlp, call, match):
    with pytest.raises(ValueError, match=match):
        call(mlp)


# --- the GPU path, where a GPU is present ------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_attacks_on_cuda_agree_with_the_cpu(trained, split):
    """The model on CUDA: the same PGD start (a CPU generator), the same targets, L-BFGS examples
    that reach them with the CPU's distortion (within the c search's tolerance), left on CUDA."""
    import copy

    gpu = copy.deepcopy(trained).cuda()
    x, y, index = split["x_test"][:30], split["y_test"][:30], split["index"][:30]
    start = {dev: attacks.pgd(model, x.to(dev), y.to(dev), eps=0.1, step_size=0.0, steps=1,
                              generator=torch.Generator().manual_seed(2))
             for dev, model in (("cpu", trained), ("cuda", gpu))}
    assert torch.equal(start["cuda"].cpu(), start["cpu"])
    # the adversarial study's PGD sets: the start drawn on the CPU whatever the device (issue 24)
    from lesion.studies.adversarial import sets

    pgd_sets = {dev: sets.attack(model, x.to(dev), y.to(dev), index.to(dev), "pgd",
                                 {"eps": 0.1, "step_size": 0.0, "steps": 1}, seed=2,
                                 num_classes=10)
                for dev, model in (("cpu", trained), ("cuda", gpu))}
    assert torch.equal(pgd_sets["cuda"]["images"].cpu(), pgd_sets["cpu"]["images"])
    targets = attacks.random_targets(y.cuda(), index.cuda(), 10, seed=0)
    assert targets.is_cuda and torch.equal(targets.cpu(), attacks.random_targets(y, index, 10, 0))
    on_gpu = attacks.lbfgs(gpu, x.cuda(), y.cuda(), targets)
    on_cpu = attacks.lbfgs(trained, x, y, targets.cpu())
    assert on_gpu.images.is_cuda and on_gpu.success.all() and on_cpu.success.all()
    with torch.no_grad():
        assert torch.equal(gpu(on_gpu.images).argmax(1), targets)
    # the solver's and the c bracket's tolerance, as in the batch-against-alone test
    assert on_gpu.distortion.cpu().numpy() == pytest.approx(on_cpu.distortion.numpy(), rel=0.05)
