"""The filtering section of a config, checked against the rest of it (torch-free).

The schema checks each key alone (filters, tol >= 0, ...); these are the
checks across keys, run with the config before any job
(lesion.registry.Study.check): networks the DAG trains, epochs that are saved
checkpoints, checkpoints retrained from that are filtered.
"""

from __future__ import annotations

from collections.abc import Mapping

from lesion.config import ConfigError, refuse_imported


def check(config: Mapping) -> None:
    """Raise ConfigError naming the first key of `config["filtering"]` that does not fit."""
    section = config.get("filtering")
    if not section:
        return
    refuse_imported(config, "filtering.models", section.get("models", []),
                    "synaptic filtering retrains the network from its training checkpoints")
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
