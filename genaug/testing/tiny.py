"""Tiny random-weight pipelines in the real diffusers folder format, for smoke runs, tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from genaug.core.files import cache_home
from genaug.core.hashing import stable_hash

TINY_DEFAULTS = {
    "seed": 0,
    "image_size": 32,  # CLIP vision input (the recipe's preprocess.size must match)
    "patch_size": 8,
    "embed_dim": 32,  # CLIP hidden size = projection dim = UNet cross-attention dim
    "clip_layers": 2,
    "unet_channels": [32, 64],
    "unet_layers_per_block": 1,
    "vae_channels": [32, 64],
    "norm_groups": 32,
}


def tiny_unet(spec: dict, **extra):
    """The tiny random UNet of a `tiny` spec; `extra` adds settings (e.g. unCLIP's class embedding)."""
    from diffusers import UNet2DConditionModel

    d = int(spec["embed_dim"])
    return UNet2DConditionModel(
        sample_size=int(spec["image_size"]) // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(spec["unet_channels"]),
        layers_per_block=int(spec["unet_layers_per_block"]),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=d,
        attention_head_dim=8,
        norm_num_groups=int(spec["norm_groups"]),
        **extra,
    )


def tiny_spec(recipe: dict) -> dict:
    """The tiny model's sizes: TINY_DEFAULTS updated by the recipe's `tiny:` section."""
    return {**TINY_DEFAULTS, **(recipe.get("tiny") or {})}


def _components(spec: dict) -> dict[str, Any]:
    from diffusers import AutoencoderKL, PNDMScheduler
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(int(spec["seed"]))
    unet = tiny_unet(spec)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(spec["vae_channels"]),
        down_block_types=("DownEncoderBlock2D",) * len(spec["vae_channels"]),
        up_block_types=("UpDecoderBlock2D",) * len(spec["vae_channels"]),
        latent_channels=4,
        norm_num_groups=int(spec["norm_groups"]),
    )
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(**clip_widths(spec), image_size=int(spec["image_size"]), patch_size=int(spec["patch_size"]))
    )
    size = int(spec["image_size"])
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "image_encoder": image_encoder.eval(),
        "feature_extractor": CLIPImageProcessor(crop_size=size, size=size),
        "scheduler": PNDMScheduler(skip_prk_steps=True),
    }


def clip_widths(spec: dict) -> dict:
    """The sizes the tiny CLIP image and text encoders share: width embed_dim, 4 heads, clip_layers layers."""
    d = int(spec["embed_dim"])
    return {
        "hidden_size": d,
        "projection_dim": d,
        "intermediate_size": 2 * d,
        "num_attention_heads": 4,
        "num_hidden_layers": int(spec["clip_layers"]),
    }


def build_tiny_variation(spec: dict) -> Any:
    """A StableDiffusionImageVariationPipeline with tiny random components (safety checker off)."""
    from diffusers import StableDiffusionImageVariationPipeline

    return StableDiffusionImageVariationPipeline(
        **_components(spec), safety_checker=None, requires_safety_checker=False
    )


def build_tiny_unclip(spec: dict, tokenizer: Any) -> Any:
    """A StableUnCLIPImg2ImgPipeline with tiny random components and the given CLIPTokenizer."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPTextConfig, CLIPTextModel

    parts = _components(spec)
    d = int(spec["embed_dim"])
    torch.manual_seed(int(spec["seed"]) + 1)
    parts["unet"] = tiny_unet(
        spec, class_embed_type="projection", projection_class_embeddings_input_dim=2 * d, use_linear_projection=True
    ).eval()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            **clip_widths(spec),
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            max_position_embeddings=tokenizer.model_max_length,
        )
    ).eval()
    parts.pop("scheduler")
    return StableUnCLIPImg2ImgPipeline(
        **parts,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=d).eval(),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            set_alpha_to_one=False,
            steps_offset=1,
        ),
    )


def save_once(build: Any, folder: Path) -> Path:
    """save_pretrained(build()) into `folder` unless it exists; concurrent callers race safely (rename wins once)."""
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    build().save_pretrained(tmp, safe_serialization=True)
    try:
        os.rename(tmp, folder)
    except OSError:  # another process saved it first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tiny_variation_dir(recipe: dict) -> Path:
    """Folder holding the recipe's tiny image-variation pipeline, built and saved on first use."""
    spec = tiny_spec(recipe)
    from genaug.generate.recipe import Runtime, check_cache_folder

    cache = Runtime.parse(recipe.get("runtime"), "runtime").cache
    check_cache_folder(cache, str(recipe.get("name")))
    root = Path(cache or cache_home())
    return save_once(lambda: build_tiny_variation(spec), root / f"tiny-variation-{stable_hash(spec)[:12]}")
