"""The adversarial section of a config, checked against the rest of it (torch-free).

Run with the config before any job (lesion.registry.Study.check).
"""

from __future__ import annotations

from collections.abc import Mapping

from lesion.catalog import layer_names
from lesion.config import ConfigError, architecture, brought, refuse_imported


def check(config: Mapping) -> None:
    """Raise ConfigError when adversarial training names a network imported with its weights,
    or unit inspection names a layer that is not a hidden layer of its network."""
    section = config["adversarial"]
    training = section.get("training") or {}
    if training.get("model"):
        refuse_imported(config, "adversarial.training.model", [training["model"]],
                        "adversarial training trains the network again")
    units = section.get("units")
    if units and not brought(config["models"][units["model"]]):  # a brought one's: by the step
        arch = architecture(units["model"], config["models"][units["model"]] or {})
        hidden = layer_names(arch)[:-1]
        if units["layer"] not in hidden:
            raise ConfigError(f"config error: adversarial.units.layer = {units['layer']!r} is not "
                              f"a hidden layer of {units['model']}; expected one of {hidden}")
