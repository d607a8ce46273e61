# The fault study (El-Mhamdi et al. 2019), config section `faults`: crashes in
# each layer of some models, the Monte Carlo error against bounds b1-b4, and
# the same models trained in other regimes (dropout, the b3-variance
# regulariser) for a fault-tolerance comparison. Crash sweeps for the metrics
# table are ordinary operators (perturbations.crash, sweeps.smk).


include: "helpers/faults.smk"


rule fault_bounds:
    input:
        weights=WEIGHTS,
        test=TEST,
        code=code("faults", "bounds"),
    output:
        errors=f"{FAULTS_DIR}/errors.parquet",
        bounds=f"{FAULTS_DIR}/bounds.parquet",
    params:
        faults=fault_params,
        seed=config["seed"],
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/fault_bounds/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/fault_bounds/{{dataset}}/{{model}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion faults bounds --dataset {wildcards.dataset} --weights {input.weights}"
        " --test {input.test} --layers {params.faults[layers]} --levels {params.faults[levels]}"
        " --repetitions {params.faults[repetitions]} {params.faults[inputs]}"
        " --seed {params.seed} --device {params.device}"
        " --batch-size {params.batch_size} --precision {params.precision} --errors-out {output.errors} --bounds-out {output.bounds}"
        " --threads {threads} > {log} 2>&1"


# The same network trained in a regime: the engine's train rule running the
# fault study's train step (dropout and the b3 loss term).
use rule train as train_regime with:
    input:
        train=TRAIN,
        test=TEST,
        init=train_init,
        code=code("faults", "train"),
    output:
        weights=f"{REGIME_DIR}/weights.safetensors",
        curve=f"{REGIME_DIR}/training.parquet",
    params:
        step="faults train",
        train=lambda w: {**train_settings(w.model), "dropout": REGIMES[w.regime]["dropout"]},
        options=lambda w: f"--b3-variance {REGIMES[w.regime]['b3_variance']!r}",
        start=lambda w: start_options(w.model),  # a regime starts where its model does
        checkpoints="",  # the study's checkpoints are of its own networks
        device=config["device"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/train_regime/{{dataset}}/{{model}}/{{regime}}.log",
    benchmark:
        f"{BENCHMARKS}/train_regime/{{dataset}}/{{model}}/{{regime}}.tsv"


use rule fault_bounds as regime_bounds with:
    input:
        weights=rules.train_regime.output.weights,
        test=TEST,
        code=code("faults", "bounds"),
    output:
        errors=f"{REGIME_DIR}/errors.parquet",
        bounds=f"{REGIME_DIR}/bounds.parquet",
    log:
        f"{LOGS}/regime_bounds/{{dataset}}/{{model}}/{{regime}}.log",
    benchmark:
        f"{BENCHMARKS}/regime_bounds/{{dataset}}/{{model}}/{{regime}}.tsv"


rule fault_figure:
    input:
        errors=fault_tables("errors"),
        bounds=fault_tables("bounds"),
        code=code("faults", "figure"),
    output:
        png=report(
            f"{RESULTS}/{{dataset}}/{{model}}/faults/figures/{{fault_figure}}.png",
            caption="../report/faults/figure.rst",
            category=STUDY_TITLES["faults"],
            subcategory="{dataset} / {model}",
            labels={"model": "{model}", "figure": "{fault_figure}"},
        ),
        pdf=f"{RESULTS}/{{dataset}}/{{model}}/faults/figures/{{fault_figure}}.pdf",
        **svg_outputs(svg=f"{RESULTS}/{{dataset}}/{{model}}/faults/figures/{{fault_figure}}.svg"),
        csv=report(
            f"{RESULTS}/{{dataset}}/{{model}}/faults/figures/{{fault_figure}}.csv",
            caption="../report/faults/table.rst",
            category=STUDY_TITLES["faults"],
            subcategory="{dataset} / {model}",
            labels={"model": "{model}", "table": "{fault_figure}"},
        ),
    wildcard_constraints:
        fault_figure="bounds|tolerance",
    params:
        labels=fault_labels,
        figures=FIGURE_FLAGS,
    log:
        f"{LOGS}/fault_figure/{{dataset}}/{{model}}/{{fault_figure}}.log",
    benchmark:
        f"{BENCHMARKS}/fault_figure/{{dataset}}/{{model}}/{{fault_figure}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion faults figure {wildcards.fault_figure} --errors {input.errors}"
        " --bounds {input.bounds} --labels {params.labels}"
        " --png {output.png} --pdf {output.pdf} --csv {output.csv} {params.figures} > {log} 2>&1"

