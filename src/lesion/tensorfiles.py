"""Tensor files: safetensors with JSON metadata, and content hashes of tensors."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lesion.files import InputFileError, atomic_path


def save_tensors(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping | None = None
) -> None:
    """Write tensors as safetensors; `metadata` values are JSON-encoded strings."""
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, meta)


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or corrupt file raises InputFileError."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: file not found")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise InputFileError(f"{path}: not a readable safetensors file ({err})") from err


def load_metadata(path: str | os.PathLike) -> dict:
    """The JSON-decoded metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise InputFileError(f"{path}: not a readable safetensors file ({err})") from err
    return {k: json.loads(v) for k, v in raw.items()}


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """A content hash of named tensors: names, dtypes, shapes and raw bytes.

    Independent of device and memory layout, so a variant regenerated on
    another machine hashes the same when its values are bit-identical.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy
    return digest.hexdigest()
