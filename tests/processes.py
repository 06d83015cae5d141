"""Ports and processes for the tests that start real ones: the only `free_port` and stop helpers.

Every process a test starts gets a session of its own (`start_new_session=True`), so stopping
it also reaches what it started in that session; `kill_marked` reaches the rest by the marker
the local stack puts in its processes' environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Any


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (nothing listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """Stop a process started in its own session: SIGTERM to its PID, then SIGKILL its group.

    Waits up to `timeout` seconds for the process to end after each signal, so that it is reaped.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    # Anything the process left behind in its session (a server's uvicorn worker, say).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def kill_marked(marker: str) -> list[int]:
    """Kill every process carrying the stack's marker, with its process group; return their PIDs.

    The sweep finds what left the process group too (e.g. Prefect's flow runs, which start in
    a session of their own).
    """
    from toxiguard.orchestration.processes import marked_processes

    pids = marked_processes(marker)
    for pid in pids:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)
    return pids
