"""The faults section of a config, checked against the rest of it (torch-free).

Run with the config before any job (lesion.registry.Study.check).
"""

from __future__ import annotations

from collections.abc import Mapping

from lesion.config import refuse_imported


def check(config: Mapping) -> None:
    """Raise ConfigError when a regime would train again a network imported with its weights."""
    section = config["faults"]
    if section.get("regimes"):
        refuse_imported(config, "faults.models", section.get("models", []),
                        "the fault study's regimes train the network again")
