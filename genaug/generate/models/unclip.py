"""Stable unCLIP image variations (stabilityai/stable-diffusion-2-1-unclip-small) as a row-batching Generator."""

from __future__ import annotations

import torch
from PIL import Image

from genaug.generate.base import Variant, register_generator
from genaug.generate.models.diffusion import DiffusionGenerator, cpu_generators


@register_generator("sd-unclip")
class UnCLIPGenerator(DiffusionGenerator):
    """StableUnCLIPImg2ImgPipeline fed with image embeddings made once per image and an empty prompt made once."""

    feature_space = "clip-image"  # fidelity is scored in the space of encode()

    def __init__(self, recipe: dict, device: str = "cpu", weights: str | None = None) -> None:
        super().__init__(recipe, device, weights)
        from diffusers import StableUnCLIPImg2ImgPipeline

        self.load_pipe(StableUnCLIPImg2ImgPipeline)
        with torch.no_grad():
            # The paper code passes no prompt: the pipeline then encodes "" (and "" again as the negative prompt).
            self.empty, _ = self.pipe.encode_prompt("", self.device, 1, False)

    @torch.no_grad()
    def encode(self, images: list[Image.Image]) -> list[torch.Tensor]:
        """CLIP image embedding [D] of each image, preprocessed by the pipeline's own feature extractor."""
        pixels = self.pipe.feature_extractor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        enc = self.pipe.image_encoder
        pixels = pixels.pixel_values.to(device=self.device, dtype=next(enc.parameters()).dtype)
        return list(enc(pixels).image_embeds)

    @torch.no_grad()
    def sample(self, conds: list[torch.Tensor], seeds: list[int]) -> list[Variant]:
        """One pipeline call over the rows; the embedding noise and the latents both come from the row's generator."""
        res = self.sampling.get("resolution")
        prompt = self.empty.expand(len(conds), -1, -1)
        out = self.pipe(
            image_embeds=torch.stack(conds),
            prompt_embeds=prompt,
            negative_prompt_embeds=prompt,
            height=res,
            width=res,
            num_inference_steps=int(self.sampling["steps"]),
            guidance_scale=float(self.sampling["guidance"]),
            noise_level=int(self.sampling.get("noise_level", 0)),
            eta=float(self.sampling.get("eta", 0.0)),
            generator=cpu_generators(seeds),
            output_type="pt",
        ).images
        return self.variants(out, seeds)
