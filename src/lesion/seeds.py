"""Seeds derived by hashing names, never from RNG state: a network's, from the study's.

Torch-free: the workflow computes a network's seed when it builds the job's command.
"""

from __future__ import annotations

import hashlib


def network_seed(study_seed: int, name: str) -> int:
    """The training seed of network `name` (initial weights, batch order) when its config
    sets none: a 31-bit hash of the study seed and the name, so the networks of one study
    start from different weights (FC100-100-10, its -P1 and -P2 would otherwise share
    theirs) and each is reproducible from the study seed alone."""
    key = f"{int(study_seed)}/network/{name}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") >> 1
