# Metrics: every variant of a model in one long table, and its draw averages.


rule metrics:
    input:
        clean=rules.predict_clean.output[0],
        variants=lambda w: sweep_paths("variants", w.dataset, w.model),
        predictions=lambda w: sweep_paths("predictions", w.dataset, w.model),
        code=code("metrics", "files"),
    output:
        metrics="results/{dataset}/{model}/metrics.parquet",
        summary="results/{dataset}/{model}/metrics_summary.parquet",
        csv="results/{dataset}/{model}/metrics_summary.csv",
    log:
        "logs/metrics/{dataset}/{model}.log",
    benchmark:
        "benchmarks/metrics/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion metrics --dataset {wildcards.dataset} --model {wildcards.model}"
        " --clean {input.clean} --variants {input.variants} --predictions {input.predictions}"
        " --out {output.metrics} --summary-out {output.summary} --summary-csv {output.csv}"
        " > {log} 2>&1"
