# Variants: one table per (operator, layer) sweep, drawn on the CPU.


rule variants:
    input:
        weights=rules.train.output.weights,
        code=code("sweep", "perturb", "models", "data", "io", "files", "catalog"),
    output:
        "results/{dataset}/{model}/variants/{perturbation}/{layer}.parquet",
    params:
        sweep=sweep_params,
        seed=config["seed"],
    log:
        "logs/variants/{dataset}/{model}/{perturbation}/{layer}.log",
    benchmark:
        "benchmarks/variants/{dataset}/{model}/{perturbation}/{layer}.tsv"
    threads: 1
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion variants --dataset {wildcards.dataset} --weights {input.weights}"
        " --layer {wildcards.layer} --perturbation {wildcards.perturbation}"
        " --levels {params.sweep[levels]} --draws {params.sweep[draws]} --seed {params.seed}"
        " {params.sweep[bits]} --out {output} --threads {threads} > {log} 2>&1"


# On demand only (not part of `all`): the perturbed tensors of every variant of
# a sweep, for use outside lesion, e.g.
#   snakemake results/digits/cnn/variant_weights/gaussian/fc1
# The study itself never needs them: predict regenerates each variant from its
# table row and checks its sha256.
rule variant_weights:
    input:
        weights=rules.train.output.weights,
        table=rules.variants.output[0],
        code=code("sweep", "perturb", "models", "data", "io", "files", "catalog"),
    output:
        directory("results/{dataset}/{model}/variant_weights/{perturbation}/{layer}"),
    log:
        "logs/variant_weights/{dataset}/{model}/{perturbation}/{layer}.log",
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion variant-weights --dataset {wildcards.dataset} --weights {input.weights}"
        " --variants {input.table} --out {output} > {log} 2>&1"
