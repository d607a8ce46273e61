# The layer atlas (lesion.atlas): every study's measures of each layer of the models
# two or more studies cover, from the tables the studies name in ATLAS_TABLES, and
# how far the measures agree. Built when the config has an `atlas` section.
ATLAS = config.get("atlas")
ATLAS_DIR = f"{RESULTS}/{{dataset}}/atlas"


def atlas_coverage():
    """model -> the studies (CLI groups) whose atlas measures cover it."""
    covered = {}
    for group, tables in ATLAS_TABLES.items():
        for model in tables(DATASET):
            covered.setdefault(model, []).append(group)
    return covered


def atlas_models():
    """atlas.models, each checked to be covered twice; absent: every model covered twice."""
    covered = atlas_coverage()
    if "models" not in ATLAS:
        found = [m for m in MODELS if len(covered.get(m, [])) >= 2]
        if not found:
            stop(f"config error: atlas: no model is covered by two or more studies (now "
                 f"{covered or 'none'}); expected a model in two studies' models, or no atlas")
        return found
    for model in ATLAS["models"]:
        if model not in MODELS:
            stop(f"config error: atlas.models: {model!r} is not a model of this study; "
                 f"expected some of {MODELS}")
        if len(covered.get(model, [])) < 2:
            stop(f"config error: atlas.models: {model!r} is covered by "
                 f"{covered.get(model) or 'no study'}; expected models two or more studies "
                 f"cover (now {[m for m in MODELS if len(covered.get(m, [])) >= 2]})")
    return list(ATLAS["models"])


ATLAS_MODELS = atlas_models() if ATLAS else []


def atlas_tables(wildcards):
    """{STUDY:MODEL:NAME: path} of every table the atlas models' measures read."""
    return {
        f"{group}:{model}:{name}": path
        for group, tables in ATLAS_TABLES.items()
        for model, paths in tables(wildcards.dataset).items()
        if model in ATLAS_MODELS
        for name, path in paths.items()
    }


def atlas_layers(wildcards):
    return {m: LAYERS.format(dataset=wildcards.dataset, model=m) for m in ATLAS_MODELS}


def atlas_options():
    options = [f"--within {ATLAS['within']!r}", f"--bootstrap {ATLAS['bootstrap']}"]
    options += [f"--crash-level {ATLAS['crash_level']!r}"] if "crash_level" in ATLAS else []
    options += [f"--bit-level {ATLAS['bit_level']!r}"] if "bit_level" in ATLAS else []
    return " ".join(options)


def atlas_report(name, caption, **labels):
    return report(
        f"{ATLAS_DIR}/{name}",
        caption=f"../report/atlas/{caption}.rst",
        category="Atlas",
        subcategory="{dataset}",
        labels=labels,
    )


rule atlas_table:
    input:
        tables=lambda w: list(atlas_tables(w).values()),
        layers=lambda w: list(atlas_layers(w).values()),
        code=code("atlas", "table")
        + module_sources(
            [s.atlas.split(":")[0] for s in STUDIES if s.group in ATLAS_TABLES], root=SRC / "lesion"
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


ATLAS_FIGURES = [f"heat_{m}" for m in ATLAS_MODELS] + ["agreement", "depth"]


rule atlas_figures:
    input:
        table=rules.atlas_table.output.table,
        agreement=rules.atlas_table.output.agreement,
        code=code("atlas", "figures"),
    output:
        [atlas_report(f"figures/{name}.png", name.split("_")[0], figure=name) for name in ATLAS_FIGURES],
        [f"{ATLAS_DIR}/figures/{name}.pdf" for name in ATLAS_FIGURES],
    params:
        out_dir=lambda w: f"{ATLAS_DIR}/figures".format(dataset=w.dataset),
    log:
        f"{LOGS}/atlas_figures/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/atlas_figures/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion atlas figures --atlas {input.table} --agreement {input.agreement}"
        " --out-dir {params.out_dir} > {log} 2>&1"


if ATLAS_MODELS:
    STUDY_TARGETS.append(lambda: [f"{ATLAS_DIR}/figures/{name}.{ext}".format(dataset=DATASET)
                                  for name in ATLAS_FIGURES for ext in ("png", "pdf")])
