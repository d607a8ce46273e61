"""The filtering section of a config, checked against the rest of it (torch-free).

The schema checks each key alone (filters, tol >= 0, ...); these are the
checks across keys, run by the workflow before any job (helpers/filtering.smk):
the models are the study's, the epochs are saved checkpoints, the checkpoints
retrained from are filtered.
"""

from __future__ import annotations

from collections.abc import Mapping

from lesion.config import ConfigError


def check(config: Mapping) -> None:
    """Raise ConfigError naming the first key of `config["filtering"]` that does not fit."""
    section = config.get("filtering")
    if not section:
        return
    models = list(config.get("models", {}))
    for model in section.get("models", []):
        if model not in models:
            raise ConfigError(f"config error: filtering.models: {model!r} is not a model of this "
                              f"study; expected some of {models}")
    saved = list(config.get("train", {}).get("checkpoints", []))
    for epoch in section.get("epochs", []):
        if epoch not in saved:
            raise ConfigError(f"config error: filtering.epochs: epoch {epoch} is not among "
                              f"train.checkpoints {saved}; expected epochs whose weights are "
                              "saved (add it to train.checkpoints)")
    for epoch in section.get("retraining", {}).get("from", []):
        if epoch not in section.get("epochs", []):
            raise ConfigError(f"config error: filtering.retraining.from: epoch {epoch} is not "
                              f"among filtering.epochs {section.get('epochs')}; expected a "
                              "filtered checkpoint (its classes select what to retrain)")
    chosen = section.get("retraining", {}).get("filter")
    if chosen is not None and chosen not in section.get("filters", [chosen]):
        raise ConfigError(f"config error: filtering.retraining.filter = {chosen!r} is not among "
                          f"filtering.filters {section.get('filters')}; expected one of them")
