# The layer atlas (lesion.atlas): every study's measures of each layer of the models
# two or more studies cover, from the tables the studies name in ATLAS_TABLES, and
# how far the measures agree. Built when the config has an `atlas` section.
include: "helpers/atlas.smk"


rule atlas_table:
    input:
        tables=lambda w: list(atlas_tables(w).values()),
        layers=lambda w: list(atlas_layers(w).values()),
        code=code("atlas", "table")
        + module_sources(
            [s.atlas.split(":")[0] for s in STUDIES if s.group in ATLAS_TABLES], root=LESION_SRC
        ),
    output:
        table=atlas_report("atlas.parquet", "atlas", table="atlas"),
        agreement=atlas_report("agreement.parquet", "agreement", table="agreement"),
    params:
        tables=lambda w: " ".join(f"{key}={path}" for key, path in atlas_tables(w).items()),
        layers=lambda w: " ".join(f"{m}={path}" for m, path in atlas_layers(w).items()),
        options=atlas_options() if ATLAS else "",
        seed=config["seed"],
    log:
        f"{LOGS}/atlas_table/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/atlas_table/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion atlas table --tables {params.tables} --layers {params.layers}"
        " --dataset {wildcards.dataset} {params.options} --seed {params.seed}"
        " --out {output.table} --agreement-out {output.agreement} > {log} 2>&1"


rule atlas_figures:
    input:
        table=rules.atlas_table.output.table,
        agreement=rules.atlas_table.output.agreement,
        code=code("atlas", "figures"),
    output:
        [atlas_report(f"figures/{name}.png", name.split("_")[0], figure=name) for name in ATLAS_FIGURES],
        [f"{ATLAS_DIR}/figures/{name}.pdf" for name in ATLAS_FIGURES],
        **svg_outputs(svg=[f"{ATLAS_DIR}/figures/{name}.svg" for name in ATLAS_FIGURES]),
    params:
        figures=FIGURE_FLAGS,
        out_dir=lambda w: f"{ATLAS_DIR}/figures".format(dataset=w.dataset),
    log:
        f"{LOGS}/atlas_figures/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/atlas_figures/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion atlas figures --atlas {input.table} --agreement {input.agreement}"
        " --out-dir {params.out_dir} {params.figures} > {log} 2>&1"


if ATLAS_MODELS:
    STUDY_TARGETS.append(lambda: [f"{ATLAS_DIR}/figures/{name}.{ext}".format(dataset=DATASET)
                                  for name in ATLAS_FIGURES for ext in FIGURE_EXTS])
