# Predictions: the clean model, and every variant of a sweep (GPU when present).


rule predict_clean:
    input:
        weights=rules.train.output.weights,
        test=rules.tensors.output.test,
        code=code("predict", "evaluate", "sweep", "perturb", "models", "data", "io", "files", "catalog"),
    output:
        "results/{dataset}/{model}/predictions/none.parquet",
    params:
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
    log:
        "logs/predict_clean/{dataset}/{model}.log",
    benchmark:
        "benchmarks/predict_clean/{dataset}/{model}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion predict --dataset {wildcards.dataset} --weights {input.weights}"
        " --test {input.test} --out {output} --device {params.device}"
        " --batch-size {params.batch_size} --threads {threads} > {log} 2>&1"


rule predict:
    input:
        weights=rules.train.output.weights,
        test=rules.tensors.output.test,
        variants=rules.variants.output[0],
        code=code("predict", "evaluate", "sweep", "perturb", "models", "data", "io", "files", "catalog"),
    output:
        "results/{dataset}/{model}/predictions/{perturbation}/{layer}.parquet",
    params:
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
        per_pass=config["evaluate"]["variants_per_pass"],
        cache_gb=config["evaluate"]["cache_gb"],
    log:
        "logs/predict/{dataset}/{model}/{perturbation}/{layer}.log",
    benchmark:
        "benchmarks/predict/{dataset}/{model}/{perturbation}/{layer}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion predict --dataset {wildcards.dataset} --weights {input.weights}"
        " --test {input.test} --variants {input.variants} --out {output}"
        " --device {params.device} --batch-size {params.batch_size}"
        " --variants-per-pass {params.per_pass} --cache-gb {params.cache_gb}"
        " --threads {threads} > {log} 2>&1"
