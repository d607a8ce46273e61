# Helpers of adversarial.smk: its config section, paths, params, targets.
import json

ADVERSARIAL = config.get("adversarial") or {}
ADV_MODELS = ADVERSARIAL.get("models", [])
ADV_ATTACKS = list(ADVERSARIAL.get("attacks", {}))
# The attack of Tables 1 and 4 and the examples figure: the paper's L-BFGS when configured.
ADV_MAIN = "lbfgs" if "lbfgs" in ADV_ATTACKS else (ADV_ATTACKS or [None])[0]
ADV_DIR = f"{RESULTS}/{{dataset}}/adversarial"
ADV_REGIME_DIR = f"{RESULTS}/{{dataset}}/{{model}}/adversarial_training/{{regime}}"
ADV_TRAINING = ADVERSARIAL.get("training") or {}
ADV_REGIMES = ADV_TRAINING.get("regimes", {})
ADV_CROSS = ADVERSARIAL.get("cross_training") or {}
ADV_UNITS = ADVERSARIAL.get("units") or {}
ADV_TABLES = ["distortion", "transfer"]
ADV_TABLES += ["cross_training"] if ADV_CROSS else []
ADV_TABLES += ["adversarial_training"] if ADV_TRAINING else []


def adv_paths(pattern, models, **names):
    return [pattern.format(dataset=DATASET, model=m, **names) for m in models]


def adv_sets(models, attacks=None):
    """The adversarial sets of `models` for `attacks` (all the config's by default)."""
    return [ADV_SET.format(dataset=DATASET, attack=a, model=m)
            for a in (attacks or ADV_ATTACKS) for m in models]


def adv_regime_paths(kind):
    """weights or training.parquet of the base model and then of each regime."""
    base = {"weights": WEIGHTS, "curve": CURVE}[kind].format(dataset=DATASET, model=ADV_TRAINING["model"])
    name = {"weights": "weights.safetensors", "curve": "training.parquet"}[kind]
    return [base] + [
        f"{ADV_REGIME_DIR}/{name}".format(dataset=DATASET, model=ADV_TRAINING["model"], regime=r)
        for r in ADV_REGIMES
    ]


def adv_regime_train(wildcards):
    """The model's train settings with the regime's weight decay and dropout."""
    regime = ADV_REGIMES[wildcards.regime]
    overrides = {k: regime[k] for k in ("weight_decay", "dropout") if k in regime}
    return {**train_settings(wildcards.model), **overrides}


def adversarial_targets():
    tables = [f"{RESULTS}/{DATASET}/adversarial/{name}.{ext}" for name in ADV_TABLES
              for ext in ("parquet", "csv")]
    figures = [f"{RESULTS}/{DATASET}/adversarial/figures/examples/{m}.{ext}" for m in ADV_MODELS
               for ext in ("png", "pdf")]
    figures += [f"{RESULTS}/{DATASET}/adversarial/figures/transfer.{ext}" for ext in ("png", "pdf")]
    figures += [f"{RESULTS}/{DATASET}/adversarial/figures/units.{ext}" for ext in ("png", "pdf")
                if ADV_UNITS]
    return tables + figures


if ADVERSARIAL:
    STUDY_TARGETS.append(adversarial_targets)
