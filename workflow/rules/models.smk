# Base networks: trained by the DAG itself, seeded; or, for ImageNet,
# torchvision's pretrained weights.


rule train:
    input:
        train=rules.tensors.output.train,
        test=rules.tensors.output.test,
        code=code("train", "models", "data", "evaluate", "io", "files", "catalog"),
    output:
        weights="results/{dataset}/{model}/weights.safetensors",
        curve="results/{dataset}/{model}/training.parquet",
    wildcard_constraints:
        dataset=f"{EXPORTED}|{DOWNLOADED}",
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


# torchvision's weights file, from the URL of its weights enum, sha256-prefix
# checked as torch.hub does. Named after the weights, so a catalog that picks
# other weights downloads them; no code(...) input (the bytes are published).
rule download_weights:
    output:
        "resources/imagenet/weights/{weights}.pth",
    params:
        mirror=mirror_option(),
    wildcard_constraints:
        weights=r"\w+_Weights\.\w+",
    log:
        "logs/download_weights/{weights}.log",
    benchmark:
        "benchmarks/download_weights/{weights}.tsv"
    retries: 2
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion download-weights --weights {wildcards.weights} --out {output}"
        " {params.mirror} > {log} 2>&1"


# The same weights as safetensors (loaded with weights_only=True, checked to
# fit the registry model), with their URL, sha256 and transforms as metadata.
rule pretrained:
    input:
        pth=pretrained_file,
        code=code("fetch", "models", "io", "files", "catalog"),
    output:
        weights="results/{dataset}/{model}/weights.safetensors",
    wildcard_constraints:
        dataset=IN_DIRECTORY,
    log:
        "logs/pretrained/{dataset}/{model}.log",
    benchmark:
        "benchmarks/pretrained/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion pretrained --model {wildcards.model} --pth {input.pth}"
        " --out {output.weights} > {log} 2>&1"
