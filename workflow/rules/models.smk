# Base networks: trained by the DAG itself, seeded; or, for ImageNet,
# torchvision's pretrained weights; or a network the user brings with its
# weights (models.<name>.source), imported. Either way the network of a model
# is WEIGHTS, so the rules that use it need not know which.


rule train:
    input:
        train=TRAIN,
        test=TEST,
        init=train_init,
        code=code("model", "train"),
    output:
        weights=WEIGHTS,
        curve=CURVE,
        checkpoints=expand(CHECKPOINT, epoch=config["train"]["checkpoints"], allow_missing=True),
    wildcard_constraints:
        dataset=TRAINED_ON,
        model=TRAINED_MODELS,
    params:
        step="model train",  # a study's twin of this rule runs its own step
        train=lambda w: train_settings(w.model),
        options="",  # and passes its own options
        start=lambda w: start_options(w.model),
        checkpoints=checkpoint_options,
        device=config["device"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/train/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{dataset}}/{{model}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion {params.step} --model {wildcards.model} --dataset {wildcards.dataset}"
        " --train {input.train} --test {input.test}"
        " --weights-out {output.weights} --curve-out {output.curve}"
        " --epochs {params.train[epochs]} --batch-size {params.train[batch_size]}"
        " --learning-rate {params.train[learning_rate]} --weight-decay {params.train[weight_decay]}"
        " --dropout {params.train[dropout]}"
        " {params.options} {params.start} {params.checkpoints}"
        " --device {params.device}"
        " --precision {params.precision} --threads {threads}"
        " > {log} 2>&1"


# torchvision's weights file, from the URL of its weights enum, sha256-prefix
# checked as torch.hub does. Named after the weights, so a catalog that picks
# other weights downloads them; no code input (the bytes are published).
rule download_weights:
    output:
        PTH,
    params:
        mirror=mirror_option(),
    wildcard_constraints:
        weights=r"\w+_Weights\.\w+",
    log:
        f"{LOGS}/download_weights/{{weights}}.log",
    benchmark:
        f"{BENCHMARKS}/download_weights/{{weights}}.tsv"
    retries: 2
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion data download-weights --weights {wildcards.weights} --out {output}"
        " {params.mirror} > {log} 2>&1"


# The same weights as safetensors (loaded with weights_only=True, checked to
# fit the registry model), with their URL, sha256 and transforms as metadata.
rule pretrained:
    input:
        pth=pretrained_file,
        code=code("data", "pretrained"),
    output:
        weights=WEIGHTS,
    wildcard_constraints:
        dataset=IN_DIRECTORY,
        model=OWN_MODELS,
    params:
        arch=lambda w: arch(w.model),
    log:
        f"{LOGS}/pretrained/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/pretrained/{{dataset}}/{{model}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion data pretrained --model {params.arch} --pth {input.pth}"
        " --out {output.weights} > {log} 2>&1"


# A network whose fc1 starts as an autoencoder's encoder (models.<name>.pretrain).
rule pretrain:
    input:
        train=TRAIN,
        code=code("model", "autoencoder"),
    output:
        weights=PRETRAINED,
    params:
        arch=lambda w: arch(w.model),
        pretrain=lambda w: config["models"][w.model]["pretrain"],
        batch_size=lambda w: train_settings(w.model)["batch_size"],
        seed=lambda w: training_seed(w.model),
    log:
        f"{LOGS}/pretrain/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/pretrain/{{dataset}}/{{model}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion model autoencoder --model {wildcards.model} --arch {params.arch}"
        " --dataset {wildcards.dataset} --train {input.train} --out {output.weights}"
        " --epochs {params.pretrain[epochs]} --batch-size {params.batch_size}"
        " --learning-rate {params.pretrain[learning_rate]} --sparsity {params.pretrain[sparsity]}"
        " --sparsity-target {params.pretrain[sparsity_target]}"
        " --seed {params.seed} --threads {threads} > {log} 2>&1"


# A network the user brings (models.<name>.source) with its weights file: built from
# its source, the weights loaded strictly (missing and unexpected keys named) and
# written with their provenance (source, file name and sha256). Nothing is trained.
rule import_network:
    input:
        weights=lambda w: config["models"][w.model]["weights"],
        factory=lambda w: brought_module(w.model),
        split=spec_split,
        code=code("model", "import"),
    output:
        weights=WEIGHTS,
    wildcard_constraints:
        model=IMPORTED_MODELS,
    params:
        options=lambda w: import_options(w.model),
        split=split_option,
    log:
        f"{LOGS}/import_network/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/import_network/{{dataset}}/{{model}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion model import --model {wildcards.model} --dataset {wildcards.dataset}"
        " --weights {input.weights} {params.options} {params.split} --out {output.weights}"
        " > {log} 2>&1"


# A network's weight layers in forward order, from its traced graph: a brought network's
# sweeps of `layers: all` are planned from this table once it exists; the layer atlas
# reads every model's depth, parameter count and type from it.
checkpoint layers:
    input:
        weights=WEIGHTS,
        split=spec_split,
        code=code("model", "layers"),
    output:
        LAYERS,
    wildcard_constraints:
        model="|".join(re.escape(m) for m in MODELS),
    params:
        split=split_option,
    log:
        f"{LOGS}/layers/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/layers/{{dataset}}/{{model}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion model layers --dataset {wildcards.dataset} --weights {input.weights}"
        " {params.split} --out {output} > {log} 2>&1"


# A brought network's layer table is an output of every study of it (what its layers are
# called, their order and norms), whether or not `layers: all` needs it to plan sweeps.
STUDY_TARGETS.append(lambda: [LAYERS.format(dataset=DATASET, model=m) for m in BROUGHT])
