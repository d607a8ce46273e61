# Datasets: export the raw data once, decode and split it once.


rule export_dataset:
    input:
        code=code("data", "io", "files"),
    output:
        "resources/{dataset}/raw.safetensors",
    log:
        "logs/export_dataset/{dataset}.log",
    benchmark:
        "benchmarks/export_dataset/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion export --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


rule tensors:
    input:
        raw=rules.export_dataset.output[0],
        code=code("data", "io", "files"),
    output:
        train="results/{dataset}/tensors/train.safetensors",
        test="results/{dataset}/tensors/test.safetensors",
    params:
        test_fraction=config["dataset"]["test_fraction"],
        seed=config["seed"],
    log:
        "logs/tensors/{dataset}.log",
    benchmark:
        "benchmarks/tensors/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion tensors --dataset {wildcards.dataset} --raw {input.raw}"
        " --train-out {output.train} --test-out {output.test}"
        " --test-fraction {params.test_fraction} --seed {params.seed} > {log} 2>&1"
