"""`python -m lesion bench dag`: how long Snakemake takes to plan a study.

Times `snakemake -n` (every job printed) and `snakemake -n -q` (planning
only) on a study config, in a scratch working directory so that nothing of
the real study is read or written, and reports the number of jobs. For an
ImageNet config a stand-in validation directory is made first (1000 WordNet-id
directories of 50 empty .JPEG files), since the workflow checks the real one
while it builds the DAG. Torch-free.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lesion import imagenet
from lesion.files import InputFileError


def _stand_in_imagenet(root: Path) -> Path:
    per_class = imagenet.IMAGES // imagenet.CLASSES
    for c in range(imagenet.CLASSES):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"ILSVRC2012_val_{c * per_class + i + 1:08d}.JPEG").touch()
    return root


def _snakemake(snakefile: Path, workdir: Path, config: Path, *flags: str) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, output) of one dry run; CPU time is less sensitive to a busy machine."""
    bindir = str(Path(sys.executable).parent)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", *flags, "--snakefile", str(snakefile),
         "--directory", str(workdir), "--configfile", str(config), "--cores", "1"],
        env={**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")},
        capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake -n failed on {config}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds, cpu, proc.stdout + proc.stderr


def dag_speed(configfile: str | os.PathLike, *, repeats: int = 3,
              snakefile: str | os.PathLike | None = None) -> dict:
    """Best-of-`repeats` seconds of a dry run and a quiet dry run, and the job count."""
    snakefile = Path(snakefile or Path(__file__).resolve().parents[3] / "Snakefile")
    if not snakefile.is_file():
        raise InputFileError(f"{snakefile}: no Snakefile; expected a lesion checkout "
                             "(pass --snakefile)")
    if not Path(configfile).is_file():
        shipped = sorted(str(p.relative_to(snakefile.parent))
                         for p in (snakefile.parent / "config").glob("*.yaml"))
        raise InputFileError(f"{configfile}: no such config file; expected a study config, e.g. "
                             f"one of {shipped}")
    config = yaml.safe_load(Path(configfile).read_text())
    with tempfile.TemporaryDirectory(prefix="lesion-dagbench-") as tmp:
        tmp = Path(tmp)
        if config.get("dataset", {}).get("name") == "imagenet":
            config["dataset"]["path"] = str(_stand_in_imagenet(tmp / "imagenet-val"))
        study = tmp / "study.yaml"
        study.write_text(yaml.safe_dump(config, sort_keys=False))
        workdir = tmp / "work"
        workdir.mkdir()
        full = [_snakemake(snakefile, workdir, study) for _ in range(repeats)]
        quiet = [_snakemake(snakefile, workdir, study, "-q") for _ in range(repeats)]
    found = re.search(r"^total\s+(\d+)\s*$", full[0][2], re.MULTILINE)
    result = {"config": str(configfile), "jobs": int(found.group(1)) if found else 0,
              "dry_run_s": min(r[0] for r in full), "dry_run_cpu_s": min(r[1] for r in full),
              "quiet_dry_run_s": min(r[0] for r in quiet),
              "quiet_dry_run_cpu_s": min(r[1] for r in quiet), "repeats": repeats}
    print(f"{configfile}: {result['jobs']} jobs; best of {repeats}: "
          f"snakemake -n {result['dry_run_s']:.2f} s ({result['dry_run_cpu_s']:.2f} s CPU), "
          f"snakemake -n -q {result['quiet_dry_run_s']:.2f} s ({result['quiet_dry_run_cpu_s']:.2f} s CPU)")
    return result
