"""`python -m lesion bench sweep`: what prefix caching and batching buy.

For every layer of a model it times one sweep (levels x draws) three ways,
in the same run and on the same data:
  naive   deep-copy the model, write the variant in, run the whole network
  prefix  clean activations at the layer's input once, suffix per variant
  batched prefix, plus `variants_per_pass` variants per vmap-ed pass
and prints seconds and the speed-up over naive. Variant generation (the
operator itself) is timed apart, since every method pays it alike.
"""

from __future__ import annotations

import copy
import os
import time

import torch

from lesion import data, evaluate, models, sweep


def _best(repeats: int, fn, *args) -> float:
    """The fastest of `repeats` runs of `fn(*args)`, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def _naive(model, layer, variants, images, labels, batch_size, device) -> None:
    for tensors in variants:
        clone = copy.deepcopy(model)
        with torch.no_grad():
            for name, t in tensors.items():
                getattr(models.layer(clone, layer), name).copy_(t)
        logits = evaluate.run_batched(clone, images, batch_size, device)
        evaluate.summarise(logits, labels.to(device))


def _prefix(model, layer, variants, images, labels, batch_size, device, per_pass) -> None:
    prefix, suffix, path = models.split(model, layer)
    activations = evaluate.run_batched(prefix, images, batch_size, device)
    for _ in evaluate.sweep_suffix(suffix, path, variants, activations, labels,
                                   batch_size=batch_size, variants_per_pass=per_pass):
        pass


def _model(dataset: str, name: str, weights: str | None):
    spec = data.get(dataset)
    default = f"results/{dataset}/{name}/weights.safetensors"
    path = weights or (default if os.path.exists(default) else None)
    if path:
        return models.load_weights(path, num_classes=spec.num_classes,
                                   input_shape=spec.input_shape), path
    torch.manual_seed(0)
    model = models.build(name, num_classes=spec.num_classes, input_shape=spec.input_shape)
    return model.eval(), "freshly initialised (no trained weights found)"


def _images(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    default = f"results/{dataset}/tensors/test.safetensors"
    if os.path.exists(default):
        return data.load_split(default)
    spec = data.get(dataset)
    raw = spec.raw()
    return spec.preprocess(raw["images"]), raw["labels"]


def sweep_speed(*, dataset: str, model: str, weights: str | None, perturbation: str,
          levels: list[float], draws: int, device: str, variants_per_pass: int,
          batch_size: int = 512, repeats: int = 3) -> list[dict]:
    """Time every layer's sweep; print a table and return its rows (best of `repeats`)."""
    dev = evaluate.pick_device(device)
    net, source = _model(dataset, model, weights)
    images, labels = _images(dataset)
    print(f"bench sweep: {dataset}/{model} ({source}), {perturbation}, {len(levels)} levels x "
          f"{draws} draws = {len(levels) * draws} variants, {len(labels)} images, device {dev}, "
          f"torch threads {torch.get_num_threads()}, best of {repeats}")
    print(f"{'layer':>8} {'draw s':>8} {'naive s':>9} {'prefix s':>9} {'batched s':>10} "
          f"{'prefix x':>9} {'batched x':>10}")
    rows = []
    for layer in models.layers(net):
        base = models.layer_tensors(net, layer)
        begin = time.perf_counter()
        _, variants = sweep.variant_table(base, dataset=dataset, model=model, layer=layer,
                                          perturbation=perturbation, levels=levels, draws=draws,
                                          study_seed=0)
        generate = time.perf_counter() - begin
        args = (net, layer, variants, images, labels, batch_size, dev)
        naive = _best(repeats, _naive, *args)
        prefix = _best(repeats, _prefix, *args, 1)
        batched = _best(repeats, _prefix, *args, variants_per_pass)
        row = {"layer": layer, "generate_s": generate, "naive_s": naive, "prefix_s": prefix,
               "batched_s": batched, "prefix_speedup": naive / prefix,
               "batched_speedup": naive / batched}
        rows.append(row)
        print(f"{layer:>8} {generate:8.3f} {naive:9.3f} {prefix:9.3f} {batched:10.3f} "
              f"{naive / prefix:8.2f}x {naive / batched:9.2f}x")
    return rows
