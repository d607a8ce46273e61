"""`python -m lesion bench WHAT ...`: benchmarks, each against a baseline in the same run."""

from __future__ import annotations

import argparse
import math

from lesion.cli.args import HELP, device_name, levels, names, number, positive, steps


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


def _attack(args):
    from lesion.evaluate import set_threads
    from lesion.tools import bench
    set_threads(args.threads)
    bench.attack_speed(dataset=args.dataset, model=args.model, weights=args.weights,
                       device=args.device, images=args.images, seed=args.seed,
                       epochs=args.epochs, c_tolerance=args.c_tolerance)


def _dag(args):
    from lesion.tools import dagbench
    dagbench.dag_speed(args.configfile, repeats=args.repeats, snakefile=args.snakefile)


def _jobs(args):
    from lesion.tools import jobs
    jobs.compare(args.benchmarks, args.baseline)


def _tables(args):
    from lesion.tools import compare
    compare.compare(args.before, args.after)


def _zoo(args):
    import yaml

    from lesion.config import canonical, load_schema
    from lesion.evaluate import set_threads
    from lesion.tools import zoobench
    set_threads(args.threads)
    with open(args.configfile) as f:
        config = yaml.safe_load(f)
    if "zoo" not in config:
        raise ValueError(f"{args.configfile} has no zoo section; expected a config with one "
                         "(config/config.yaml)")
    zoo = canonical(config, load_schema(args.schema))["zoo"]
    zoobench.zoo_speed(zoo, sizes=args.sizes, batch_size=args.batch_size, epochs=args.epochs,
                       snapshots=zoo["snapshots"], loop_limit=args.loop_nets, device=args.device)


def _network(s: argparse.ArgumentParser, model: str,
             fallback: str = "a freshly initialised network", sources: bool = False) -> None:
    """The network a benchmark times: dataset, model (or any source), weights, device, threads."""
    s.add_argument("--dataset", default="digits", help=HELP["--dataset"])
    s.add_argument("--model", default=model, help=HELP["--model"] + (
        ", or any network source: torchvision:<builder>, timm:<name>, python:<module>:<callable>"
        " (freshly initialised)" if sources else ""))
    s.add_argument("--weights", default=None,
                   help="trained weights (default: results/{dataset}/{model}/weights.safetensors "
                        f"when present, else {fallback})")
    s.add_argument("--device", type=device_name, default="auto",
                   help="auto (CUDA when present), cpu, cuda or cuda:N")
    s.add_argument("--threads", type=positive, default=1, help=HELP["--threads"])


def _inputs(s: argparse.ArgumentParser) -> None:
    """What the sweep and fault benchmarks time on: layers, images (or synthetic), repeats."""
    s.add_argument("--layers", type=names, default=None,
                   help="comma-separated layers, e.g. fc1,fc2 (default: every layer)")
    s.add_argument("--images", type=positive, default=None,
                   help="first N test images (default: all; 64 with --synthetic)")
    s.add_argument("--synthetic", action="store_true",
                   help="time on seeded random inputs of the dataset's shape (uniform in [0, 1), "
                        "random labels) instead of its test split: for a dataset not on disk, "
                        "e.g. imagenet; accuracies mean nothing")
    s.add_argument("--repeats", type=positive, default=3, help="best of N runs, an integer >= 1")


def register(groups) -> None:
    step = steps(groups.add_parser("bench", help="Benchmarks."))
    s = step("sweep", _sweep, "Time one sweep per layer: variant drawing and regeneration, a "
             "naive per-variant loop, the limit (clean suffix once per variant) and the "
             "evaluation schemes, in the same run.")
    _network(s, "cnn", sources=True)
    _inputs(s)
    s.add_argument("--perturbation", default="gaussian", help=HELP["--perturbation"])
    s.add_argument("--levels", type=levels, default=levels("0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"),
                   help="comma-separated levels of the operator")
    s.add_argument("--draws", type=positive, default=5, help="variants per level, an integer >= 1")
    s.add_argument("--variants-per-pass", type=positive, default=8,
                   help="variants per vmap-ed pass, an integer >= 1")
    s.add_argument("--batch-size", type=positive, default=512, help="images per pass, an integer >= 1")

    s = step("dag", _dag, "Time Snakemake's dry run of a study config (a stand-in ImageNet "
             "directory for config/imagenet.yaml) and count its jobs.")
    s.add_argument("--configfile", default="config/imagenet.yaml", help="the study config to plan")
    s.add_argument("--repeats", type=positive, default=3,
                   help="dry runs of each kind (the best counts), an integer >= 1")
    s.add_argument("--snakefile", default=None, help="the workflow (default: the checkout's Snakefile)")

    s = step("jobs", _jobs, "Sum a built study's job costs per rule (wall and CPU seconds, "
             "the largest job's peak memory) from Snakemake's benchmark files, beside a "
             "baseline build's when given.")
    s.add_argument("benchmarks", nargs="?", default="benchmarks",
                   help="the benchmarks/ directory of a built study (default: benchmarks)")
    s.add_argument("--baseline", default=None,
                   help="the benchmarks/ of a baseline build (default: none)")

    s = step("tables", _tables, "Compare every Parquet table of two builds of a study, value "
             "for value (a refactor must change none).")
    s.add_argument("before", help="results/ of the baseline build")
    s.add_argument("after", help="results/ of the new build")

    s = step("faults", _faults, "Time crash-fault Monte Carlo repetitions: batched against a "
             "per-repetition loop, in the same run.")
    _network(s, "mlp")
    _inputs(s)
    s.add_argument("--p", type=float, default=0.1, help="crash probability, in [0, 1]")
    s.add_argument("--repetitions", type=positive, default=100,
                   help="Monte Carlo repetitions, an integer >= 1")
    s.add_argument("--reps-per-pass", type=positive, default=100,
                   help="repetitions per pass, an integer >= 1")

    s = step("attack", _attack, "Time Szegedy et al.'s minimum-distortion L-BFGS attack: "
             "batched against one image at a time, in the same run.")
    _network(s, "mlp", "the network trained here for --epochs")
    s.add_argument("--images", type=positive, default=100, help="first N test images")
    s.add_argument("--seed", type=int, default=0, help="random targets and quick training")
    s.add_argument("--epochs", type=positive, default=30,
                   help="quick training when no weights are found")
    s.add_argument("--c-tolerance", type=number(float, lambda v: 0 < v < math.inf,
                                                 "a positive number such as 0.02"), default=0.02,
                   help="relative width at which the search over c stops")

    s = step("zoo", _zoo, "Time zoo nets trained together (vmap over stacked weights) "
             "against a plain loop over the same nets, in the same run, for several group sizes.")
    s.add_argument("--threads", type=positive, default=1)
    s.add_argument("--device", type=device_name, default="cpu")
    s.add_argument("--configfile", default="config/config.yaml", help="whose zoo table to sample")
    s.add_argument("--schema", default="workflow/schemas/config.schema.yaml",
                   help="the config schema (its defaults fill the zoo section)")
    s.add_argument("--sizes", type=lambda t: [int(x) for x in t.split(",")], default=[1, 4, 16, 64],
                   help="group sizes (nets trained together)")
    s.add_argument("--batch-size", type=positive, default=32)
    s.add_argument("--epochs", type=positive, default=1)
    s.add_argument("--loop-nets", type=positive, default=16, help="nets the loop is timed on")
