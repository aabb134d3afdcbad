"""Real storage servers for tests and benchmarks, started on 127.0.0.1 as subprocesses and stopped afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

#: the AWS variables a moto server needs; tests point them at the server
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class ServerUnavailable(RuntimeError):
    """The server's package is not installed, or the server did not start."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(proc: subprocess.Popen, port: int, timeout: float = 30.0) -> None:
    """Wait until `proc` listens on 127.0.0.1:`port`; kill it and raise ServerUnavailable if it does not."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    stop_server(proc)
    raise ServerUnavailable(f"server on port {port} did not start")


def start_moto(extra_env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """A moto S3 server (moto[server]) on a free 127.0.0.1 port: (process, endpoint URL)."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(exe).exists():
        raise ServerUnavailable("moto_server is not installed: pip install 'moto[server]' s3fs")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(proc, port)
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate a server subprocess (kill it if it does not stop within 10 s)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
