"""A generation recipe (pipelines/<model>.yaml) as typed settings, with the command's flags applied and checked.

The sections every generator shares are typed (k, seed, dtype, runtime, output, the common sampling keys); the
sections that describe one generator's model (model, tiny, preprocess, checkpoint, features, a plug-in's own) are
mappings that generator checks itself. A recipe's identity (its column hash) is computed from the recipe as written
(the keys the file and the flags set, `as_written()`), never from the defaults below, so a column made before these
models existed keeps its hash, and a default added here never changes what an old column is.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, PrivateAttr, model_validator

from genaug.core.config import Number, PathText, Settings, setting
from genaug.core.errors import GenaugError
from genaug.core.recipes import load_recipe
from genaug.shards.layout import check_name


class Open(Settings):
    """A section that also holds keys of one generator (checked by that generator); the shared keys are typed."""

    model_config = ConfigDict(extra="allow")


class Sampling(Open):
    """How variants are drawn (each generator uses the keys it knows)."""

    steps: int | None = setting(None, "Denoising steps.", flag="--steps", ge=1, le=10000)
    guidance: Number | None = setting(None, "Classifier-free guidance scale.", flag="--guidance", ge=0.0, le=1000.0)
    strength: Number | None = setting(
        None, "img2img recipes: how far the source is noised, in (0, 1].", flag="--strength", ge=0.001, le=1.0
    )
    eta: Number | None = setting(None, "DDIM eta (0: deterministic sampler).", ge=0.0, le=1.0)
    truncation: Number | None = setting(None, "IC-GAN noise truncation.", ge=0.0, le=100.0)
    oversample: int | None = setting(None, "IC-GAN: each variant is the best of m candidates.", ge=1, le=1000)
    resolution: int | None = setting(None, "The sampling resolution in pixels (the model's native size).", ge=1)
    noise_level: int | None = setting(None, "unCLIP: noise added to the image embedding.", ge=0)
    scheduler: dict | str | None = setting(None, "A diffusers scheduler ({class: ..., args}); null: as shipped.")
    prompt: str | None = setting(None, "A text prompt (img2img-sd).")
    negative_prompt: str | None = setting(None, "A negative prompt (img2img-sd).")


class Output(Settings):
    """How variants are stored."""

    size: int | None = setting(None, "Stored size in pixels (null: as generated).", ge=1, le=16384)
    quality: int = setting(95, "JPEG quality.", ge=1, le=100)
    resample: str = setting("bicubic", "PIL resampling filter of the resize.")


class Runtime(Settings):
    """Speed and memory only: not part of the recipe hash."""

    batch_size: int = setting(8, "Variants per model call (halved on CUDA OOM).", flag="--batch-size", ge=1, le=65536)
    compile: bool = setting(False, "torch.compile the UNet.", flag="--compile/--no-compile")
    channels_last: bool = setting(False, "channels_last memory for the UNet / VAE.")
    attention: str = setting("auto", "Attention kernels: auto (SDPA; xformers when installed on CUDA).")
    cache: PathText | None = setting(None, "Folder of locally built models (default $GENAUG_CACHE or ~/.cache/genaug).")


class GenerateRecipe(Open):
    """A whole generation recipe."""

    #: the sections one generator owns: mappings, checked by that generator
    OWNED: ClassVar[tuple[str, ...]] = ("model", "tiny", "preprocess", "checkpoint", "features")

    name: str = setting(..., "The recipe's name, the default --column.")
    description: str = setting("", "What the recipe is.")
    generator: str = setting(..., "The registered generator class (sd-variation, unclip, icgan, img2img, ...).")
    k: int = setting(10, "Variants per source image.", flag="--k", ge=1, le=1000)
    seed: int = setting(0, "Recipe seed (variant k of key x uses seed(seed, x, k)).", flag="--seed", ge=-(2**63),
                        le=2**63 - 1)  # fmt: skip
    dtype: Literal["fp32", "fp16", "bf16"] = setting("fp32", "fp32, fp16 or bf16.", flag="--dtype")
    model: dict = setting(factory=dict, help="The generator's model (its own keys).")
    sampling: Sampling = setting(factory=Sampling)
    output: Output = setting(factory=Output)
    runtime: Runtime = setting(factory=Runtime)

    @model_validator(mode="before")
    @classmethod
    def _near_miss(cls, doc: Any) -> Any:
        """An unknown top-level key close to a known one is a typo (generators' own sections are open)."""
        if isinstance(doc, dict):
            known = [*cls.model_fields, *cls.OWNED]
            for key in doc:
                if key not in known:
                    near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
                    if near:
                        raise ValueError(f"unknown recipe key {key} (did you mean {near[0]}?)")
        return doc

    _written: dict = PrivateAttr(default_factory=dict)

    @classmethod
    def of(cls, written: dict) -> GenerateRecipe:
        """The typed recipe of a mapping written out before (a column's manifest, a Ray actor's argument)."""
        rec = cls.parse(written)
        rec._written = copy.deepcopy(written)
        return rec

    def as_written(self) -> dict:
        """The recipe as its file and flags wrote it, value for value (no defaults filled in, `7` not `7.0`): what
        the column hash identifies and the generators read."""
        return copy.deepcopy(self._written)


def generate_flags() -> dict[str, str]:
    """{keyword: dotted recipe key} of the recipe settings a flag sets (k, batch_size, steps, guidance, ...)."""
    from genaug.core.cli_model import flag_name, recipe_flags
    from genaug.core.config import flag_of

    return {flag_name(flag_of(f) or ""): dotted for dotted, f in recipe_flags(GenerateRecipe)}


def resolve_recipe(model: str, overrides: dict[str, Any] | None = None, **flags: Any) -> dict:
    """The generation recipe `model` (a shipped name or a YAML path) with flags applied, checked, as written.

    `flags` are the recipe flags by name (k=, batch_size=, steps=, guidance=, strength=, dtype=, compile=, seed=);
    `overrides` dotted recipe keys. Returns the mapping generators read (the recipe as written, checked against
    GenerateRecipe; its hash is the column's identity)."""
    return parse_generate_recipe(model, overrides, **flags).as_written()


def parse_generate_recipe(model: str, overrides: dict[str, Any] | None = None, **flags: Any) -> GenerateRecipe:
    """The typed generation recipe `model` with `flags` (by name) and `overrides` (dotted keys) applied."""
    names = generate_flags()
    unknown = sorted(set(flags) - set(names))
    if unknown:
        raise TypeError(f"resolve_recipe() got unknown flag(s) {unknown}: use {sorted(names)} or overrides")
    flat = {names[k]: v for k, v in flags.items()}
    raw = load_recipe("pipelines", model, {**flat, **(overrides or {})})
    for key in ("generator", "k", "seed"):
        if key not in raw:
            raise GenaugError(f"recipe {model!r} lacks `{key}:`")
    check_name(raw.get("name"), f"recipe {model!r} `name:` (the default --column)")
    try:
        rec = GenerateRecipe.of(raw)
    except GenaugError as e:
        raise GenaugError(f"{e} (recipe {model!r})") from None
    check_cache_folder(rec.runtime.cache, model)
    return rec


def check_cache_folder(given: str | None, model: str) -> None:
    """A recipe's `runtime.cache` is an existing folder the user can write, or null: genaug never creates it."""
    if given is None:
        return
    if not (Path(given).is_dir() and os.access(given, os.W_OK)):
        raise GenaugError(
            f"runtime.cache {given!r} of recipe {model!r} is not an existing folder you can "
            "write: create it first (genaug makes only its own subfolder there) or leave runtime.cache null "
            "($GENAUG_CACHE, default ~/.cache/genaug)"
        )
