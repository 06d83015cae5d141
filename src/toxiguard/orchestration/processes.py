"""Processes started for the local stack: found by a marker variable, signalled, waited for.

Every process the stack starts inherits `TOXIGUARD_STACK_ID=<marker>` in its environment, so
the stack can find all of them again (Linux: /proc/<pid>/environ), even those that started a
session of their own, and never mistakes a recycled PID for one of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

MARKER_VARIABLE = "TOXIGUARD_STACK_ID"


def _environ_of(pid: int) -> bytes:
    """Return the raw environment of a process (Linux), or b"" when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def marked_processes(marker: str) -> list[int]:
    """Return the PIDs of live processes started by the stack with this marker (Linux only)."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        pid = int(entry.name) if entry.name.isdigit() else os.getpid()
        if pid != os.getpid() and needle in _environ_of(pid).split(b"\0"):
            found.append(pid)
    return found


def is_alive(pid: int, marker: str) -> bool:
    """Return True when `pid` runs and is the stack's (its marker matches, where it can be read)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    environ = _environ_of(pid)
    if not environ:
        return Path("/proc").is_dir() is False  # no /proc (macOS): trust the PID
    return f"{MARKER_VARIABLE}={marker}".encode() in environ.split(b"\0")


def port_in_use(host: str, port: int) -> bool:
    """Return True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def signal_all(pids: list[int], signum: signal.Signals) -> None:
    """Send a signal to each PID and to its process group, ignoring those already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signum)


def wait_gone(pids: list[int], marker: str, timeout: float) -> list[int]:
    """Return the PIDs still alive after waiting up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if is_alive(pid, marker)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if is_alive(pid, marker)]
    return alive


__all__ = [
    "MARKER_VARIABLE",
    "is_alive",
    "marked_processes",
    "port_in_use",
    "signal_all",
    "wait_gone",
]
