"""`python -m lesion.tools.run SNAKEMAKE [ARGS...]`: run a study so that a killed run resumes.

What `make study` runs. Snakemake locks the directory while it runs, but a
run killed outright (SIGKILL, the OOM killer, a cluster's time limit, a power
cut) leaves its lock behind in .snakemake/locks, and every later `snakemake`
refuses to start until someone runs `snakemake --unlock`. This wrapper holds
a kernel lock (flock) on .snakemake/study.lock for as long as Snakemake
runs; the kernel drops it when the process dies, however it dies. So:

- a second `make study` while one runs finds the kernel lock taken, waits a
  few seconds (WAIT) in case that run is only stopping (killed a moment ago,
  still shutting down), then stops with one message naming the running one,
  and touches nothing;
- holding the kernel lock, a Snakemake lock can only be left over from a dead
  run, unless a `snakemake` started by hand runs here (checked on this host
  through /proc, again waiting a few seconds for one that is stopping): it is
  removed with `snakemake --unlock`, and Snakemake then resumes the study
  (the default profile has `rerun-incomplete`).

Runs started by hand on another host sharing the directory cannot be seen;
start studies with `make study` (or by hand only) there.

Two studies at once. The kernel lock is the study's (`study: NAME` in its
config: .snakemake/study-NAME.lock), so `make study CONFIG=a.yaml` and `make
study CONFIG=b.yaml` with different names run side by side: their outputs
(results/NAME/, logs/NAME/, benchmarks/NAME/) never meet, and Snakemake's own
locks, which name files, let two runs with disjoint outputs share the
directory. What they share is resources/ (downloads, exported datasets): the
jobs that write there (SHARED_RULES) run first, in a Snakemake of their own,
under one kernel lock for the whole checkout (.snakemake/resources.lock), so
one study makes each file and the other waits for it, then finds it there.
In the main run the shared files are inputs only, which another run may read.

`python -m lesion.tools.run --report SNAKEMAKE [ARGS...]` (`make report`)
writes the study's report, REPORT under its results directory (results/, or
results/NAME/ for a config with `study: NAME`), when anything there is newer,
and only for a study that is up to date with its config: a dry run first, and
a study with jobs to run is named with them and gets no report (a report of
files another config built would be wrong). `--report --just-built` skips the
dry run after a run that just ended well (`make study`).
Torch-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

STATE = Path(".snakemake")
LOCK = STATE / "study.lock"  # the default study's; a named one's is study-NAME.lock
SHARED_LOCK = STATE / "resources.lock"
# The rules that write resources/, shared by every study of the checkout.
SHARED_RULES = ("export_dataset", "download", "download_weights")
WAIT = 10.0  # seconds to wait for a run that is still stopping
POLL = 0.2
DEFAULT_CONFIG = "config/config.yaml"  # the Snakefile's configfile when none is given
REPORT = "report.html"


def snakemake_running_here() -> list[int]:
    """PIDs of other Snakemake processes on this host whose working directory is this one."""
    here, pids = os.path.realpath("."), []
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone, or not ours to read
            continue
        names = [os.path.basename(a) for a in argv]
        if cwd == here and (b"snakemake" in names[:2] or any(
                a == b"-m" and b == b"snakemake" for a, b in zip(names, names[1:], strict=False))):
            pids.append(int(entry.name))
    return pids


def stale_locks() -> list[Path]:
    """Snakemake's lock files (its default file persistence)."""
    return sorted((STATE / "locks").glob("*.lock"))


def _wait(proc: subprocess.Popen) -> int:
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reaches Snakemake too; let it shut down cleanly
            continue


def _lock(handle, wait: float) -> bool:
    """Take the kernel lock, waiting up to `wait` seconds for a run that is stopping.

    A run killed a moment ago (SIGTERM, Ctrl-C) may still be shutting down and
    hold the lock for a few seconds: waiting briefly, and saying so, resumes
    the study where stopping on the lock would need a second try.
    """
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            if not said:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                print(f"make study: waiting up to {wait:.0f} s for the run holding the study's "
                      f"lock to exit ({holder})", file=sys.stderr)
                said = True
            time.sleep(POLL)


def _others_gone(wait: float) -> bool:
    """Whether no other Snakemake runs here, waiting up to `wait` seconds for stopping ones."""
    deadline = time.monotonic() + wait
    pids = snakemake_running_here()
    if pids:
        print(f"make study: waiting up to {wait:.0f} s for Snakemake processes {pids} of a "
              "stopped run to exit", file=sys.stderr)
    while pids and time.monotonic() < deadline:
        time.sleep(POLL)
        pids = snakemake_running_here()
    return not pids


def _option_values(command: Sequence[str], names: tuple[str, ...]) -> list[str]:
    """The values after any of `names` on a Snakemake command line (nargs='+' options)."""
    values, taking = [], False
    for arg in command[1:]:
        if arg.startswith("-"):
            name, _, value = arg.partition("=")
            taking = name in names
            values += [value] if taking and value else []
        elif taking:
            values.append(arg)
    return values


def study_name(command: Sequence[str]) -> str | None:
    """The `study` a Snakemake command line runs: its --config study=..., else the last
    --configfile that names one (they merge in order), else the default config's."""
    for entry in reversed(_option_values(command, ("--config", "-C"))):
        key, _, value = entry.partition("=")
        if key == "study":
            return yaml.safe_load(value) or None
    files = _option_values(command, ("--configfile", "--configfiles")) or [DEFAULT_CONFIG]
    name = None
    for path in files:
        with open(path) as handle:
            loaded = yaml.safe_load(handle) or {}
        name = loaded.get("study", name) if isinstance(loaded, dict) else name
    return name


# Snakemake's words for a study with nothing to do (snakemake.common.NOTHING_TO_BE_DONE_MSG).
NOTHING_TO_BE_DONE = "Nothing to be done"


def stale_jobs(command: Sequence[str]) -> dict[str, int]:
    """rule -> jobs a dry run of `command` plans: empty when the study is up to date with its
    config (and code, and inputs)."""
    out = subprocess.run([*command, "--dry-run", "--quiet", "rules"], capture_output=True, text=True,
                         check=False)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise RuntimeError(text.strip().splitlines()[-1] if text.strip() else "the dry run failed")
    if NOTHING_TO_BE_DONE in text:
        return {}
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:")) + 3
    jobs = {}
    for line in lines[start:]:
        if not line.strip() or line.split()[0] == "total":
            break
        rule, count = line.split()
        jobs[rule] = int(count)
    return jobs


def report(command: Sequence[str], *, just_built: bool = False) -> int:
    """Write the study's report when it is missing or anything in its results is newer, for a
    study whose outputs are up to date with its config (`just_built`: its run just ended
    well, as in `make study`); a stale study is named, with what would rerun, and left
    without a report."""
    from lesion.config import study_roots

    if not just_built:
        stale = {rule: n for rule, n in stale_jobs(command).items() if rule != "all"}
        if stale:
            listed = ", ".join(f"{rule} ({n})" for rule, n in stale.items())
            print(f"make report: error: the study's outputs are not up to date with its config: "
                  f"{sum(stale.values())} jobs would run ({listed}); expected `make study` with "
                  "the same CONFIG first. No report was written.", file=sys.stderr)
            return 1
    results = Path(study_roots({"study": study_name(command)})[0])
    target = results / REPORT
    if target.is_file():
        made = target.stat().st_mtime
        newer = (p for p in results.rglob("*") if p.is_file() and p.stat().st_mtime > made)
        if next(newer, None) is None:
            print(f"Report up to date: {target}")
            return 0
    return subprocess.run([command[0], "--report", str(target), *command[1:]],
                          check=False).returncode


def study_lock(command: Sequence[str]) -> Path:
    """The kernel lock of the study a command line runs (the default study's where its
    config cannot be read: Snakemake says why when it starts)."""
    try:
        name = study_name(command)
    except (OSError, yaml.YAMLError):
        name = None
    return LOCK if not name else STATE / f"study-{name}.lock"


def other_studies_running(mine: Path) -> bool:
    """Whether another study's kernel lock here is held: its run is alive, and so may be
    the Snakemake locks in .snakemake/locks."""
    for path in STATE.glob("study*.lock"):
        if path == mine:
            continue
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def make_shared(command: Sequence[str]) -> int:
    """Run the jobs that write resources/ alone, one study at a time (SHARED_LOCK): a study
    started beside another waits while that one downloads or exports, then finds the files."""
    with open(SHARED_LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("make study: waiting for another study of this checkout to finish making "
                  "the downloads and exports in resources/", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        return _wait(subprocess.Popen([*command, "--until", *SHARED_RULES, "--quiet", "all"]))


def main(argv: Sequence[str] | None = None, *, wait: float = WAIT) -> int:
    command = list(sys.argv[1:] if argv is None else argv) or ["snakemake"]
    if command[0] == "--report":
        just_built = command[1:2] == ["--just-built"]
        return report(command[1 + just_built:] or ["snakemake"], just_built=just_built)
    STATE.mkdir(exist_ok=True)
    mine = study_lock(command)
    handle = open(mine, "a+")  # held open until the run ends
    try:
        locked = _lock(handle, wait)
    except OSError:  # a filesystem without locks: leave Snakemake's own lock in charge
        return _wait(subprocess.Popen(command))
    if not locked:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        print(f"make study: error: a study is already running in {os.getcwd()} ({holder}); "
              "expected no other run: wait for it to finish or stop it, then run `make study` "
              "again. Nothing was changed.", file=sys.stderr)
        return 1
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    if stale_locks() and not other_studies_running(mine) and _others_gone(wait):
        print("make study: removing the lock a killed run left in .snakemake/locks, then "
              "resuming", file=sys.stderr)
        subprocess.run([*command, "--unlock"], stdout=subprocess.DEVNULL, check=False)
    with contextlib.closing(handle):
        shared = make_shared(command)
        if shared != 0:
            return shared
        # Snakemake inherits the locked file, so the lock lives as long as it does.
        return _wait(subprocess.Popen(command, pass_fds=[handle.fileno()]))


if __name__ == "__main__":
    sys.exit(main())
