"""profiles/slurm on a real SLURM: GPU jobs land in partition `gpu` with a GPU, results as a local run's.

A fixture starts a single-node SLURM on localhost from Debian's slurm-wlm and
munge (munged, slurmctld and slurmd as plain foreground daemons of this test,
stopped by PID at the end): partitions `main` (the default) and `gpu`, the
node advertising `gpu:2` backed by two character devices made with mknod
(SLURM marks a node whose GRES files are not devices INVAL). A tiny study (its data
steps built locally first) runs through profiles/slurm, overlaid only where a laptop-sized SLURM
differs from a site's: no slurmdbd, so job states come from squeue (kept for
MinJobAge=300 s) and there is no account to validate; faster polling; small
memory requests. A `python` first on the jobs' PATH records, for every
job, the partition and CUDA_VISIBLE_DEVICES that SLURM gave it before running
the real interpreter (and an `srun` there finds this SLURM's config, see
job_programs). The same study, run locally at the same time, must produce
the same tables.

Needs root (slurmd runs jobs as root here, SlurmUser=root) and the Debian
packages (`apt-get install slurm-wlm munge`; .ci/run installs them);
skipped, saying which, without them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors import safe_open

import jobserver

pytestmark = [pytest.mark.workflow, pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[1]
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
PROGRAMS = {"munge": ["munged", "mungekey"],
            "slurm-wlm": ["slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "scancel"]}
MODEL = "mlp"
# 9 jobs: export_dataset and tensors (run locally first), then through SLURM train, sweep,
# predict_clean, metrics, perturbation_figures, claims and all (which Snakemake runs itself).
CONFIG = {
    "seed": 0,
    "device": "cpu",  # the node's GPUs are stand-ins
    "dataset": {"name": "digits"},
    "models": {MODEL: {"layers": ["fc1"]}},
    "train": {"epochs": 2},
    "perturbations": {"gaussian": {"levels": [0.5], "draws": 2}},
}
# Where this SLURM differs from a site's; everything else comes from profiles/slurm.
OVERLAY = {
    "jobs": 4,
    "latency-wait": 5,
    "slurm-status-command": "squeue",                 # sacct needs slurmdbd
    # The plugin's first status check comes this many seconds after a
    # submission, each next one 10 s later than the last while nothing
    # finishes. A job here takes 6-9 s (the batch script's Snakemake, srun,
    # the job step's Snakemake, a forked lesion step), so it is seen at 14 s:
    # a first check at 8 s saw some and missed others until 26 s.
    "slurm-init-seconds-before-status-checks": 2,
    "slurm-keep-successful-logs": True,  # logs/slurm/ of every job, to read after a failure
}
SMALL_MEMORY_MB = 500  # the profile asks 16 GB for GPU jobs; this node may have less


def _missing_packages() -> list[str]:
    return [package for package, programs in PROGRAMS.items()
            if any(shutil.which(p, path=SBIN_PATH) is None for p in programs)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(what: str, ready, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {log}\n{log.read_text()[-3000:] if log.exists() else '(none)'}" for log in logs)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s\n{tails}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop one daemon of ours by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _slurm_conf(root: Path, node_line: str, node: str, munge_socket: Path) -> str:
    return "\n".join([
        "ClusterName=lesiontest",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "MinJobAge=300",  # finished jobs stay visible to squeue, which the plugin polls
        "GresTypes=gpu",
        f"{node_line} NodeAddr=127.0.0.1 Gres=gpu:2 State=UNKNOWN",
        f"PartitionName=main Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        f"PartitionName=gpu Nodes={node} MaxTime=INFINITE State=UP",
        "",
    ])


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A running single-node SLURM; yields the environment its clients need (SLURM_CONF)."""
    missing = _missing_packages()
    if missing:
        pytest.skip(f"Debian packages not installed: {' '.join(missing)} "
                    f"(apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("a SLURM of the test's own needs root (SlurmUser=root)")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log", "run", "dev"):
        (root / sub).mkdir()
    try:
        for i in range(2):  # character devices like /dev/null (1, 3) stand in for GPUs
            os.mknod(root / "dev" / f"gpu{i}", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot mknod the GPU device files SLURM's GRES needs (no CAP_MKNOD)")

    node_line = subprocess.run([shutil.which("slurmd", path=SBIN_PATH), "-C"], capture_output=True,
                               text=True, check=True).stdout.splitlines()[0]
    node = node_line.split()[0].removeprefix("NodeName=")
    munge_socket = root / "run" / "munge.socket"
    assert len(str(munge_socket)) < 100, f"socket path too long for AF_UNIX: {munge_socket}"
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, node_line, node, munge_socket))
    (root / "gres.conf").write_text(f"NodeName={node} Name=gpu File={root / 'dev'}/gpu[0-1]\n")
    key = root / "munge.key"
    subprocess.run([shutil.which("mungekey", path=SBIN_PATH), "--create", f"--keyfile={key}"],
                   check=True, capture_output=True)
    key.chmod(0o600)

    env = {**os.environ, "SLURM_CONF": str(conf)}
    logs = [root / "log" / name for name in ("munged.log", "slurmctld.log", "slurmd.log")]
    daemons: list[subprocess.Popen] = []

    def start(*argv: str) -> None:
        with (root / "log" / f"{argv[0]}.out").open("w") as out:
            daemons.append(subprocess.Popen([shutil.which(argv[0], path=SBIN_PATH), *argv[1:]], env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

    def node_idle() -> bool:
        show = subprocess.run(["scontrol", "show", "node", node], env=env, capture_output=True, text=True)
        return "State=IDLE " in show.stdout

    try:
        start("munged", "--foreground", "--force", f"--socket={munge_socket}", f"--key-file={key}",
              f"--pid-file={root / 'run' / 'munged.pid'}", f"--log-file={logs[0]}",
              f"--seed-file={root / 'run' / 'munged.seed'}")
        _wait_for("munged", munge_socket.exists, 20, logs)
        start("slurmctld", "-D", "-f", str(conf))
        start("slurmd", "-D", "-f", str(conf))
        _wait_for("the node", node_idle, 60, logs)
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True, check=False)
        for daemon in reversed(daemons):  # slurmd, slurmctld, munged
            _stop(daemon)


def start_snakemake(root: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    """Start Snakemake on the study in `root`; its output goes to root/snakemake.out."""
    env = {**env, "PATH": os.pathsep.join(filter(None, [
        env.get("PATH_FIRST"), str(Path(sys.executable).parent), env.get("PATH", "")]))}
    with (root / "snakemake.out").open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
             "--configfile", str(root / "config.yaml"), *args],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )


def finish(proc: subprocess.Popen, root: Path, timeout: float) -> None:
    """Wait for a Snakemake started above; on a time-out, stop it (it cancels its SLURM jobs)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=60)
    output = (root / "snakemake.out").read_text()
    assert proc.returncode == 0, f"snakemake in {root} failed (rc {proc.returncode}):\n{output[-8000:]}"


def new_study(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return root


def overlay_profile(directory: Path) -> Path:
    """profiles/slurm with OVERLAY on top and small memory requests."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile.update(OVERLAY)
    profile["default-resources"] = {**profile["default-resources"],
                                    "mem_mb": SMALL_MEMORY_MB, "slurm_account": "lesiontest"}
    for resources in profile["set-resources"].values():
        if "mem_mb" in resources:
            resources["mem_mb"] = SMALL_MEMORY_MB
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


def job_programs(directory: Path, record: Path, slurm_conf: str, python: str, stall: Path) -> Path:
    """Programs put first on the jobs' PATH: a recording `python` and an `srun` that finds this SLURM.

    `python` appends job id, partition, CUDA_VISIBLE_DEVICES and its arguments
    to `record`; the first `model train` then creates `stall` and sleeps (the test
    cancels that job with scancel: the profile's retries resubmit it); then it runs
    `python`: the job server's (tests/jobserver.py), so
    that a `python -m lesion` job, in its SLURM job with SLURM's environment,
    skips the 2-3 s import of torch and ends before the executor's first status
    check (OVERLAY). `srun`: the jobstep plugin clears SLURM_* variables
    (SLURM_CONF among them) before the srun it runs each job's step with; a
    site's slurm.conf is at /etc/slurm or served configless, this one is in a
    temporary directory.
    """
    directory.mkdir(parents=True)
    programs = {
        "python": "printf '%s\\t%s\\t%s\\t%s\\n' \"${SLURM_JOB_ID-}\" \"${SLURM_JOB_PARTITION-}\" "
                  f"\"${{CUDA_VISIBLE_DEVICES-}}\" \"$*\" >> {shlex.quote(str(record))}\n"
                  f"case \"$*\" in *'lesion model train'*) if [ ! -e {shlex.quote(str(stall))} ]; then "
                  f"echo \"$SLURM_JOB_ID\" > {shlex.quote(str(stall))}; sleep 300; fi;; esac\n"
                  f"exec {shlex.quote(python)} \"$@\"\n",
        "srun": f"SLURM_CONF={shlex.quote(slurm_conf)} exec {shlex.quote(shutil.which('srun'))} \"$@\"\n",
    }
    for name, body in programs.items():
        (directory / name).write_text("#!/bin/sh\n" + body)
        (directory / name).chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory) -> dict[str, Path]:
    """The tiny study built twice: locally (the default profile) and through SLURM."""
    base = tmp_path_factory.mktemp("runs")
    # Both at once: the SLURM run mostly waits for its status checks.
    local = new_study(base / "local")
    forked = jobserver.environment()  # {} with LESION_TEST_FORK=0: real interpreters
    first = {"PATH_FIRST": forked["PATH"].split(os.pathsep)[0]} if forked else {}  # its `python`
    local_run = start_snakemake(local, "--cores", "2", env={**os.environ, **forked, **first})
    cluster = new_study(base / "slurm")
    # The two data steps first, locally: through SLURM each level of the DAG costs a
    # status-check cycle (OVERLAY: about 14 s), and the CPU jobs left (metrics, figures,
    # claims) show where CPU jobs go as well as these would.
    finish(start_snakemake(cluster, "--cores", "2", "--until", "tensors",
                           env={**os.environ, **forked, **first}), cluster, timeout=120)
    record, stall = base / "jobs.tsv", base / "cancelled"
    python = shutil.which("python", path=forked["PATH"]) if forked else sys.executable
    env = {**slurm, **forked,
           "PATH_FIRST": str(job_programs(base / "bin", record, slurm["SLURM_CONF"], python, stall))}
    cluster_run = start_snakemake(cluster, "--workflow-profile", str(overlay_profile(base / "profile")),
                                  env=env)
    try:
        # the training job, stalled by its `python`, is cancelled as a user or the
        # scheduler would (preemption); the profile's retries submit it again
        _wait_for("the training job", lambda: stall.is_file() and stall.read_text().strip(), 240,
                  [cluster / "snakemake.out"])
        cancelled = stall.read_text().strip()
        subprocess.run(["scancel", cancelled], env=slurm, check=True, capture_output=True)
        finish(cluster_run, cluster, timeout=480)
    finally:
        finish(local_run, local, timeout=300)
    return {"local": local, "slurm": cluster, "record": record, "cancelled": cancelled}


def lesion_jobs(record: Path) -> list[dict[str, str]]:
    """One row per `python -m lesion GROUP STEP` that ran: job id, partition, CUDA devices,
    "GROUP STEP", args."""
    rows = []
    for line in record.read_text().splitlines():
        job, partition, cuda, args = line.split("\t")
        if args.startswith("-m lesion "):
            step = " ".join(args.split()[2:4])
            rows.append({"job": job, "partition": partition, "cuda": cuda, "step": step, "args": args})
    return rows


GPU_STEPS = {"sweep predict", "sweep run", "model train"}


def test_predict_jobs_ran_in_partition_gpu_with_a_gpu_allocated(runs):
    jobs = lesion_jobs(runs["record"])
    gpu = [job for job in jobs if job["step"] in GPU_STEPS]
    assert sorted(job["step"] for job in gpu) == ["model train", "model train", "sweep predict",
                                                  "sweep run"], jobs
    for job in gpu:
        assert job["job"], f"not a SLURM job: {job}"
        assert job["partition"] == "gpu", job
        assert job["cuda"] in {"0", "1"}, f"no GPU allocated (CUDA_VISIBLE_DEVICES unset): {job}"


def test_cpu_jobs_ran_in_partition_main_without_a_gpu(runs):
    jobs = lesion_jobs(runs["record"])
    cpu = [job for job in jobs if job["step"] not in GPU_STEPS]
    assert {job["step"] for job in cpu} == {"sweep metrics", "perturbation figures",
                                            "claims table"}
    for job in cpu:
        assert job["job"] and job["partition"] == "main" and job["cuda"] == "", job


def test_every_job_ran_once_and_in_a_job_of_its_own_but_the_cancelled_one_twice(runs):
    jobs = lesion_jobs(runs["record"])
    # all 9 jobs but the two data steps (run locally) and `all`, and the training again
    assert len(jobs) == 7
    assert len({job["job"] for job in jobs}) == len(jobs)
    trained = [job["job"] for job in jobs if job["step"] == "model train"]
    assert trained[0] == runs["cancelled"] and len(trained) == 2, jobs


def test_the_cancelled_job_was_resubmitted_by_the_profiles_retries(runs):
    output = (runs["slurm"] / "snakemake.out").read_text()
    assert "Trying to restart job" in output, output[-4000:]
    assert yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())["retries"] == 2


def _files(root: Path) -> dict[str, Path]:
    results = root / "results"
    return {str(path.relative_to(results)): path for path in sorted(results.rglob("*")) if path.is_file()}


def test_results_equal_a_local_runs(runs):
    local, cluster = _files(runs["local"]), _files(runs["slurm"])
    assert set(local) == set(cluster)
    tables = [name for name in local if name.endswith(".parquet")]
    assert len(tables) >= 6
    for name in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(cluster[name]), pd.read_parquet(local[name]),
                                      check_exact=True, obj=name)
    for name in local:
        if name.endswith(".csv"):
            assert cluster[name].read_bytes() == local[name].read_bytes(), name
        elif name.endswith(".safetensors"):  # same tensors and metadata (in any order)
            (ours, theirs) = (_safetensors(files[name]) for files in (cluster, local))
            assert ours[0] == theirs[0], name
            assert ours[1].keys() == theirs[1].keys(), name
            assert all(torch.equal(ours[1][key], theirs[1][key]) for key in ours[1]), name


def _safetensors(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safe_open(path, framework="pt") as file:
        return file.metadata() or {}, {key: file.get_tensor(key) for key in file.keys()}
