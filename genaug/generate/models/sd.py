"""Stable Diffusion image variations (lambdalabs/sd-image-variations-diffusers) as a row-batching Generator."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genaug.generate.base import Variant, register_generator
from genaug.generate.models.diffusion import NO_SAFETY_CHECKER, DiffusionGenerator, cpu_generators


def model_card_preprocess(images: list[Image.Image], pre: dict, device: str | torch.device = "cpu") -> torch.Tensor:
    """The model card's CLIP input: ToTensor, Resize(size, bicubic, antialias=False), Normalize(CLIP mean/std)."""
    size = int(pre.get("size", 224))
    mean = torch.tensor(pre["mean"], device=device).view(3, 1, 1)
    std = torch.tensor(pre["std"], device=device).view(3, 1, 1)
    out = []
    for img in images:
        t = torch.from_numpy(np.array(img.convert("RGB"))).to(device).permute(2, 0, 1).float().div(255)
        t = F.interpolate(t[None], size=(size, size), mode="bicubic", align_corners=False, antialias=False)[0]
        out.append((t - mean) / std)
    return torch.stack(out)


def _embeddings_passthrough(image: torch.Tensor, device: Any, num_images_per_prompt: int, cfg: bool) -> torch.Tensor:
    """Stand-in for the pipeline's _encode_image: `image` already holds CLIP embeddings [B, 1, D]."""
    emb = image.to(device)
    if num_images_per_prompt != 1:
        emb = emb.repeat_interleave(num_images_per_prompt, dim=0)
    return torch.cat([torch.zeros_like(emb), emb]) if cfg else emb


@register_generator("sd-variation")
class SDVariationGenerator(DiffusionGenerator):
    """StableDiffusionImageVariationPipeline: CLIP image embedding once per image, K seeded variants per call."""

    feature_space = "clip-image"  # fidelity is scored in the space of encode()

    def __init__(self, recipe: dict, device: str = "cpu", weights: str | None = None) -> None:
        super().__init__(recipe, device, weights)
        from diffusers import StableDiffusionImageVariationPipeline

        self.load_pipe(StableDiffusionImageVariationPipeline, **NO_SAFETY_CHECKER)
        # The pipeline encodes its `image` argument on every call; genaug passes embeddings made once per image.
        self.pipe._encode_image = _embeddings_passthrough

    @torch.no_grad()
    def encode(self, images: list[Image.Image]) -> list[torch.Tensor]:
        """CLIP image embedding [1, D] of each image (model-card preprocessing)."""
        pixels = model_card_preprocess(images, self.recipe.get("preprocess") or {}, self.device)
        enc = self.pipe.image_encoder
        emb = enc(pixels.to(dtype=next(enc.parameters()).dtype)).image_embeds.unsqueeze(1)
        return list(emb)

    @torch.no_grad()
    def sample(self, conds: list[torch.Tensor], seeds: list[int]) -> list[Variant]:
        """One pipeline call over the rows: per-row embedding and per-row seeded generator."""
        res = int(self.sampling.get("resolution", 512))
        out = self.pipe(
            torch.stack(conds),
            height=res,
            width=res,
            num_inference_steps=int(self.sampling["steps"]),
            guidance_scale=float(self.sampling["guidance"]),
            eta=float(self.sampling.get("eta", 0.0)),
            generator=cpu_generators(seeds),
            output_type="pt",
        ).images
        return self.variants(out, seeds)
