"""The census section checked against the rest of the config (torch-free)."""

from lesion.config import ConfigError


def check(config) -> None:
    """A census of a network imported with its weights would count what the user already has."""
    for model in config["census"]["models"]:
        if "weights" in (config["models"][model] or {}):
            raise ConfigError(f"config error: census.models: {model!r} is imported with its "
                              "weights; expected a network the DAG trains")
