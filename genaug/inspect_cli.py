"""`genaug inspect`: contact sheets of generated variants, and of the views the trainer would make.

Its options are declared once, in InspectOptions below (flags, defaults, bounds), and checked there."""

from __future__ import annotations

from typing import ClassVar

import typer

from genaug.core.cli_model import command
from genaug.core.config import Probability, Settings, setting
from genaug.shards.options import SHARDS_HELP, cache_dir_field, cache_limit_field, storage_option_field


class InspectOptions(Settings):
    """Write a PNG contact sheet: each source image with its K generated variants (a blank tile where generation
    failed); with --views, the source and pairs of training views at replacement probability --p."""

    where: ClassVar[str] = "flag"

    shards: str = setting(..., SHARDS_HELP, "--shards")
    gen: str | None = setting(None, "Generated column (e.g. sd); default: the only one.", "--gen")
    split: str = setting("train", "Split whose samples are drawn.", "--split")
    keys: str | None = setting(None, "Comma-separated sample keys, in row order.", "--keys")
    n: int = setting(8, "Number of random keys when --keys is not given.", "--n", ge=1)
    seed: int = setting(0, "Seed of the random keys (and of the views).", "--seed")
    tile: int = setting(128, "Tile side in pixels.", "--tile", ge=1)
    views: bool = setting(False, "Show training views instead of the raw variants.", "--views")
    p: Probability = setting(0.5, "Replacement probability of each view (with --views).", "--p")
    pairs: int = setting(3, "View pairs per source image (with --views).", "--pairs", ge=1)
    view_size: int = setting(224, "Crop size of the views (with --views).", "--view-size", ge=1)
    method: str = setting("simclr", "Training recipe whose views to show (with --views).", "--method")
    mix_views: str = setting("each", "each or second (with --views; checked by genaug.data.mixing).", "--mix-views")
    run: str | None = setting(
        None,
        "Training run folder whose resolved views and mixing rule to draw (its recipe.yaml, with every "
        "override; with --views; replaces --method, --view-size and --mix-views).",
        "--run",
    )
    no_labels: bool = setting(False, "Leave out the key captions.", "--no-labels")
    sort: str | None = setting(  # checked by genaug.inspect.contact_sheet, for its Python callers too
        None, "score: the sources with the worst variants first, then the best (needs scores).", "--sort"
    )
    out: str | None = setting(None, "PNG path (default: ./contact-<gen>-<split>.png).", "--out")
    storage_option: list[str] = storage_option_field()
    cache_dir: str | None = cache_dir_field()
    cache_limit: str | None = cache_limit_field()


def register(app: typer.Typer) -> None:
    """Add the `inspect` command to the CLI."""

    @command(app, "inspect", options=InspectOptions)
    def inspect(o: InspectOptions, overrides: dict) -> None:
        from genaug.core.flags import output_path
        from genaug.inspect import contact_sheet, views_sheet
        from genaug.shards.cache import set_cache_env
        from genaug.shards.storage_flags import apply_storage_flags

        apply_storage_flags(o.storage_option, o.shards)
        set_cache_env(o.cache_dir, o.cache_limit)
        output_path(o.out, "--out")
        key_list = [k.strip() for k in o.keys.split(",") if k.strip()] if o.keys else None
        common = dict(split=o.split, keys=key_list, n=o.n, seed=o.seed, tile=o.tile, labels=not o.no_labels, out=o.out)
        if o.views:
            drawn = o.model_dump(include={"p", "pairs", "view_size", "method", "mix_views", "run"})
            path = views_sheet(o.shards, o.gen, **drawn, **common)
        else:
            path = contact_sheet(o.shards, o.gen, sort=o.sort, **common)
        print(f"contact sheet: {path} (rows and keys: {path.with_suffix('.json')})")
        if not o.views:
            import json

            hist = json.loads(path.with_suffix(".json").read_text(encoding="utf-8")).get("histogram")
            if hist:
                print(f"score histogram: {hist}")
