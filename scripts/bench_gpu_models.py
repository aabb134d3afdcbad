"""Random-weight diffusers pipelines for scripts/bench_gpu.py: real-size (published configs) and tiny (smoke).

Real size means the component shapes of the published checkpoints, written out here from their configs (nothing is
downloaded; every weight is random):
- `sd`: lambdalabs/sd-image-variations-diffusers v2.0 (StableDiffusionImageVariationPipeline): the SD 1.x
  UNet2DConditionModel (860M, block channels 320/640/1280/1280, 8 heads, cross-attention dim 768), the SD VAE, and
  the CLIP ViT-L/14 vision tower with a 768-d projection (CLIPVisionModelWithProjection).
- `sd-unclip`: stabilityai/stable-diffusion-2-1-unclip-small (StableUnCLIPImg2ImgPipeline): the SD 2.1 UNet (head
  dims 5/10/20/20, linear projections, cross-attention dim 1024, sample size 96) with the unCLIP class-embedding
  projection of 2 x 768 (image embedding + noise-level embedding), the SD VAE, CLIP ViT-L/14 vision (768-d), the
  OpenCLIP ViT-H text tower (1024 wide, 23 layers), the image normaliser and the two schedulers.
The tokenizer is a small local byte-level BPE over a-z (genaug encodes only the empty prompt, once per run).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch

from genaug.testing.tiny import TINY_DEFAULTS, build_tiny_unclip, build_tiny_variation, save_once

SD1_UNET: dict[str, Any] = {  # diffusers UNet2DConditionModel defaults are the SD 1.x layout
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
}
SD21_UNCLIP_UNET: dict[str, Any] = {
    "sample_size": 96,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "class_embed_type": "projection",
    "projection_class_embeddings_input_dim": 1536,
}
SD_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
}
CLIP_VIT_L14: dict[str, Any] = {  # openai/clip-vit-large-patch14 vision tower
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
OPENCLIP_H_TEXT: dict[str, Any] = {  # SD 2.x text encoder (OpenCLIP ViT-H/14 text tower, penultimate layer)
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
    "hidden_act": "gelu",
    "vocab_size": 49408,
    "max_position_embeddings": 77,
}


def write_tokenizer(folder: Path, max_length: int = 77) -> Path:
    """A byte-level BPE CLIP tokenizer over a-z (vocab.json, merges.txt, tokenizer_config.json), no download."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + "!":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_length}))
    return folder


def _tokenizer(folder: Path, max_length: int) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_tokenizer(folder, max_length)), local_files_only=True)


def build_real_variation() -> Any:
    """StableDiffusionImageVariationPipeline with SD 1.x / CLIP ViT-L/14 shapes and random weights."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionImageVariationPipeline, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    return StableDiffusionImageVariationPipeline(
        vae=AutoencoderKL(**SD_VAE, sample_size=512),
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VIT_L14)),
        unet=UNet2DConditionModel(**SD1_UNET),
        scheduler=PNDMScheduler(skip_prk_steps=True),
        feature_extractor=CLIPImageProcessor(),
        safety_checker=None,
        requires_safety_checker=False,
    )


def build_real_unclip(tokenizer_dir: Path) -> Any:
    """StableUnCLIPImg2ImgPipeline with SD 2.1 unclip-small shapes and random weights."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableUnCLIPImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    tok = _tokenizer(tokenizer_dir, OPENCLIP_H_TEXT["max_position_embeddings"])
    torch.manual_seed(0)
    text = CLIPTextConfig(
        **OPENCLIP_H_TEXT, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    return StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(),
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VIT_L14)),
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=768),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tok,
        text_encoder=CLIPTextModel(text),
        unet=UNet2DConditionModel(**SD21_UNCLIP_UNET),
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            set_alpha_to_one=False,
            steps_offset=1,
            clip_sample=False,
        ),
        vae=AutoencoderKL(**SD_VAE, sample_size=768),
    )


def pipeline_dir(model: str, smoke: bool, cache: Path, dtype: torch.dtype = torch.float16) -> Path:
    """The --weights folder of `model` (sd or sd-unclip), real-size or tiny, saved with save_pretrained once."""
    size = "tiny" if smoke else "real"
    folder = Path(cache) / f"bench-gpu-{model}-{size}"
    if model == "sd":
        if smoke:
            return save_once(lambda: build_tiny_variation(TINY_DEFAULTS), folder)
        return save_once(lambda: build_real_variation().to(dtype), folder)
    if model == "sd-unclip":
        if smoke:
            tok = _tokenizer(Path(cache) / "bench-gpu-tokenizer-16", 16)
            return save_once(lambda: build_tiny_unclip(TINY_DEFAULTS, tok), folder)
        return save_once(lambda: build_real_unclip(Path(cache) / "bench-gpu-tokenizer-77").to(dtype), folder)
    raise ValueError(f"unknown diffusion model {model!r}")


def unet_flops_per_image(weights: Path, resolution: int) -> int:
    """FLOPs of one UNet forward for one latent at `resolution` px, counted on the meta device (no memory, no GPU)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    cfg = UNet2DConditionModel.load_config(str(weights / "unet"))
    vae_cfg = AutoencoderKL.load_config(str(weights / "vae"))
    factor = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    seq = 1  # image variation: one CLIP image embedding token
    text_cfg = weights / "text_encoder" / "config.json"
    if text_cfg.is_file():  # unCLIP: the (empty) prompt's token embeddings
        seq = int(json.loads(text_cfg.read_text())["max_position_embeddings"])
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg).eval()
        lat = resolution // factor
        x = torch.zeros(1, int(cfg["in_channels"]), lat, lat)
        ctx = torch.zeros(1, seq, int(cfg["cross_attention_dim"]))
        extra = {}
        if cfg.get("class_embed_type") == "projection":
            extra["class_labels"] = torch.zeros(1, int(cfg["projection_class_embeddings_input_dim"]))
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            unet(x, torch.tensor([10]), encoder_hidden_states=ctx, **extra)
    return int(fc.get_total_flops())


def native_resolution(weights: Path) -> int:
    """The pipeline's native image size: UNet sample_size x the VAE's downsampling factor."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cfg = UNet2DConditionModel.load_config(str(weights / "unet"))
    vae_cfg = AutoencoderKL.load_config(str(weights / "vae"))
    return int(cfg["sample_size"]) * 2 ** (len(vae_cfg["block_out_channels"]) - 1)
