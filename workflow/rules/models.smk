# Base networks: trained by the DAG itself, seeded.


rule train:
    input:
        train=rules.tensors.output.train,
        test=rules.tensors.output.test,
        code=code("train", "models", "data", "evaluate", "io", "files", "catalog"),
    output:
        weights="results/{dataset}/{model}/weights.safetensors",
        curve="results/{dataset}/{model}/training.parquet",
    params:
        train=lambda w: train_settings(w.model),
        seed=config["seed"],
        device=config["device"],
    log:
        "logs/train/{dataset}/{model}.log",
    benchmark:
        "benchmarks/train/{dataset}/{model}.tsv"
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
        " --seed {params.seed} --device {params.device} --threads {threads} > {log} 2>&1"
