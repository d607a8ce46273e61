# Figures: drawn from the tables alone, shown in `snakemake --report`.


rule figure:
    input:
        summary=rules.metrics.output.summary,
        variants=lambda w: sweep_paths("variants", w.dataset, w.model),
        code=code("plots", "files"),
    output:
        png=report(
            "results/{dataset}/{model}/figures/{name}.png",
            caption="../report/figure.rst",
            category="Perturbations (Cheney et al. 2017)",
            subcategory="{dataset} / {model}",
            labels={"model": "{model}", "figure": "{name}"},
        ),
        pdf="results/{dataset}/{model}/figures/{name}.pdf",
    log:
        "logs/figure/{dataset}/{model}/{name}.log",
    benchmark:
        "benchmarks/figure/{dataset}/{model}/{name}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion figure {wildcards.name} --summary {input.summary}"
        " --variants {input.variants} --png {output.png} --pdf {output.pdf} > {log} 2>&1"
