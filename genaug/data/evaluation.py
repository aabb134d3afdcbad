"""The evaluation image pipeline: a split's labelled images in shard order, resized, centre-cropped, normalised."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from genaug.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from genaug.shards.layout import IMAGE_FIELDS, list_shards, shard_name
from genaug.shards.reader import decode_sample, is_image_field, iter_shard_raw


@dataclass
class Preprocess:
    """Evaluation preprocessing: resize the shorter side, centre crop, normalise."""

    image_size: int = 224
    resize: int | None = None  # None: round(image_size * 256 / 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def resolved(self) -> dict:
        """The settings as a dict with the resize side filled in."""
        r = self.resize or int(round(self.image_size * 256 / 224))
        return {"image_size": self.image_size, "resize": r, "mean": list(self.mean), "std": list(self.std)}

    def __call__(self, img) -> torch.Tensor:
        """PIL image -> normalised CHW float tensor."""
        from torchvision.transforms.v2 import functional as TF

        s = self.resolved()
        t = TF.pil_to_tensor(img)
        t = TF.resize(t, s["resize"], antialias=True)
        t = TF.center_crop(t, [self.image_size, self.image_size])
        t = TF.to_dtype(t, torch.float32, scale=True)
        return TF.normalize(t, list(self.mean), list(self.std))


def iter_images(folder: Path, shard_ids: list[int] | None = None) -> Iterator[tuple[str, int, object]]:
    """(key, label, PIL image) of each sample of a source split folder, in shard and row order."""
    for i in shard_ids if shard_ids is not None else list_shards(folder):
        for raw in iter_shard_raw(folder / shard_name(i)):
            field_ = next((f for f in IMAGE_FIELDS if f in raw), None)
            field_ = field_ or next((f for f in raw if is_image_field(f)), None)
            if field_ is None:
                continue
            s = decode_sample(
                {"__key__": raw["__key__"], field_: raw[field_], **({"cls": raw["cls"]} if "cls" in raw else {})}
            )
            yield s["__key__"], int(s.get("cls", -1)), s[field_]


class SplitDataset(torch.utils.data.IterableDataset):
    """Decoded, preprocessed samples of a split; shards are divided between DataLoader workers."""

    def __init__(self, folder: Path, pre: Preprocess, limit: int | None) -> None:
        self.folder, self.pre, self.limit = folder, pre, limit
        self.shards = list_shards(folder)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        ids = self.shards if info is None else self.shards[info.id :: info.num_workers]
        for key, label, img in iter_images(self.folder, ids):
            yield key, label, self.pre(img)
