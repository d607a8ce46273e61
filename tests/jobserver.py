"""The workflow tests' `python -m lesion` jobs forked from a process that has already
imported torch, torchvision, timm, pandas and matplotlib.

Why: the tiny studies the tests build run about 250 jobs, each of which spends 2-4 s of
CPU importing those libraries before it does a few hundred milliseconds of work; that
import was half of the suite's time on 2 cores. A job forked from a process holding them
runs the same `lesion` entry point (`runpy`, as `python -m` does, the job's own argv,
working directory, environment and stdin/stdout/stderr), so only the import is shared.
Python's own forkserver (multiprocessing) starts functions, not command lines with their
file descriptors, and no maintained package forks command lines from a warm interpreter
for a foreign parent, so this is written here (about the size of the search for one).

How: `environment()` starts one server per pytest process (a Unix socket in a temporary
directory) and returns PATH and LESION_TEST_JOBSERVER for a Snakemake run; PATH starts
with a `python` that sends `python -m lesion ...` to the server (this file's `request`)
and runs anything else with the real interpreter. The server forks a waiter per job,
which forks the job and reports its wait status; the client forwards SIGTERM/SIGINT/
SIGHUP to the job and the job kills itself when its client goes away, so Snakemake's
kills reach it. Used by the studies `test_workflow.snakemake` builds, the resume test's
runs that are never killed and the lesion step inside each of the SLURM test's jobs.
Snakemake itself is forked the same way (`command`: the server has imported it, 1.5-2 s a
run) by test_workflow's, test_bad_inputs' and test_canonical_params' runs and dry runs
(about 100 a suite); the plugin test, the canonical-params test's `--touch` runs and the
killed runs of the resume test start real processes. LESION_TEST_FORK=0 turns it off for
every test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

# What the jobs import that costs start-up time (each about 0.3-2 s); optional ones
# that are not installed are skipped.
PRELOAD = ("torch", "torchvision", "timm", "numpy", "pandas", "pyarrow.parquet",
           "safetensors.torch", "matplotlib.pyplot", "scipy.stats", "sklearn.ensemble", "tqdm",
           "snakemake.cli")
_INT = struct.Struct("!i")

_server = None  # (Popen, environment) of this pytest process's server


def environment() -> dict[str, str]:
    """PATH and LESION_TEST_JOBSERVER for a subprocess whose `python -m lesion` jobs should
    be forked from this process's server (started on first use), or {} when
    LESION_TEST_FORK=0."""
    global _server
    if os.environ.get("LESION_TEST_FORK", "1") == "0":
        return {}
    if _server is None or _server[0].poll() is not None:
        _server = _start()
    return _server[1]


def command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """`python -m MODULE ARGS` (argv: MODULE ARGS) forked from the server, and the environment
    it needs (for a run whose `python -m lesion` jobs are forked too), or the plain command
    and {} with LESION_TEST_FORK=0. The tests' Snakemake runs and dry runs start here: each
    spent 1.5-2 s importing Snakemake before it read the workflow."""
    env = environment()
    if not env:
        return [sys.executable, "-m", *argv], {}
    return [sys.executable, "-S", os.path.abspath(__file__), *argv], env


def _start():
    import atexit
    import shutil
    import subprocess
    import tempfile
    import time

    where = tempfile.mkdtemp(prefix="lesion-jobserver-")
    path = os.path.join(where, "socket")
    shim = os.path.join(where, "bin")
    os.mkdir(shim)
    with open(os.path.join(shim, "python"), "w") as f:
        f.write(f"""#!/bin/sh
# `python -m lesion ...` forked from the tests' job server (tests/jobserver.py)
if [ "$1" = "-m" ] && [ "$2" = "lesion" ] && [ -S "$LESION_TEST_JOBSERVER" ]; then
    shift 1
    exec "{sys.executable}" -S "{os.path.abspath(__file__)}" "$@"
fi
exec "{sys.executable}" "$@"
""")
    os.chmod(os.path.join(shim, "python"), 0o755)
    log = open(os.path.join(where, "server.log"), "wb")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", path],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the job server did not start: {open(log.name).read()[-3000:]}")
        time.sleep(0.05)
    atexit.register(shutil.rmtree, where, ignore_errors=True)  # runs last: after the server stops
    atexit.register(proc.wait, 10)
    atexit.register(proc.terminate)
    bindir = os.path.dirname(sys.executable)
    env = {"PATH": os.pathsep.join([shim, bindir, os.environ.get("PATH", "")]),
           "LESION_TEST_JOBSERVER": path}
    return proc, env


def serve(path: str) -> None:
    """Import PRELOAD, then fork a waiter per connection until the parent goes away."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    parent = os.getppid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # the socket appears when it accepts
    listener.settimeout(2)
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _wait_for_job(conn)
        conn.close()


def _wait_for_job(conn: socket.socket) -> None:
    """In a waiter: fork the job, tell the client its pid, then its wait status."""
    try:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        (size,) = _INT.unpack_from(data)
        while len(data) < _INT.size + size:
            chunk = conn.recv(1 << 16)
            if not chunk:
                os._exit(1)
            data += chunk
        request = json.loads(data[_INT.size:])
        pid = os.fork()
        if pid == 0:
            _job(conn, request, fds)
        for fd in fds:
            os.close(fd)
        conn.sendall(_INT.pack(pid))
        _, status = os.waitpid(pid, 0)
        conn.sendall(_INT.pack(status))
    finally:
        os._exit(0)


def _job(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the job: become `python -m MODULE ARGS` in the client's place, then exit."""
    import atexit
    import io
    import logging
    import runpy
    import threading
    import traceback

    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True,
                                      errors="backslashreplace")
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = os.getcwd()  # as `python -m` has it
        sys.argv = list(request["argv"])  # runpy puts the module's path in argv[0]
        threading.Thread(target=_die_with_client, args=(conn,), daemon=True).start()
        try:
            runpy.run_module(request["argv"][0], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as stop:
            if stop.code is None or isinstance(stop.code, int):
                code = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            traceback.print_exc()
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
        logging.shutdown()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _die_with_client(conn: socket.socket) -> None:
    """The client sends nothing more: end of stream means it was killed."""
    try:
        conn.recv(1)
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def request(argv: list[str]) -> None:
    """The client: run `python -m MODULE ARGS` (ARGV: MODULE ARGS) in the server and exit
    as it did. The shim sends only `lesion`; tests/test_jobserver.py sends its own."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(os.environ["LESION_TEST_JOBSERVER"])
    payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    socket.send_fds(conn, [_INT.pack(len(payload)) + payload], fds)
    pid = _INT.unpack(_receive(conn))[0]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: os.kill(pid, number))
    status = _INT.unpack(_receive(conn))[0]
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    sys.exit(os.waitstatus_to_exitcode(status))


def _receive(conn: socket.socket) -> bytes:
    data = b""
    while len(data) < _INT.size:
        chunk = conn.recv(_INT.size - len(data))
        if not chunk:
            sys.exit("lesion test job server: the connection closed before the job ended")
        data += chunk
    return data


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2])
    else:
        request(sys.argv[1:])
