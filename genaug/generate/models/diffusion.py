"""What the diffusers-based generators share: loading, device/dtype/attention setup, seeds, row batching."""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from genaug.core.devices import default_device, torch_dtype  # noqa: F401  (re-exported)
from genaug.core.errors import GenaugError
from genaug.generate.base import Generator, Variant
from genaug.generate.models.weights import check_weights_folder

BLACK_MAX = 2  # an output whose brightest pixel is at most this (uint8) counts as all-black


def cpu_generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU torch.Generator per variant seed: the noise does not depend on device, batch or order."""
    return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]


def load_pipeline(cls: Any, recipe: dict, weights: str | None, dtype: torch.dtype, **kwargs: Any) -> Any:
    """from_pretrained of `cls` from --weights DIR, the tiny cache folder, or the hub id and revision of the recipe."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch_dtype= is the spelling every supported diffusers takes
        return _load_pipeline(cls, recipe, weights, dtype, **kwargs)


def _load_pipeline(cls: Any, recipe: dict, weights: str | None, dtype: torch.dtype, **kwargs: Any) -> Any:
    model = recipe.get("model", {})
    if weights:
        path = Path(weights)
        check_weights_folder(path, model.get("id"))
        try:
            return cls.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True, **kwargs)
        except (OSError, ValueError, KeyError) as e:  # a damaged file the folder check cannot see
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise GenaugError(f"--weights {path} cannot be loaded ({type(e).__name__}: {first})") from None
    for source in entry_points(group="genaug.model_sources", name=str(model.get("id"))):
        folder = source.load()(recipe)  # a local folder built from the recipe (the tiny pipeline), never downloaded
        return cls.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True, **kwargs)
    try:
        return cls.from_pretrained(
            model["id"], revision=model.get("revision"), variant=model.get("variant"), torch_dtype=dtype, **kwargs
        )
    except (OSError, ValueError) as e:
        raise GenaugError(
            f"cannot load {model.get('id')} (revision {model.get('revision')}) from the Hugging Face hub "
            f"({type(e).__name__}): where there is internet run `hf download {model.get('id')} --revision "
            f"{model.get('revision')} --local-dir DIR`, then pass --weights DIR"
        ) from None


def configure_pipeline(pipe: Any, recipe: dict, device: str) -> Any:
    """Scheduler from the recipe, device, attention (SDPA; xformers when installed), channels_last, torch.compile."""
    import diffusers

    sched = (recipe.get("sampling") or {}).get("scheduler")
    if sched:
        sched = dict(sched)
        name = sched.pop("class")
        if not hasattr(diffusers, name):
            raise GenaugError(f"recipe scheduler class {name!r} is not a diffusers scheduler")
        pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config, **sched)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    runtime = recipe.get("runtime") or {}
    attention = runtime.get("attention", "auto")
    if attention in ("auto", "xformers") and str(device).startswith("cuda"):
        try:
            import xformers  # noqa: F401

            pipe.enable_xformers_memory_efficient_attention()
        except ImportError:
            if attention == "xformers":
                raise GenaugError(
                    "runtime.attention is xformers but xformers is not installed: "
                    "pip install 'genaug[xformers]' or set attention: sdpa"
                ) from None
    if runtime.get("channels_last"):
        for part in (pipe.unet, getattr(pipe, "vae", None)):  # an unconditional UNet folder has no VAE
            if part is not None:
                part.to(memory_format=torch.channels_last)
    if runtime.get("compile"):
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] floats in [0,1] -> [B,H,W,3] uint8, rounded as diffusers' numpy_to_pil does."""
    arr = images.float().permute(0, 2, 3, 1).mul(255).round().clamp(0, 255).to(torch.uint8)
    return arr.cpu().numpy()


def make_variants(arrays: np.ndarray, seeds: list[int]) -> list[Variant]:
    """PIL variants of uint8 outputs, each with its seed and an all-black flag."""
    out = []
    for arr, seed in zip(arrays, seeds, strict=True):
        out.append(Variant(Image.fromarray(arr), {"seed": int(seed), "black": bool(arr.max() <= BLACK_MAX)}))
    return out


#: keywords of the Stable Diffusion pipelines genaug loads without their NSFW classifier (it would black out variants)
NO_SAFETY_CHECKER = {"safety_checker": None, "requires_safety_checker": False}


class DiffusionGenerator(Generator):
    """A diffusers pipeline as a row-batching Generator: encode() once per image, sample() per batch of rows.

    The recipe's `dtype` and `sampling` block are read once here; `load_pipe` loads and configures the pipeline,
    `variants` turns a pipeline's [B,3,H,W] output into the rows' variants."""

    def __init__(self, recipe: dict, device: str = "cpu", weights: str | None = None) -> None:
        super().__init__(recipe, device, weights)
        self.dtype = torch_dtype(recipe.get("dtype", "fp32"))
        self.sampling: dict = recipe.get("sampling") or {}

    def load_pipe(self, cls: Any, **kwargs: Any) -> Any:
        """Load pipeline class `cls` (load_pipeline) and set it up for this device (configure_pipeline)."""
        self.pipe = configure_pipeline(
            load_pipeline(cls, self.recipe, self.weights, self.dtype, **kwargs), self.recipe, self.device
        )
        return self.pipe

    @staticmethod
    def variants(images: torch.Tensor, seeds: list[int]) -> list[Variant]:
        """The variants of a pipeline output [B,3,H,W] in [0,1], one per seed (make_variants of to_uint8)."""
        return make_variants(to_uint8(images), seeds)

    def close(self) -> None:
        """Drop the pipeline and free cached GPU memory."""
        self.pipe = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
