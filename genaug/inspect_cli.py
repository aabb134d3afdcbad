"""`genaug inspect`: contact sheets of generated variants, and of the views the trainer would make."""

from __future__ import annotations

import typer

from genaug.shards.cache import CACHE_DIR_HELP, CACHE_LIMIT_HELP
from genaug.shards.storage import STORAGE_OPTION_HELP


def register(app: typer.Typer) -> None:
    """Add the `inspect` command to the CLI."""

    @app.command(
        "inspect",
        help="Write a PNG contact sheet: each source image with its K generated variants (a blank tile where "
        "generation failed); with --views, the source and pairs of training views at replacement probability --p.",
    )
    def inspect(
        shards: str = typer.Option(..., "--shards", help="Shard set name (shards/NAME), path or URL (s3://...)."),
        gen: str | None = typer.Option(None, "--gen", help="Generated column (e.g. sd); default: the only one."),
        split: str = typer.Option("train", "--split"),
        keys: str | None = typer.Option(None, "--keys", help="Comma-separated sample keys, in row order."),
        n: int = typer.Option(8, "--n", help="Number of random keys when --keys is not given."),
        seed: int = typer.Option(0, "--seed", help="Seed of the random keys (and of the views)."),
        tile: int = typer.Option(128, "--tile", help="Tile side in pixels."),
        views: bool = typer.Option(False, "--views", help="Show training views instead of the raw variants."),
        p: float = typer.Option(0.5, "--p", help="Replacement probability of each view (with --views)."),
        pairs: int = typer.Option(3, "--pairs", help="View pairs per source image (with --views)."),
        view_size: int = typer.Option(224, "--view-size", help="Crop size of the views (with --views)."),
        method: str = typer.Option("simclr", "--method", help="Training recipe whose views to show (with --views)."),
        mix_views: str = typer.Option("each", "--mix-views", help="each or second (with --views)."),
        run: str | None = typer.Option(
            None,
            "--run",
            help="Training run folder whose resolved views and mixing rule to draw (its recipe.yaml, with every "
            "override; with --views; replaces --method, --view-size and --mix-views).",
        ),
        no_labels: bool = typer.Option(False, "--no-labels", help="Leave out the key captions."),
        sort: str | None = typer.Option(
            None, "--sort", help="score: the sources with the worst variants first, then the best (needs scores)."
        ),
        out: str | None = typer.Option(None, "--out", help="PNG path (default: ./contact-<gen>-<split>.png)."),
        storage_option: list[str] = typer.Option(
            [],
            "--storage-option",
            help=STORAGE_OPTION_HELP,
        ),
        cache_dir: str | None = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP),
        cache_limit: str | None = typer.Option(None, "--cache-limit", help=CACHE_LIMIT_HELP),
    ) -> None:
        from genaug.core.flags import at_least
        from genaug.inspect import contact_sheet, views_sheet
        from genaug.shards.cache import set_cache_env
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(storage_option, shards)
        set_cache_env(cache_dir, cache_limit)
        for value, flag in ((n, "--n"), (pairs, "--pairs"), (tile, "--tile"), (view_size, "--view-size")):
            at_least(value, 1, flag)
        key_list = [k.strip() for k in keys.split(",") if k.strip()] if keys else None
        common = dict(split=split, keys=key_list, n=n, seed=seed, tile=tile, labels=not no_labels, out=out)
        if views:
            path = views_sheet(
                shards,
                gen,
                p=p,
                pairs=pairs,
                view_size=view_size,
                method=method,
                mix_views=mix_views,
                run=run,
                **common,
            )
        else:
            path = contact_sheet(shards, gen, sort=sort, **common)
        print(f"contact sheet: {path} (rows and keys: {path.with_suffix('.json')})")
        if not views:
            import json

            hist = json.loads(path.with_suffix(".json").read_text(encoding="utf-8")).get("histogram")
            if hist:
                print(f"score histogram: {hist}")
