"""The generator interface shared by sd, sd-unclip, tiny and icgan, and the per-(key, k) seed rule."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from PIL import Image

from genaug.core.errors import GenaugError

_REGISTRY: dict[str, type[Generator]] = {}


def variant_seed(recipe_seed: int, key: str, k: int) -> int:
    """Seed of variant k of sample `key`: a function of (recipe seed, key, k) alone, in [0, 2**63)."""
    digest = hashlib.sha256(f"{int(recipe_seed)}/{key}/{int(k)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class Variant:
    """One generated image and what it took to make it (seed, flags such as all-black)."""

    image: Image.Image
    meta: dict = field(default_factory=dict)


class Generator(ABC):
    """A model family as the runner sees it: encode each source image once, then sample one variant per row.

    The runner fills fixed-size batches of (image, k) rows across the images of a shard, so a generator never sees
    how many variants an image gets, and a variant depends only on its conditioning and its seed.
    """

    #: the `generator:` value of the recipes this class serves
    kind: str = ""
    #: the feature space of encode(), in which fidelity is scored ("clip-image", "swav"; "" = no fidelity scores)
    feature_space: str = ""

    def __init__(self, recipe: dict, device: str = "cpu", weights: str | None = None) -> None:
        self.recipe = recipe
        self.device = device
        self.weights = weights

    @abstractmethod
    def encode(self, images: list[Image.Image]) -> list[Any]:
        """Conditioning of each source image (e.g. its CLIP embedding), computed once per image."""

    @abstractmethod
    def sample(self, conds: list[Any], seeds: list[int]) -> list[Variant]:
        """One variant per row (conditioning from encode(), seed), in order."""

    def embed(self, images: list[Image.Image]) -> Any:
        """Feature rows [N, D] (float32 torch tensor) of images in the fidelity space: encode(), flattened."""
        import torch

        return torch.stack([self.cond_embedding(c) for c in self.encode(images)])

    def cond_embedding(self, cond: Any) -> Any:
        """The feature row [D] of one source image from its encode() conditioning (for fidelity scores)."""
        import torch

        return torch.as_tensor(cond).detach().float().flatten().cpu()

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the model (GPU memory)."""

    def generate(self, images: list[Image.Image], keys: list[str], seeds: list[list[int]]) -> list[list[Variant]]:
        """For each image, len(seeds[i]) variants made with those seeds (rows batched by runtime.batch_size)."""
        conds = self.encode(images) if images else []
        rows = [(i, s) for i, ss in enumerate(seeds) for s in ss]
        bs = int((self.recipe.get("runtime") or {}).get("batch_size") or max(1, len(rows)))
        made: list[Variant] = []
        for j in range(0, len(rows), bs):
            chunk = rows[j : j + bs]
            made += self.sample([conds[i] for i, _ in chunk], [s for _, s in chunk])
        out: list[list[Variant]] = [[] for _ in images]
        for (i, _), v in zip(rows, made, strict=True):
            out[i].append(v)
        return out


def register_generator(kind: str) -> Callable[[type[Generator]], type[Generator]]:
    """Class decorator: make a Generator subclass available under `kind` (the recipe's `generator:` value)."""

    def deco(cls: type[Generator]) -> type[Generator]:
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return deco


def generator_class(kind: str) -> type[Generator]:
    """The Generator subclass of `kind`: registered in this process or declared in entry points `genaug.generators`."""
    if kind not in _REGISTRY:
        for ep in entry_points(group="genaug.generators", name=kind):
            _REGISTRY.setdefault(kind, ep.load())  # loading the module registers the class; a bare class works too
            _REGISTRY[kind].kind = kind
    if kind not in _REGISTRY:
        known = sorted({*_REGISTRY, *(ep.name for ep in entry_points(group="genaug.generators"))})
        raise GenaugError(f"recipe names generator {kind!r}, which genaug does not know ({', '.join(known)})")
    return _REGISTRY[kind]
