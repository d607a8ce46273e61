# Datasets: export or download the raw data once, decode and split it once.
# A dataset of one's own is decoded from dataset.path (rule user_tensors).


rule export_dataset:
    input:
        code=code("data", "export"),
    output:
        RAW,
    wildcard_constraints:
        dataset=EXPORTED,
    log:
        f"{LOGS}/export_dataset/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/export_dataset/{{dataset}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion data export --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


# MNIST and CIFAR10 through torchvision's dataset classes (md5-checked), into a
# temporary directory renamed when complete. No code input: the files are
# the published ones, so an edit of lesion cannot change them.
rule download:
    output:
        directory(DOWNLOADED_RAW),
    params:
        mirror=mirror_option(),
    wildcard_constraints:
        dataset=DOWNLOADED,
    log:
        f"{LOGS}/download/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/download/{{dataset}}.tsv"
    retries: 2
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion data download --dataset {wildcards.dataset} --out {output}"
        " {params.mirror} > {log} 2>&1"


rule tensors:
    input:
        raw=raw_data,
        code=code("data", "tensors"),
    output:
        train=TRAIN,
        test=TEST,
    wildcard_constraints:
        dataset=f"{EXPORTED}|{DOWNLOADED}",
    params:
        test_fraction=config["dataset"]["test_fraction"],
        seed=config["seed"],
    log:
        f"{LOGS}/tensors/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/tensors/{{dataset}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion data tensors --dataset {wildcards.dataset} --raw {input.raw}"
        " --train-out {output.train} --test-out {output.test}"
        " --test-fraction {params.test_fraction} --seed {params.seed} > {log} 2>&1"


# ImageNet: the validation images in dataset.path (checked while the DAG is
# built, see common.smk), decoded once with the pretrained weights' own
# transforms and stored as uint8 (7.5 GB; normalised when loaded). All
# catalogued weights share one preprocessing, so the cache does not depend on
# which models a study picks.
rule imagenet_tensors:
    input:
        code=code("data", "imagenet-tensors"),
    output:
        test=TEST,
    params:
        path=config["dataset"].get("path", ""),
        weights=",".join(sorted(set(PRETRAINED_WEIGHTS.values()))),
    wildcard_constraints:
        dataset=IN_DIRECTORY,
    log:
        f"{LOGS}/tensors/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/tensors/{{dataset}}.tsv"
    threads: 8
    resources:
        mem_mb=24000,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion data imagenet-tensors --path {params.path:q} --test-out {output.test}"
        " --weights {params.weights} --workers {threads} > {log} 2>&1"


# A dataset of one's own (dataset.source, checked with the config: lesion.userdata):
# an ImageFolder directory decoded once (resized, centre-cropped, uint8) or a
# safetensors file, split when it has no train split. A tensors file is an
# input; a folder's images are a fingerprint param (see folder_fingerprint).
rule user_tensors:
    input:
        data=own_data,
        code=code("data", "user-tensors"),
    output:
        train=TRAIN,
        test=TEST,
    params:
        source=config["dataset"].get("source", ""),
        path=config["dataset"].get("path", ""),
        options=own_data_options() if DATASET not in DATASET_SOURCES else "",
        fingerprint=folder_fingerprint(),
    wildcard_constraints:
        dataset=OWN_DATASET,
    log:
        f"{LOGS}/tensors/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/tensors/{{dataset}}.tsv"
    threads: 2
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion data user-tensors --dataset {wildcards.dataset} --source {params.source}"
        " --path {params.path:q} --train-out {output.train} --test-out {output.test}"
        " {params.options} --workers {threads} > {log} 2>&1"
