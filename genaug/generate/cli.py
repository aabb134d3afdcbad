"""`genaug generate`: the CLI face of genaug.generate.generate() and of the column status report."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from genaug.shards.storage import STORAGE_OPTION_HELP


def register(app: typer.Typer) -> None:
    """Add the `generate` command to the CLI."""

    @app.command(
        "generate",
        help="Materialize K generated variants per source image into a generated column aligned with the source "
        "shards (e.g. `genaug generate --model sd --shards imagenet`). Run it in any number of processes "
        "(torchrun, accelerate launch, SLURM array, several machines on one filesystem): they share the shards "
        "through lease files. Rerun the same command to resume. `--status` reports progress.",
    )
    def generate_cmd(
        shards: str = typer.Option(..., "--shards", help="Shard set name (shards/NAME), path or URL (s3://...)."),
        model: str = typer.Option(
            "tiny",
            "--model",
            help="Generation recipe: sd, sd-unclip, icgan, img2img-sd, img2img-ddpm, tiny, or a path to a recipe YAML.",
        ),
        split: str = typer.Option("train", "--split", help="Source split to generate for."),
        weights: str = typer.Option(
            None,
            "--weights",
            help="Local folder of the model (save_pretrained / hf "
            "download layout) instead of the hub id of the recipe.",
        ),
        column: str = typer.Option(None, "--column", help="Name of the generated column (default: recipe name)."),
        k: int = typer.Option(None, "--k", help="Variants per source image (recipe default: 10)."),
        batch_size: int = typer.Option(None, "--batch-size", help="Variants per model call (halved on CUDA OOM)."),
        steps: int = typer.Option(None, "--steps", help="Denoising steps."),
        guidance: float = typer.Option(None, "--guidance", help="Classifier-free guidance scale."),
        strength: float = typer.Option(
            None, "--strength", help="img2img recipes: how far the source is noised, in (0, 1] (recipe default)."
        ),
        seed: int = typer.Option(None, "--seed", help="Recipe seed (variant k of key x uses seed(seed, x, k))."),
        dtype: str = typer.Option(None, "--dtype", help="fp32, fp16 or bf16."),
        compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the UNet."),
        device: str = typer.Option(None, "--device", help="Default: cuda:LOCAL_RANK when CUDA is available, else cpu."),
        limit_shards: int = typer.Option(None, "--limit-shards", help="Only the first N source shards."),
        lease_timeout: float = typer.Option(
            300.0, "--lease-timeout", help="Seconds without heartbeat after which another process takes a shard over."
        ),
        lease_dir: Path = typer.Option(
            None,
            "--lease-dir",
            help="Folder for the shard leases, on a filesystem every process (and every Ray node) shares. Default: "
            "the column folder; for s3:// the bucket itself by conditional PUT (the Ray engine: this machine's cache).",
        ),
        storage_option: list[str] = typer.Option([], "--storage-option", help=STORAGE_OPTION_HELP),
        status: bool = typer.Option(
            False, "--status", help="Report the column's progress (needs --column or --model) and exit."
        ),
        as_json: bool = typer.Option(False, "--json", help="With --status: print JSON."),
        engine: str = typer.Option(
            "lease",
            "--engine",
            help="lease (default: processes claim shards through lease files) or ray "
            "(one task per shard on a Ray cluster; pip install 'genaug[ray]'; docs/ray.md).",
        ),
        ray_address: str = typer.Option(
            None,
            "--ray-address",
            help="With --engine ray: auto, HOST:PORT or ray://HOST:PORT (default: $RAY_ADDRESS "
            "or a local Ray started for this run).",
        ),
        num_gpus_per_worker: float = typer.Option(
            None,
            "--num-gpus-per-worker",
            help="With --engine ray: GPUs per worker (default 1 when the cluster has GPUs, else 0: CPU workers).",
        ),
        workers: int = typer.Option(
            None,
            "--workers",
            help="With --engine ray: number of workers, each loading the model once (default: fill the cluster).",
        ),
        update: bool = typer.Option(
            False,
            "--update",
            help="Update an existing column to this recipe when only k changed: its variants are kept, only the new "
            "ones are made (a change of model, steps, seed, ... touches every variant: use a new --column).",
        ),
        order: Path = typer.Option(
            None,
            "--order",
            help="Make these shards first: a file (000012.tar per line, or a JSON list) or a training run folder "
            "(the order its stream reads the shards in epoch 0; for `train --gen-partial`).",
        ),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
        fidelity: bool = typer.Option(
            True,
            "--fidelity/--no-fidelity",
            help="Score each variant against its source in the generator's feature space (docs/fidelity.md); "
            "applies to a new column.",
        ),
    ) -> None:
        from genaug.core.errors import GenaugError
        from genaug.generate.leases import check_lease_timeout
        from genaug.generate.ray_engine import check_engine_options
        from genaug.generate.runner import generate, resolve_recipe
        from genaug.generate.status import column_status, format_status
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(storage_option, shards)
        lease_timeout = check_lease_timeout(lease_timeout, "--lease-timeout")
        check_engine_options(engine, ray_address, num_gpus_per_worker, workers)
        from genaug.core.devices import check_device
        from genaug.core.flags import output_path

        check_device(device)
        if as_json and not status:
            raise GenaugError("--json applies to --status only: add --status, or drop --json")
        if lease_dir is not None and Path(lease_dir).exists() and not Path(lease_dir).is_dir():
            raise GenaugError(f"--lease-dir {lease_dir} is a file, not a folder: give a folder every process can reach")
        output_path(lease_dir, "--lease-dir")
        if limit_shards is not None and limit_shards < 1:
            raise GenaugError(f"--limit-shards must be at least 1 (got {limit_shards})")
        if status:
            name = column or resolve_recipe(model)["name"]
            st = column_status(shards, name, split, lease_timeout, lease_dir=lease_dir)
            typer.echo(json.dumps(st, indent=2) if as_json else format_status(st))
            return
        run, extra = generate, {}
        if engine == "ray":
            from genaug.generate.ray_engine import generate_ray

            run = generate_ray
            extra = {"ray_address": ray_address, "num_gpus_per_worker": num_gpus_per_worker, "workers": workers}
        out = run(
            model=model,
            shards=shards,
            split=split,
            weights=weights,
            column=column,
            k=k,
            batch_size=batch_size,
            steps=steps,
            dtype=dtype,
            compile=compile,
            device=device,
            limit_shards=limit_shards,
            seed=seed,
            guidance=guidance,
            lease_timeout=lease_timeout,
            progress=not no_progress,
            **({"lease_dir": lease_dir} if lease_dir is not None else {}),
            fidelity=fidelity,
            update=update,
            order=order,
            **({"overrides": {"sampling.strength": strength}} if strength is not None else {}),
            **extra,
        )
        rate = out["images"] / out["seconds"] if out["seconds"] else 0.0
        typer.echo(
            f"column {out['column']}: {out['folder']}: "
            + (f"{out['workers']} Ray workers made " if engine == "ray" else "this process made ")
            + f"{len(out['shards'])} shards, "
            f"{out['images']} images ({rate:.2f} images/s), {out['failures']} source images failed"
        )
