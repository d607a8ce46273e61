"""evaluate.cache_gb holds: a sweep whose clean-prefix cache would exceed it caches one chunk
of images at a time, and its peak resident memory stays near the cap (measured in a fresh
process, against the same sweep with a cap large enough for everything)."""

from __future__ import annotations

import json
import subprocess
import sys

# fc1 turns each 8x8 image into 50,000 activations (195 KiB): the prefix of fc2 for 2,048
# images is 381 MiB, cached whole under a large cap, in 48 MiB chunks (one batch of 256
# images) under 0.05 (chunks this large are allocated and freed whole: smaller ones can
# stay in the allocator's heap, which is malloc's business, not the cap's)
SCRIPT = """
import collections, json, sys, torch, lesion

def peak_mib():  # this process image's own peak (getrusage's ru_maxrss keeps the parent's
    # peak across fork and exec: under pytest-xdist a worker's gigabytes)
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    return int(status.split()[0]) / 1024

torch.manual_seed(0)
net = torch.nn.Sequential(collections.OrderedDict(
    flatten=torch.nn.Flatten(), fc1=torch.nn.Linear(64, 50_000), relu=torch.nn.ReLU(),
    fc2=torch.nn.Linear(50_000, 10)))
images, labels = torch.rand(2048, 1, 8, 8), torch.randint(0, 10, (2048,))
lesion.layers(net)  # adopt the network before measuring
before = peak_mib()
table = lesion.sweep(net, (images, labels), operators="gaussian", levels=[0.5], layers=["fc2"],
                     batch_size=256, cache_gb=float(sys.argv[1]), device="cpu")
print(json.dumps({"grew_mib": peak_mib() - before,
                  "top1": table.query("metric == 'top1'")["value"].tolist()}))
"""


def peak_growth(cache_gb: float) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(cache_gb)], capture_output=True,
                         text=True, check=True, timeout=300).stdout
    return json.loads(out.splitlines()[-1])


def test_a_sweep_under_a_low_cache_cap_stays_near_it():
    capped, whole = peak_growth(0.05), peak_growth(4.0)
    assert capped["top1"] == whole["top1"]  # chunks change no result
    # whole: the 381 MiB cache and the batches it is concatenated from
    assert whole["grew_mib"] > 350, whole
    # capped: one 48 MiB chunk, its batches, the variant's suffix pass
    assert capped["grew_mib"] < 0.05 * 1024 * 3 + 50, capped
