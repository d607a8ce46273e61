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
        for ext in ("png", "pdf", "csv")
    ]


if FAULTS:
    STUDY_TARGETS.append(fault_targets)
