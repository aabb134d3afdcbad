"""img2img / SDEdit variants: noise the source part-way (the recipe's strength), then denoise it back.

Two model kinds, chosen by the recipe's `model.kind`:

- `stable-diffusion`: a Stable Diffusion checkpoint through diffusers' StableDiffusionImg2ImgPipeline. Each source
  is VAE-encoded once (the posterior mean, scaled) and the pipeline is handed those latents (it takes a 4-channel
  `image` as latents), so K variants cost one encode; the prompt is encoded once per run.
- `unet`: an unconditional diffusers UNet2DModel + scheduler folder (what `genaug fit-generator` saves, in the
  DDPMPipeline layout). diffusers' DDPMPipeline / DDIMPipeline always start from pure noise and take no init image,
  so the SDEdit loop is written here over diffusers' own pieces: the scheduler's set_timesteps, add_noise at the
  first kept timestep (the img2img pipelines' get_timesteps rule), scale_model_input and step.

Every random draw of a row comes from its own CPU torch.Generator seeded by (recipe seed, key, k), so a variant is
the same at any batch size and in any process. Fidelity is scored in the `pixel-corr` space: the Pearson correlation
of the source's and the variant's grey 32 x 32 thumbnails (no model forward; meaningful for both kinds).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from PIL import Image

from genaug.core.errors import GenaugError
from genaug.generate.base import Variant, register_generator
from genaug.generate.models.diffusion import NO_SAFETY_CHECKER, DiffusionGenerator, cpu_generators

FEATURE_SIZE = 32  # side of the grey thumbnail of the pixel-corr fidelity space
KINDS = ("stable-diffusion", "unet")


def pixel_features(images: list[Image.Image], size: int = FEATURE_SIZE) -> torch.Tensor:
    """Rows [N, size*size]: grey thumbnails minus their mean, so that cosine = Pearson correlation of pixels."""
    rows = []
    for img in images:
        a = np.asarray(img.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32).reshape(-1) / 255.0
        rows.append(torch.from_numpy(a - a.mean()))
    return torch.stack(rows)


def kept_timesteps(scheduler: Any, steps: int, strength: float) -> torch.Tensor:
    """The timesteps an img2img run of `strength` walks: the last round(steps * strength) of set_timesteps(steps)."""
    scheduler.set_timesteps(steps)
    init = min(int(steps * strength), steps)
    start = max(steps - init, 0)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)
    return scheduler.timesteps[start * scheduler.order :]


def _step_kwargs(scheduler: Any, generators: list[torch.Generator], eta: float) -> dict:
    """eta and the per-row generators where the scheduler's step() takes them (as diffusers' pipelines do)."""
    params = set(inspect.signature(scheduler.step).parameters)
    out: dict[str, Any] = {}
    if "eta" in params:
        out["eta"] = eta
    if "generator" in params:
        out["generator"] = generators
    return out


def _row_noise(shape: tuple[int, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """One N(0, 1) draw of `shape` per row from the row's own generator (independent of the batch)."""
    return torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])


@register_generator("img2img")
class Img2ImgGenerator(DiffusionGenerator):
    """SDEdit variants from a Stable Diffusion checkpoint or an unconditional UNet2DModel folder."""

    feature_space = "pixel-corr"

    def __init__(self, recipe: dict, device: str = "cpu", weights: str | None = None) -> None:
        super().__init__(recipe, device, weights)
        self.kind_of_model = (recipe.get("model") or {}).get("kind")
        if self.kind_of_model not in KINDS:
            raise GenaugError(f"img2img recipe `model.kind` must be one of {', '.join(KINDS)}, got "
                              f"{self.kind_of_model!r}")  # fmt: skip
        self.strength = float(self.sampling.get("strength", 0.5))
        if not 0.0 < self.strength <= 1.0:
            raise GenaugError(f"img2img `sampling.strength` must be in (0, 1], got {self.strength}")
        if self.kind_of_model == "unet":
            self._load_unet(recipe, weights)
        else:
            self._load_sd()

    # --- loading -------------------------------------------------------------------------------------------------
    def _load_unet(self, recipe: dict, weights: str | None) -> None:
        from diffusers import DDPMPipeline

        if not weights and not (recipe.get("model") or {}).get("id"):
            raise GenaugError(
                f"recipe {recipe.get('name')!r} needs --weights DIR: a UNet2DModel + scheduler folder, e.g. made by "
                "`genaug fit-generator --shards SET --out DIR` (it writes DIR/model)"
            )
        self.load_pipe(DDPMPipeline)
        cfg = self.pipe.unet.config
        self.res = int(cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0])
        self.channels = int(cfg.in_channels)
        if self.channels not in (1, 3):
            raise GenaugError(f"--weights {weights}: the UNet has {self.channels} input channels; img2img needs 1 or 3")

    def _load_sd(self) -> None:
        from diffusers import StableDiffusionImg2ImgPipeline

        self.load_pipe(StableDiffusionImg2ImgPipeline, **NO_SAFETY_CHECKER)
        self.res = int(self.sampling.get("resolution", 512))
        self.guidance = float(self.sampling.get("guidance", 7.5))
        with torch.no_grad():  # the prompt (and the empty negative prompt) encoded once per run
            self.prompt, self.negative = self.pipe.encode_prompt(
                str(self.sampling.get("prompt") or ""), self.device, 1, self.guidance > 1.0,
                str(self.sampling.get("negative_prompt") or ""),
            )  # fmt: skip

    # --- the Generator contract ----------------------------------------------------------------------------------
    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        """pixel-corr features of images (grey thumbnails minus their mean)."""
        return pixel_features(images)

    def cond_embedding(self, cond: dict) -> torch.Tensor:
        """The source's pixel-corr feature, kept in its encode() conditioning."""
        return cond["feat"]

    @torch.no_grad()
    def encode(self, images: list[Image.Image]) -> list[dict]:
        """Per image: the model-space start point (pixels in [-1, 1], or scaled VAE latents), its size and feature."""
        feats = pixel_features(images)
        if self.kind_of_model == "unet":
            mode = "L" if self.channels == 1 else "RGB"
            x0 = [self._to_unit(im.convert(mode).resize((self.res, self.res), Image.BOX)) for im in images]
        else:
            pixels = torch.stack([self._to_unit(im.convert("RGB").resize((self.res, self.res), Image.BICUBIC))
                                  for im in images])  # fmt: skip
            vae = self.pipe.vae
            dist = vae.encode(pixels.to(self.device, dtype=next(vae.parameters()).dtype)).latent_dist
            x0 = list((dist.mean * vae.config.scaling_factor).float().cpu())
        return [{"x0": x, "feat": f, "size": im.size} for x, f, im in zip(x0, feats, images, strict=True)]

    @staticmethod
    def _to_unit(img: Image.Image) -> torch.Tensor:
        a = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
        return a[None] if a.ndim == 2 else a.permute(2, 0, 1)

    @torch.no_grad()
    def sample(self, conds: list[dict], seeds: list[int]) -> list[Variant]:
        """One batched SDEdit run over the rows, each row with its own seeded generator."""
        gens = cpu_generators(seeds)
        if self.kind_of_model == "unet":
            out = self._sdedit_unet(torch.stack([c["x0"] for c in conds]), gens)
        else:
            out = self._sdedit_sd(torch.stack([c["x0"] for c in conds]), gens)
        variants = self.variants(out, seeds)
        for v, c in zip(variants, conds, strict=True):
            img = v.image.convert("RGB")
            v.image = img if img.size == tuple(c["size"]) else img.resize(tuple(c["size"]), Image.BICUBIC)
        return variants

    def _sdedit_unet(self, x0: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        sched, unet = self.pipe.scheduler, self.pipe.unet
        timesteps = kept_timesteps(sched, int(self.sampling["steps"]), self.strength)
        if len(timesteps) == 0:
            raise GenaugError(f"img2img: strength {self.strength} x {self.sampling['steps']} steps keeps no step")
        # the state stays in float32 whatever the UNet's dtype (the scheduler's arithmetic is not done in half)
        x0 = x0.to(self.device, torch.float32)
        noise = _row_noise(tuple(x0.shape[1:]), gens).to(self.device)
        x = sched.add_noise(x0, noise, timesteps[:1].repeat(x0.shape[0]))
        kw = _step_kwargs(sched, gens, float(self.sampling.get("eta", 0.0)))
        udtype = next(unet.parameters()).dtype
        for t in timesteps:
            inp = sched.scale_model_input(x, t).to(udtype)
            eps = unet(inp, t).sample.float()
            x = sched.step(eps, t, x, **kw).prev_sample
        x = (x / 2 + 0.5).clamp(0, 1).cpu()
        return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x

    def _sdedit_sd(self, latents: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        n = latents.shape[0]
        neg = None if self.negative is None else self.negative.expand(n, -1, -1)
        lat = latents.to(self.device, dtype=next(self.pipe.unet.parameters()).dtype)
        return self.pipe(
            prompt_embeds=self.prompt.expand(n, -1, -1),
            negative_prompt_embeds=neg,
            image=lat,
            strength=self.strength,
            num_inference_steps=int(self.sampling["steps"]),
            guidance_scale=self.guidance,
            eta=float(self.sampling.get("eta", 0.0)),
            generator=gens,
            output_type="pt",
        ).images
