"""The generator interface shared by sd, sd-unclip, tiny and icgan, and the per-(key, k) seed rule."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from genaug.errors import GenaugError

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
    """Batch of source images + keys -> K variants per key; one subclass per model family."""

    #: the `generator:` value of the recipes this class serves
    kind: str = ""

    def __init__(self, recipe: dict, device: str = "cpu", weights: str | None = None) -> None:
        self.recipe = recipe
        self.device = device
        self.weights = weights

    @abstractmethod
    def generate(self, images: list[Image.Image], keys: list[str], seeds: list[list[int]]) -> list[list[Variant]]:
        """Return, for each source image, len(seeds[i]) variants made with those seeds (same order)."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the model (GPU memory)."""

    # Optional row-batching protocol: a generator that sets `row_batching = True` implements encode() and sample();
    # the runner then encodes each source image once and fills fixed-size batches of (image, k) rows across the
    # images of a shard. Generators that leave it False get generate() calls with a few whole images each.
    row_batching: bool = False

    def encode(self, images: list[Image.Image]) -> list[Any]:
        """Conditioning of each source image (e.g. its CLIP embedding), computed once per image."""
        raise NotImplementedError(f"{type(self).__name__} does not implement row batching")

    def sample(self, conds: list[Any], seeds: list[int]) -> list[Variant]:
        """One variant per row (conditioning from encode(), seed), in order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement row batching")


def register_generator(kind: str) -> Callable[[type[Generator]], type[Generator]]:
    """Class decorator: make a Generator subclass available under `kind` (the recipe's `generator:` value)."""

    def deco(cls: type[Generator]) -> type[Generator]:
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return deco


def generator_class(kind: str) -> type[Generator]:
    """The Generator subclass registered under `kind`."""
    if kind not in _REGISTRY:
        raise GenaugError(
            f"recipe names generator {kind!r}, which genaug does not know ({', '.join(sorted(_REGISTRY))})"
        )
    return _REGISTRY[kind]
