# The census (tests/plugin/lesion_census): one table per model its section names.
# Rules of a plugin use what lesion's common.smk defines: paths (RESULTS, WEIGHTS),
# code(), ENVS, STUDY_TITLES and STUDY_TARGETS.

CENSUS = config.get("census") or {}
CENSUS_TABLE = f"{RESULTS}/{{dataset}}/{{model}}/census.parquet"


rule census_count:
    input:
        weights=WEIGHTS,
        code=code("census", "count"),
    output:
        CENSUS_TABLE,
    params:
        near=CENSUS.get("near"),
    log:
        f"{LOGS}/census_count/{{dataset}}/{{model}}.log",
    conda:
        str(ENVS / "analysis.yaml")
    shell:
        "python -m lesion census count --weights {input.weights} --near {params.near}"
        " --out {output} > {log} 2>&1"


if CENSUS:
    STUDY_TARGETS.append(lambda: [CENSUS_TABLE.format(dataset=DATASET, model=m) for m in CENSUS["models"]])
