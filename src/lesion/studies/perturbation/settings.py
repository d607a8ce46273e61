"""The perturbations section of a config, checked against the rest of it (torch-free).

The schema checks each key alone; this is the check across sections, run
with the config before any job (lesion.registry.Study.check).
"""

from __future__ import annotations

from collections.abc import Mapping

from lesion.config import ConfigError


def check(config: Mapping) -> None:
    """Raise ConfigError unless every test set the sweeps add is an attack of the
    adversarial section (each model's own set of that attack)."""
    attacks = sorted((config.get("adversarial") or {}).get("attacks") or {})
    for i, testset in enumerate(config["perturbations"].get("testsets", [])):
        if testset not in attacks:
            raise ConfigError(f"config error: perturbations.testsets[{i}] = {testset!r} is not an "
                              f"attack of the adversarial section; expected one of {attacks}")
