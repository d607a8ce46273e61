# Helpers of faults.smk: its config section, where its tables live, params, targets.
FAULTS = config.get("faults") or {}
FAULT_MODELS = FAULTS.get("models", [])
REGIMES = FAULTS.get("regimes") or {}
FAULT_FIGURES = ["bounds", "tolerance"] if REGIMES else ["bounds"]
FAULTS_DIR = f"{RESULTS}/{{dataset}}/{{model}}/faults"
REGIME_DIR = f"{RESULTS}/{{dataset}}/{{model}}/faults/regimes/{{regime}}"

def fault_dir(dataset, model, regime=None):
    """Where a network's fault tables live; a regime that adds nothing is the study's network."""
    plain = regime is None or not any(REGIMES[regime].values())
    pattern = FAULTS_DIR if plain else REGIME_DIR
    return pattern.format(dataset=dataset, model=model, regime=regime)


def fault_params(wildcards):
    # a brought network's `all` is resolved from its graph when the step runs
    settings = config["models"][wildcards.model]
    whole = wildcards.model in BROUGHT and settings["layers"] == "all"
    return {
        "layers": "all" if whole else ",".join(model_layers(wildcards.model)),
        "levels": ",".join(repr(float(p)) for p in FAULTS["levels"]),
        "repetitions": FAULTS["repetitions"],
        "inputs": f"--inputs {FAULTS['inputs']}" if FAULTS.get("inputs") else "",
    }


def fault_tables(kind):
    """Input function: the `kind` tables (errors or bounds) a fault figure draws."""

    def tables(wildcards):
        regimes = [None] if wildcards.fault_figure == "bounds" else list(REGIMES)
        return [f"{fault_dir(wildcards.dataset, wildcards.model, r)}/{kind}.parquet" for r in regimes]

    return tables


def fault_labels(wildcards):
    return "base" if wildcards.fault_figure == "bounds" else " ".join(REGIMES)


def fault_targets():
    return [
        f"{RESULTS}/{DATASET}/{model}/faults/figures/{name}.{ext}"
        for model in FAULT_MODELS
        for name in FAULT_FIGURES
        for ext in (*FIGURE_EXTS, "csv")
    ]


def fault_claim_tables(dataset):
    """Each model's bounds, and the errors of the plain network, of the regime with the
    most dropout and of the one with the largest b3-variance weight (when configured)."""
    tables = {}
    for model in FAULT_MODELS:
        tables[f"bounds:{model}"] = f"{fault_dir(dataset, model)}/bounds.parquet"
        plain = [r for r, o in REGIMES.items() if not any(o.values())]
        roles = {"base": plain[0] if plain else None}
        for role, key in (("dropout", "dropout"), ("regularised", "b3_variance")):
            found = [r for r, o in REGIMES.items() if o.get(key)]
            if found:
                roles[role] = max(found, key=lambda r: REGIMES[r][key])
        if len(roles) > 1:
            tables.update({f"errors:{model}:{role}": f"{fault_dir(dataset, model, r)}/errors.parquet"
                           for role, r in roles.items()})
    return tables


def fault_atlas_tables(dataset):
    return {m: {"bounds": f"{fault_dir(dataset, m)}/bounds.parquet"} for m in FAULT_MODELS}


if FAULTS:
    STUDY_TARGETS.append(fault_targets)
    CLAIM_TABLES["faults"] = fault_claim_tables
    ATLAS_TABLES["faults"] = fault_atlas_tables
