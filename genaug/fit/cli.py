"""`genaug fit-generator`: the CLI face of genaug.fit.run.fit_generator(); its options are declared once, in
genaug.fit.options (FitOptions: this invocation; FitSettings: the model's settings, each flag default None = the
setting's own default)."""

from __future__ import annotations

import typer

from genaug.core.cli_model import command
from genaug.fit.options import FitOptions, FitSettings, parse_widths


def register(app: typer.Typer) -> None:
    """Add the `fit-generator` command to the CLI."""

    @command(app, "fit-generator", options=FitOptions, recipe=FitSettings)
    def fit_cmd(opts: FitOptions, overrides: dict) -> None:
        from genaug.core.flags import output_folder
        from genaug.fit.run import fit_generator

        output_folder(opts.out, "--out")
        res = fit_generator(
            opts.shards, opts.out, split=opts.split, ckpt_every=opts.ckpt_every, progress=not opts.no_progress,
            widths=parse_widths(opts.widths), **overrides,
        )  # fmt: skip
        if not res.get("main", True):  # under torchrun / accelerate launch one process reports
            return
        if res["cached"]:
            typer.echo(f"fit-generator: {res['model']} is already fitted with these settings (nothing to do)")
            return
        last = res["log"][-1]["loss"] if res["log"] else float("nan")
        typer.echo(
            f"fit-generator: {res['model']}: {res['trained_steps']} steps on {res['read']['images']} images "
            f"({res['read']['skipped']} skipped) in {res['seconds']:.1f}s ({res['cpu_seconds']:.1f}s CPU), "
            f"last loss {last:.4f}; use it with `genaug generate --model img2img-ddpm --weights {res['model']}`"
        )
