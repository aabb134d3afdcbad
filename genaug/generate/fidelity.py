"""Fidelity of generated variants: cosine similarity to the source in a feature space, diversity, degenerate flags.

- score of variant k: cos(f(source), f(variant k)), f the feature space (the generator's own encode(): CLIP image
  embedding for sd / sd-unclip / tiny, SwAV for IC-GAN), computed on the variant as written (decoded JPEG).
- diversity of a source: the mean pairwise cosine of its K variants (1 = all alike; None when K < 2).
- blank: the variant's 64 x 64 grey thumbnail has a pixel std below `blank_std` (a flat image of any colour).
- near_copy: the mean absolute difference of the source's and the variant's thumbnails is below `near_copy_mad`
  (levels of 255): the generator returned (almost) its input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from genaug.core.config import Number, setting
from genaug.generate.recipe import Open

THUMB = 64
DEFAULTS = {"blank_std": 2.0, "near_copy_mad": 4.0, "thumb": THUMB}


class FidelitySettings(Open):
    """The fidelity settings a column's manifest records (`fidelity:`); also holds its `summary` once complete."""

    space: str = setting(..., "The feature space scores are cosines in (clip-image, swav, ...).")
    encoder: str = setting(..., "Who embedded: the generator itself, or a --scorer.")
    blank_std: Number = setting(DEFAULTS["blank_std"], "A variant whose grey thumbnail's std is below this is blank.")
    near_copy_mad: Number = setting(DEFAULTS["near_copy_mad"], "Below this mean |source - variant| it is a copy.")
    thumb: int = setting(THUMB, "Thumbnail size of the pixel flags.", ge=1)
    random_weights: bool = setting(False, "The encoder has random weights: its scores measure nothing.")
DIGITS = 6  # scores are stored rounded to 6 decimals (float kernels differ across batch sizes at about 1e-6)


def settings(space: str, encoder: str, **overrides: Any) -> dict:
    """The fidelity settings recorded in a column's (or score column's) manifest."""
    return {"space": space, "encoder": encoder, **DEFAULTS, **overrides}


def random_weight_mark(recipe: dict) -> dict:
    """{"random_weights": True} when the recipe's model is one genaug builds with random weights (a model source of
    genaug.testing, such as `tiny`): its encoder's scores measure nothing and are marked so; else {}."""
    from importlib.metadata import entry_points

    mid = str((recipe.get("model") or {}).get("id"))
    for ep in entry_points(group="genaug.model_sources", name=mid):
        if ep.value.startswith("genaug.testing."):
            return {"random_weights": True}
    return {}


def thumbnail(image: Image.Image, size: int = THUMB) -> np.ndarray:
    """Grey size x size thumbnail as float32 levels 0..255 (bilinear), for the pixel-level flags."""
    return np.asarray(image.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32)


def pixel_flags(source: np.ndarray, variant: np.ndarray, cfg: FidelitySettings | dict) -> tuple[bool, bool]:
    """(blank, near_copy) of a variant from the source's and its thumbnails."""
    c = cfg if isinstance(cfg, FidelitySettings) else FidelitySettings.parse(cfg, "fidelity")
    return float(variant.std()) < c.blank_std, float(np.abs(source - variant).mean()) < c.near_copy_mad


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().float().cpu()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def cosines(source: torch.Tensor, variants: torch.Tensor) -> list[float]:
    """cos(source [D], variants [K, D]) per variant."""
    return (_unit(variants) @ _unit(source.flatten())).tolist()


def diversity(variants: torch.Tensor) -> float | None:
    """Mean pairwise cosine of K variant features [K, D] (None for K < 2)."""
    k = variants.shape[0]
    if k < 2:
        return None
    u = _unit(variants.reshape(k, -1))
    sim = u @ u.T
    return float((sim.sum() - sim.diagonal().sum()) / (k * (k - 1)))


def fidelity_doc(space: str, source: torch.Tensor, variants: torch.Tensor, flags: list[tuple[bool, bool]]) -> dict:
    """The per-sample fidelity doc (stored in the sample's json): scores, diversity, blank and near-copy variants."""
    div = diversity(variants)
    return {
        "space": space,
        "scores": [round(float(s), DIGITS) for s in cosines(source, variants)],
        "diversity": None if div is None else round(div, DIGITS),
        "blank": [k for k, (b, _) in enumerate(flags) if b],
        "near_copy": [k for k, (_, n) in enumerate(flags) if n],
    }


class Scorer:
    """Scores sources and their variants with one embedding function, batching the encoder's forwards."""

    def __init__(self, embed: Callable[[list[Image.Image]], torch.Tensor], cfg: dict, batch_size: int = 16) -> None:
        self.embed, self.cfg, self.batch_size = embed, cfg, max(1, int(batch_size))

    def features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Feature rows [N, D] of images, in batches of batch_size."""
        parts = [self.embed(list(images[i : i + self.batch_size])) for i in range(0, len(images), self.batch_size)]
        return torch.cat([p.detach().float().cpu().reshape(p.shape[0], -1) for p in parts])

    def score(self, sources: list[Image.Image], variants: list[list[Image.Image]]) -> list[dict]:
        """One fidelity doc per source image, from its variants (decoded as stored)."""
        if not sources:
            return []
        src = self.features(sources)
        flat = [v for vs in variants for v in vs]
        var = self.features(flat) if flat else torch.zeros(0, src.shape[1])
        docs, j = [], 0
        cfg = FidelitySettings.parse(self.cfg, "fidelity")
        for i, vs in enumerate(variants):
            st = thumbnail(sources[i], cfg.thumb)
            flags = [pixel_flags(st, thumbnail(v, cfg.thumb), cfg) for v in vs]
            docs.append(fidelity_doc(cfg.space, src[i], var[j : j + len(vs)], flags))
            j += len(vs)
        return docs
