# The perturbation study (Cheney et al. 2017), config section `perturbations`:
# every weight layer of every model perturbed alone over a grid of levels and
# draws (the sweeps and metrics of sweeps.smk), and its figures.


include: "helpers/perturbation.smk"


# One job draws every figure of a model: they read the same tables, and
# matplotlib starts once.
rule perturbation_figures:
    input:
        summary=SUMMARY,
        variants=lambda w: sweep_paths(VARIANTS, w.dataset, w.model),
        code=code("perturbation", "figures"),
    output:
        **{f"{name}_png": perturbation_figure(name) for name in PERTURBATION_FIGURES},
        **{f"{name}_pdf": f"{RESULTS}/{{dataset}}/{{model}}/figures/{name}.pdf"
           for name in PERTURBATION_FIGURES},
        **svg_outputs(**{f"{name}_svg": f"{RESULTS}/{{dataset}}/{{model}}/figures/{name}.svg"
                         for name in PERTURBATION_FIGURES}),
        fragility=report(
            FRAGILITY,
            caption="../report/perturbation/fragility.rst",
            category=STUDY_TITLES["perturbation"],
            subcategory="{dataset} / {model}",
            labels={"model": "{model}", "table": "fragility"},
        ),
    params:
        out=f"{RESULTS}/{{dataset}}/{{model}}/figures",
        figures=ACCURACY_FLAGS,
    log:
        f"{LOGS}/perturbation_figures/{{dataset}}/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/perturbation_figures/{{dataset}}/{{model}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m lesion perturbation figures --summary {input.summary}"
        " --variants {input.variants} --out {params.out} --fragility {output.fragility}"
        " {params.figures}"
        " > {log} 2>&1"

