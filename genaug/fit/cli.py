"""`genaug fit-generator`: the CLI face of genaug.fit.run.fit_generator()."""

from __future__ import annotations

from pathlib import Path

import typer


def _widths(text: str | None) -> list[int] | None:
    """"32,64" -> [32, 64]; a malformed list is one line naming the flag."""
    from genaug.core.errors import GenaugError

    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GenaugError(f"--widths must be comma-separated integers such as 32,64, got {text!r}") from None


def register(app: typer.Typer) -> None:
    """Add the `fit-generator` command to the CLI."""

    @app.command(
        "fit-generator",
        help="Train a small unconditional diffusion model (diffusers UNet2DModel, DDPM objective, EMA weights) on "
        "a split's images and save it as a diffusers folder OUT/model for `genaug generate --model img2img-ddpm "
        "--weights OUT/model`. Checkpoints under OUT/checkpoints; rerun the same command to resume. Runs under "
        "accelerate launch / torchrun for several GPUs.",
    )
    def fit_cmd(
        shards: str = typer.Option(..., "--shards", help="Shard set name (shards/NAME), path or URL."),
        out: Path = typer.Option(..., "--out", help="Run folder: fit.json, checkpoints/, and the result model/."),
        split: str = typer.Option("train", "--split", help="Source split whose images the model learns."),
        size: int = typer.Option(None, "--size", help="Training side in pixels (default 8; images are resized)."),
        channels: int = typer.Option(None, "--channels", help="3 (RGB, default) or 1 (grey)."),
        widths: str = typer.Option(None, "--widths", help="UNet block widths, e.g. 32,64 (default)."),
        steps: int = typer.Option(None, "--steps", help="Optimizer steps (default 1500)."),
        batch_size: int = typer.Option(None, "--batch-size", help="Images per step, over all processes (64)."),
        lr: float = typer.Option(None, "--lr", help="AdamW peak learning rate (default 2e-3)."),
        ema_decay: float = typer.Option(None, "--ema-decay", help="Largest EMA decay of the saved weights (0.999)."),
        seed: int = typer.Option(None, "--seed", help="Seed of the init and of every step's draws (0)."),
        ckpt_every: int = typer.Option(250, "--ckpt-every", help="Checkpoint every N steps (0: none)."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    ) -> None:
        from genaug.fit.run import fit_generator

        res = fit_generator(
            shards, out, split=split, ckpt_every=ckpt_every, progress=not no_progress, size=size, channels=channels,
            widths=_widths(widths), steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay, seed=seed,
        )  # fmt: skip
        if res["cached"]:
            typer.echo(f"fit-generator: {res['model']} is already fitted with these settings (nothing to do)")
            return
        last = res["log"][-1]["loss"] if res["log"] else float("nan")
        typer.echo(
            f"fit-generator: {res['model']}: {res['trained_steps']} steps on {res['read']['images']} images "
            f"({res['read']['skipped']} skipped) in {res['seconds']:.1f}s ({res['cpu_seconds']:.1f}s CPU), "
            f"last loss {last:.4f}; use it with `genaug generate --model img2img-ddpm --weights {res['model']}`"
        )
