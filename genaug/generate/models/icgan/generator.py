"""`generator: icgan`: K variants per image from IC-GAN, conditioned on the image's SwAV feature.

Variant k of a source image uses noise drawn from its own seed (the runner's variant_seed(recipe seed, key, k)):
a standard normal truncated to [-2t, 2t] (t = `sampling.truncation`, 0.7 by default, as the official colab's
`truncnorm.rvs(-2t, 2t)`), drawn by inverse CDF from a CPU generator so that it is the same on every machine.
With `sampling.oversample: m > 1`, variant k is the best of m candidates (candidate 0 uses the variant's seed,
candidate j a seed derived from it and j): the one whose feature is closest to the source's. This is the official
colab's ranking, done per variant so that variant k still depends on (seed, key, k) alone.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from PIL import Image

from genaug.core.devices import torch_dtype
from genaug.core.errors import GenaugError
from genaug.generate.base import Generator, Variant, register_generator
from genaug.generate.models.icgan.checkpoint import check_config, find_experiment_dir, load_generator_state, select_best
from genaug.generate.models.icgan.model import ICGANConfig, ICGANGenerator
from genaug.generate.models.icgan.swav import SwAVFeatures, find_swav, generated_to_features_input, preprocess


def truncated_noise(seed: int, dim: int, truncation: float) -> torch.Tensor:
    """[dim] float32 standard-normal noise truncated to [-2t, 2t], a function of (seed, dim, t) alone."""
    if not 0 < truncation:
        raise GenaugError(f"icgan truncation must be > 0, got {truncation}")
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.rand(dim, generator=gen, dtype=torch.float64)
    lo = 0.5 * math.erfc(2 * truncation / math.sqrt(2))  # Phi(-2t)
    z = torch.special.ndtri(lo + u * (1 - 2 * lo))
    return z.clamp(-2 * truncation, 2 * truncation).float()


def candidate_seed(seed: int, j: int) -> int:
    """Seed of oversampling candidate j of a variant whose seed is `seed` (candidate 0 is the seed itself)."""
    if j == 0:
        return int(seed)
    digest = hashlib.sha256(f"icgan-candidate/{int(seed)}/{int(j)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def resolve_dtype(name: str) -> torch.dtype:
    """torch dtype of the recipe's `dtype:` (fp32, fp16 or bf16)."""
    return torch_dtype(name, "icgan dtype")


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Generator output in [-1, 1] -> RGB PIL images at the model's resolution (the writer resizes to output.size)."""
    arr = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


@register_generator("icgan")
class ICGAN(Generator):
    """IC-GAN (BigGAN backbone) with its SwAV instance feature extractor, loaded from official checkpoints."""

    feature_space = "swav"  # fidelity is scored in the space of encode()

    def __init__(self, recipe: dict, device: str = "cpu", weights: str | None = None) -> None:
        super().__init__(recipe, device, weights)
        self.cfg = ICGANConfig.from_dict(dict(recipe.get("model") or {}))
        sampling, features = recipe.get("sampling") or {}, recipe.get("features") or {}
        self.truncation = float(sampling.get("truncation", 0.7))
        self.oversample = int(sampling.get("oversample", 1))
        self.feature_resize = int(features.get("resize") or self.cfg.resolution)
        self.batch_size = max(1, int((recipe.get("runtime") or {}).get("batch_size", 16)))
        self.dtype = resolve_dtype(str(recipe.get("dtype") or "fp32"))
        if self.oversample < 1:
            raise GenaugError(f"icgan sampling.oversample must be >= 1, got {self.oversample}")
        weights = weights or recipe.get("weights")
        if not weights:
            raise GenaugError(
                "--model icgan needs --weights DIR: a folder with the extracted IC-GAN checkpoint "
                "(G_ema_best*.pth, state_dict_best*.pth) and swav_800ep_pretrain.pth.tar"
            )
        wdir = Path(weights).expanduser()
        if not wdir.is_dir():
            raise GenaugError(f"--weights {wdir} is not a folder")
        exp_dir = find_experiment_dir(wdir, str((recipe.get("checkpoint") or {}).get("experiment_name", "")))
        best, state = select_best(exp_dir)
        check_config(state, self.cfg.to_dict(), exp_dir)
        self.checkpoint = str(exp_dir / f"G_ema_{best}.pth")
        gen = ICGANGenerator(self.cfg)
        gen.load_official(load_generator_state(exp_dir, best))
        self.G = gen.freeze().to(device=device, dtype=self.dtype)
        feats = SwAVFeatures(int(features.get("width_per_group", 64)))
        feats.load_swav(find_swav([exp_dir, wdir, wdir.parent]))
        self.F = feats.to(device=device, dtype=self.dtype)

    #: the runner may encode each source image once and batch (image, k) rows across images
    @torch.inference_mode()
    def encode(self, images: list[Image.Image]) -> list[torch.Tensor]:
        """Unit-norm SwAV feature ([2048], float32, on device) of each source image."""
        x = preprocess(images, self.feature_resize).to(self.device, self.dtype)
        feats = torch.cat([self.F(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)])
        return list(feats.float())

    @torch.inference_mode()
    def render(self, feats: torch.Tensor, seeds: list[int], chunk: int) -> torch.Tensor:
        """Images in [-1, 1] (float32, on device) for per-row instance features [N, 2048] and seeds."""
        z = torch.stack([truncated_noise(s, self.cfg.z_dim_used, self.truncation) for s in seeds])
        outs = []
        for i in range(0, len(seeds), chunk):
            zb = z[i : i + chunk].to(self.device, self.dtype)
            outs.append(self.G(zb, feats[i : i + chunk].to(self.device, self.dtype)).float())
        return torch.cat(outs)

    @torch.inference_mode()
    def sample(self, conds: list[torch.Tensor], seeds: list[int]) -> list[Variant]:
        """One variant per row (instance feature from encode(), variant seed): the best of `oversample`."""
        if not seeds:
            return []
        m = self.oversample
        feats = torch.stack(conds).to(self.device).repeat_interleave(m, dim=0)
        # forward batches as large as the call (the runner halves its batch size on OOM, which then shrinks them)
        chunk = len(seeds)
        imgs = self.render(feats, [candidate_seed(s, j) for s in seeds for j in range(m)], chunk)
        metas = [{"seed": int(s)} for s in seeds]
        picks = list(range(0, len(imgs), m))
        if m > 1:
            gen = torch.cat(
                [
                    self.F(generated_to_features_input(imgs[i : i + chunk]).to(self.dtype)).float()
                    for i in range(0, len(imgs), chunk)
                ]
            )
            dists = (gen - feats.float()).norm(dim=1).view(-1, m)
            best = dists.argmin(dim=1)
            picks = [r * m + int(j) for r, j in enumerate(best)]
            for r, j in enumerate(best.tolist()):
                metas[r].update(candidate=j, feature_distance=round(float(dists[r, j]), 6))
        return [Variant(image=im, meta=meta) for im, meta in zip(to_pil(imgs[picks]), metas, strict=True)]

    def close(self) -> None:
        """Drop the models (frees GPU memory)."""
        self.G = None
        self.F = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
