"""`make study`'s lock (lesion.tools.run): a run that is still stopping is waited for, briefly."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time

from lesion.tools import run

HOLD = """
import fcntl, sys, time
handle = open(".snakemake/study.lock", "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
handle.write("pid of a stopping run\\n"); handle.flush()
print("locked", flush=True)
time.sleep(float(sys.argv[1]))
"""


def hold_lock(seconds: float) -> subprocess.Popen:
    """Another process holding the study's kernel lock for `seconds`, as a stopping run does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_run_that_releases_the_lock_within_the_wait_is_waited_for(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".snakemake").mkdir()
    holder = hold_lock(1.0)
    started = time.monotonic()
    assert run.main(["true"], wait=20) == 0
    assert 0.5 < time.monotonic() - started < 20
    err = capsys.readouterr().err
    assert "waiting up to 20 s" in err and "pid of a stopping run" in err
    holder.wait()


def test_a_run_that_keeps_the_lock_is_refused_after_the_wait(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".snakemake").mkdir()
    holder = hold_lock(30)
    try:
        started = time.monotonic()
        assert run.main(["touch", "ran"], wait=1) == 1
        assert 1 <= time.monotonic() - started < 10
        assert "a study is already running" in capsys.readouterr().err
        assert not (tmp_path / "ran").exists()
    finally:
        holder.kill()
        holder.wait()
    # and the lock is free again once the holder is gone
    with open(tmp_path / ".snakemake" / "study.lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
