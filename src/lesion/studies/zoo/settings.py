"""The zoo section of a config, checked against the rest of it (torch-free).

Run with the config before any job (lesion.registry.Study.check).
"""

from __future__ import annotations

from collections.abc import Mapping

from lesion.config import ConfigError
from lesion.studies.zoo.space import ZooConfigError, check_dataset
from lesion.studies.zoo.space import check as check_zoo


def check(config: Mapping) -> None:
    """Raise ConfigError when the zoo cannot train on the dataset or its settings cannot work."""
    try:
        check_zoo(config["zoo"], *check_dataset(config["dataset"]["name"]))
    except ZooConfigError as err:
        raise ConfigError(f"config error: {err}") from None
