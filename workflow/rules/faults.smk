# The fault study (El-Mhamdi et al. 2019), for the models named in
# config["faults"]: crashes in each layer, Monte Carlo error against bounds
# b1-b4, and the same model trained in other regimes (dropout, the
# b3-variance regulariser) for a fault-tolerance comparison. Crash sweeps of
# the metrics table are ordinary operators (perturbations.crash).
# Helpers (fault_params, fault_tables, ...) are in common.smk.


rule fault_bounds:
    input:
        weights=rules.train.output.weights,
        test=rules.tensors.output.test,
        code=code("faults", "evaluate", "perturb", "models", "data", "io", "files", "catalog"),
    output:
        errors="results/{dataset}/{model}/faults/errors.parquet",
        bounds="results/{dataset}/{model}/faults/bounds.parquet",
    params:
        faults=fault_params,
        seed=config["seed"],
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
    log:
        "logs/fault_bounds/{dataset}/{model}.log",
    benchmark:
        "benchmarks/fault_bounds/{dataset}/{model}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion faults --dataset {wildcards.dataset} --weights {input.weights}"
        " --test {input.test} --layers {params.faults[layers]} --levels {params.faults[levels]}"
        " --repetitions {params.faults[repetitions]} {params.faults[inputs]}"
        " --seed {params.seed} --device {params.device}"
        " --batch-size {params.batch_size} --errors-out {output.errors} --bounds-out {output.bounds}"
        " --threads {threads} > {log} 2>&1"


rule train_regime:
    input:
        train=rules.tensors.output.train,
        test=rules.tensors.output.test,
        code=code("train", "faults", "models", "data", "evaluate", "perturb", "io", "files", "catalog"),
    output:
        weights="results/{dataset}/{model}/faults/regimes/{regime}/weights.safetensors",
        curve="results/{dataset}/{model}/faults/regimes/{regime}/training.parquet",
    params:
        train=lambda w: train_settings(w.model),
        regime=lambda w: regime_settings(w.regime),
        seed=config["seed"],
        device=config["device"],
    log:
        "logs/train_regime/{dataset}/{model}/{regime}.log",
    benchmark:
        "benchmarks/train_regime/{dataset}/{model}/{regime}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion train --model {wildcards.model} --dataset {wildcards.dataset}"
        " --train {input.train} --test {input.test}"
        " --weights-out {output.weights} --curve-out {output.curve}"
        " --epochs {params.train[epochs]} --batch-size {params.train[batch_size]}"
        " --learning-rate {params.train[learning_rate]} --weight-decay {params.train[weight_decay]}"
        " --dropout {params.regime[dropout]} --b3-variance {params.regime[b3_variance]}"
        " --seed {params.seed} --device {params.device} --threads {threads} > {log} 2>&1"


rule regime_bounds:
    input:
        weights=rules.train_regime.output.weights,
        test=rules.tensors.output.test,
        code=code("faults", "evaluate", "perturb", "models", "data", "io", "files", "catalog"),
    output:
        errors="results/{dataset}/{model}/faults/regimes/{regime}/errors.parquet",
        bounds="results/{dataset}/{model}/faults/regimes/{regime}/bounds.parquet",
    params:
        faults=fault_params,
        seed=config["seed"],
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
    log:
        "logs/regime_bounds/{dataset}/{model}/{regime}.log",
    benchmark:
        "benchmarks/regime_bounds/{dataset}/{model}/{regime}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion faults --dataset {wildcards.dataset} --weights {input.weights}"
        " --test {input.test} --layers {params.faults[layers]} --levels {params.faults[levels]}"
        " --repetitions {params.faults[repetitions]} {params.faults[inputs]}"
        " --seed {params.seed} --device {params.device}"
        " --batch-size {params.batch_size} --errors-out {output.errors} --bounds-out {output.bounds}"
        " --threads {threads} > {log} 2>&1"


rule fault_figure:
    input:
        errors=fault_tables("errors"),
        bounds=fault_tables("bounds"),
        code=code("faultplots", "plots", "files"),
    output:
        png=report(
            "results/{dataset}/{model}/faults/figures/{fault_figure}.png",
            caption="../report/faults.rst",
            category="Faults (El-Mhamdi et al. 2019)",
            subcategory="{dataset} / {model}",
            labels={"model": "{model}", "figure": "{fault_figure}"},
        ),
        pdf="results/{dataset}/{model}/faults/figures/{fault_figure}.pdf",
    wildcard_constraints:
        fault_figure="bounds|tolerance",
    params:
        labels=fault_labels,
    log:
        "logs/fault_figure/{dataset}/{model}/{fault_figure}.log",
    benchmark:
        "benchmarks/fault_figure/{dataset}/{model}/{fault_figure}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion fault-figure {wildcards.fault_figure} --errors {input.errors}"
        " --bounds {input.bounds} --labels {params.labels}"
        " --png {output.png} --pdf {output.pdf} > {log} 2>&1"
