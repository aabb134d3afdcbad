"""The evaluation image pipeline: a split's labelled images in shard order, resized, centre-cropped, normalised."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from genaug.data.decode import CorruptImage
from genaug.data.prefetch import shard_bytes
from genaug.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_view, parse_views
from genaug.shards.layout import IMAGE_FIELDS, list_shards, shard_name
from genaug.shards.reader import decode_image, decode_sample, is_image_field, iter_checked_shard
from genaug.shards.storage import as_location


@dataclass
class Preprocess:
    """Evaluation preprocessing: resize the shorter side, centre crop, normalise (the trainer's eval view)."""

    image_size: int = 224
    resize: int | None = None  # None: round(image_size * 256 / 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @classmethod
    def from_views(cls, views: dict | None, image_size: int | None = None) -> Preprocess:
        """The eval view of a trainer recipe's `views:` section (its eval size, resize, mean and std).

        `image_size` (a flag) replaces the eval size and scales the resize side with it."""
        rec = parse_views(views)
        size, resize = rec.eval_size, rec.eval_resize
        if image_size and int(image_size) != size:
            size, resize = int(image_size), int(round(int(image_size) * resize / size))
        return cls(image_size=size, resize=resize, mean=tuple(rec.mean), std=tuple(rec.std))

    def resolved(self) -> dict:
        """The settings as a dict with the resize side filled in."""
        r = self.resize or int(round(self.image_size * 256 / 224))
        return {"image_size": self.image_size, "resize": r, "mean": list(self.mean), "std": list(self.std)}

    def __call__(self, img: bytes | Image.Image) -> torch.Tensor:
        """Encoded image bytes (the trainer's eval_view) or a PIL image -> normalised CHW float tensor."""
        from torchvision.transforms.v2 import functional as TF

        s = self.resolved()
        if isinstance(img, (bytes, bytearray, memoryview)):
            t = eval_view(bytes(img), self.image_size, s["resize"])
        else:
            t = TF.pil_to_tensor(img.convert("RGB"))
            t = TF.resize(t, s["resize"], antialias=True)
            t = TF.center_crop(t, [self.image_size, self.image_size])
        t = TF.to_dtype(t, torch.float32, scale=True)
        return TF.normalize(t, list(self.mean), list(self.std))


def _image_field(raw: dict) -> str | None:
    found = next((f for f in IMAGE_FIELDS if f in raw), None)
    return found or next((f for f in raw if is_image_field(f)), None)


def iter_encoded(folder: Path, shard_ids: list[int] | None = None) -> Iterator[tuple[str, int, bytes]]:
    """(key, label, encoded image bytes) of each sample of a source split folder, in shard and row order.

    Each shard is checked against its recorded sha256 first (a damaged or swapped shard is a GenaugError)."""
    for i in shard_ids if shard_ids is not None else list_shards(folder):
        for raw in iter_checked_shard(folder, i, *shard_bytes(as_location(folder) / shard_name(i))):
            field_ = _image_field(raw)
            if field_ is None:
                continue
            label = decode_sample({"__key__": raw["__key__"], "cls": raw["cls"]})["cls"] if "cls" in raw else -1
            yield raw["__key__"], int(label), raw[field_]


def iter_images(folder: Path, shard_ids: list[int] | None = None) -> Iterator[tuple[str, int, Image.Image]]:
    """(key, label, PIL image) of each sample of a source split folder, in shard and row order."""
    for key, label, data in iter_encoded(folder, shard_ids):
        yield key, label, decode_image(data)


class SplitDataset(torch.utils.data.IterableDataset):
    """Preprocessed samples of a split in shard order; shards are divided between DataLoader workers.

    A sample whose image cannot be decoded is skipped with a warning naming its key (a long run never dies on one)."""

    def __init__(self, folder: Path, pre: Preprocess, limit: int | None) -> None:
        self.folder, self.pre, self.limit = folder, pre, limit
        self.shards = list_shards(folder)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        ids = self.shards if info is None else self.shards[info.id :: info.num_workers]
        for key, label, data in iter_encoded(self.folder, ids):
            try:
                x = self.pre(data)
            except CorruptImage as e:
                warnings.warn(f"genaug: skipping corrupt sample {key} of {self.folder}: {e}", stacklevel=2)
                continue
            yield key, label, x
