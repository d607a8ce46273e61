# Helpers of sweeps.smk: the study's operators, params and input lists of the sweep rules.

# The operators of the study, in the catalog's order (not the config's: the
# config is canonical, with sorted keys), which orders the tables and panels.
PERTURBATIONS = [p for p in OPERATORS if p in config.get("perturbations", {})]


def sweep_params(wildcards):
    """The sweep step's layers (the config's: `all` is resolved by the step, from the
    network's graph for a network of one's own), levels, draws and bit positions."""
    sweep = config["perturbations"][wildcards.perturbation]
    bits = sweep.get("bits")  # bit faults: the bit positions they hit (all when left out)
    bits = [bits] if isinstance(bits, str) else bits
    layers = config["models"][wildcards.model]["layers"]
    return {
        "layers": layers if layers == "all" else ",".join(layers),
        "levels": ",".join(repr(float(level)) for level in sweep["levels"]),
        "draws": sweep["draws"],
        "bits": "" if bits is None else "--bits " + ",".join(str(b) for b in bits),
    }


def sweep_paths(pattern, dataset, model):
    """`pattern` (VARIANTS or PREDICTIONS) of every sweep step of a model: one per operator,
    each holding every layer the config sweeps."""
    return [pattern.format(dataset=dataset, model=model, perturbation=perturbation)
            for perturbation in PERTURBATIONS]


# Adversarial test sets every sweep is evaluated on besides the test split.
TESTSETS = (config.get("perturbations") or {}).get("testsets", [])


def other_tests(wildcards):
    """The model's adversarial sets a sweep predicts too (perturbations.testsets)."""
    return [ADV_SET.format(dataset=wildcards.dataset, attack=t, model=wildcards.model)
            for t in TESTSETS]


def metrics_inputs(kind):
    """Input function of the metrics rule: the clean model's or the sweeps' predictions,
    on the test split and then on each adversarial test set."""

    def paths(wildcards):
        d, m = wildcards.dataset, wildcards.model
        if kind == "clean":
            return [CLEAN.format(dataset=d, model=m)] + [
                TESTSET_CLEAN.format(dataset=d, model=m, testset=t) for t in TESTSETS]
        return sweep_paths(PREDICTIONS, d, m) + [
            p for t in TESTSETS
            for p in sweep_paths(TESTSET_PREDICTIONS.replace("{testset}", t), d, m)]

    return paths
