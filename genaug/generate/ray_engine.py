"""`genaug generate --engine ray`: one Ray Core task per source shard on a pool of actors that load the model once.

The driver opens the column exactly as the lease runner does, starts (or joins) a Ray cluster, places one
`RayShardWorker` actor per worker slot (a GPU slot, or CPU cores when there is no GPU) and hands every pending shard
to an idle actor. The actor runs the lease runner's own per-shard code (genaug.generate.ray_worker.ShardRunner): it
takes the shard's lease, makes the variants, commits the shard by the commit protocol and returns its figures. So
seeds, bytes, stats, leases and `--status` are the lease runner's, and both engines can share one column. Ray
restarts a dead actor (max_restarts) and reruns its task there (max_task_retries); the driver reports it, and
requeues a shard whose actor is gone for good. docs/ray.md has the why.
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys
import time
import warnings
from collections import deque
from typing import Any

from genaug.core.errors import GenaugError
from genaug.generate.job import GenerateJob
from genaug.generate.leases import clear_stale_leases, lease_home
from genaug.generate.options import _ADDRESS, GenerateOptions, check_ray_address  # noqa: F401 (re-export)
from genaug.generate.ray_worker import ShardWorker
from genaug.shards.layout import shard_name
from genaug.shards.progress import reconcile
from genaug.shards.storage import RemotePath
from genaug.shards.writer import read_stats

ENGINES = ("lease", "ray")
INSTALL = "pip install 'genaug[ray]'"
#: the standard variables an object-store client reads (endpoint, credentials, region, profile): the actors of a
#: column in a URL get the driver's values, so they reach the same store the same way
STORE_ENV = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
)  # fmt: skip


def import_ray() -> Any:
    """The ray module, or a one-line GenaugError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise GenaugError(f"--engine ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def probe_ray_address(address: str | None, timeout: float = 5.0) -> None:
    """A GenaugError when nothing answers at a HOST:PORT --ray-address (Ray itself would retry for minutes)."""
    m = _ADDRESS.match(str(address or "").strip())
    if m is None:  # auto, local or none: Ray finds or starts the cluster itself
        return
    host, port = m.group(2).strip("[]"), int(m.group(3))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise GenaugError(
            f"cannot reach the Ray cluster at --ray-address {address} ({e.strerror or type(e).__name__} within "
            f"{timeout:g} s): start it with `ray start --head` (it prints the address) or fix the address"
        ) from None


def check_local_gpus(address: str | None, num_gpus: float | None) -> None:
    """A GenaugError when a Ray started here (no --ray-address) is asked for GPUs this machine does not have."""
    if not num_gpus or address not in (None, "local") or (address is None and os.environ.get("RAY_ADDRESS")):
        return
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have < num_gpus:
        raise GenaugError(
            f"--num-gpus-per-worker {num_gpus:g}: this machine has {have} CUDA GPU(s) and Ray would start here (no "
            "--ray-address): use --num-gpus-per-worker 0 to run on CPU, or join a cluster with --ray-address"
        )


class RayShardWorker(ShardWorker):
    """ShardWorker inside a Ray actor: its lease owner record names the actor, the job and the node."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import ray

        ctx = ray.get_runtime_context()
        owner = {"ray_actor": ctx.get_actor_id(), "ray_job": ctx.get_job_id(), "ray_node": ctx.get_node_id()}
        with warnings.catch_warnings():  # Ray 2.x warns about its own use of a deprecated accessor here
            warnings.simplefilter("ignore")
            self.restarted = bool(ctx.was_current_actor_reconstructed)
        super().__init__(*args, owner=owner, **kwargs)

    def info(self) -> dict:
        """Where this worker runs, and whether Ray restarted it after a crash."""
        return {**super().info(), "restarted": self.restarted}


def _connect(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Join or start a Ray cluster; True when this call started (and so must shut down) the Ray session."""
    if ray.is_initialized():
        return False
    probe_ray_address(address)
    try:
        if address in (None, "local") and not (address is None and os.environ.get("RAY_ADDRESS")):
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=address, log_to_driver=True)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as e:
        where = address or os.environ.get("RAY_ADDRESS")
        raise GenaugError(
            f"cannot connect to the Ray cluster at --ray-address {where} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}): start it with `ray start --head` or fix the address"
        ) from None
    return True


def _worker_env(remote: bool = False) -> dict:
    """Environment the actors need from the driver: genaug's own variables (caches, shard root, fault hooks,
    GENAUG_STORAGE_OPTIONS of --storage-option) and, for a column in a URL, the object store's standard ones."""
    env = {k: v for k, v in os.environ.items() if k.startswith("GENAUG_")}
    if remote:
        env |= {k: os.environ[k] for k in STORE_ENV if os.environ.get(k)}
    return env


def _plan_workers(
    ray: Any, num_gpus: float | None, workers: int | None, cpus: float, pending: int
) -> tuple[float, int]:
    """(GPUs per actor, actor count) from the flags and the cluster's resources."""
    res = ray.cluster_resources()
    have_gpu, have_cpu = float(res.get("GPU", 0)), float(res.get("CPU", 0))
    if num_gpus is None:
        num_gpus = 1.0 if have_gpu >= 1 else 0.0
    if num_gpus > 0 and have_gpu < num_gpus:
        raise GenaugError(
            f"--num-gpus-per-worker {num_gpus:g}: the Ray cluster has {have_gpu:g} GPUs; "
            "pass --num-gpus-per-worker 0 for CPU workers"
        )
    if workers is None:
        workers = int(have_gpu // num_gpus) if num_gpus > 0 else int(have_cpu // cpus)
    return num_gpus, max(1, min(int(workers), pending))


def _failure_message(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]


def _user_error(e: BaseException) -> GenaugError | None:
    """The GenaugError inside a Ray error (a task's cause, or an actor's failed constructor), if any."""
    for cand in (getattr(e, "cause", None), getattr(getattr(e, "cause", None), "cause", None), e):
        if isinstance(cand, GenaugError):
            return cand
    text = str(e)
    m = re.search(r"GenaugError: (.+)", text)
    return GenaugError(m.group(1)) if m else None


def run_ray(opts: GenerateOptions, flags: dict[str, Any]) -> dict:
    """The Ray engine: one task per shard on a pool of actors; same column, bytes, stats and summary keys.

    Leases live in the column folder, or under --lease-dir when given; a column in a URL (s3://...) needs a
    --lease-dir every Ray node shares (else each node's own cache folder, which guards only within that node).
    The actors get the driver's --storage-option (GENAUG_STORAGE_OPTIONS) and, for a URL, its object-store
    variables (AWS_*, ...)."""
    from genaug.generate.job import prepare_job

    ray = import_ray()
    if not ray.is_initialized():  # a Ray this process joined already answers for its own GPUs
        check_local_gpus(check_ray_address(opts.ray_address), opts.num_gpus_per_worker)
    job = prepare_job(opts, flags)  # the lease runner's own set-up: same recipe checks and column identity
    col = job.column
    base = job.summary(engine="ray", workers=0, worker_failures=[])
    lease_dir = opts.lease_dir
    if lease_dir is not None:  # the actors' working folder is not the driver's
        lease_dir = os.path.abspath(os.path.expanduser(os.fspath(lease_dir)))
    pending = [i for i in job.priority or col.indices if not col.is_current(i)]
    if not pending:
        clear_stale_leases(lease_home(col.folder, lease_dir), set(col.indices), opts.lease_timeout)
        _fidelity_summary(col)
        return base
    done = sorted(set(col.indices) - set(pending))
    reconcile(col.folder, [shard_name(i) for i in done], col.recipe_hash)  # commits a killed run left out
    started = _connect(ray, check_ray_address(opts.ray_address), None)
    try:
        out = _drive(ray, job, pending, lease_dir)
    finally:
        if started:
            ray.shutdown()
    _fidelity_summary(col)
    return {**base, **out}


def _fidelity_summary(col: Any) -> None:
    from genaug.generate.runner import finish_column

    if col.finish_update():  # an update's manifest first; the record is tied to it
        finish_column(col)  # the lease runner's own column-wide summary step, then the completion record


class _Progress:
    """Images/s and ETA on the driver: a tqdm bar, or nothing."""

    def __init__(self, total: int, name: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", desc=f"generate[ray] {name}", dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(postfix, refresh=False)

    def say(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _drive(ray: Any, job: GenerateJob, pending: list[int], lease_dir: str | None) -> dict:
    """Place the actors, hand out the shards, collect figures and failures; kill the actors at the end."""
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

    o, col, recipe = job.opts, job.column, job.recipe
    weights, device, lease_timeout, progress = o.weights, o.device, o.lease_timeout, o.progress
    num_gpus, workers, cpus = o.num_gpus_per_worker, o.workers, o.cpus_per_worker
    max_restarts, max_attempts = o.max_restarts, o.max_shard_attempts

    t0 = time.perf_counter()
    num_gpus, n = _plan_workers(ray, num_gpus, workers, cpus, len(pending))
    remote = isinstance(col.folder, RemotePath)
    env = _worker_env(remote)
    opts: dict[str, Any] = {"num_cpus": cpus, "num_gpus": num_gpus, "max_restarts": max_restarts,
                            "max_task_retries": max_restarts, "scheduling_strategy": "SPREAD"}  # fmt: skip
    if env:
        opts["runtime_env"] = {"env_vars": env}
    dev = device or ("cuda" if num_gpus > 0 else "cpu")
    root = str(col.source.parent) if remote else str(col.source.parent.resolve())
    actor_cls = ray.remote(RayShardWorker)
    actors = [
        actor_cls.options(**opts).remote(
            root, col.source.name, recipe, col.name, weights, dev, lease_timeout, lease_dir=lease_dir
        )
        for _ in range(n)
    ]
    total = sum(int((read_stats(col.source, i) or {}).get("count", 0)) * recipe.k for i in pending)
    bar = _Progress(total, col.name, progress)
    todo: deque[int] = deque(pending)
    later: list[tuple[float, int]] = []  # (when, shard): held by a live process elsewhere, retry then
    attempts: dict[int, int] = {}
    running: dict[Any, tuple[Any, int]] = {}
    idle = list(actors)
    pids: dict[Any, set] = {}
    nodes: set = set()
    span = [math.inf, -math.inf]  # first shard started, last shard committed (wall clock of the workers)
    out: dict[str, Any] = {"shards": [], "images": 0, "failures": 0, "model_seconds": 0.0, "load_seconds": 0.0,
                           "workers": n, "worker_failures": [], "failed_shards": []}  # fmt: skip
    wait = min(2.0, max(0.05, lease_timeout / 8))
    try:
        while todo or later or running:
            now = time.monotonic()
            for item in [x for x in later if x[0] <= now]:
                later.remove(item)
                todo.append(item[1])
            while todo and idle:
                actor, index = idle.pop(0), todo.popleft()
                running[actor.run_shard.remote(index)] = (actor, index)
            if not running:
                if not actors:
                    break
                time.sleep(max(0.0, min(x[0] for x in later) - time.monotonic()) if later else wait)
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=wait)
            for ref in done:
                actor, index = running.pop(ref)
                try:
                    res = ray.get(ref, timeout=60)
                except (RayActorError, RayTaskError, GetTimeoutError) as e:
                    user = _user_error(e)
                    if user is not None:
                        raise user from None
                    msg = _failure_message(e)
                    dead = isinstance(e, RayActorError)
                    out["worker_failures"].append({"shard": index, "error": msg, "worker_lost": dead})
                    bar.say(f"genaug generate: ray worker failed on shard {index:06d}: {msg}"
                            + (" (worker gone: Ray exhausted its restarts)" if dead else ""))  # fmt: skip
                    if dead:
                        actors.remove(actor)
                    else:
                        idle.append(actor)
                    attempts[index] = attempts.get(index, 0) + 1
                    if attempts[index] < max_attempts:
                        todo.append(index)
                    else:
                        out["failed_shards"].append(index)
                    continue
                idle.append(actor)
                seen = pids.setdefault(actor, set())
                if res.get("restarted") and res["pid"] not in seen:
                    out["worker_failures"].append({"shard": index, "error": "worker process died; Ray restarted it",
                                                   "worker_lost": False, "host": res["host"]})  # fmt: skip
                    bar.say(f"genaug generate: a ray worker died and Ray restarted it on {res['host']} "
                            f"(pid {res['pid']}); its shard was retried")  # fmt: skip
                seen.add(res["pid"])
                nodes.add(res.get("ray_node"))
                if res["status"] in ("held", "lost"):
                    later.append((time.monotonic() + wait, index))
                elif res["status"] == "made":
                    span[0], span[1] = min(span[0], res["started"]), max(span[1], res["ended"])
                    out["shards"].append(index)
                    out["images"] += res["images"]
                    out["failures"] += res["failures"]
                    out["model_seconds"] += res["model_seconds"]
                    out["load_seconds"] = max(out["load_seconds"], res["load_seconds"])
                    rate = out["images"] / max(1e-9, time.perf_counter() - t0)
                    bar.update(res["images"] + res["failures"] * recipe.k, workers=len(actors),
                               ips=f"{rate:.1f}")  # fmt: skip
        if not actors and (todo or later):
            raise GenaugError(
                f"every Ray worker died ({len(out['worker_failures'])} failures, last: "
                f"{out['worker_failures'][-1]['error'] if out['worker_failures'] else 'unknown'}): "
                "check the workers' logs (ray logs) and rerun the same command to resume"
            )
    finally:
        bar.close()
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
    if out["failed_shards"]:
        raise GenaugError(
            f"shards {', '.join(f'{i:06d}' for i in out['failed_shards'])} failed {max_attempts} times on Ray "
            f"workers (last: {out['worker_failures'][-1]['error']}): rerun the same command to resume"
        )
    out.pop("failed_shards")
    out["nodes"] = sorted(n for n in nodes if n)
    out["work_seconds"] = max(0.0, span[1] - span[0]) if out["shards"] else 0.0
    out["seconds"] = time.perf_counter() - t0
    return out
