# Helpers of sweeps.smk: the study's operators, params and input lists of the sweep rules.

# The operators of the study, in the catalog's order (not the config's: the
# config is canonical, with sorted keys), which orders the tables and panels.
PERTURBATIONS = [p for p in OPERATOR_LEVELS if p in config.get("perturbations", {})]


def sweep_params(wildcards):
    sweep = config["perturbations"][wildcards.perturbation]
    bits = sweep.get("bits")  # bit faults: the bit positions they hit (all when left out)
    bits = [bits] if isinstance(bits, str) else bits
    return {
        "levels": ",".join(repr(float(level)) for level in sweep["levels"]),
        "draws": sweep["draws"],
        "bits": "" if bits is None else "--bits " + ",".join(str(b) for b in bits),
    }


def sweep_paths(pattern, dataset, model):
    """`pattern` (VARIANTS or PREDICTIONS) for every (perturbation, layer) of a model."""
    return [
        pattern.format(dataset=dataset, model=model, perturbation=perturbation, layer=layer)
        for perturbation in PERTURBATIONS
        for layer in model_layers(model)
    ]
