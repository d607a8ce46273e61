# The claims table (lesion.claims): the five seed papers' headline claims, each
# judged from its study's tables (CLAIM_TABLES, filled by the studies' rules files).
CLAIMS = f"{RESULTS}/{{dataset}}/claims"


rule claims:
    input:
        tables=lambda w: list(claim_tables(w).values()),
        code=code("claims", "table")
        + module_sources(
            [s.claims.split(":")[0] for s in STUDIES if s.group in CLAIM_TABLES], root=LESION_SRC
        ),
    output:
        table=report(
            f"{CLAIMS}.parquet",
            caption="../report/claims.rst",
            category="Claims",
            labels={"table": "claims (Parquet)"},
        ),
        csv=report(
            f"{CLAIMS}.csv",
            caption="../report/claims.rst",
            category="Claims",
            labels={"table": "claims"},
        ),
    params:
        tables=lambda w: " ".join(f"{key}={path}" for key, path in claim_tables(w).items()),
    log:
        f"{LOGS}/claims/{{dataset}}.log",
    benchmark:
        f"{BENCHMARKS}/claims/{{dataset}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion claims table --tables {params.tables} --out {output.table}"
        " --csv {output.csv} > {log} 2>&1"


if CLAIM_TABLES:
    STUDY_TARGETS.append(lambda: [f"{CLAIMS}.{ext}".format(dataset=DATASET) for ext in ("parquet", "csv")])
