"""Plant each bug a reviewer once found the suite blind to, and check a test now fails.

    python tests/known_bugs.py            # every bug, about 4 minutes on 2 cores
    python tests/known_bugs.py 3 7        # some of them

Each bug is one textual edit of a library module; the module is restored
after its run, whatever happens. A bug that leaves its tests green is
reported and makes the script exit with 1. `make mutation` (mutmut) is the
systematic version of this; these are the cases named in the issue that
asked for value tests, kept so that they stay caught.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "lesion"
UNIT = ["tests/test_references.py", "tests/test_perturb.py", "tests/test_bitflip.py",
        "tests/test_metrics.py", "tests/test_evaluate.py", "tests/test_predict.py"]
REGIMES = ["tests/test_faults.py", "-k", "workflow_builds"]
# the float64 comparison of a zoo group trained together against its nets one by one
ZOO_GROUP = ["tests/test_zoo.py", "-k", "vmapped_group_training or retrained_from_its_row"]

# (what the bug does, module, text, replacement, tests that must catch it)
BUGS = [
    ("summarise returns the least likely classes", "evaluate.py",
     "logits.topk(k, dim=-1)", "logits.topk(k, dim=-1, largest=False)", UNIT),
    ("predict evaluates the first variant for every row", "predict.py",
     "return ((sweeps.regenerate(row, base) for row in rows),",
     "return ((sweeps.regenerate(rows[0], base) for row in rows),", UNIT),
    ("crash predictions seeded with the draw number", "predict.py",
     'reps = [(row["level"], row["seed"]) for row in rows]',
     'reps = [(row["level"], row["draw"]) for row in rows]', UNIT),
    ("loss computed with label smoothing 0.1", "evaluate.py",
     'reduction="none",', 'reduction="none", label_smoothing=0.1,', UNIT),
    ("top5 counts only the first four classes", "metrics.py",
     '"top5": (top ==', '"top5": (top[:, :4] ==', UNIT),
    ("noise on the bias scaled by the weight's std", "operators.py",
     "std = t.std(correction=0)  #", 'std = tensors["weight"].detach().std(correction=0)  #', UNIT),
    ("redraw replaces half the requested fraction", "operators.py",
     "k = _count(level, flat.numel())", "k = _count(level, flat.numel()) // 2", UNIT),
    ("top1 and agreement count non-finite outputs as right", "metrics.py",
     '"top1": (top[:, 0] == predictions.column("label").to_numpy()) & finite,',
     '"top1": (top[:, 0] == predictions.column("label").to_numpy()),', UNIT),
    ("agreement counts non-finite outputs as right", "metrics.py",
     '"agreement": (top[:, 0] == clean_top1[predictions.column("image").to_numpy()]) & finite,',
     '"agreement": (top[:, 0] == clean_top1[predictions.column("image").to_numpy()]),', UNIT),
    ("training ignores its dropout and extra loss", "train.py",
     "_loss(model, x, y, dropout, extra).backward()",
     "_loss(model, x, y, 0.0, []).backward()", REGIMES),
    ("the training loss drops its dropout", "train.py",
     "dropout=dropout, training=True)", "dropout=0.0, training=True)", UNIT),
    ("bit-fault generator restarted for each tensor", "operators.py",
     "mask = _bit_masks(t, level, positions, generator)",
     "mask = _bit_masks(t, level, positions,\n"
     "                              torch.Generator().manual_seed(generator.initial_seed()))",
     UNIT),
    # issue 21: the zoo's group training against the plain loop, compared in float64;
    # the first was a real bug (float32 training could not show it), the others are an
    # optimiser state, a gradient and a batch order gone wrong
    ("the group's learning rates held in float32", "studies/zoo/grouped.py",
     "device=device, dtype=flat.dtype)", "device=device)", ZOO_GROUP),
    ("RMSprop's epsilon inside the square root", "studies/zoo/grouped.py",
     "p_rms = flat - lr * (g / (v_rms.sqrt() + EPS))",
     "p_rms = flat - lr * (g / (v_rms + EPS).sqrt())", ZOO_GROUP),
    ("each net's gradient averaged over one image fewer", "studies/zoo/grouped.py",
     'reduction="sum") / y.shape[1]', 'reduction="sum") / (y.shape[1] - 1)', ZOO_GROUP),
    ("the group's batches one step late", "studies/zoo/grouped.py",
     'index = torch.stack([d["order"][s] for d in draws])',
     'index = torch.stack([d["order"][(s + 1) % steps] for d in draws])', ZOO_GROUP),
]


def caught(module: str, text: str, replacement: str, tests: list[str]) -> bool:
    path = SRC / module
    original = path.read_text()
    if original.count(text) != 1:
        raise SystemExit(f"{module}: expected the text to plant a bug in once, found it "
                         f"{original.count(text)} times: {text!r}")
    try:
        path.write_text(original.replace(text, replacement))
        run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                              *tests], cwd=REPO, capture_output=True, text=True, check=False)
    finally:
        path.write_text(original)
    return run.returncode != 0


def main(chosen: list[int]) -> int:
    missed = []
    for number, (what, module, text, replacement, tests) in enumerate(BUGS, start=1):
        if chosen and number not in chosen:
            continue
        verdict = "caught" if caught(module, text, replacement, tests) else "MISSED"
        print(f"{number:2d}. {verdict:6s}  {what} ({module})", flush=True)
        if verdict == "MISSED":
            missed.append(what)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]]))
