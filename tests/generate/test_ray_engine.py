"""`genaug generate --engine ray` on local Ray clusters (CPU, tiny recipe): same bytes as the lease runner, crashed
workers retried without lost or duplicated samples, a killed driver resumed, flags checked.

One local Ray (ray.init(num_cpus=2)) is shared by the module; the two-raylet cluster tests are marked slow. Ray is
always shut down by finalizers, and the `ray start` processes are ended by their pid (`ray start --block`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from genaug.cli import main as cli_main  # noqa: E402
from genaug.core.errors import GenaugError  # noqa: E402
from genaug.generate.dispatch import generate_ray  # noqa: E402
from genaug.generate.options import GenerateOptions  # noqa: E402
from genaug.generate.ray_engine import check_ray_address  # noqa: E402


def check_engine_options(engine, ray_address, num_gpus_per_worker, workers):
    """The engine flags checked together, as the command checks them (one options model)."""
    given = {"engine": engine, "ray_address": ray_address, "num_gpus_per_worker": num_gpus_per_worker}
    return GenerateOptions.parse({"shards": "x", **given, "workers": workers})
from genaug.generate.dispatch import generate  # noqa: E402
from genaug.generate.status import column_status  # noqa: E402
from genaug.shards.reader import iter_shard_raw  # noqa: E402
from genaug.shards.verify import verify_set  # noqa: E402
from genaug.shards.writer import is_shard_done, read_stats  # noqa: E402
from genaug.testing.shards import write_synthetic_split  # noqa: E402

NUM_SHARDS, PER_SHARD, K = 4, 3, 2
REPO = Path(__file__).resolve().parents[2]


def env() -> dict:
    """Environment of child processes: this session's tiny-model cache, one thread, this checkout first."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def col_dir(root: Path, column: str) -> Path:
    return root / "gen" / column / "train"


def tar_bytes(root: Path, column: str) -> list[bytes]:
    return [(col_dir(root, column) / f"{i:06d}.tar").read_bytes() for i in range(NUM_SHARDS)]


def one_thread_generate(**kw) -> dict:
    """The lease runner in this process at one torch thread: what a 1-CPU Ray worker (OMP_NUM_THREADS=1) computes.

    Float kernels differ across thread counts at ~1e-6 (docs/design.md), so byte equality needs the same count.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return generate(model="tiny", k=K, batch_size=4, progress=False, **kw)
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def source_set(tmp_path_factory) -> Path:
    """A labeled source split `train` of 4 shards x 3 JPEGs of 32 px."""
    root = tmp_path_factory.mktemp("rayshards") / "synth"
    write_synthetic_split(root, "train", num_shards=NUM_SHARDS, per_shard=PER_SHARD, size=32, seed=3)
    return root


@pytest.fixture(scope="module")
def lease_column(source_set: Path) -> list[bytes]:
    """The reference column made by the lease runner (this also saves the tiny model into the cache once)."""
    one_thread_generate(shards=str(source_set), column="lease")
    return tar_bytes(source_set, "lease")


@pytest.fixture(scope="module")
def local_ray(request, lease_column):
    """One local Ray for the module: 2 CPUs, no dashboard; shut down whatever happens."""
    if ray.is_initialized():
        ray.shutdown()
    request.addfinalizer(ray.shutdown)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray.get_runtime_context().gcs_address


def check_column(root: Path, column: str, reference: list[bytes]) -> None:
    """Byte-identical to the reference, every key exactly once, nothing left behind, and `verify` accepts it."""
    assert tar_bytes(root, column) == reference
    folder = col_dir(root, column)
    for i in range(NUM_SHARDS):
        keys = [s["__key__"] for s in iter_shard_raw(folder / f"{i:06d}.tar")]
        src = [s["__key__"] for s in iter_shard_raw(root / "train" / f"{i:06d}.tar")]
        assert keys == src
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".leases", "complete.json", "manifest.json", "progress.json", "progress.json.lock"]
        + [f"{i:06d}.{e}" for i in range(NUM_SHARDS) for e in ("tar", "json", "idx.json")]
    )
    assert not list((folder / ".leases").iterdir())
    record = json.loads((folder / "progress.json").read_text())  # what train --gen-partial reads: every shard
    assert sorted(record["shards"]) == [f"{i:06d}.tar" for i in range(NUM_SHARDS)]
    _, problems = verify_set(str(root))
    assert not [p for p in problems if f"/{column}/" in p], problems


def test_ray_column_equals_lease_column(source_set, lease_column, local_ray, capsys):
    out = generate_ray(model="tiny", shards=str(source_set), column="ray", k=K, batch_size=4, progress=False)
    assert sorted(out["shards"]) == list(range(NUM_SHARDS)) and out["engine"] == "ray" and out["workers"] == 2
    assert out["images"] == NUM_SHARDS * PER_SHARD * K and out["failures"] == 0 and not out["worker_failures"]
    check_column(source_set, "ray", lease_column)
    pids = {read_stats(col_dir(source_set, "ray"), i)["pid"] for i in range(NUM_SHARDS)}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # made in the actors
    st = column_status(str(source_set), "ray")
    assert st["done"] == list(range(NUM_SHARDS)) and st["images"] == out["images"] and st["images_per_second"] > 0
    # a rerun finds every shard done: no worker is even started
    again = generate_ray(model="tiny", shards=str(source_set), column="ray", k=K, batch_size=4, progress=False)
    assert again["shards"] == [] and again["workers"] == 0


def test_half_lease_half_ray(source_set, lease_column, local_ray):
    one_thread_generate(shards=str(source_set), column="mixed", limit_shards=2)
    out = generate_ray(model="tiny", shards=str(source_set), column="mixed", k=K, batch_size=4, progress=False)
    assert sorted(out["shards"]) == [2, 3]
    check_column(source_set, "mixed", lease_column)


def test_worker_crash_mid_shard_is_retried(source_set, lease_column, local_ray, tmp_path, monkeypatch):
    marker = tmp_path / "fault-fired"
    # the actor that commits shard 1 SIGKILLs itself after writing the temp tar (once): Ray restarts it and retries
    monkeypatch.setenv("GENAUG_FAULT_ONCE", f"tar-tmp-written:1:{marker}")
    out = generate_ray(model="tiny", shards=str(source_set), column="crash", k=K, batch_size=4, progress=False)
    assert marker.exists()
    assert sorted(out["shards"]) == list(range(NUM_SHARDS)) and out["images"] == NUM_SHARDS * PER_SHARD * K
    assert any("restarted" in f["error"] for f in out["worker_failures"]), out["worker_failures"]
    check_column(source_set, "crash", lease_column)


def test_killed_driver_resumes_without_redoing_done_shards(source_set, lease_column, local_ray):
    folder = col_dir(source_set, "resume")
    cmd = [sys.executable, "-m", "genaug", "generate", "--engine", "ray", "--ray-address", local_ray,
           "--workers", "1", "--shards", str(source_set), "--column", "resume", "--k", str(K), "--batch-size", "4",
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (folder / "000000.json").exists() and not (folder / "000001.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    done = [i for i in range(NUM_SHARDS) if is_shard_done(folder, i)]
    assert done and len(done) < NUM_SHARDS, done
    before = {i: (folder / f"{i:06d}.json").read_bytes() for i in done}
    out = generate_ray(model="tiny", shards=str(source_set), column="resume", k=K, batch_size=4, progress=False)
    assert sorted(out["shards"]) == sorted(set(range(NUM_SHARDS)) - set(done))
    assert {i: (folder / f"{i:06d}.json").read_bytes() for i in done} == before  # not redone
    check_column(source_set, "resume", lease_column)


def test_flag_errors(source_set, monkeypatch, capsys):
    assert check_ray_address("auto") == "auto" and check_ray_address("10.0.0.1:6379") == "10.0.0.1:6379"
    assert check_ray_address("ray://head:10001") == "ray://head:10001"
    for bad in ("nonsense", "host:0", "host:99999", "http://x:1", ""):
        with pytest.raises(GenaugError, match="--ray-address"):
            check_ray_address(bad)
    with pytest.raises(GenaugError, match="--engine must be one of 'lease', 'ray'"):
        check_engine_options("dask", None, None, None)
    with pytest.raises(GenaugError, match="--workers applies to --engine ray only"):
        check_engine_options("lease", None, None, 2)
    with pytest.raises(GenaugError, match="--num-gpus-per-worker must be 0 or more"):
        check_engine_options("ray", None, -1.0, None)
    with pytest.raises(GenaugError, match="--workers must be at least 1"):
        check_engine_options("ray", None, None, 0)
    for argv, msg in (
        (["--engine", "ray", "--ray-address", "not an address"], "--ray-address must be"),
        (["--ray-address", "auto"], "--ray-address applies to --engine ray only"),
        (["--engine", "spark"], "--engine must be one of"),
    ):
        rc = cli_main(["generate", "--shards", str(source_set), "--no-progress", *argv])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    rc = cli_main(["generate", "--shards", str(source_set), "--engine", "ray", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'genaug[ray]'" in err and len(err.strip().splitlines()) == 1, err


def test_no_gpu_in_cluster_is_one_line(source_set, lease_column, local_ray):
    with pytest.raises(GenaugError, match="--num-gpus-per-worker 1: the Ray cluster has 0 GPUs"):
        generate_ray(model="tiny", shards=str(source_set), column="gpu", k=K, num_gpus_per_worker=1, progress=False)


# -- two raylets on one machine: scheduling crosses "nodes" ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes(request, lease_column):
    """A head and a second raylet (1 CPU each) on 127.0.0.1, as `ray start --block` children ended by their pid."""
    if ray.is_initialized():
        ray.shutdown()  # the module's local Ray (if any) must go first: one driver connection per process
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="gr", dir="/tmp")  # short: Ray's unix sockets live under it
    old_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a private cluster on 127.0.0.1: no token for `ray status` to find
    ray_bin = str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus", "1", "--num-gpus", "0", "--block", "--disable-usage-stats"]
    head = [ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
            "--include-dashboard", "false", "--temp-dir", tmp, *common]  # fmt: skip
    procs = [subprocess.Popen(head, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]

    def stop() -> None:
        if ray.is_initialized():
            ray.shutdown()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes on SIGTERM
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if old_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old_auth
        shutil.rmtree(tmp, ignore_errors=True)

    request.addfinalizer(stop)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 90
    while subprocess.run([ray_bin, "status", "--address", address], env=env(), capture_output=True).returncode:
        assert procs[0].poll() is None and time.time() < deadline, "ray head did not start"
        time.sleep(1)
    worker = [ray_bin, "start", "--address", address, "--node-ip-address", "127.0.0.1", *common]
    procs.append(subprocess.Popen(worker, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    ray.init(address=address, log_to_driver=False)
    while len([n for n in ray.nodes() if n["Alive"]]) < 2:
        assert procs[1].poll() is None and time.time() < deadline, "second raylet did not join"
        time.sleep(0.5)
    return address


@pytest.mark.slow
def test_two_nodes_column_and_killed_actor(source_set, lease_column, two_nodes):
    folder = col_dir(source_set, "nodes")
    result: dict = {}

    def run() -> None:
        try:
            result["out"] = generate_ray(model="tiny", shards=str(source_set), column="nodes", k=K, batch_size=4,
                                         progress=False)  # fmt: skip
        except BaseException as e:  # noqa: BLE001 - re-raised below
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    killed = None
    deadline = time.time() + 180
    while killed is None and t.is_alive() and time.time() < deadline:  # kill the first actor seen mid-shard
        for lease in (folder / ".leases").glob("*.lease") if (folder / ".leases").is_dir() else []:
            try:
                doc = json.loads(lease.read_text())
            except (OSError, ValueError):
                continue
            if doc.get("engine") == "ray":
                os.kill(int(doc["pid"]), signal.SIGKILL)
                killed = doc
                break
        time.sleep(0.01)
    t.join(timeout=300)
    assert "error" not in result, result.get("error")
    out = result["out"]
    assert killed is not None and out["workers"] == 2
    assert sorted(out["shards"]) == list(range(NUM_SHARDS)) and out["images"] == NUM_SHARDS * PER_SHARD * K
    check_column(source_set, "nodes", lease_column)
    assert len(out["nodes"]) == 2, out  # one actor per raylet (1 CPU each): the shards were made on both nodes


@pytest.mark.slow
def test_two_nodes_driver_killed_and_rerun(source_set, lease_column, two_nodes):
    folder = col_dir(source_set, "nodes-resume")
    cmd = [sys.executable, "-m", "genaug", "generate", "--engine", "ray", "--ray-address", two_nodes,
           "--shards", str(source_set), "--column", "nodes-resume", "--k", str(K), "--batch-size", "4",
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while not any((folder / f"{i:06d}.json").exists() for i in range(NUM_SHARDS)):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    done = [i for i in range(NUM_SHARDS) if is_shard_done(folder, i)]
    before = {i: (folder / f"{i:06d}.json").read_bytes() for i in done}
    out = generate_ray(model="tiny", shards=str(source_set), column="nodes-resume", k=K, batch_size=4, progress=False)
    assert sorted(out["shards"]) == sorted(set(range(NUM_SHARDS)) - set(done))
    assert {i: (folder / f"{i:06d}.json").read_bytes() for i in done} == before
    check_column(source_set, "nodes-resume", lease_column)
