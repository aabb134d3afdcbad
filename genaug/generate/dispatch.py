"""`generate()`: the one entry of generation; it resolves the invocation once and hands it to an engine.

Engines: "lease" (genaug.generate.runner: this process claims shards through leases, beside any number of peers)
and "ray" (genaug.generate.ray_engine: one task per shard on a Ray cluster). Both make and commit a shard with the
same code (genaug.generate.runner.Runner.make), so their columns are byte-identical and can be mixed.
"""

from __future__ import annotations

from typing import Any

from genaug.core.cli_model import split_settings
from genaug.generate.options import GenerateOptions
from genaug.generate.recipe import GenerateRecipe


def generate(model: str = "tiny", overrides: dict[str, Any] | None = None, **settings: Any) -> dict:
    """Materialize K variants per source image of `split` into the generated column (default name: the recipe's).

    `settings` are the command's options by their flag names (shards=, split=, column=, k=, batch_size=, steps=,
    engine=, lease_dir=, update=, order=, progress=, ...: `genaug generate --help` lists them); `overrides` dotted
    recipe keys. `update` remakes an existing column for a recipe that differs only in k: the variants it keeps are
    copied, only the new ones are sampled. `order` (a shard list or a training run folder) sets which shards are
    made first.

    Any number of processes may run this at once on a shared filesystem; each returns its own summary (shards it
    committed, images, failures, seconds, model_seconds, load_seconds, column folder). A new column of a generator
    with a feature space also gets fidelity scores (docs/fidelity.md); `fidelity=False` leaves them out.
    """
    opts, flags = split_settings(GenerateOptions, GenerateRecipe, {"model": model, **settings}, "generate")
    return run_generate(opts, {**flags, **(overrides or {})})


def run_generate(opts: GenerateOptions, flags: dict[str, Any]) -> dict:
    """Generate with the engine `opts.engine` names (lease: this process; ray: a Ray cluster)."""
    if opts.engine == "ray":
        from genaug.generate.ray_engine import run_ray

        return run_ray(opts, flags)
    from genaug.generate.job import prepare_job
    from genaug.generate.runner import run_leases

    return run_leases(prepare_job(opts, flags))


def generate_ray(model: str = "tiny", overrides: dict[str, Any] | None = None, **settings: Any) -> dict:
    """generate() on a Ray cluster: the same as generate(engine="ray", ...)."""
    return generate(model, overrides, engine="ray", **settings)
