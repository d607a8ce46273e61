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
        save=lambda w: (
            f"--save-weights results/{w.dataset}/{w.model}/variant_weights/{w.perturbation}/{w.layer}"
            if config["evaluate"]["save_variant_weights"]
            else ""
        ),
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
        " {params.save} --out {output} --threads {threads} > {log} 2>&1"
