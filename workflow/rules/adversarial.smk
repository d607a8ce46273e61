# The adversarial study (Szegedy et al. 2013), config section `adversarial`:
# adversarial sets per (attack, model), Tables 1, 2 and 4, adversarial
# training, unit inspection, and their figures.


include: "helpers/adversarial.smk"


# Every attack of the config on one network, in one job (the network loads once).
rule adversarial_attack:
    input:
        weights=WEIGHTS,
        test=TEST,
        code=code("adversarial", "attack"),
    output:
        expand(ADV_SET, attack=ADV_ATTACKS, allow_missing=True),
    params:
        attacks=json.dumps({a: ADVERSARIAL["attacks"][a] for a in ADV_ATTACKS}),
        images=ADVERSARIAL.get("images"),
        seed=config["seed"],
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/adversarial_attack/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_attack/{{dataset}}/{{model}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion adversarial attack --dataset {wildcards.dataset} --weights {input.weights}"
        " --test {input.test} --attacks '{params.attacks}' --outs {output}"
        " --images {params.images} --seed {params.seed} --device {params.device}"
        " --precision {params.precision} --batch-size {params.batch_size} --threads {threads}"
        " > {log} 2>&1"


rule adversarial_distortion:
    input:
        curves=[c for c in adv_curves(ADV_MODELS) if c != "none"],
        weights=adv_paths(WEIGHTS, ADV_MODELS),
        sets=adv_sets(ADV_MODELS, [ADV_MAIN]),
        code=code("adversarial", "distortion"),
    output:
        f"{ADV_DIR}/distortion.parquet",
    params:
        curves=" ".join(adv_curves(ADV_MODELS)),
    log:
        f"{LOGS}/adversarial_distortion/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_distortion/{{dataset}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion adversarial distortion --curves {params.curves} --weights {input.weights}"
        " --sets {input.sets} --out {output} > {log} 2>&1"


rule adversarial_transfer:
    input:
        test=TEST,
        weights=adv_paths(WEIGHTS, ADV_MODELS),
        sets=adv_sets(ADV_MODELS),
        code=code("adversarial", "transfer"),
    output:
        f"{ADV_DIR}/transfer.parquet",
    params:
        sigmas=",".join(repr(float(s)) for s in ADVERSARIAL.get("sigmas", [])),
        seed=config["seed"],
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/adversarial_transfer/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_transfer/{{dataset}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion adversarial transfer --dataset {wildcards.dataset} --test {input.test}"
        " --weights {input.weights} --sets {input.sets} --sigmas {params.sigmas}"
        " --seed {params.seed} --device {params.device} --precision {params.precision}"
        " --batch-size {params.batch_size} --threads {threads} --out {output} > {log} 2>&1"


rule adversarial_cross_training:
    input:
        test=TEST,
        weights=adv_paths(WEIGHTS, ADV_CROSS.get("models", [])),
        sets=adv_sets(ADV_CROSS.get("models", []), [ADV_MAIN]),
        code=code("adversarial", "cross-training"),
    output:
        f"{ADV_DIR}/cross_training.parquet",
    params:
        sigma=ADV_CROSS.get("sigma"),
        seed=config["seed"],
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/adversarial_cross_training/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_cross_training/{{dataset}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion adversarial cross-training --dataset {wildcards.dataset}"
        " --test {input.test} --weights {input.weights} --sets {input.sets}"
        " --sigma {params.sigma} --seed {params.seed} --device {params.device}"
        " --precision {params.precision}"
        " --batch-size {params.batch_size} --threads {threads} --out {output} > {log} 2>&1"


# The training model again in a regime: the engine's train rule running the
# study's train step (weight decay, dropout, adversarial examples mixed in).
use rule train as train_adversarial with:
    input:
        train=TRAIN,
        test=TEST,
        init=train_init,
        code=code("adversarial", "train"),
    output:
        weights=f"{ADV_REGIME_DIR}/weights.safetensors",
        curve=f"{ADV_REGIME_DIR}/training.parquet",
    wildcard_constraints:
        replicate=r"\d+",
    params:
        step="adversarial train",
        train=adv_regime_train,
        options=lambda w: (
            f"--adversarial-attack {adv_regime(w)['attack']}"
            f" --adversarial-eps {adv_regime(w)['eps']!r}"
        ),
        start=lambda w: start_options(w.model, seed=replicate_seed(w.model, w.replicate)),
        checkpoints="",
        device=config["device"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/train_adversarial/{{dataset}}/{{model}}/{{regime}}/{{replicate}}.log",
    benchmark:
        f"{BENCHMARKS}/train_adversarial/{{dataset}}/{{model}}/{{regime}}/{{replicate}}.tsv"


rule adversarial_training:
    input:
        weights=adv_regime_paths("weights") if ADV_TRAINING else [],
        curves=adv_regime_paths("curve") if ADV_TRAINING else [],
        code=code("adversarial", "training-table"),
    output:
        f"{ADV_DIR}/adversarial_training.parquet",
    params:
        labels=",".join(r for r, _ in ADV_RUNS),
    log:
        f"{LOGS}/adversarial_training/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_training/{{dataset}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion adversarial training-table --labels {params.labels}"
        " --weights {input.weights} --curves {input.curves} --out {output} > {log} 2>&1"


rule adversarial_units:
    input:
        weights=adv_paths(WEIGHTS, [ADV_UNITS["model"]]) if ADV_UNITS else [],
        test=TEST,
        code=code("adversarial", "units"),
    output:
        f"{ADV_DIR}/units.safetensors",
    params:
        units=ADV_UNITS,
        seed=config["seed"],
    log:
        f"{LOGS}/adversarial_units/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_units/{{dataset}}.tsv"
    threads: 1
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion adversarial units --dataset {wildcards.dataset} --weights {input.weights}"
        " --test {input.test} --layer {params.units[layer]} --unit {params.units[unit]}"
        " --top {params.units[top]} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule adversarial_table_csv:
    input:
        table=f"{ADV_DIR}/{{adv_table}}.parquet",
        code=code("adversarial", "csv"),
    output:
        report(
            f"{ADV_DIR}/{{adv_table}}.csv",
            caption="../report/adversarial/table.rst",
            category=STUDY_TITLES["adversarial"],
            subcategory="tables",
            labels={"table": "{adv_table}"},
        ),
    wildcard_constraints:
        adv_table="|".join(ADV_TABLES) or "none",
    log:
        f"{LOGS}/adversarial_table_csv/{{dataset}}/{{adv_table}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_table_csv/{{dataset}}/{{adv_table}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion adversarial csv --table {input.table} --out {output} > {log} 2>&1"


rule adversarial_examples_figure:
    input:
        sets=expand(ADV_SET, attack=str(ADV_MAIN), model=ADV_MODELS, allow_missing=True),
        test=TEST,
        code=code("adversarial", "figure"),
    output:
        png=[
            report(
                f"{ADV_DIR}/figures/examples/{model}.png",
                caption="../report/adversarial/examples.rst",
                category=STUDY_TITLES["adversarial"],
                subcategory="examples",
                labels={"model": model, "figure": "examples"},
            )
            for model in ADV_MODELS
        ],
        pdf=expand(f"{ADV_DIR}/figures/examples/{{model}}.pdf", model=ADV_MODELS, allow_missing=True),
        **svg_outputs(svg=expand(f"{ADV_DIR}/figures/examples/{{model}}.svg", model=ADV_MODELS,
                                 allow_missing=True)),
    params:
        figures=FIGURE_FLAGS,
        sets=lambda w, input: " ".join(f"{m}={p}" for m, p in zip(ADV_MODELS, input.sets)),
        out_dir=lambda w, output: str(Path(output.pdf[0]).parent),
    log:
        f"{LOGS}/adversarial_examples_figure/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_examples_figure/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion adversarial figure examples --sets {params.sets} --test {input.test}"
        " --out-dir {params.out_dir} {params.figures} > {log} 2>&1"


rule adversarial_transfer_figure:
    input:
        table=f"{ADV_DIR}/transfer.parquet",
        code=code("adversarial", "figure"),
    output:
        png=report(
            f"{ADV_DIR}/figures/transfer.png",
            caption="../report/adversarial/transfer.rst",
            category=STUDY_TITLES["adversarial"],
            subcategory="figures",
            labels={"figure": "transfer"},
        ),
        pdf=f"{ADV_DIR}/figures/transfer.pdf",
        **svg_outputs(svg=f"{ADV_DIR}/figures/transfer.svg"),
    params:
        figures=FIGURE_FLAGS,
    log:
        f"{LOGS}/adversarial_transfer_figure/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_transfer_figure/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion adversarial figure transfer --transfer {input.table}"
        " --png {output.png} --pdf {output.pdf} {params.figures} > {log} 2>&1"


rule adversarial_units_figure:
    input:
        units=f"{ADV_DIR}/units.safetensors",
        code=code("adversarial", "figure"),
    output:
        png=report(
            f"{ADV_DIR}/figures/units.png",
            caption="../report/adversarial/units.rst",
            category=STUDY_TITLES["adversarial"],
            subcategory="figures",
            labels={"figure": "units"},
        ),
        pdf=f"{ADV_DIR}/figures/units.pdf",
        **svg_outputs(svg=f"{ADV_DIR}/figures/units.svg"),
    params:
        figures=FIGURE_FLAGS,
    log:
        f"{LOGS}/adversarial_units_figure/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/adversarial_units_figure/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion adversarial figure units --units {input.units}"
        " --png {output.png} --pdf {output.pdf} {params.figures} > {log} 2>&1"
