"""Crash faults at the neurons of a layer (El-Mhamdi et al. 2019) and bounds on their error.

Which activations are "layer L". The neurons of weight layer L are its outputs
after everything that follows it elementwise (normalisation, nonlinearity,
dropout): for the mlp's fc1, the output of the ReLU after fc1; for a conv
layer, every element (channel, row, column) of its activated feature map; for
the last layer, the logits. A crash sets a neuron's output to 0, with no
rescaling, each neuron independently with probability p, fresh for every
input and every repetition. (For ReLU networks without normalisation, zeroing
the activated output equals zeroing L's pre-activation, since relu(0) = 0.)
The network is cut right after those neurons in its traced graph
(lesion.graph.neurons): in a residual block, conv1's neurons are its output
after its BatchNorm and ReLU, conv2's after its BatchNorm (the skip
connection's add that follows reads two values); where the rest of the
network reads other values too (the skip connection), they pass unharmed.

The error is Delta = y_crashed - y_clean on the logits, per test input x and
output k. Per (layer, p) the study reports, over the test inputs x (and the
outputs k where the statistic is per output):
  mean                          sqrt(mean_{x,k} (E Delta_k(x))^2)
  std                           sqrt(mean_{x,k} Var Delta_k(x))
  norm_l1, norm_l2, norm_linf   mean_x E ||Delta(x)||_q
(root mean squares, because their Monte Carlo estimates are unbiased up to
the outer root: the plain mean of per-input sample stds is biased low when
crashes are rare, e.g. 100 repetitions at p = 0.01, and the squared sample
mean is corrected by its variance / R), estimated by Monte Carlo over
repetitions seeded exactly as the crash sweep's draws
(operators.variant_seed(seed, model, layer, "crash", p, r)), so the two see the
same masks, and four bounds, computed per input and averaged alike:
  b1  E ||Delta||_q <= p * prod_l ||W_l||_q * ||x||_1   (statistics norm_lq)
  b2  |E Delta| <= p * (prod_l |W_l|) |x|, Var Delta ~ p (1 - p) * (prod_l W_l^2) x^2
  b3  E Delta ~ -p * sum_i (dy/dx_i) x_i, Std ~ sqrt(p (1 - p) * sum_i ((dy/dx_i) x_i)^2)
  b4  E Delta ~ p * sum_i (y^(-i) - y), Std ~ sqrt(p (1 - p) * sum_i (y^(-i) - y)^2)
with x the clean neurons of L, W_l the weight layers after L, y^(-i) the
output with neuron i alone crashed. b3 and b4 treat Delta as linear in the
crash indicators c_i ~ Bernoulli(p), independent: Delta ~ sum_i c_i d_i has
variance sum_i p (1 - p) d_i^2 (exact where the rest of the network is
linear, e.g. the last hidden layer); b2's variance is the same sum along the
dense paths. The paper writes p for p (1 - p), its small-p limit, which at
p = 0.5 puts the std sqrt(2) too high. b3 uses autograd (torch.func.jacrev,
vmap-ed over inputs), b4 crashes every neuron alone in batched passes.
The bounds table gives each bound beside its Monte Carlo value (mc) and, for
the norm statistics, that value's 95% half-width over repetitions (mc_ci95).
b1 and b2 need the network after L to be dense layers and 1-Lipschitz
elementwise activations (the product of weight norms is then a Lipschitz
constant); for other layers (a conv layer, max-pooling after it) they are
left out. b1 differs from STUDIES.md's p * prod ||W|| * ||x||_q: E||x - x
crashed||_q equals p ||x||_q only for q = 1 (for q = 2 it is about p ||x||_1
at small p, which exceeds p ||x||_2), so ||x||_1 is used for every q, which
keeps b1 a bound. For q = 2 a tighter bound is its own row, b1_jensen:
  E ||Delta||_2 <= prod_l ||W_l||_2 * min(p ||x||_1, sqrt(p) ||x||_2)
Proof: the network after L is Lipschitz with constant L2 = prod_l ||W_l||_2
in the l2 norm, so ||Delta||_2 <= L2 ||c * x||_2 with c_i ~ Bernoulli(p) the
crash indicators. ||c * x||_2 <= ||c * x||_1, whose mean is p ||x||_1; and by
Jensen, E ||c * x||_2 <= sqrt(E ||c * x||_2^2) = sqrt(p sum_i x_i^2). The
second is smaller once p > (||x||_2 / ||x||_1)^2, about 1/n for n similar
neurons. b2's variance is the paper's estimate, not a bound: it
drops the cross terms of paths that meet again, and falls below the Monte
Carlo variance when a layer feeds two or more later layers (fc1 of the mlp).
b3 is blind where the network is not differentiable in the way crashes move
it: after max-pooling (the digits cnn's conv2) a crash that removes the
maximum hands the output to the next largest input, which the gradient does
not see, and b3 over-predicts the Monte Carlo error about 3x there, while
b4, which crashes each neuron for real, matches it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from lesion import graph, models, operators
from lesion.activations import crash_split, crashed_logits, neurons_of
from lesion.studies.faults import kinds

LIPSCHITZ_ONE = (nn.ReLU, nn.ReLU6, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Dropout, nn.Identity,
                 nn.Flatten)
NORMS = {"norm_l1": 1.0, "norm_l2": 2.0, "norm_linf": math.inf}
BOUNDS = ("b1", "b1_jensen", "b2", "b3", "b4")


def _dense_chain(suffix: nn.Module) -> list[torch.Tensor] | None:
    """The weight matrices of `suffix` if it is a chain of dense layers and 1-Lipschitz
    maps only."""
    modules = graph.tail_modules(suffix)
    if modules is None:
        return None
    weights = []
    for module in modules:
        if isinstance(module, nn.Linear):
            weights.append(module.weight.detach())
        elif not isinstance(module, LIPSCHITZ_ONE):
            return None
    return weights


def _per_input_terms(suffix: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                     rows_per_pass: int, rest: torch.Tensor | None = None,
                     ) -> dict[str, torch.Tensor]:
    """Per input and output: b3's sums over neurons and b4's, each [N, K].

    b3: g_i = (dy/dx_i) x_i from the Jacobian (jacrev, vmap-ed over inputs);
    b4: d_i = y^(-i) - y with every neuron crashed alone, as many
    (input, neuron) rows per pass as `rows_per_pass` allows. Both cost in
    proportion to the layer's neurons per input (b4: one suffix pass each),
    which is what the paper's small networks afford; for the large layers of
    ImageNet networks, restrict the inputs. `x` are the neurons; where the
    suffix reads other values too (a crash prefix that packs them), `rest`
    holds them, one row per input, and the suffix reads [x flattened, rest].
    """
    n = x[0].numel()

    def run(a: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
        return suffix(a if r is None else torch.cat([a.flatten(1), r], dim=1))

    def single(a: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
        return run(a.unsqueeze(0), None if r is None else r.unsqueeze(0)).squeeze(0)

    jacobian = torch.func.vmap(torch.func.jacrev(single), in_dims=(0, None if rest is None else 0))
    out = {name: [] for name in ("g_sum", "g_sq", "d_sum", "d_sq")}
    chunk = max(1, rows_per_pass // n)   # inputs per pass
    block = max(1, rows_per_pass // chunk)  # neurons crashed alone per pass, per input
    for i in range(0, len(x), chunk):
        xs, ys = x[i:i + chunk], y[i:i + chunk]
        rs = None if rest is None else rest[i:i + chunk]
        g = (jacobian(xs, rs) * xs.unsqueeze(1)).flatten(2)      # [c, K, n]
        out["g_sum"].append(g.sum(-1))
        out["g_sq"].append(g.square().sum(-1))
        d_sum, d_sq = torch.zeros_like(ys), torch.zeros_like(ys)
        with torch.no_grad():
            for j in range(0, n, block):
                crashed = torch.arange(j, min(n, j + block), device=x.device)
                alone = xs.reshape(len(xs), 1, n).repeat(1, len(crashed), 1)  # [c, b, n]
                alone[:, torch.arange(len(crashed), device=x.device), crashed] = 0
                d = run(alone.reshape(-1, *xs.shape[1:]),
                        None if rs is None else rs.repeat_interleave(len(crashed), 0))
                d = d.reshape(len(xs), len(crashed), -1)
                d = d - ys.unsqueeze(1)
                d_sum += d.sum(1)
                d_sq += d.square().sum(1)
        out["d_sum"].append(d_sum)
        out["d_sq"].append(d_sq)
    return {name: torch.cat(parts).detach() for name, parts in out.items()}


def bounds_per_input(suffix: nn.Module, x: torch.Tensor, p: float,
                     terms: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Each bound's predictions for one p: {bound: {statistic: [N, K] or [N]}}.

    `terms` come from _per_input_terms (they do not depend on p). `mean` is
    signed for b3 and b4 (a prediction of E Delta) and a magnitude for b2 (a
    bound on |E Delta|); b1 gives E ||Delta||_q per input.
    """
    variance = p * (1 - p)  # of one Bernoulli(p) crash indicator
    out = {
        "b3": {"mean": -p * terms["g_sum"], "std": (variance * terms["g_sq"]).sqrt()},
        "b4": {"mean": p * terms["d_sum"], "std": (variance * terms["d_sq"]).sqrt()},
    }
    chain = _dense_chain(suffix)
    if chain is not None:
        flat = x.flatten(1)
        absolute = torch.eye(flat.shape[1], dtype=x.dtype, device=x.device)
        squared = absolute.clone()
        for w in chain:
            absolute, squared = w.abs() @ absolute, w.square() @ squared
        out["b2"] = {"mean": p * flat.abs() @ absolute.T,
                     "std": (variance * flat.square() @ squared.T).sqrt()}
        l1 = flat.abs().sum(1)
        lipschitz = {stat: math.prod(float(torch.linalg.matrix_norm(w, ord=order)) for w in chain)
                     for stat, order in NORMS.items()}
        out["b1"] = {stat: p * l1 * lipschitz[stat] for stat in NORMS}
        jensen = torch.minimum(p * l1, math.sqrt(p) * flat.norm(dim=1))
        out["b1_jensen"] = {"norm_l2": jensen * lipschitz["norm_l2"]}
    return out


def aggregate(per_input: dict[str, torch.Tensor], repetitions: int | None = None
              ) -> dict[str, float]:
    """The study's statistics from per-input values (see the module docstring).

    With `repetitions`, `per_input` holds Monte Carlo estimates over that many
    repetitions, and the squared means lose their expected excess, Var / R.
    """
    out = {}
    for stat, values in per_input.items():
        if stat == "mean":
            square = values.square()
            if repetitions:
                square = square - per_input["std"].square() / repetitions
            out[stat] = float(square.mean().clamp(min=0).sqrt())
        elif stat == "std":
            out[stat] = float(values.square().mean().sqrt())
        else:
            out[stat] = float(values.mean())
    return out


def monte_carlo(deltas: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-input Monte Carlo estimates from errors [R, N, K]: mean, std [N, K], norms [N]."""
    out = {"mean": deltas.mean(0), "std": deltas.std(0, correction=1)}
    for stat, q in NORMS.items():
        out[stat] = torch.linalg.vector_norm(deltas, ord=q, dim=-1).mean(0)
    return out


def monte_carlo_ci95(deltas: torch.Tensor) -> dict[str, float]:
    """95% half-widths (Student t) of the Monte Carlo norm statistics, from errors [R, N, K].

    Each repetition's input-averaged ||Delta||_q is one independent draw of the
    statistic, so its spread over the R repetitions gives the interval. A bound
    a little under its Monte Carlo value, within this interval, is sampling
    noise: b1 of the last layer equals E ||Delta||_1 exactly. The mean and std
    statistics (roots of mean squares) get none.
    """
    from scipy import stats

    repetitions = deltas.shape[0]
    t = float(stats.t.ppf(0.975, repetitions - 1))
    return {stat: t * float(torch.linalg.vector_norm(deltas, ord=q, dim=-1).mean(1).std())
            / math.sqrt(repetitions) for stat, q in NORMS.items()}


def layer_study(model: nn.Module, layer: str, images: torch.Tensor, labels: torch.Tensor, *,
                levels: Sequence[float], repetitions: int, study_seed: int, batch_size: int,
                reps_per_pass: int, device: torch.device) -> tuple[list[dict], list[dict]]:
    """Monte Carlo errors and bounds of crashes in one layer: (error rows, bound rows)."""
    from lesion import evaluate

    if repetitions < 2:
        raise ValueError(f"repetitions = {repetitions}: expected at least 2 (the std needs two)")
    prefix, suffix = crash_split(model, layer)
    suffix = suffix.to(device)
    cache = evaluate.run_batched(prefix, images, batch_size, device)
    y = evaluate.run_batched(suffix, cache, batch_size, device)
    x = neurons_of(prefix, cache)
    rest = cache[:, x[0].numel():] if prefix.packed else None
    labels = labels.to(device)
    clean_top1 = float((y.argmax(-1) == labels).float().mean())
    terms = _per_input_terms(suffix, x, y, rows_per_pass=max(batch_size, 4096), rest=rest)
    errors, bounds = [], []
    for p in levels:
        reps = [(p, operators.variant_seed(study_seed, model.lesion_name, layer, "crash", p, r))
                for r in range(repetitions)]
        crashed = torch.stack(list(crashed_logits(
            suffix, cache, reps, batch_size=batch_size, reps_per_pass=reps_per_pass,
            neurons=prefix.neurons if prefix.packed else None)))
        finite = torch.isfinite(crashed).all(-1)
        top1 = float(((crashed.argmax(-1) == labels) & finite).float().mean())
        mc = aggregate(monte_carlo(crashed - y), repetitions)
        ci95 = monte_carlo_ci95(crashed - y)
        base = {"layer": layer, "p": float(p)}
        errors += [{**base, "statistic": stat, "value": value} for stat, value in mc.items()]
        errors += [{**base, "statistic": "top1", "value": top1},
                   {**base, "statistic": "top1_drop", "value": clean_top1 - top1},
                   {**base, "statistic": "nonfinite", "value": float((~finite).float().mean())}]
        for bound, stats in bounds_per_input(suffix, x, p, terms).items():
            bounds += [{**base, "bound": bound, "statistic": stat,
                        "value": value, "mc": mc[stat], "mc_ci95": ci95.get(stat, math.nan)}
                       for stat, value in aggregate(stats).items()]
    return errors, bounds


def fault_study(dataset: str, weights: str, test: str, *, layers: Sequence[str],
                levels: Sequence[float], repetitions: int, study_seed: int, errors_out: str,
                bounds_out: str, device: str, batch_size: int, precision: str,
                reps_per_pass: int = 100, inputs: int | None = None) -> None:
    """The faults step: `errors.parquet` and `bounds.parquet` of one network.

    errors: dataset, model, layer, p, statistic (mean, std, norm_l1, norm_l2,
    norm_linf, top1, top1_drop, nonfinite), value. bounds: dataset, model,
    layer, p, bound (b1, b1_jensen, b2, b3, b4), statistic, value, mc (the Monte Carlo value of
    the same statistic). `inputs` keeps the first that many test inputs
    (all when None): b3 and b4 cost one Jacobian row and one suffix pass per
    neuron and input.
    """
    import pyarrow as pa
    from tqdm import tqdm

    from lesion import data, evaluate, files

    for p in levels:
        if not 0 <= p <= 1:
            raise ValueError(f"crash level p = {p!r} is out of range; expected a number in [0, 1]")
    dev = evaluate.pick_device(device, precision)
    spec = data.get(dataset, split=test)
    model = models.load_weights(weights, num_classes=spec.num_classes, input_shape=spec.input_shape)
    if list(layers) == ["all"]:  # every weight layer, in forward order
        layers = list(models.layers(model))
    unknown = [name for name in layers if name not in models.layers(model)]
    if unknown:  # all of them checked before any is computed
        raise ValueError(f"layers {unknown} are not weight layers of {model.lesion_name!r}; "
                         f"expected some of {list(models.layers(model))}")
    if repetitions < 2:
        raise ValueError(f"repetitions = {repetitions}: expected at least 2 (the std needs two)")
    images, labels = data.load_split(test, dataset)
    images, labels = images[:inputs], labels[:inputs]
    errors, bounds = [], []
    for layer in tqdm(layers, desc="faults", mininterval=1):
        e, b = layer_study(model, layer, images, labels, levels=levels, repetitions=repetitions,
                           study_seed=study_seed, batch_size=batch_size,
                           reps_per_pass=reps_per_pass, device=dev)
        errors += e
        bounds += b
    for rows, out, kind in ((errors, errors_out, kinds.ERRORS),
                            (bounds, bounds_out, kinds.BOUNDS)):
        files.write_table(pa.Table.from_pandas(named(rows, dataset, model.lesion_name),
                                               preserve_index=False), out,
                          {"precision": precision, "device": dev.type}, kind=kind)


def named(rows: list[dict], dataset: str, model: str) -> pd.DataFrame:
    """Rows of layer_study as a table of the faults step (and lesion.crash, lesion.bounds):
    columns dataset and model first."""
    frame = pd.DataFrame(rows)
    return frame.assign(dataset=dataset, model=model)[["dataset", "model", *frame.columns]]


def b3_variance(y: torch.Tensor, acts: Sequence[torch.Tensor]) -> torch.Tensor:
    """b3's error variance per unit p(1 - p), summed over layers and outputs, mean over the batch.

    sum_l sum_k sum_i ((dy_k/dx_li) x_li)^2: the regulariser of El-Mhamdi et
    al.; differentiable (create_graph), one batched backward pass per output.
    Inputs of a batch must not interact (no batch norm in training mode).
    """
    k = y.shape[-1]
    basis = torch.eye(k, dtype=y.dtype, device=y.device).unsqueeze(1).expand(k, *y.shape)
    grads = torch.autograd.grad(y, list(acts), grad_outputs=basis, is_grads_batched=True,
                                create_graph=True)
    total = sum((g * a.unsqueeze(0)).square().sum() for g, a in zip(grads, acts, strict=True))
    return total / y.shape[0]


def b3_loss(weight: float):
    """The b3-variance regulariser as training's extra loss term (lesion.train.ExtraLoss)."""
    if not 0 <= weight < math.inf:
        raise ValueError(f"b3_variance = {weight!r} is out of range; expected a finite number >= 0")

    def loss(logits: torch.Tensor, acts: list[torch.Tensor]) -> torch.Tensor:
        return weight * b3_variance(logits, acts)
    return loss
