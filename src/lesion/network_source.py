"""Where a network comes from, as a config names it: a source string parsed, torch-free.

    lesion:<arch>  torchvision:<builder>  timm:<name>  python:<module>:<callable>

The config check and every step's argument parsing read sources without
importing torch; lesion.networks builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SCHEMES = ("lesion", "torchvision", "timm", "python")


class SourceError(ValueError):
    """A network source that cannot be built, or weights that do not fit it."""


@dataclass(frozen=True)
class Source:
    """A parsed source: scheme, name (for python: `module:callable`), where a python module
    lives (`path`, a directory; default the working directory), the factory's kwargs and
    the input normalisation the network expects (`normalize`: {mean, std} per channel, or
    "source" for the library's own: timm's pretrained_cfg, torchvision's weights)."""

    scheme: str
    name: str
    path: str | None = None
    kwargs: Mapping = field(default_factory=dict)
    normalize: Mapping | str | None = None

    def __str__(self) -> str:
        return f"{self.scheme}:{self.name}"

    @classmethod
    def parse(cls, text: str, *, path: str | None = None, kwargs: Mapping | None = None,
              normalize: Mapping | str | None = None) -> Source:
        scheme, sep, name = str(text).partition(":")
        if not sep or scheme not in SCHEMES or not name:
            raise SourceError(f"source = {text!r}: expected <scheme>:<name> with a scheme of "
                              f"{list(SCHEMES)} (e.g. torchvision:resnet18, python:mynet:Net)")
        if scheme == "python" and name.count(":") != 1:
            raise SourceError(f"source = {text!r}: expected python:<module>:<callable>, e.g. "
                              "python:mynet:build")
        if normalize is not None and normalize != "source" and not (
                isinstance(normalize, Mapping) and set(normalize) == {"mean", "std"}
                and len(normalize["mean"]) == len(normalize["std"]) > 0):
            raise SourceError(f"normalize = {normalize!r}: expected \"source\" or {{mean: [...], "
                              "std: [...]}, one number per input channel each")
        return cls(scheme, name, path, dict(kwargs or {}), normalize)
