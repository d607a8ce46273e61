# Helpers of perturbation.smk: report outputs and the study's targets.

PERTURBATION_FIGURES = ["performances", "weight_diffs", "num_weights"]
# The models whose layers are swept: perturbations.models, or every model.
SWEPT_MODELS = (config.get("perturbations") or {}).get("models", MODELS)
FRAGILITY = f"{RESULTS}/{{dataset}}/{{model}}/fragility.csv"


def perturbation_figure(name):
    return report(
        f"{RESULTS}/{{dataset}}/{{model}}/figures/{name}.png",
        caption=f"../report/perturbation/{name}.rst",
        category=STUDY_TITLES["perturbation"],
        subcategory="{dataset} / {model}",
        labels={"model": "{model}", "figure": name},
    )


def perturbation_targets():
    return [
        path
        for model in SWEPT_MODELS
        for path in [
            SUMMARY_CSV.format(dataset=DATASET, model=model),
            FRAGILITY.format(dataset=DATASET, model=model),
            *(f"{RESULTS}/{DATASET}/{model}/figures/{name}.{ext}"
              for name in PERTURBATION_FIGURES for ext in FIGURE_EXTS),
        ]
    ]


def perturbation_claim_tables(dataset):
    return {f"summary:{m}": SUMMARY.format(dataset=dataset, model=m) for m in SWEPT_MODELS}


def perturbation_atlas_tables(dataset):
    return {m: {"metrics": METRICS.format(dataset=dataset, model=m)} for m in SWEPT_MODELS}


if config.get("perturbations"):
    STUDY_TARGETS.append(perturbation_targets)
    CLAIM_TABLES["perturbation"] = perturbation_claim_tables
    ATLAS_TABLES["perturbation"] = perturbation_atlas_tables
