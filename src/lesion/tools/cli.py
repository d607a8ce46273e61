"""`python -m lesion bench WHAT ...`: benchmarks, each against a baseline in the same run."""

from __future__ import annotations

import argparse

from lesion.cli.args import device_name, levels, names, positive, steps


def _sweep(args):
    from lesion.evaluate import set_threads
    from lesion.tools import bench
    set_threads(args.threads)
    bench.sweep_speed(dataset=args.dataset, model=args.model, weights=args.weights,
                      perturbation=args.perturbation, levels=args.levels, draws=args.draws,
                      device=args.device, variants_per_pass=args.variants_per_pass,
                      layers=args.layers, images=args.images, synthetic=args.synthetic,
                      batch_size=args.batch_size, repeats=args.repeats)


def _faults(args):
    from lesion.evaluate import set_threads
    from lesion.tools import bench
    set_threads(args.threads)
    bench.fault_speed(dataset=args.dataset, model=args.model, weights=args.weights,
                      layers=args.layers, p=args.p, repetitions=args.repetitions,
                      device=args.device, reps_per_pass=args.reps_per_pass,
                      images=args.images, synthetic=args.synthetic, repeats=args.repeats)


def _dag(args):
    from lesion.tools import dagbench
    dagbench.dag_speed(args.configfile, repeats=args.repeats, snakefile=args.snakefile)


def _jobs(args):
    from lesion.tools import jobs
    jobs.compare(args.benchmarks, args.baseline)


def _tables(args):
    from lesion.tools import tables
    tables.compare(args.before, args.after)


def _network(s: argparse.ArgumentParser, model: str) -> None:
    """The network a benchmark times: dataset, model, weights, device, threads."""
    s.add_argument("--dataset", default="digits")
    s.add_argument("--model", default=model)
    s.add_argument("--weights", default=None,
                   help="trained weights (default: results/{dataset}/{model}/weights.safetensors "
                        "when present, else a freshly initialised network)")
    s.add_argument("--device", type=device_name, default="auto")
    s.add_argument("--threads", type=positive, default=1)
    s.add_argument("--layers", type=names, default=None, help="default: every layer")
    s.add_argument("--images", type=positive, default=None,
                   help="first N test images (default: all; 64 with --synthetic)")
    s.add_argument("--synthetic", action="store_true",
                   help="time on seeded random inputs of the dataset's shape (uniform in [0, 1), "
                        "random labels) instead of its test split: for a dataset not on disk, "
                        "e.g. imagenet; accuracies mean nothing")
    s.add_argument("--repeats", type=positive, default=3, help="best of N runs")


def register(groups) -> None:
    step = steps(groups.add_parser("bench", help="Benchmarks."))
    s = step("sweep", _sweep, "Time one sweep per layer: variant drawing and regeneration, a "
             "naive per-variant loop, the limit (clean suffix once per variant) and the "
             "evaluation schemes, in the same run.")
    _network(s, "cnn")
    s.add_argument("--perturbation", default="gaussian")
    s.add_argument("--levels", type=levels, default=levels("0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"))
    s.add_argument("--draws", type=positive, default=5)
    s.add_argument("--variants-per-pass", type=positive, default=8)
    s.add_argument("--batch-size", type=positive, default=512)

    s = step("dag", _dag, "Time Snakemake's dry run of a study config (a stand-in ImageNet "
             "directory for config/imagenet.yaml) and count its jobs.")
    s.add_argument("--configfile", default="config/imagenet.yaml")
    s.add_argument("--repeats", type=positive, default=3)
    s.add_argument("--snakefile", default=None, help="default: the checkout's Snakefile")

    s = step("jobs", _jobs, "Sum a built study's job costs per rule from Snakemake's "
             "benchmark files, beside a baseline build's when given.")
    s.add_argument("benchmarks", nargs="?", default="benchmarks")
    s.add_argument("--baseline", default=None, help="the benchmarks/ of a baseline build")

    s = step("tables", _tables, "Compare every Parquet table of two builds of a study, value "
             "for value (a refactor must change none).")
    s.add_argument("before", help="results/ of the baseline build")
    s.add_argument("after", help="results/ of the new build")

    s = step("faults", _faults, "Time crash-fault Monte Carlo repetitions: batched against a "
             "per-repetition loop, in the same run.")
    _network(s, "mlp")
    s.add_argument("--p", type=float, default=0.1, help="crash probability")
    s.add_argument("--repetitions", type=positive, default=100)
    s.add_argument("--reps-per-pass", type=positive, default=100)
