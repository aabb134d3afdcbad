"""The per-shard unit of work shared by the engines: claim one shard's lease, make its variants, commit it.

`ShardRunner` is the lease runner (genaug.generate.runner.Runner) driven one shard at a time instead of by its own
claiming loop: same reader, batching, seeds, writer thread and commit protocol, so the bytes are the lease runner's.
`ShardWorker` is the body of a Ray actor (genaug.generate.ray_engine wraps it with ray.remote): it loads the model
once and serves `run_shard(index)` calls. Nothing here imports Ray, so it runs and is tested without it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from genaug.generate.column import Column, open_column
from genaug.generate.leases import Lease, lease_home, lease_path, read_lease, try_acquire
from genaug.generate.recipe import GenerateRecipe
from genaug.generate.runner import Runner
from genaug.generate.writer import ShardJob
from genaug.shards.writer import cleanup_shard

#: test-only crash injection that fires once: `<point>:<shard>:<marker file>` arms GENAUG_FAULT=<point>:<shard>
#: (points of genaug.shards.writer) in the first worker that makes that shard; the marker keeps the retry alive
FAULT_ONCE_ENV = "GENAUG_FAULT_ONCE"


class ShardRunner(Runner):
    """A lease Runner that makes the shards it is handed, one call at a time, and reports each commit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.committed: dict[int, dict] = {}
        super().__init__(*args, **kwargs)

    def _remaining_images(self) -> int:
        return 0  # no progress bar here: the driver counts

    def _on_commit(self, job: ShardJob, stats: dict) -> None:
        super()._on_commit(job, stats)
        self.committed[job.index] = stats

    def make(self, index: int, lease: Lease) -> None:
        """Make and commit shard `index` under `lease` (held by the caller); returns once it is committed."""
        self.heartbeat.add(lease)
        cleanup_shard(self.column.folder, index)
        self.make_shard(ShardJob(index, [], {}, lease, fidelity={} if self.fid else None))
        self.writer.flush()

    def close(self) -> None:
        """Stop the writer thread and the heartbeat (releasing any lease still held)."""
        try:
            self.writer.close()
        finally:
            self.heartbeat.stop()


def take_over_own(folder: Path, index: int, timeout: float, owner: dict) -> Lease | None:
    """Claim a lease left by an earlier incarnation of this same Ray actor (dead: Ray restarts an actor only then).

    `folder` holds the `.leases/` folder: the column folder, or its lease home (lease_home) for a column in a URL.

    Ray keeps an actor's id across restarts, possibly on another node, so a lease carrying our `ray_actor` but
    another host/pid is stale at once; without this rule a retry on another node would wait for --lease-timeout.
    """
    path = lease_path(folder, index)
    seen = read_lease(path)
    me = (socket.gethostname(), os.getpid())
    if not seen or not owner.get("ray_actor") or seen.get("ray_actor") != owner["ray_actor"]:
        return None
    if (seen.get("host"), seen.get("pid")) == me:
        return None
    grave = path.with_name(f"{path.name}.stale-ray-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(path, grave)
    except OSError:
        return None
    took = read_lease(grave)
    try:
        if took and took.get("token") != seen.get("token"):  # replaced between our read and rename: give it back
            try:
                os.link(grave, path)
            except OSError:
                pass
            return None
    finally:
        try:
            os.unlink(grave)
        except OSError:
            pass
    return try_acquire(folder, index, timeout, owner)


def arm_fault(index: int) -> None:
    """Test hook: set GENAUG_FAULT for this shard if GENAUG_FAULT_ONCE names it and it has not fired yet."""
    spec = os.environ.get(FAULT_ONCE_ENV)
    if not spec:
        return
    point, shard, marker = spec.split(":", 2)
    if int(shard) != index:
        os.environ.pop("GENAUG_FAULT", None)
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        os.environ.pop("GENAUG_FAULT", None)
        return
    os.environ["GENAUG_FAULT"] = f"{point}:{index}"


class ShardWorker:
    """One model, loaded once, making whole shards on request (the body of a Ray actor; plain Python otherwise)."""

    def __init__(
        self,
        root: str,
        split: str,
        recipe: GenerateRecipe | dict,
        column: str,
        weights: str | None,
        device: str | None,
        lease_timeout: float,
        owner: dict | None = None,
        lease_dir: str | None = None,
    ) -> None:
        from genaug.core.devices import default_device
        from genaug.generate.base import generator_class
        from genaug.generate.runner import quiet_hub_bars

        t = time.perf_counter()
        typed = recipe if isinstance(recipe, GenerateRecipe) else GenerateRecipe.of(recipe)
        written = typed.as_written()
        self.column: Column = open_column(root, split, written, column, create=False)
        self.recipe, self.lease_timeout, self.lease_dir = typed, lease_timeout, lease_dir
        self.leases = lease_home(self.column.folder, lease_dir)  # a URL column keeps its leases on a filesystem
        self.device = device or default_device()
        self.owner = {"engine": "ray", **(owner or {})}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            quiet_hub_bars()
            self.gen = generator_class(typed.generator)(written, device=self.device, weights=weights)
        self.load_seconds = time.perf_counter() - t
        self.runner: ShardRunner | None = None

    def _runner(self) -> ShardRunner:
        if self.runner is None:
            self.runner = ShardRunner(
                self.column, self.recipe, self.gen, self.lease_timeout, False, self.device, lease_dir=self.lease_dir
            )
        return self.runner

    def info(self) -> dict:
        """Where this worker runs: host, pid, device, model load time."""
        return {"host": socket.gethostname(), "pid": os.getpid(), "device": self.device, **self.owner}

    def run_shard(self, index: int) -> dict:
        """Make shard `index` unless it is done or held by a live process; report what happened and the figures."""
        t0, started = time.perf_counter(), time.time()
        out: dict[str, Any] = {"index": index, "started": started, **self.info()}
        if self.column.is_current(index):
            return {**out, "status": "done"}
        lease = try_acquire(self.leases, index, self.lease_timeout, self.owner)
        if lease is None:
            lease = take_over_own(self.leases, index, self.lease_timeout, self.owner)
        if lease is None:
            return {**out, "status": "held", "holder": read_lease(lease_path(self.leases, index))}
        if self.column.is_current(index):
            lease.release()
            return {**out, "status": "done"}
        arm_fault(index)
        runner = self._runner()
        try:
            runner.make(index, lease)
        except BaseException:
            self.runner = None  # a writer error stops its thread: the next shard gets a fresh runner
            try:
                runner.close()
            except BaseException:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        stats = runner.committed.pop(index, None)
        if stats is None:  # another process took the lease over (our heartbeat stopped): it commits the shard
            return {**out, "status": "lost"}
        return {
            **out,
            "status": "made",
            "images": int(stats.get("images", 0)),
            "failures": len(stats.get("failures", [])),
            "model_seconds": float(stats.get("model_seconds", 0.0)),
            "seconds": time.perf_counter() - t0,
            "ended": time.time(),
            "load_seconds": self.load_seconds,
        }

    def close(self) -> None:
        """Release everything: the runner's threads and leases, then the model."""
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        self.gen.close()
