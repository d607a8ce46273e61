"""The tests' job server (tests/jobserver.py) runs `python -m lesion` as the real process
does: same output, same exit status, the job's working directory and environment, and a
killed client takes its job with it. The workflow tests rely on it for their jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jobserver

if os.environ.get("LESION_TEST_FORK", "1") == "0":
    pytest.skip("LESION_TEST_FORK=0: the job server is off", allow_module_level=True)


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def forked() -> dict[str, str]:
    return {**os.environ, **jobserver.environment()}


@pytest.fixture(scope="module")
def real() -> dict[str, str]:
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                   os.environ.get("PATH", "")])}


@pytest.mark.parametrize(("args", "status"), [
    (["sweep", "--help"], 0),  # a help page
    (["nonsense"], 2),  # argparse's usage error
    (["data", "export", "--dataset", "no-such-set", "--out", "x"], 1),  # a step's own error
])
def test_a_forked_job_prints_and_exits_as_the_real_process(args, status, forked, real, tmp_path):
    shell = ["sh", "-c", 'python -m lesion "$@"', "sh", *args]  # as a rule's shell calls it
    got, expected = run(shell, forked, tmp_path), run(shell, real, tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (
        expected.returncode, expected.stdout, expected.stderr)
    assert expected.returncode == status and "LESION_TEST_JOBSERVER" in forked


def test_a_forked_job_has_its_own_directory_environment_and_output_files(forked, tmp_path):
    """A step writes where its job runs and reads the job's environment (here: a file
    named by an environment variable, through the real `data export` step)."""
    env = {**forked, "OUT_NAME": "digits.safetensors"}
    proc = run(["sh", "-c", 'python -m lesion data export --dataset digits --out "$OUT_NAME" '
                '> stdout.txt 2> stderr.txt'], env, tmp_path)
    assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()
    assert (tmp_path / "digits.safetensors").stat().st_size > 1000


def start_sleeper(env: dict[str, str], where: Path) -> tuple[subprocess.Popen, int]:
    """A module of the test's own, sent as the shim sends `lesion`, that prints its pid and
    sleeps: the client and the job's pid."""
    (where / "sleeper.py").write_text("import os, time\nprint(os.getpid(), flush=True)\n"
                                      "time.sleep(120)\n")
    client = subprocess.Popen([sys.executable, "-S", jobserver.__file__, "sleeper"], env=env,
                              cwd=where, stdout=subprocess.PIPE, text=True)
    return client, int(client.stdout.readline())


def test_killing_the_client_kills_its_job(forked, tmp_path):
    """Snakemake kills a failed run's jobs: the forked job must not outlive its client."""
    client, pid = start_sleeper(forked, tmp_path)
    assert pid != client.pid and _alive(pid)  # forked by the server, not the client itself
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_a_terminated_client_ends_its_job_with_the_signal(forked, tmp_path):
    """SIGTERM to the client reaches the job, and the client dies of it as the job did."""
    client, pid = start_sleeper(forked, tmp_path)
    client.terminate()
    assert client.wait(timeout=10) == -signal.SIGTERM
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
