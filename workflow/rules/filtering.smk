# The synaptic filtering study (Pravin et al. 2024), config section `filtering`:
# checkpoints of some models filtered layer by layer (and all layers at once)
# with ideal high-pass, low-pass and pulse filters on the clean and an FGSM
# test set; filtering scores and classes; selective retraining from the class map.


include: "helpers/filtering.smk"


rule filtering_sweep:
    input:
        checkpoints=filter_checkpoints(FILTER_EPOCHS),
        test=TEST,
        layers=layer_table,  # a brought network's layers (its `all`) come from this table
        code=code("filtering", "sweep"),
    output:
        variants=filter_outputs(FILTER_VARIANTS, FILTER_EPOCHS),
        predictions=filter_outputs(FILTER_PREDICTIONS, FILTER_EPOCHS),
        unfiltered=filter_outputs(FILTER_UNFILTERED, FILTER_EPOCHS),
        fgsm=expand(FILTER_FGSM, epoch=FILTER_EPOCHS, allow_missing=True),
    params:
        checkpoints=checkpoint_pairs(FILTER_EPOCHS),
        eps=FILTERING.get("eps"),
        layers=filter_layers,
        filters=",".join(FILTERS),
        out_dir=lambda w, output: parent(output.variants[0], 2),
        seed=config["seed"],
        batch_size=config["evaluate"]["batch_size"],
        precision=config["evaluate"]["precision"],
        device=config["device"],
    log:
        f"{LOGS}/filtering_sweep/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/filtering_sweep/{{dataset}}/{{model}}.tsv"
    threads: 1
    resources:
        gpu=1,
        **SWEEP_TUNING,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion filtering sweep --dataset {wildcards.dataset}"
        " --checkpoints {params.checkpoints} --test {input.test} --eps {params.eps}"
        " --layers {params.layers} --filters {params.filters} --seed {params.seed}"
        " --out-dir {params.out_dir} --device {params.device}"
        " --batch-size {params.batch_size} --precision {params.precision}"
        " --variants-per-pass {resources.variants_per_pass}"
        " --cache-gb {resources.cache_gb} --threads {threads} > {log} 2>&1"


rule filtering_scores:
    input:
        variants=rules.filtering_sweep.output.variants,
        predictions=rules.filtering_sweep.output.predictions,
        unfiltered=rules.filtering_sweep.output.unfiltered,
        code=code("filtering", "scores"),
    output:
        metrics=f"{FILTER_DIR}/metrics.parquet",
        curves=f"{FILTER_DIR}/curves.parquet",
        scores=f"{FILTER_DIR}/scores.parquet",
    params:
        epochs=",".join(map(str, FILTER_EPOCHS)),
        out_dir=lambda w, input: parent(input.variants[0], 2),
        tol=FILTERING.get("tol"),
        clean=FILTER_CLEAN,
        adversarial=FILTER_ADVERSARIAL,
    log:
        f"{LOGS}/filtering_scores/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/filtering_scores/{{dataset}}/{{model}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion filtering scores --dataset {wildcards.dataset} --model {wildcards.model}"
        " --dir {params.out_dir} --epochs {params.epochs} --clean {params.clean}"
        " --adversarial {params.adversarial}"
        " --tol {params.tol} --metrics-out {output.metrics} --curves-out {output.curves}"
        " --scores-out {output.scores} > {log} 2>&1"


rule filtering_retrain:
    input:
        checkpoints=filter_checkpoints(RETRAIN_FROM),
        scores=rules.filtering_scores.output.scores,
        fgsm=expand(FILTER_FGSM, epoch=RETRAIN_FROM, allow_missing=True),
        train=TRAIN,
        test=TEST,
        code=code("filtering", "retrain"),
    output:
        table=f"{FILTER_DIR}/retraining.parquet",
        weights=expand(
            f"{RETRAINED_RUN}/weights.safetensors",
            epoch=RETRAIN_FROM,
            way=RETRAINED_WAYS,
            replicate=range(RETRAINING["seeds"]) if RETRAINING else [],
            allow_missing=True,
        ),
        masks=expand(
            f"{RETRAINED}/masks.safetensors",
            epoch=RETRAIN_FROM,
            way=MASKED_WAYS,
            allow_missing=True,
        ),
    params:
        checkpoints=checkpoint_pairs(RETRAIN_FROM),
        fgsm=fgsm_pairs(RETRAIN_FROM),
        out_dir=lambda w, output: parent(output.weights[0], 4),
        retraining=RETRAINING,
        eps=FILTERING.get("eps"),
        train=lambda w: train_settings(w.model),
        seed=config["seed"],
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/filtering_retrain/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/filtering_retrain/{{dataset}}/{{model}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion filtering retrain --dataset {wildcards.dataset}"
        " --model {wildcards.model} --checkpoints {params.checkpoints} --scores {input.scores}"
        " --train {input.train} --test {input.test} --adversarial {params.fgsm}"
        " --out-dir {params.out_dir} --out {output.table} --epochs {params.retraining[epochs]}"
        " --seeds {params.retraining[seeds]}"
        " --filter {params.retraining[filter]} --score {params.retraining[score]}"
        " --eps {params.eps} --train-batch-size {params.train[batch_size]}"
        " --learning-rate {params.train[learning_rate]}"
        " --weight-decay {params.train[weight_decay]} --seed {params.seed}"
        " --device {params.device} --precision {params.precision}"
        " --batch-size {params.batch_size} --threads {threads} > {log} 2>&1"


rule filtering_figures:
    input:
        curves=rules.filtering_scores.output.curves,
        scores=rules.filtering_scores.output.scores,
        retraining=rules.filtering_retrain.output.table,
        code=code("filtering", "figures"),
    output:
        heat=[
            report(
                f"{FILTER_DIR}/figures/heat_{name}.png",
                caption="../report/filtering/heat.rst",
                category=STUDY_TITLES["filtering"],
                subcategory="{dataset} / {model}",
                labels={"model": "{model}", "figure": f"heat map, {name}"},
            )
            for name in FILTERS
        ],
        class_map=report(
            f"{FILTER_DIR}/figures/class_map.png",
            caption="../report/filtering/class_map.rst",
            category=STUDY_TITLES["filtering"],
            subcategory="{dataset} / {model}",
            labels={"model": "{model}", "figure": "class map"},
        ),
        retraining=report(
            f"{FILTER_DIR}/figures/retraining.png",
            caption="../report/filtering/retraining.rst",
            category=STUDY_TITLES["filtering"],
            subcategory="{dataset} / {model}",
            labels={"model": "{model}", "figure": "selective retraining"},
        ),
        pdf=expand(f"{FILTER_DIR}/figures/{{name}}.pdf", name=FILTER_FIGURES, allow_missing=True),
        **svg_outputs(svg=expand(f"{FILTER_DIR}/figures/{{name}}.svg", name=FILTER_FIGURES,
                                 allow_missing=True)),
    params:
        figures=ACCURACY_FLAGS,
        filters=",".join(FILTERS),
        out_dir=lambda w, output: parent(output.class_map),
        clean=FILTER_CLEAN,
        adversarial=FILTER_ADVERSARIAL,
    log:
        f"{LOGS}/filtering_figures/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/filtering_figures/{{dataset}}/{{model}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion filtering figures --curves {input.curves} --scores {input.scores}"
        " --retraining {input.retraining} --filters {params.filters} --clean {params.clean}"
        " --adversarial {params.adversarial} --out-dir {params.out_dir} {params.figures} > {log} 2>&1"


rule filtering_invariance:
    input:
        scores=expand(f"{FILTER_DIR}/scores.parquet", model=FILTER_MODELS, allow_missing=True),
        code=code("filtering", "invariance"),
    output:
        png=report(
            f"{RESULTS}/{{dataset}}/filtering/invariance.png",
            caption="../report/filtering/invariance.rst",
            category=STUDY_TITLES["filtering"],
            subcategory="{dataset}",
            labels={"figure": "invariance"},
        ),
        pdf=f"{RESULTS}/{{dataset}}/filtering/invariance.pdf",
        **svg_outputs(svg=f"{RESULTS}/{{dataset}}/filtering/invariance.svg"),
        csv=report(
            f"{RESULTS}/{{dataset}}/filtering/invariance.csv",
            caption="../report/filtering/invariance.rst",
            category=STUDY_TITLES["filtering"],
            subcategory="{dataset}",
            labels={"table": "invariance"},
        ),
    params:
        figures=FIGURE_FLAGS,
    log:
        f"{LOGS}/filtering_invariance/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/filtering_invariance/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion filtering invariance --scores {input.scores} --png {output.png}"
        " --pdf {output.pdf} --csv {output.csv} {params.figures} > {log} 2>&1"
