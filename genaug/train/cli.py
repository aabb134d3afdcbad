"""`genaug train`: train an SSL method on a shard set, replacing views by generated variants with probability p."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from genaug.core.errors import GenaugError
from genaug.shards.cache import CACHE_DIR_HELP, CACHE_LIMIT_HELP
from genaug.shards.storage import STORAGE_OPTION_HELP

MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def parse_sets(items: list[str] | None) -> dict:
    """`--set a.b=VALUE` pairs as a dotted-key override dict (values parsed as YAML scalars)."""
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise GenaugError(f"--set {item!r} must look like section.key=value (e.g. --set method_args.lambd=0.01)")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def register(app: typer.Typer) -> None:
    """Add the `train` command to the CLI."""

    @app.command(
        "train",
        help="Train an SSL model on a shard set, replacing views by generated variants with probability p "
        "(e.g. `genaug train --method barlow --p 0.5 --shards imagenet --gen sd`). Rerunning with the same --out "
        "resumes from its last checkpoint; `accelerate launch -m genaug train ...` or torchrun for several GPUs.",
    )
    def train(
        method: str = typer.Option("simclr", "--method", help="Method recipe name (trainers/) or a YAML path."),
        shards: str = typer.Option(..., "--shards", help="Shard set name (shards/NAME), path or URL (s3://...)."),
        p: float = typer.Option(0.0, "--p", help="Probability of replacing a view by a generated variant."),
        gen: list[str] = typer.Option([], "--gen", help="Generated column(s): repeatable or sd,icgan."),
        split: str = typer.Option("train", "--split", help="Source split to train on."),
        out: Path = typer.Option(None, "--out", help="Run directory (default runs/<method>-<timestamp>)."),
        resume: Path = typer.Option(None, "--resume", help="Checkpoint file or run directory to resume from."),
        steps: int = typer.Option(None, "--steps", help="Optimizer steps (overrides the recipe's epochs)."),
        epochs: float = typer.Option(None, "--epochs", help="Epochs over the split."),
        batch_size: int = typer.Option(None, "--batch-size", help="Per-process batch size."),
        lr: float = typer.Option(None, "--lr", help="Base lr (scaled with the global batch as the recipe says)."),
        backbone: str = typer.Option(
            None,
            "--backbone",
            help="tiny, resnet18, resnet18-half, resnet50, vit_s, vit_b, or timm:NAME (any timm model without its "
            "classifier; pip install 'genaug[timm]'; model arguments: --set backbone.timm_args.KEY=VALUE).",
        ),
        backbone_weights: Path = typer.Option(
            None,
            "--backbone-weights",
            help="Start the backbone from this local .safetensors or torch checkpoint (a timm or torchvision "
            "checkpoint, or a genaug backbone.safetensors); its classifier is dropped.",
        ),
        image_size: int = typer.Option(None, "--image-size", help="Size of the global views."),
        workers: int = typer.Option(None, "--workers", help="Data loader worker processes per rank."),
        mix_views: str = typer.Option(None, "--mix-views", help="Views that may be replaced: each or second."),
        gen_min_score: float = typer.Option(
            None,
            "--gen-min-score",
            help="Draw only variants whose fidelity score is at least X (a source with none left keeps its image); "
            "needs scores (docs/fidelity.md).",
        ),
        gen_weighting: str = typer.Option(
            None, "--gen-weighting", help="uniform, or score: draw variant k in proportion to its fidelity score."
        ),
        gen_partial: bool = typer.Option(
            False,
            "--gen-partial",
            help="Train while the --gen column is still being generated: each epoch uses the column shards committed "
            "when it starts (the others' samples keep their source images); coverage per epoch in metrics.jsonl.",
        ),
        cache_dir: Path = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP),
        cache_limit: str = typer.Option(None, "--cache-limit", help=CACHE_LIMIT_HELP),
        seed: int = typer.Option(None, "--seed", help="Seed of the run (model init, data order, mixing)."),
        precision: str = typer.Option(None, "--precision", help="auto, no, bf16 or fp16."),
        augment_device: str = typer.Option(
            None,
            "--augment-device",
            help="Where colour jitter, blur, solarize and normalisation run: auto (the GPU when training on CUDA, "
            "else the loader workers), cpu or cuda.",
        ),
        compile_: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the backbone."),
        channels_last: bool = typer.Option(None, "--channels-last/--no-channels-last", help="channels_last memory."),
        grad_accum: int = typer.Option(None, "--grad-accum", help="Gradient accumulation steps."),
        ckpt_every: int = typer.Option(None, "--ckpt-every", help="Checkpoint every N steps (and at the end)."),
        log_every: int = typer.Option(None, "--log-every", help="Log every N steps."),
        stop_after: int = typer.Option(None, "--stop-after", help="Stop this session after N steps (resumable)."),
        sets: list[str] = typer.Option([], "--set", help="Recipe override section.key=value (repeatable)."),
        no_probe: bool = typer.Option(False, "--no-probe", help="No online linear probe."),
        allow_module: list[str] = typer.Option(
            [], "--allow-module", help="Trust this plug-in method module named by the recipe's module: (repeatable)."
        ),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        storage_option: list[str] = typer.Option(
            [],
            "--storage-option",
            help=STORAGE_OPTION_HELP,
        ),
    ) -> None:
        import os

        from genaug.shards.storage_flags import apply_storage_flags
        from genaug.train.runner import train as run_train

        apply_storage_flags(storage_option, shards)
        for name in allow_module:
            if not MODULE_NAME.match(name):
                raise GenaugError(
                    f"--allow-module {name!r} is not a Python module name (dotted identifiers, e.g. mylab.methods)"
                )
        if allow_module:  # the same trust reaches the method registry (and evaluation run from this process)
            have = [m for m in os.environ.get("GENAUG_ALLOW_MODULES", "").split(",") if m]
            os.environ["GENAUG_ALLOW_MODULES"] = ",".join(have + list(allow_module))
        res = run_train(
            method=method,
            shards=shards,
            p=p,
            gen=gen,
            split=split,
            out=out,
            resume=resume,
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            backbone=backbone,
            backbone_weights=backbone_weights,
            image_size=image_size,
            workers=workers,
            mix_views=mix_views,
            gen_min_score=gen_min_score,
            gen_weighting=gen_weighting,
            gen_partial=gen_partial or None,  # not given: the recipe's data.gen_partial
            cache_dir=cache_dir,
            cache_limit=cache_limit,
            seed=seed,
            precision=precision,
            augment_device=augment_device,
            compile=compile_,
            channels_last=channels_last,
            grad_accum=grad_accum,
            ckpt_every=ckpt_every,
            log_every=log_every,
            overrides=parse_sets(sets),
            stop_after=stop_after,
            progress_bar=not quiet,
            probe=not no_probe,
        )
        m = res["metrics"]
        loss = f" loss {m['loss']:.4f}" if "loss" in m else ""
        if res["is_main"]:
            typer.echo(f"trained {res['step']} steps{loss}; run directory {res['run_dir']}")
