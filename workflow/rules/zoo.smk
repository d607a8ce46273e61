# The weight-space study (Eilertsen et al. 2020), config section `zoo`: a zoo
# of small CNNs with sampled hyper-parameters, trained in shards (one job and
# one file each), merged into nets.parquet (with the excluded share per property
# value, excluded.parquet), and two meta-classifiers per property, a 1-D CNN on
# weight slices and a random forest on per-tensor statistics (meta.parquet).


include: "helpers/zoo.smk"


wildcard_constraints:
    shard=r"\d+",


rule zoo_shard:
    input:
        train=TRAIN,
        test=TEST,
        code=code("zoo", "shard"),
    output:
        snapshots=f"{ZOO_SHARD}.safetensors",
        table=f"{ZOO_SHARD}.parquet",
    params:
        zoo=zoo_settings(),
        shards=ZOO.get("shards"),
        seed=config["seed"],
        device=config["device"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/zoo_shard/{{dataset}}/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/zoo_shard/{{dataset}}/{{shard}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion zoo shard --dataset {wildcards.dataset} --train {input.train}"
        " --test {input.test} --zoo {params.zoo:q} --shard {wildcards.shard}"
        " --shards {params.shards} --seed {params.seed} --snapshots-out {output.snapshots}"
        " --out {output.table} --device {params.device} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


rule zoo_merge:
    input:
        tables=zoo_shards(".parquet"),
        snapshots=zoo_shards(".safetensors"),
        code=code("zoo", "merge"),
    output:
        nets=f"{ZOO_DIR}/nets.parquet",
        excluded=f"{ZOO_DIR}/excluded.parquet",
    params:
        nets=ZOO.get("nets"),
        min_accuracy=ZOO.get("min_accuracy"),
        test_fraction=ZOO.get("test_fraction"),
        seed=config["seed"],
    log:
        f"{LOGS}/zoo_merge/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/zoo_merge/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion zoo merge --tables {input.tables} --snapshots {input.snapshots}"
        " --nets {params.nets} --min-accuracy {params.min_accuracy}"
        " --test-fraction {params.test_fraction} --seed {params.seed} --out {output.nets}"
        " --excluded-out {output.excluded} > {log} 2>&1"


rule zoo_meta:
    input:
        nets=rules.zoo_merge.output.nets,
        snapshots=zoo_shards(".safetensors"),
        code=code("zoo", "meta"),
    output:
        meta=f"{ZOO_DIR}/meta.parquet",
        snapshots=f"{ZOO_DIR}/meta_snapshots.parquet",
    params:
        properties=zoo_properties() if ZOO else "",
        meta=ZOO.get("meta"),
        seed=config["seed"],
        device=config["device"],
        precision=config["evaluate"]["precision"],
    log:
        f"{LOGS}/zoo_meta/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/zoo_meta/{{dataset}}.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m lesion zoo meta --nets {input.nets} --dataset {wildcards.dataset}"
        " --properties {params.properties}"
        " --slice-length {params.meta[slice_length]}"
        " --window {params.meta[snapshots][0]},{params.meta[snapshots][1]}"
        " --steps {params.meta[steps]} --batch-size {params.meta[batch_size]}"
        " --learning-rate {params.meta[learning_rate]} --positions {params.meta[positions]}"
        " --trees {params.meta[trees]}"
        " --seed {params.seed} --out {output.meta} --snapshots-out {output.snapshots}"
        " --device {params.device} --precision {params.precision} --threads {threads} > {log} 2>&1"


# One job draws both figures: they read the same tables, and matplotlib starts once.
rule zoo_figures:
    input:
        meta=rules.zoo_meta.output.meta,
        snapshots=rules.zoo_meta.output.snapshots,
        code=code("zoo", "figures"),
    output:
        accuracy_png=report(
            f"{RESULTS}/{{dataset}}/zoo/figures/accuracy.png",
            caption="../report/zoo/accuracy.rst",
            category=STUDY_TITLES["zoo"],
            subcategory="{dataset}",
            labels={"figure": "accuracy"},
        ),
        accuracy_pdf=f"{RESULTS}/{{dataset}}/zoo/figures/accuracy.pdf",
        snapshots_png=report(
            f"{RESULTS}/{{dataset}}/zoo/figures/snapshots.png",
            caption="../report/zoo/snapshots.rst",
            category=STUDY_TITLES["zoo"],
            subcategory="{dataset}",
            labels={"figure": "snapshots"},
        ),
        snapshots_pdf=f"{RESULTS}/{{dataset}}/zoo/figures/snapshots.pdf",
        **svg_outputs(accuracy_svg=f"{RESULTS}/{{dataset}}/zoo/figures/accuracy.svg",
                      snapshots_svg=f"{RESULTS}/{{dataset}}/zoo/figures/snapshots.svg"),
    params:
        figures=ACCURACY_FLAGS,
        out=f"{RESULTS}/{{dataset}}/zoo/figures",
    log:
        f"{LOGS}/zoo_figures/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/zoo_figures/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion zoo figures --meta {input.meta} --snapshots {input.snapshots}"
        " --out {params.out} {params.figures} > {log} 2>&1"
