# Sweeps, the engine's core: every variant of one operator on every layer the
# config sweeps in a model, drawn on the CPU and predicted on the test split
# (GPU when present), layer after layer in one job so that Python and torch start
# once per (model, operator); and the metrics of all sweeps of a model. The
# perturbation and fault studies both read these.


include: "helpers/sweeps.smk"


rule predict_clean:
    input:
        weights=WEIGHTS,
        test=TEST,
        code=code("sweep", "predict"),
    output:
        CLEAN,
    params:
        batch_size=config["evaluate"]["batch_size"],
        precision=config["evaluate"]["precision"],
        device=config["device"],
    log:
        f"{LOGS}/predict_clean/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/predict_clean/{{dataset}}/{{model}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion sweep predict --dataset {wildcards.dataset} --weights {input.weights}"
        " --test {input.test} --out {output} --device {params.device}"
        " --batch-size {params.batch_size} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


rule sweep:
    input:
        weights=WEIGHTS,
        test=TEST,
        other_tests=other_tests,
        code=code("sweep", "run"),
    output:
        variants=VARIANTS,
        predictions=PREDICTIONS,
        other_predictions=expand(TESTSET_PREDICTIONS, testset=TESTSETS, allow_missing=True),
    params:
        sweep=sweep_params,
        seed=config["seed"],
        batch_size=config["evaluate"]["batch_size"],
        precision=config["evaluate"]["precision"],
        device=config["device"],
    log:
        f"{LOGS}/sweep/{{dataset}}/{{model}}/{{perturbation}}.log",
    benchmark:
        f"{BENCHMARKS}/sweep/{{dataset}}/{{model}}/{{perturbation}}.tsv"
    threads: 1
    resources:
        gpu=1,
        **SWEEP_TUNING,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion sweep run --dataset {wildcards.dataset} --weights {input.weights}"
        " --test {input.test} --layers {params.sweep[layers]} --perturbation {wildcards.perturbation}"
        " --levels {params.sweep[levels]} --draws {params.sweep[draws]} {params.sweep[bits]}"
        " --seed {params.seed} --variants-out {output.variants} --out {output.predictions}"
        " --other-tests {input.other_tests} --other-outs {output.other_predictions}"
        " --device {params.device} --batch-size {params.batch_size}"
        " --precision {params.precision}"
        " --variants-per-pass {resources.variants_per_pass}"
        " --cache-gb {resources.cache_gb} --threads {threads} > {log} 2>&1"


# On demand only (not part of `all`): the perturbed tensors of every variant of
# one layer's sweep, picked from its operator's table, for use outside lesion, e.g.
#   snakemake results/digits/cnn/variant_weights/gaussian/fc1
# The study itself never needs them: predict regenerates each variant from its
# table row and checks its sha256.
rule variant_weights:
    input:
        weights=WEIGHTS,
        table=VARIANTS,
        split=spec_split,
        code=code("sweep", "variant-weights"),
    output:
        directory(f"{RESULTS}/{{dataset}}/{{model}}/variant_weights/{{perturbation}}/{{layer}}"),
    params:
        split=split_option,
    log:
        f"{LOGS}/variant_weights/{{dataset}}/{{model}}/{{perturbation}}/{{layer}}.log",
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion sweep variant-weights --dataset {wildcards.dataset}"
        " --weights {input.weights} --variants {input.table} --layer {wildcards.layer}"
        " {params.split} --out {output}"
        " > {log} 2>&1"


# The clean model on an adversarial test set (perturbations.testsets); the sweep
# rule predicts those sets with every variant itself (variants drawn once per sweep).
use rule predict_clean as predict_clean_testset with:
    input:
        weights=WEIGHTS,
        test=lambda w: ADV_SET.format(dataset=w.dataset, attack=w.testset, model=w.model),
        code=code("sweep", "predict"),
    output:
        TESTSET_CLEAN,
    log:
        f"{LOGS}/predict_clean_testset/{{dataset}}/{{model}}/{{testset}}.log",
    benchmark:
        f"{BENCHMARKS}/predict_clean_testset/{{dataset}}/{{model}}/{{testset}}.tsv"


rule metrics:
    input:
        clean=metrics_inputs("clean"),
        variants=lambda w: sweep_paths(VARIANTS, w.dataset, w.model),
        predictions=metrics_inputs("predictions"),
        code=code("sweep", "metrics"),
    output:
        metrics=METRICS,
        summary=SUMMARY,
        csv=report(
            SUMMARY_CSV,
            caption="../report/perturbation/summary.rst",
            category=STUDY_TITLES["perturbation"],
            subcategory="{dataset} / {model}",
            labels={"model": "{model}", "table": "metrics summary"},
        ),
    params:
        testsets=",".join(["clean", *TESTSETS]),
    log:
        f"{LOGS}/metrics/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/metrics/{{dataset}}/{{model}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion sweep metrics --dataset {wildcards.dataset} --model {wildcards.model}"
        " --testsets {params.testsets} --clean {input.clean} --variants {input.variants}"
        " --predictions {input.predictions}"
        " --out {output.metrics} --summary-out {output.summary} --summary-csv {output.csv}"
        " > {log} 2>&1"
