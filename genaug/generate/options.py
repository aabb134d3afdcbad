"""What one `genaug generate` invocation takes besides the recipe: the source, the column, the engine, this run."""

from __future__ import annotations

import math
import re
from typing import ClassVar, Literal

from pydantic import model_validator

from genaug.core.config import Number, PathText, Settings, setting
from genaug.core.errors import GenaugError
from genaug.shards.options import storage_option_field

_ADDRESS = re.compile(r"^(ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$")


def check_ray_address(address: str | None) -> str | None:
    """`address` if it is auto, local, HOST:PORT or ray://HOST:PORT (None: start a local Ray), else a GenaugError."""
    if address is None:
        return None
    address = str(address).strip()
    m = _ADDRESS.match(address)
    if address in ("auto", "local") or (m and 0 < int(m.group(3)) < 65536):
        return address
    raise GenaugError(
        f"--ray-address must be auto, local, HOST:PORT or ray://HOST:PORT (e.g. 10.0.0.1:6379), got {address!r}: "
        "pass the address `ray start --head` printed"
    )


class GenerateOptions(Settings):
    """Materialize K generated variants per source image into a generated column aligned with the source shards (e.g.
    `genaug generate --model sd --shards imagenet`). Run it in any number of processes (torchrun, accelerate launch,
    SLURM array, several machines on one filesystem): they share the shards through lease files. Rerun the same
    command to resume. `--status` reports progress."""

    where: ClassVar[str] = "flag"

    shards: PathText = setting(..., "Shard set name (shards/NAME), path or URL (s3://...).", flag="--shards")
    model: PathText = setting(
        "tiny",
        "Generation recipe: sd, sd-unclip, icgan, img2img-sd, img2img-ddpm, tiny, or a path to a recipe YAML.",
        flag="--model",
    )
    split: str = setting("train", "Source split to generate for.", flag="--split")
    weights: PathText | None = setting(
        None,
        "Local folder of the model (save_pretrained / hf download layout) instead of the hub id of the recipe.",
        flag="--weights",
    )
    column: str | None = setting(None, "Name of the generated column (default: recipe name).", flag="--column")
    sets: list[str] = setting(factory=list, help="Recipe override section.key=value (repeatable).", flag="--set")
    device: str | None = setting(
        None, "Default: cuda:LOCAL_RANK when CUDA is available, else cpu.", flag="--device"
    )
    limit_shards: int | None = setting(None, "Only the first N source shards.", flag="--limit-shards", ge=1)
    lease_timeout: Number = setting(
        300.0,
        "Seconds without heartbeat after which another process takes a shard over.",
        flag="--lease-timeout",
        gt=0.0,
    )
    lease_dir: PathText | None = setting(
        None,
        "Folder for the shard leases, on a filesystem every process (and every Ray node) shares. Default: the column "
        "folder; for s3:// the bucket itself by conditional PUT (the Ray engine: this machine's cache).",
        flag="--lease-dir",
    )
    storage_option: list[str] = storage_option_field()
    status: bool = setting(False, "Report the column's progress (needs --column or --model) and exit.", "--status")
    as_json: bool = setting(False, "With --status: print JSON.", flag="--json")
    engine: Literal["lease", "ray"] = setting(
        "lease",
        "lease (default: processes claim shards through lease files) or ray (one task per shard on a Ray cluster; "
        "pip install 'genaug[ray]'; docs/ray.md).",
        flag="--engine",
    )
    ray_address: str | None = setting(
        None,
        "With --engine ray: auto, HOST:PORT or ray://HOST:PORT (default: $RAY_ADDRESS or a local Ray started for "
        "this run).",
        flag="--ray-address",
    )
    num_gpus_per_worker: Number | None = setting(
        None,
        "With --engine ray: GPUs per worker (default 1 when the cluster has GPUs, else 0: CPU workers).",
        flag="--num-gpus-per-worker",
    )
    workers: int | None = setting(
        None, "With --engine ray: number of workers, each loading the model once (default: fill the cluster).",
        flag="--workers",
    )  # fmt: skip
    cpus_per_worker: Number = setting(1.0, "With --engine ray: CPUs per worker.", flag="--cpus-per-worker", gt=0.0)
    max_restarts: int = setting(
        3, "With --engine ray: restarts of a dead worker (and retries of its task).", flag="--max-restarts", ge=0
    )
    max_shard_attempts: int = setting(
        3, "With --engine ray: attempts of one shard before it is reported failed.", flag="--max-shard-attempts", ge=1
    )
    update: bool = setting(
        False,
        "Update an existing column to this recipe when only k changed: its variants are kept, only the new ones are "
        "made (a change of model, steps, seed, ... touches every variant: use a new --column).",
        flag="--update",
    )
    order: PathText | None = setting(
        None,
        "Make these shards first: a file (000012.tar per line, or a JSON list) or a training run folder (the order "
        "its stream reads the shards in epoch 0; for `train --gen-partial`).",
        flag="--order",
    )
    progress: bool = setting(True, "A progress bar.", flag="--progress/--no-progress")
    fidelity: bool = setting(
        True,
        "Score each variant against its source in the generator's feature space (docs/fidelity.md); applies to a "
        "new column.",
        flag="--fidelity/--no-fidelity",
    )

    @model_validator(mode="after")
    def _together(self) -> GenerateOptions:
        """Flags that only mean something with another one."""
        if self.as_json and not self.status:
            raise ValueError("--json applies to --status only: add --status, or drop --json")
        if self.engine != "ray":
            for flag, value in (("--ray-address", self.ray_address), ("--num-gpus-per-worker",
                                self.num_gpus_per_worker), ("--workers", self.workers)):  # fmt: skip
                if value is not None:
                    raise ValueError(f"{flag} applies to --engine ray only: add --engine ray or drop {flag}")
            return self
        check_ray_address(self.ray_address)
        gpus = self.num_gpus_per_worker
        if gpus is not None and not (math.isfinite(gpus) and gpus >= 0):
            raise ValueError(f"--num-gpus-per-worker must be 0 or more (e.g. 1, or 0.5 for two workers per GPU), "
                             f"got {gpus!r}")  # fmt: skip
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be at least 1 (got {self.workers}); leave it out to fill the cluster")
        return self
