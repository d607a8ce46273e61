"""Adversarial examples for inputs in [0, 1] (normalisation lives inside the model).

Engine module: the adversarial study makes test sets and adversarial
training with these, the filtering study regenerates FGSM sets from
retrained networks. Every function takes a model in eval mode and returns
new images clamped to the [0, 1] box; none mutates its inputs or the model,
does I/O or touches global RNG state (random draws take a generator).

- `fgsm`, `pgd`: the L-inf gradient-sign attacks, equal to torchattacks 3.5.1.
- `lbfgs`: Szegedy et al.'s (2013) box-constrained L-BFGS, the minimum
  distortion attack no maintained library ships any more; batched, so a
  hundred images cost about what ten do one at a time.
- `random_targets`, `distortion`, `untargeted`, `test_set`: the target rule,
  the paper's distortion measure, and the adversarial test-set format.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import threadpoolctl
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AttackResult:
    """A batch of adversarial examples, one entry per input image (on the inputs' device).

    images: float32, the inputs' shape, in [0, 1]. targets: int64 target
    classes, -1 for an untargeted attack. success: bool, prediction == target
    (targeted) or prediction != label (untargeted), judged by the model on
    `images` as returned. distortion: float32, see `distortion`. c: float64,
    the penalty weight of L-BFGS's best successful example (inf: the clean
    image already has the target's class; NaN: no success, or not L-BFGS).
    """

    images: torch.Tensor
    targets: torch.Tensor
    success: torch.Tensor
    distortion: torch.Tensor
    c: torch.Tensor


def _input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d(mean cross-entropy)/d(images), without touching the parameters' .grad."""
    x = images.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def _check_eps(attack: str, eps: float) -> None:
    if not eps >= 0:  # NaN too
        raise ValueError(f"{attack} eps {eps!r} is out of range; expected a number >= 0")


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): x + eps * sign(grad), clamped to [0, 1].

    The Pravin et al. notebooks left the clamp out; an unclamped image is not
    an image, so it is always applied here.
    """
    _check_eps("FGSM", eps)
    grad = _input_gradient(model, images, labels)
    return (images + eps * grad.sign()).clamp(0.0, 1.0).detach()


def fgsm_batched(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *,
                 batch_size: int, device: torch.device) -> torch.Tensor:
    """fgsm of every image, `batch_size` at a time on `device`; the images come back on the CPU.

    FGSM is per image (each image's own gradient), so batching changes nothing
    but memory.
    """
    model = model.to(device).eval()
    return torch.cat([fgsm(model, images[i:i + batch_size].to(device),
                           labels[i:i + batch_size].to(device), eps).cpu()
                      for i in range(0, len(images), batch_size)])


def pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float,
        step_size: float, steps: int, generator: torch.Generator | None,
        random_start: bool = True) -> torch.Tensor:
    """Projected gradient descent in the L-inf ball of radius eps (Madry et al. 2018).

    As torchattacks' PGD: start at x + U(-eps, eps) clamped to [0, 1] (or at
    x without `random_start`), then `steps` times: step_size * sign(grad of
    the mean cross-entropy), project onto the eps-ball around x, clamp to
    [0, 1]. The start is drawn on `generator`'s device and moved to the
    images', so a CPU generator gives the same start on a GPU.
    """
    _check_eps("PGD", eps)
    if not step_size >= 0:
        raise ValueError(f"PGD step_size {step_size!r} is out of range; expected a number >= 0")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"PGD steps {steps!r} is out of range; expected an integer >= 1")
    if random_start and generator is None:
        raise ValueError("PGD generator is None; expected a torch.Generator for the random "
                         "start (or random_start=False)")
    x = images.detach()
    adv = x.clone()
    if random_start:
        noise = torch.empty(x.shape, dtype=x.dtype, device=generator.device)
        adv = (adv + noise.uniform_(-eps, eps, generator=generator).to(x.device)).clamp(0.0, 1.0)
    for _ in range(steps):
        adv = adv + step_size * _input_gradient(model, adv, labels).sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)
    return adv.detach()


def distortion(images: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    """Szegedy et al.'s distortion per image: sqrt(sum((x' - x)^2) / n), float32.

    n is the number of values per image (pixels times channels; the paper's
    MNIST has one channel), so the measure is the root-mean-square change
    of a pixel: 0.1 on [0, 1] images is a tenth of the range. Summed in float64.
    """
    diff = (adversarial.detach().double() - images.detach().double()).flatten(1)
    return diff.square().mean(1).sqrt().float()


def _target_seed(seed: int, index: int) -> int:
    """A 63-bit seed derived by hashing (seed, test-set index), never from RNG state."""
    digest = hashlib.sha256(f"{int(seed)}/target/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def random_targets(labels: torch.Tensor, index: torch.Tensor, num_classes: int,
                   seed: int) -> torch.Tensor:
    """The study's target rule: a class drawn uniformly among the num_classes - 1 others.

    Image i's draw comes from a CPU generator seeded by hashing (seed,
    index[i]), its position in the test set, so any row is reproducible
    alone and does not change when the batch does. int64, labels' device.
    """
    if labels.shape != index.shape or labels.dim() != 1:
        raise ValueError(f"labels and index have shapes {tuple(labels.shape)} and "
                         f"{tuple(index.shape)}; expected two 1-d tensors of the same length")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes {num_classes!r} is out of range; expected an integer >= 2")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"labels[{i}] = {int(labels[i])} is out of range; expected a class "
                         f"in 0..{num_classes - 1}")
    out = []
    for label, i in zip(labels.tolist(), index.tolist(), strict=True):
        g = torch.Generator().manual_seed(_target_seed(seed, i))
        k = int(torch.randint(num_classes - 1, (1,), generator=g))
        out.append(k + (k >= label))  # skip the label: uniform over the others
    return torch.tensor(out, dtype=torch.int64, device=labels.device)


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model(images).argmax(1)


def untargeted(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               adversarial: torch.Tensor) -> AttackResult:
    """An untargeted attack's (FGSM, PGD) images as a result: success = prediction != label."""
    n = len(images)
    return AttackResult(
        images=adversarial.detach().float(),
        targets=torch.full((n,), -1, dtype=torch.int64, device=images.device),
        success=(_predict(model, adversarial) != labels).to(images.device),
        distortion=distortion(images, adversarial),
        c=torch.full((n,), math.nan, dtype=torch.float64, device=images.device))


def test_set(result: AttackResult, labels: torch.Tensor,
             index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The adversarial test-set file's tensors (write them with lesion.tensorfiles.save_tensors).

    A drop-in test set: `images` (float32 NCHW in [0, 1], the adversarial
    images) and `labels` (int64, the true labels) are what
    lesion.data.load_split reads; `index` (int64) is each image's position
    in the test set, as in results/{dataset}/tensors/test.safetensors;
    `targets` (int64, -1: untargeted), `distortion` (float32) and `success`
    (uint8) describe the attack. All on the CPU.
    """
    n = len(result.images)
    for name, t in (("labels", labels), ("index", index)):
        if t.shape != (n,):
            raise ValueError(f"{name} has shape {tuple(t.shape)}; expected ({n},), one entry per "
                             "adversarial image")
    return {"images": result.images.detach().float().cpu().contiguous(),
            "labels": labels.detach().to(torch.int64).cpu(),
            "index": index.detach().to(torch.int64).cpu(),
            "targets": result.targets.detach().to(torch.int64).cpu(),
            "distortion": result.distortion.detach().float().cpu(),
            "success": result.success.detach().to(torch.uint8).cpu()}


# --- Box-constrained L-BFGS (Szegedy et al. 2013, section 4.1) -----------------------------
#
# For an image x and a target class t the paper minimises
#     c * |r| + loss(x + r, t)   subject to x + r in [0, 1]^m
# with box-constrained L-BFGS, and searches c for the smallest distortion that
# reaches t. Choices the paper leaves open, and why:
#
# |r| is the squared L2 norm, sum(r^2). The paper measures distortion in L2
#   and writes |r|; the plain norm has no gradient at r = 0, where the first
#   run starts, and its kink spoils L-BFGS's curvature pairs, while the
#   square is smooth. Both reach the same examples: a KKT point of
#   c*|r|_2 + loss is one of c'*|r|_2^2 + loss with c' = c / (2 |r|_2) (the
#   same box multipliers), so the search over c finds the same minimum
#   distortion. (foolbox's and cleverhans's reimplementations also use the
#   squared L2, with c on the loss instead.)
# loss is the cross-entropy of the softmax to the target class.
# The search over c: a larger c buys a smaller |r| at the price of the
#   target, so the smallest distortion that reaches t is at the largest c
#   whose minimiser still succeeds; that c is what `lbfgs` returns. (The
#   paper's "minimum c" reads right with c weighting the loss, as foolbox
#   has it; it is the same boundary.) From `c_start`, c is multiplied or
#   divided by `c_factor` until a success and a failure bracket it, then
#   bisected in log c until the bracket's ratio is at most 1 + c_tolerance.
#   Bisection rather than an open-ended line search: its tolerance is
#   explicit, and every image needs about the same number of solver calls,
#   so the batch stays full.
# Batching: the images' problems are independent, so their sum, with each
#   image's own c, is minimised by one L-BFGS-B call over all of them (the
#   gradient separates): one forward and backward pass of the batch per
#   solver iteration instead of one per image. Each call starts from the
#   image's previous solution (the clean image in the first round): the
#   minimiser moves little between neighbouring c, and this halves the
#   iterations. The model runs where it lives (the GPU when it is there) in
#   its own precision; the penalty and its gradient are exact float64.
# Speed: scipy's L-BFGS-B makes many tiny BLAS calls, which OpenBLAS threads
#   slow down on a loaded machine (measured on this 2-core one: 19 ms against
#   0.1 ms per iteration with 64 variables, 17 against 2 with 6400), so it
#   runs with one (threadpoolctl, restored on return).

# L-BFGS-B stops when an iteration lowers the summed objective by less than
# this fraction. Measured on digits (mlp and cnn, 100 images each): every
# image's distortion within 1.6% of what 1e-8 gives (means within 0.02%), at
# a fifth of the cnn's time; 1e-4 is off by up to 6%.
_FTOL = 1e-5


def _minimise(model: nn.Module, x0: torch.Tensor, targets: torch.Tensor, c: np.ndarray,
              max_iterations: int, init: torch.Tensor) -> torch.Tensor:
    """argmin over x' in [0, 1] of sum_i c_i |x'_i - x0_i|^2 + CE(model(x'_i), t_i), as x0's dtype."""
    shape, n = x0.shape, len(x0)
    start = x0.detach().double().cpu().numpy().reshape(n, -1)
    weight = np.asarray(c, dtype=np.float64)[:, None]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        diff = flat.reshape(n, -1) - start
        x = torch.from_numpy(flat).to(x0.device, x0.dtype).view(shape).requires_grad_(True)
        loss = F.cross_entropy(model(x), targets, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        grad = grad.detach().double().cpu().numpy().reshape(n, -1) + 2.0 * weight * diff
        return float(loss.detach()) + float(np.sum(weight * diff * diff)), grad.ravel()

    size = start.size
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        found = scipy.optimize.minimize(
            objective, init.detach().double().cpu().numpy().ravel(), jac=True,
            method="L-BFGS-B", bounds=scipy.optimize.Bounds(np.zeros(size), np.ones(size)),
            options={"maxiter": max_iterations, "ftol": _FTOL})
    return torch.from_numpy(found.x).to(x0.device, x0.dtype).view(shape)


def _check_lbfgs(images, labels, targets, c_start, c_factor, c_tolerance, bracket_steps,
                 max_iterations) -> None:
    n = len(images)
    for name, t in (("labels", labels), ("targets", targets)):
        if t.shape != (n,):
            raise ValueError(f"L-BFGS {name} has shape {tuple(t.shape)}; expected ({n},), one "
                             "per image")
    same = (targets == labels).nonzero()
    if len(same):
        i = int(same[0])
        raise ValueError(f"L-BFGS targets[{i}] = {int(targets[i])} equals the image's label; "
                         "expected another class (see random_targets)")
    if n and not (images.min() >= 0 and images.max() <= 1):
        raise ValueError(f"L-BFGS images span [{float(images.min())}, {float(images.max())}]; "
                         "expected values in the [0, 1] box")
    for name, value, ok, expected in (
            ("c_start", c_start, c_start > 0, "a number > 0"),
            ("c_factor", c_factor, c_factor > 1, "a number > 1"),
            ("c_tolerance", c_tolerance, c_tolerance > 0, "a number > 0"),
            ("bracket_steps", bracket_steps, isinstance(bracket_steps, int) and bracket_steps >= 0,
             "an integer >= 0"),
            ("max_iterations", max_iterations,
             isinstance(max_iterations, int) and max_iterations >= 1, "an integer >= 1")):
        if isinstance(value, bool) or not ok:
            raise ValueError(f"L-BFGS {name} {value!r} is out of range; expected {expected}")


def lbfgs(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
          *, c_start: float = 1.0, c_factor: float = 10.0, c_tolerance: float = 0.02,
          bracket_steps: int = 6, max_iterations: int = 200) -> AttackResult:
    """Szegedy et al.'s minimum-distortion targeted attack, batched (see the notes above).

    Per image: the example of smallest distortion that the model gives
    class `targets[i]`, with the largest successful c, found to a relative
    c_tolerance (distortion at the bracket's successful end, so at most
    about c_tolerance above the boundary's). c is searched within
    c_start * c_factor**(+-bracket_steps); `max_iterations` bounds each
    L-BFGS-B call. An image the model already gives the target is its own
    example (distortion 0, c = inf); one that fails at the smallest c
    keeps that strongest attempt, success False. `labels` only guard the
    rule that a target is never the label. Cost: a batch of 200 costs
    about what 100 do on small networks (scipy's per-call overhead
    dominates); L-BFGS-B holds about 25 float64 per pixel of the batch, so
    split thousands of large images into chunks.
    """
    _check_lbfgs(images, labels, targets, c_start, c_factor, c_tolerance, bracket_steps,
                 max_iterations)
    device = next(model.parameters()).device
    x = images.detach().to(device)
    t = targets.to(device)
    n = len(x)
    best = x.clone()
    best_d = np.full(n, np.inf)
    best_c = np.full(n, np.nan)
    success = (_predict(model, x) == t).cpu().numpy() if n else np.zeros(0, bool)
    best_d[success], best_c[success] = 0.0, np.inf
    lo = np.full(n, np.nan)  # largest c known to succeed
    hi = np.full(n, np.nan)  # smallest c known to fail
    c = np.full(n, float(c_start))
    c_min, c_max = c_start / c_factor ** bracket_steps, c_start * c_factor ** bracket_steps
    active = ~success
    last = x.clone()
    while active.any():
        idx = np.flatnonzero(active)
        adv = _minimise(model, x[idx], t[idx], c[idx], max_iterations, last[idx])
        last[idx] = adv
        ok = (_predict(model, adv) == t[idx]).cpu().numpy()
        d = distortion(x[idx], adv).double().cpu().numpy()
        better = ok & (d < best_d[idx])
        # An image without a success keeps its latest attempt: c only fell, so the strongest.
        keep = better | (~success[idx] & ~ok)
        best[torch.from_numpy(idx[keep]).to(device)] = adv[torch.from_numpy(keep).to(device)]
        best_d[idx[better]], best_c[idx[better]] = d[better], c[idx][better]
        success[idx[ok]] = True
        lo[idx[ok]] = np.fmax(lo[idx[ok]], c[idx[ok]])
        hi[idx[~ok]] = np.fmin(hi[idx[~ok]], c[idx[~ok]])
        for i in idx:
            if np.isnan(hi[i]):  # only successes so far: penalise more
                c[i] = c[i] * c_factor
                active[i] = c[i] <= c_max * (1 + 1e-9)
            elif np.isnan(lo[i]):  # only failures so far: penalise less
                c[i] = c[i] / c_factor
                active[i] = c[i] >= c_min * (1 - 1e-9)
            else:
                c[i] = math.sqrt(lo[i] * hi[i])
                active[i] = hi[i] > lo[i] * (1 + c_tolerance)
    images_out = best.to(images.device, torch.float32)
    return AttackResult(
        images=images_out,
        targets=targets.detach().to(torch.int64),
        success=torch.from_numpy(success).to(images.device),
        distortion=distortion(images, images_out),
        c=torch.from_numpy(best_c).to(images.device))
