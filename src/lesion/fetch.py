"""Downloads, each verified before it lands in resources/.

Datasets come through torchvision's dataset classes (MNIST, CIFAR10), which
check every file's published md5; pretrained weights come through
torchvision's weights API: the enum's `.url`, checked like torch.hub's
`check_hash` (the file name carries the first hex digits of the file's
sha256), then loaded with `torch.load(weights_only=True)` (nothing is
unpickled) and stored as safetensors with their provenance.

A download goes to a temporary name beside its target and is renamed only
once verified, so an interrupted or corrupt download never looks complete.

`mirror` (config key `mirror`, option `--mirror`) is the base URL of a server
that holds the same file names as the official sources: MNIST's
`train-images-idx3-ubyte.gz` ..., `cifar-10-python.tar.gz` and the weights'
`.pth` files (e.g. `alexnet-owt-7be5be79.pth`), all in one directory. It is
for sites without internet access and for the tests; the checksums checked
are the official ones either way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from lesion import catalog, files

log = logging.getLogger(__name__)
HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")  # torch.hub.HASH_REGEX


class DownloadError(RuntimeError):
    """A download failed or did not match its published checksum; nothing was written."""


def _mirrored(url: str, mirror: str | None) -> str:
    if not mirror:
        return url
    return urljoin(mirror.rstrip("/") + "/", os.path.basename(urlsplit(url).path))


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dataset_class(name: str, mirror: str | None):
    """torchvision's class for `name`, pointed at `mirror` when given.

    A subclass of the same name (torchvision derives MNIST's folder from the
    class name) with the mirror as its only source; torchvision itself is
    left untouched.
    """
    from torchvision import datasets

    base = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10}.get(name)
    if base is None:
        raise ValueError(f"dataset {name!r} cannot be downloaded; expected one of "
                         f"{[k for k, v in catalog.DATASET_SOURCES.items() if v == 'download']}")
    if not mirror:
        return base
    if base is datasets.MNIST:
        return type(base.__name__, (base,), {"mirrors": [mirror.rstrip("/") + "/"]})
    return type(base.__name__, (base,), {"url": _mirrored(base.url, mirror)})


def _expected_files(cls) -> list[tuple[str, str, str]]:
    """(file name, md5, URL) of every file `cls.download()` fetches."""
    if hasattr(cls, "mirrors"):
        return [(name, md5, cls.mirrors[0] + name) for name, md5 in cls.resources]
    return [(cls.filename, cls.tgz_md5, cls.url)]


def download_dataset(name: str, out: str | os.PathLike, *, mirror: str | None = None) -> None:
    """Download dataset `name` (train and test) into the directory `out`.

    torchvision downloads into a temporary directory and checks each file's
    md5; the directory is renamed to `out` only when both splits load.
    """
    cls = _dataset_class(name, mirror)
    out = Path(out)
    source = mirror or "the official source"
    with files.atomic_dir(out) as tmp:
        try:
            for train in (True, False):
                cls(tmp, train=train, download=True)
        except RuntimeError as err:  # torchvision: "File not found or corrupted." and the like
            raise DownloadError(_describe_failure(name, cls, tmp, out, source, err)) from None
        except (OSError, HTTPException) as err:  # refused, HTTP 404, connection cut short
            raise DownloadError(f"{name}: download from {source} failed ({err!r}); nothing was "
                                f"written to {out}") from None
    log.info("%s: downloaded from %s into %s", name, source, out)


def _describe_failure(name: str, cls, tmp: Path, out: Path, source: str, err: Exception) -> str:
    """Which file failed, and how: torchvision only says "File not found or corrupted."."""
    for filename, md5, url in _expected_files(cls):
        found = next(tmp.rglob(filename), None)
        if found is None:
            continue
        got = _md5(found)
        if got != md5:
            return (f"{name}: {url} is corrupt or truncated: md5 {got}, expected {md5} "
                    f"({found.stat().st_size} bytes downloaded); nothing was written to {out}")
    said = " ".join(str(err).split())  # torchvision's message spans lines
    return f"{name}: download from {source} failed ({said}); nothing was written to {out}"


def weights_entry(name: str):
    """The torchvision weights enum member of full name `name` (e.g. "ResNet18_Weights.IMAGENET1K_V1")."""
    import torchvision

    known = sorted(catalog.PRETRAINED_WEIGHTS.values())
    if name not in known:
        raise ValueError(f"weights {name!r} are not in lesion's catalog; expected one of {known}")
    return torchvision.models.get_weight(name)


def download_weights(weights: str, out: str | os.PathLike, *, mirror: str | None = None) -> None:
    """Fetch the file of torchvision's `weights` (full enum name) to `out`, sha256-prefix checked.

    The expected prefix is read from the file name in the weights' URL, as
    torch.hub's `check_hash` does; a mismatch leaves nothing at `out`.
    """
    import torch

    url = _mirrored(weights_entry(weights).url, mirror)
    name = os.path.basename(urlsplit(url).path)
    found = HASH_IN_NAME.search(name)
    if found is None or not found.group(1):
        raise DownloadError(f"{url}: the file name carries no sha256 prefix (NAME-HEX.pth); "
                            "expected one, so that the download can be checked")
    out = Path(out)
    try:
        with files.atomic_path(out) as tmp:
            torch.hub.download_url_to_file(url, str(tmp), hash_prefix=found.group(1), progress=True)
    except RuntimeError as err:  # torch.hub: 'invalid hash value (expected "...", got "...")'
        raise DownloadError(f"{weights}: {url} is corrupt or truncated: {err}; nothing was "
                            f"written to {out}") from None
    except (OSError, HTTPException) as err:  # refused, HTTP 404, connection cut short
        raise DownloadError(f"{weights}: download of {url} failed ({err!r}); nothing was written "
                            f"to {out}") from None
    log.info("%s: %s -> %s (sha256 prefix %s checked)", weights, url, out, found.group(1))


def import_weights(model: str, pth: str | os.PathLike, out: str | os.PathLike) -> None:
    """Load a downloaded `.pth` state dict (weights_only) and store it as safetensors.

    Provenance in the metadata: the weights' enum name, URL, the file's
    sha256 and the preprocessing (transforms) the weights expect.
    """
    import torch

    from lesion import models, networks

    if model not in catalog.PRETRAINED_WEIGHTS:
        raise ValueError(f"model {model!r} has no pretrained weights in lesion's catalog; expected "
                         f"one of {sorted(catalog.PRETRAINED_WEIGHTS)}")
    name = catalog.PRETRAINED_WEIGHTS[model]
    entry = weights_entry(name)
    pth = Path(pth)
    if not pth.is_file():
        raise files.InputFileError(f"{pth}: file not found")
    try:
        state = torch.load(pth, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds for a bad file (EOF, unpickling, zip)
        # Never pass on torch's advice to retry with weights_only=False: that path
        # runs whatever code the file holds.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = (f"it holds Python objects ({found.group(1)}), which lesion never unpickles"
                if found else "not a PyTorch checkpoint")
        raise files.InputFileError(
            f"{pth}: {what}; expected a state dict of plain tensors (loaded with "
            f"weights_only=True), such as `python -m lesion data download-weights --weights "
            f"{name}` writes") from None
    if not isinstance(state, dict):
        raise files.InputFileError(f"{pth}: holds a {type(state).__name__}; expected a state dict")
    network = models.build(model, num_classes=len(entry.meta["categories"]))
    preset = entry.transforms()  # images stay in [0, 1]: the weights' mean/std run inside
    networks.normalise_input(network, preset.mean, preset.std, network.lesion_input_shape)
    networks.load_state(network, state, str(pth))
    digest = hashlib.sha256(pth.read_bytes()).hexdigest()
    models.save_weights(network, out, dataset="imagenet", weights=name, url=entry.url,
                        sha256=digest, transforms=" ".join(repr(entry.transforms()).split()),
                        reported_accuracy=entry.meta.get("_metrics", {}).get("ImageNet-1K"))
