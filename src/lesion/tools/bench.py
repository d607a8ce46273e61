"""`python -m lesion bench sweep|faults|attack`: what prefix caching, the evaluation schemes
and batching buy, each against a baseline measured in the same run.

`bench sweep`:

For every layer of a model it times one sweep (levels x draws), in the same
run and on the same inputs:
  draw     the variants as the sweep step draws them: operator, sha256 and the
           table's statistics, once per variant (its evaluation uses that tensor)
  regen    the standalone predict step's regeneration from a table written
           elsewhere: operator and sha256 check, per variant (not in a sweep step)
  naive    deep-copy the model, write the variant in, run the whole network
  limit    the clean prefix once and the clean suffix once per variant: a sweep
           with no perturbation work at all, the cost per-variant passes cannot beat
  one      prefix once, one variant per pass (variants_per_pass 1)
  stacked  prefix once, `variants_per_pass` variants per pass, scheme `stacked`
  loop     the same, scheme `loop` (lesion.evaluate.SCHEMES)
and prints seconds, the speed-up of the default scheme (stacked) over naive,
its ratio to the limit, and draw/stacked: what drawing the variants costs
beside evaluating them, with a total over the layers last. Drawing costs the
same per variant whatever the number of images, evaluating grows with it, so
draw/stacked falls as images grow (on AlexNet's dense layers it is above 1 at
32 images: see docs/speed.md for the count where it reaches 25%).

Inputs are the dataset's test split (results/{dataset}/tensors/test.safetensors,
or the data a package ships), or with `synthetic` seeded random inputs of the
dataset's shape: uniform in [0, 1), random labels. Those time a network
without its data (ImageNet); their accuracies mean nothing.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
import time

import torch

from lesion import activations, data, evaluate, files, models, sweeps, tensorfiles


def _best(repeats: int, fn, *args, **kwargs) -> float:
    """The fastest of `repeats` runs of `fn(*args, **kwargs)`, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


def _regenerate(rows, base) -> None:
    for row in rows:
        sweeps.regenerate(row, base)


def _naive(model, layer, variants, images, labels, batch_size, device) -> None:
    for tensors in variants:
        clone = copy.deepcopy(model)
        with torch.no_grad():
            for name, t in tensors.items():
                clone.get_parameter(models.parameter_names(clone, clone, layer, [name])[name]).copy_(t)
        logits = evaluate.run_batched(clone, images, batch_size, device)
        evaluate.summarise(logits, labels.to(device))


def _prefix(model, layer, variants, images, labels, batch_size, device, per_pass,
            scheme="stacked") -> None:
    prefix, suffix, _ = models.split(model, layer)
    names = models.parameter_names(suffix, model, layer, list(variants[0]))
    activations = evaluate.run_batched(prefix, images, batch_size, device)
    for _ in evaluate.sweep_suffix(suffix, names, variants, activations, labels,
                                   batch_size=batch_size, variants_per_pass=per_pass,
                                   scheme=scheme):
        pass


@torch.no_grad()
def _limit(model, layer, variants, images, labels, batch_size, device) -> None:
    """The clean prefix once, the clean suffix once per variant, summarised alike."""
    prefix, suffix, _ = models.split(model, layer)
    activations = evaluate.run_batched(prefix, images, batch_size, device)
    suffix, labels = suffix.to(device).eval(), labels.to(device)
    for _ in variants:
        for i in range(0, len(activations), batch_size):
            evaluate.summarise(suffix(activations[i:i + batch_size]), labels[i:i + batch_size])


def _model(dataset: str, name: str, weights: str | None):
    """The network timed: `name` is a catalog model or any source (torchvision:vit_b_16,
    timm:convnext_atto, python:module:callable; lesion.networks), freshly initialised
    unless trained weights are given or found."""
    spec = data.get(dataset)
    if ":" in name and weights is None:
        from lesion import networks

        torch.manual_seed(0)
        model = models.build_source(networks.Source.parse(name), num_classes=spec.num_classes,
                                    input_shape=spec.input_shape, name=name)
        return model.eval(), "freshly initialised"
    default = f"results/{dataset}/{name}/weights.safetensors"
    path = weights or (default if os.path.exists(default) else None)
    if path:
        return models.load_weights(path, num_classes=spec.num_classes,
                                   input_shape=spec.input_shape), path
    torch.manual_seed(0)
    model = models.build(name, num_classes=spec.num_classes, input_shape=spec.input_shape)
    return model.eval(), "freshly initialised (no trained weights found)"


def synthetic_inputs(dataset: str, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` random inputs of the dataset's shape (uniform in [0, 1)) and random labels,
    from a generator seeded by `seed`: for timing a network without its data."""
    spec = data.get(dataset)
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((count, *spec.input_shape), generator=generator)
    return images, torch.randint(spec.num_classes, (count,), generator=generator)


def _images(dataset: str, count: int | None, synthetic: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images, labels, where they come from): the first `count` of the test split, or synthetic."""
    if synthetic:
        return *synthetic_inputs(dataset, count or 64), "synthetic inputs (seeded, uniform [0, 1))"
    default = f"results/{dataset}/tensors/test.safetensors"
    spec = data.get(dataset)
    if os.path.exists(default):
        images, labels = data.load_split(default)
        source = default
    elif spec.raw is not None:
        raw = spec.raw()
        images, labels, source = spec.preprocess(raw["images"]), raw["labels"], "the packaged data"
    else:
        raise files.InputFileError(
            f"dataset {dataset!r}: no test split at {default} and no data shipped in a package; "
            "expected the split built by the workflow (snakemake with a config on this dataset), "
            "or pass --synthetic to time the network on random inputs of the dataset's shape")
    return images[:count], labels[:count], source


def sweep_speed(*, dataset: str, model: str, weights: str | None, perturbation: str,
                levels: list[float], draws: int, device: str, variants_per_pass: int,
                layers: list[str] | None = None, images: int | None = None,
                synthetic: bool = False, batch_size: int = 512, repeats: int = 3) -> list[dict]:
    """Time every layer's sweep; print a table and return its rows (best of `repeats`)."""
    dev = evaluate.pick_device(device, "ieee")  # what a study runs by default
    net, source = _model(dataset, model, weights)
    x, labels, inputs = _images(dataset, images, synthetic)
    count = len(levels) * draws
    print(f"bench sweep: {dataset}/{model} ({source}), {perturbation}, {len(levels)} levels x "
          f"{draws} draws = {count} variants, {len(labels)} images ({inputs}), device {dev}, "
          f"torch threads {torch.get_num_threads()}, {variants_per_pass} variants per pass, "
          f"best of {repeats}")
    columns = ("draw", "regen", "naive", "limit", "one", "stacked", "loop")
    layers = layers or list(models.layers(net))
    width = max(8, *(len(name) for name in layers))
    print(f"{'layer':>{width}} " + " ".join(f"{c + ' s':>9}" for c in columns)
          + f" {'vs naive':>9} {'vs limit':>9} {'draw/eval':>9}")
    rows = []
    for layer in layers:
        base = sweeps.base_tensors(net, layer, perturbation)
        row = {"layer": layer}
        drawing = {"dataset": dataset, "model": model, "layer": layer,
                   "perturbation": perturbation, "levels": levels, "draws": draws,
                   "study_seed": 0}
        table, variants = sweeps.variant_table(base, **drawing)  # also warms the first layer up
        args = (net, layer, variants, x, labels, batch_size, dev)
        schemes = {"draw": (functools.partial(sweeps.variant_table, **drawing), base),
                   "regen": (_regenerate, table.to_pylist(), base),
                   "naive": (_naive, *args), "limit": (_limit, *args), "one": (_prefix, *args, 1),
                   "stacked": (_prefix, *args, variants_per_pass, "stacked"),
                   "loop": (_prefix, *args, variants_per_pass, "loop")}
        for name, (fn, *fn_args) in schemes.items():
            # a large network's layer takes minutes: say what runs (stderr, the table on stdout)
            print(f"  {layer}: {name} ...", file=sys.stderr, flush=True)
            row[name] = _best(repeats, fn, *fn_args)
        rows.append(row)
        _print_row(row, columns, width)
    total = {"layer": "total", **{c: sum(r[c] for r in rows) for c in columns}}
    _print_row(total, columns, width)
    return [*rows, total]


def _print_row(row: dict, columns: tuple[str, ...], width: int = 8) -> None:
    sweep_s = row["stacked"]  # the default scheme
    row["speedup"], row["vs_limit"] = row["naive"] / sweep_s, sweep_s / row["limit"]
    row["draw_vs_eval"] = row["draw"] / sweep_s
    print(f"{row['layer']:>{width}} " + " ".join(f"{row[c]:9.3f}" for c in columns)
          + f" {row['speedup']:8.2f}x {row['vs_limit']:8.2f}x {row['draw_vs_eval']:8.2f}x", flush=True)


# `python -m lesion bench faults`: Monte Carlo crash repetitions, batched
# against a per-repetition loop, in the same run and on the same masks:
#   loop     every repetition runs the whole network, masks applied at the layer
#   prefix   the layer's clean neurons once, then one repetition per suffix pass
#   batched  the layer's clean neurons once, `reps_per_pass` repetitions per pass

@torch.no_grad()
def _crash_loop(model, layer, reps, images, batch_size, device) -> torch.Tensor:

    model = model.to(device).eval()
    out = []
    for p, seed in reps:
        generator = torch.Generator().manual_seed(seed)

        def crash(_, h, generator=generator, p=p):
            return h * activations.keep_mask(h.shape, p, generator).to(device, h.dtype)

        out.append(torch.cat([activations.forward_at(model, [layer], images[i:i + batch_size]
                                                     .to(device), crash)
                              for i in range(0, len(images), batch_size)]))
    return torch.stack(out)


def _crash_prefix(model, layer, reps, images, batch_size, device, per_pass) -> torch.Tensor:

    prefix, suffix = activations.crash_split(model, layer)
    neurons = evaluate.run_batched(prefix, images, batch_size, device)
    return torch.stack(list(activations.crashed_logits(
        suffix, neurons, reps, batch_size=batch_size, reps_per_pass=per_pass,
        neurons=prefix.neurons if prefix.packed else None)))


def fault_speed(*, dataset: str, model: str, weights: str | None, layers: list[str] | None,
                p: float, repetitions: int, device: str, reps_per_pass: int,
                images: int | None = None, synthetic: bool = False, batch_size: int = 512,
                repeats: int = 3) -> list[dict]:
    """Time `repetitions` crash repetitions per layer three ways; print and return the rows.

    `images` limits the test images (the first ones): batching repetitions
    pays most where a pass over the inputs alone is small.
    """
    from lesion import operators

    dev = evaluate.pick_device(device, "ieee")  # what a study runs by default
    net, source = _model(dataset, model, weights)
    images = _images(dataset, images, synthetic)[0]
    print(f"bench faults: {dataset}/{model} ({source}), crash p={p}, {repetitions} repetitions, "
          f"{len(images)} images, device {dev}, torch threads {torch.get_num_threads()}, "
          f"{reps_per_pass} repetitions per batched pass, best of {repeats}")
    print(f"{'layer':>8} {'loop s':>8} {'prefix s':>9} {'batched s':>10} {'vs loop':>8} "
          f"{'vs prefix':>10}")
    rows = []
    for layer in layers or list(models.layers(net)):
        reps = [(p, operators.variant_seed(0, model, layer, "crash", p, r)) for r in range(repetitions)]
        args = (net, layer, reps, images, batch_size, dev)
        same = torch.allclose(_crash_loop(*args), _crash_prefix(*args, reps_per_pass), atol=1e-4)
        if not same:
            raise AssertionError(f"{layer}: batched crash outputs differ from the loop's")
        loop = _best(repeats, _crash_loop, *args)
        prefix = _best(repeats, _crash_prefix, *args, 1)
        batched = _best(repeats, _crash_prefix, *args, reps_per_pass)
        rows.append({"layer": layer, "loop_s": loop, "prefix_s": prefix, "batched_s": batched,
                     "speedup_vs_loop": loop / batched, "speedup_vs_prefix": prefix / batched})
        print(f"{layer:>8} {loop:8.3f} {prefix:9.3f} {batched:10.3f} {loop / batched:7.1f}x "
              f"{prefix / batched:9.1f}x")
    return rows


# `python -m lesion bench attack`: Szegedy et al.'s minimum-distortion L-BFGS
# attack on a batch of test images, batched (one L-BFGS-B problem stacked over
# all images, lesion.attacks.lbfgs) against one image at a time (the same
# function on each image alone), in the same run, on the same targets.

def _attack_split(dataset: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str]:
    """(train, test) tensors: the built study's, else the default config's split made here."""
    import tempfile

    built = {s: f"results/{dataset}/tensors/{s}.safetensors" for s in ("train", "test")}
    if all(os.path.exists(p) for p in built.values()):
        return ({s: tensorfiles.load_tensors(p) for s, p in built.items()}
                | {"source": f"results/{dataset}/tensors"})
    if data.get(dataset).raw is None:
        raise FileNotFoundError(f"{built['test']}: not found; expected the tensors of a built "
                                f"study (dataset {dataset!r} does not ship in a package)")
    with tempfile.TemporaryDirectory() as tmp:
        raw, train, test = (os.path.join(tmp, f"{s}.safetensors") for s in ("raw", "train", "test"))
        data.export(dataset, raw)
        data.make_tensors(dataset, raw, train, test, test_fraction=0.25, seed=0)
        return ({"train": tensorfiles.load_tensors(train), "test": tensorfiles.load_tensors(test)}
                | {"source": "the default config's split (test_fraction 0.25, seed 0)"})


def _quick_train(name: str, dataset: str, train: dict[str, torch.Tensor], epochs: int,
                 seed: int) -> torch.nn.Module:
    """`name` trained with Adam (lr 1e-3, batches of 64) for `epochs`, seeded, on the CPU."""
    spec = data.get(dataset)
    torch.manual_seed(seed)
    model = models.build(name, num_classes=spec.num_classes, input_shape=spec.input_shape)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(seed)
    x, y = train["images"], train["labels"]
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=order).split(64):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    return model.eval()


def attack_speed(*, dataset: str, model: str, weights: str | None, device: str, images: int,
                 seed: int, epochs: int, c_tolerance: float) -> dict:
    """Time L-BFGS on `images` test images batched and one at a time; print and return a row."""
    from lesion import attacks

    dev = evaluate.pick_device(device, "ieee")
    split = _attack_split(dataset)
    spec = data.get(dataset)
    default = f"results/{dataset}/{model}/weights.safetensors"
    path = weights or (default if os.path.exists(default) else None)
    if path:
        net, source = models.load_weights(path, num_classes=spec.num_classes,
                                          input_shape=spec.input_shape), path
    else:
        begin = time.perf_counter()
        net = _quick_train(model, dataset, split["train"], epochs, seed)
        source = f"trained here: {epochs} epochs, seed {seed}, {time.perf_counter() - begin:.1f} s"
    net = net.to(dev)
    test = split["test"]
    x, y, index = test["images"][:images].to(dev), test["labels"][:images], test["index"][:images]
    with torch.no_grad():
        accuracy = (evaluate.run_batched(net, test["images"], 512, dev).argmax(1).cpu()
                    == test["labels"]).float().mean().item()
    targets = attacks.random_targets(y, index, spec.num_classes, seed).to(dev)
    y = y.to(dev)
    print(f"bench attack: L-BFGS on {len(y)} {dataset} test images ({split['source']}), "
          f"{model} ({source}; test accuracy {accuracy:.3f}), random targets seed {seed}, "
          f"c tolerance {c_tolerance}, device {dev}, torch threads {torch.get_num_threads()}")

    def timed(fn):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - wall, time.process_time() - cpu

    batched, b_wall, b_cpu = timed(lambda: attacks.lbfgs(net, x, y, targets,
                                                         c_tolerance=c_tolerance))
    singles, s_wall, s_cpu = timed(lambda: [
        attacks.lbfgs(net, x[i:i + 1], y[i:i + 1], targets[i:i + 1], c_tolerance=c_tolerance)
        for i in range(len(y))])
    single_d = torch.cat([r.distortion for r in singles]).cpu()
    single_ok = torch.cat([r.success for r in singles]).cpu()
    ok = batched.success.cpu()
    both = ok & single_ok & (single_d > 0)  # 0: the clean image already had the target
    gap = ((batched.distortion.cpu()[both] - single_d[both]) / single_d[both]).abs()
    row = {"model": model, "images": len(y), "batched_s": b_wall, "single_s": s_wall,
           "batched_cpu_s": b_cpu, "single_cpu_s": s_cpu, "speedup": s_wall / b_wall,
           "batched_success": ok.float().mean().item(),
           "single_success": single_ok.float().mean().item(),
           "batched_distortion": batched.distortion.cpu()[ok].mean().item(),
           "single_distortion": single_d[single_ok].mean().item(),
           "max_relative_gap": gap.max().item() if len(gap) else float("nan")}
    print(f"{'method':>10} {'wall s':>8} {'cpu s':>8} {'success':>8} {'mean distortion':>16}")
    print(f"{'single':>10} {s_wall:8.2f} {s_cpu:8.2f} {row['single_success']:8.2f} "
          f"{row['single_distortion']:16.4f}")
    print(f"{'batched':>10} {b_wall:8.2f} {b_cpu:8.2f} {row['batched_success']:8.2f} "
          f"{row['batched_distortion']:16.4f}")
    print(f"speed-up {row['speedup']:.1f}x wall, {s_cpu / b_cpu:.1f}x cpu; per-image distortion "
          f"of the two within {100 * row['max_relative_gap']:.1f}%")
    return row
