# Helpers of adversarial.smk: its config section, paths, params, targets.
import json

ADVERSARIAL = config.get("adversarial") or {}
ADV_MODELS = ADVERSARIAL.get("models", [])
ADV_ATTACKS = list(ADVERSARIAL.get("attacks", {}))
# The attack of Tables 1 and 4 and the examples figure: the paper's L-BFGS when configured.
ADV_MAIN = "lbfgs" if "lbfgs" in ADV_ATTACKS else (ADV_ATTACKS or [None])[0]
ADV_DIR = f"{RESULTS}/{{dataset}}/adversarial"
ADV_REGIME_DIR = f"{RESULTS}/{{dataset}}/{{model}}/adversarial_training/{{regime}}/{{replicate}}"
ADV_TRAINING = ADVERSARIAL.get("training") or {}
ADV_REGIMES = ADV_TRAINING.get("regimes", {})
# Every regime, the model as it is ("base") first, trained from each of `seeds` seeds.
ADV_RUNS = [(r, k) for r in ["base", *ADV_REGIMES] for k in range(ADV_TRAINING["seeds"])] if ADV_TRAINING else []
ADV_CROSS = ADVERSARIAL.get("cross_training") or {}
ADV_UNITS = ADVERSARIAL.get("units") or {}
ADV_TABLES = ["distortion", "transfer"]
ADV_TABLES += ["cross_training"] if ADV_CROSS else []
ADV_TABLES += ["adversarial_training"] if ADV_TRAINING else []


def adv_paths(pattern, models, **names):
    return [pattern.format(dataset=DATASET, model=m, **names) for m in models]


def adv_curves(models):
    """Each model's training curve, in order, `none` for a network imported with its weights
    (nothing trained it): the distortion table leaves its errors empty."""
    return [CURVE.format(dataset=DATASET, model=m) if m not in IMPORTED else "none" for m in models]


def adv_sets(models, attacks=None):
    """The adversarial sets of `models` for `attacks` (all the config's by default)."""
    return [ADV_SET.format(dataset=DATASET, attack=a, model=m)
            for a in (attacks or ADV_ATTACKS) for m in models]


def adv_regime_paths(kind):
    """weights or training.parquet of every run (ADV_RUNS): the base model's own files for
    base's replicate 0, the regime's directory for the others."""
    model = ADV_TRAINING["model"]
    base = {"weights": WEIGHTS, "curve": CURVE}[kind].format(dataset=DATASET, model=model)
    name = {"weights": "weights.safetensors", "curve": "training.parquet"}[kind]
    return [base if (r, k) == ("base", 0) else
            f"{ADV_REGIME_DIR}/{name}".format(dataset=DATASET, model=model, regime=r, replicate=k)
            for r, k in ADV_RUNS]


def adv_regime(wildcards):
    """A regime's settings; base is the model's own training, no examples mixed in."""
    return ADV_REGIMES.get(wildcards.regime, {"attack": "none", "eps": 0.0})


def adv_regime_train(wildcards):
    """The model's train settings with the regime's weight decay and dropout."""
    regime = adv_regime(wildcards)
    overrides = {k: regime[k] for k in ("weight_decay", "dropout") if k in regime}
    return {**train_settings(wildcards.model), **overrides}


def replicate_seed(model, replicate):
    """Replicate k's training seed, shared by every regime (a paired comparison): the
    model's own for k = 0, one hashed from the study seed, the model and k otherwise."""
    k = int(replicate)
    return training_seed(model) if k == 0 else network_seed(config["seed"], f"{model}/replicate{k}")


def adversarial_targets():
    tables = [f"{RESULTS}/{DATASET}/adversarial/{name}.{ext}" for name in ADV_TABLES
              for ext in ("parquet", "csv")]
    figures = [f"{RESULTS}/{DATASET}/adversarial/figures/examples/{m}.{ext}" for m in ADV_MODELS
               for ext in FIGURE_EXTS]
    figures += [f"{RESULTS}/{DATASET}/adversarial/figures/transfer.{ext}" for ext in FIGURE_EXTS]
    figures += [f"{RESULTS}/{DATASET}/adversarial/figures/units.{ext}" for ext in FIGURE_EXTS
                if ADV_UNITS]
    return tables + figures


def adversarial_claim_tables(dataset):
    tables = {name: f"{RESULTS}/{dataset}/adversarial/{name}.parquet" for name in ADV_TABLES}
    if "lbfgs" in ADV_ATTACKS:
        tables.update({f"lbfgs:{m}": ADV_SET.format(dataset=dataset, attack="lbfgs", model=m)
                       for m in ADV_MODELS})
    return tables


def adversarial_atlas_tables(dataset):
    """The swept models' metrics, when the sweeps also ran on their adversarial sets."""
    sweeps = config.get("perturbations") or {}
    if not sweeps.get("testsets"):
        return {}
    return {m: {"metrics": METRICS.format(dataset=dataset, model=m)}
            for m in sweeps.get("models", MODELS)}


if ADVERSARIAL:
    STUDY_TARGETS.append(adversarial_targets)
    CLAIM_TABLES["adversarial"] = adversarial_claim_tables
    ATLAS_TABLES["adversarial"] = adversarial_atlas_tables
