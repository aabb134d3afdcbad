"""Frozen features of an encoder over a labeled shard split: batched, on the accelerator, cached by checkpoint hash."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genaug.errors import GenaugError
from genaug.shards.layout import ShardSet, list_shards, shard_name
from genaug.shards.manifest import read_manifest, stable_hash
from genaug.shards.reader import decode_sample, is_image_field, iter_shard_raw
from genaug.shards.writer import read_stats

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_VERSION = 1


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


@dataclass
class FeatureSet:
    """Features (N x D float32), labels (N, -1 when unknown) and keys of one split; extras hold per-sample scores."""

    features: np.ndarray
    labels: np.ndarray
    keys: list[str]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write as .npz (no pickles), atomically."""
        import json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}.npz")
        arrays = {"features": self.features, "labels": self.labels, "keys": np.asarray(self.keys, dtype=str)}
        arrays |= {f"extra_{k}": v for k, v in self.extras.items()}
        arrays["meta"] = np.asarray(json.dumps(self.meta, sort_keys=True))
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> FeatureSet:
        """Read a features file written by save (or any .npz with `features` and `labels`)."""
        import json

        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                feats = np.asarray(z["features"], dtype=np.float32)
                labels = np.asarray(z["labels"], dtype=np.int64) if "labels" in z else np.full(len(feats), -1)
                keys = [str(k) for k in z["keys"]] if "keys" in z else [str(i) for i in range(len(feats))]
                extras = {k[6:]: np.asarray(z[k]) for k in z.files if k.startswith("extra_")}
                meta = json.loads(str(z["meta"])) if "meta" in z else {}
        except FileNotFoundError:
            raise GenaugError(f"features file {path} does not exist") from None
        except (OSError, ValueError, KeyError) as e:
            raise GenaugError(f"{path} is not a features .npz with `features` and `labels` arrays ({e})") from None
        return cls(feats, labels, keys, extras, meta)

    def subset(self, keys: list[str]) -> FeatureSet:
        """The rows of `keys`, in that order."""
        pos = {k: i for i, k in enumerate(self.keys)}
        idx = np.asarray([pos[k] for k in keys], dtype=np.int64)
        return FeatureSet(
            self.features[idx],
            self.labels[idx],
            list(keys),
            {k: v[idx] for k, v in self.extras.items()},
            dict(self.meta),
        )


def split_folder(shards: str | os.PathLike, split: str) -> Path:
    """The source folder of `split` in shard set `shards`; a missing one is a user error."""
    folder = ShardSet.open(shards).split_dir(split)
    if not (folder / "manifest.json").exists():
        raise GenaugError(f"split {split!r} of shard set {shards} does not exist ({folder}): pick another --split")
    return folder


def split_identity(folder: Path) -> dict:
    """What identifies a split's content: its manifest's plan hash and the sha256 of each committed shard."""
    man = read_manifest(folder)
    shas = []
    for i in list_shards(folder):
        st = read_stats(folder, i) or {}
        shas.append([shard_name(i), st.get("sha256")])
    return {"plan_hash": man.get("plan_hash"), "shards": shas}


def iter_images(folder: Path, shard_ids: list[int] | None = None) -> Iterator[tuple[str, int, object]]:
    """(key, label, PIL image) of each sample of a source split folder, in shard and row order."""
    for i in shard_ids if shard_ids is not None else list_shards(folder):
        for raw in iter_shard_raw(folder / shard_name(i)):
            field_ = next((f for f in ("jpg", "png", "webp", "jpeg") if f in raw), None)
            field_ = field_ or next((f for f in raw if is_image_field(f)), None)
            if field_ is None:
                continue
            s = decode_sample(
                {"__key__": raw["__key__"], field_: raw[field_], **({"cls": raw["cls"]} if "cls" in raw else {})}
            )
            yield s["__key__"], int(s.get("cls", -1)), s[field_]


class _SplitDataset(torch.utils.data.IterableDataset):
    """Decoded, preprocessed samples of a split; shards are divided between DataLoader workers."""

    def __init__(self, folder: Path, pre: Preprocess, limit: int | None) -> None:
        self.folder, self.pre, self.limit = folder, pre, limit
        self.shards = list_shards(folder)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        ids = self.shards if info is None else self.shards[info.id :: info.num_workers]
        for key, label, img in iter_images(self.folder, ids):
            yield key, label, self.pre(img)


def _pool(out) -> torch.Tensor:
    """Encoder output -> (N, D): the first tensor of a tuple/dict/ModelOutput, globally average-pooled if spatial."""
    if isinstance(out, dict) or hasattr(out, "keys"):
        for name in ("image_embeds", "pooler_output", "features", "last_hidden_state"):
            if name in out and out[name] is not None:
                out = out[name]
                break
        else:
            out = next(iter(out.values()))
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim == 4:
        out = out.mean((2, 3))
    elif out.ndim == 3:  # tokens: the class token
        out = out[:, 0]
    return out.flatten(1)


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    folder: Path,
    preprocess: Preprocess | None = None,
    batch_size: int = 256,
    device: str | None = None,
    num_workers: int = 0,
    limit: int | None = None,
    progress: bool = False,
) -> FeatureSet:
    """Features of every image of a source split folder (rows in shard/key order); uses encoder.uncertainty if any."""
    pre = preprocess or getattr(encoder, "genaug_preprocess", None) or Preprocess()
    dev = _device(device)
    encoder = encoder.to(dev).eval()
    ds = _SplitDataset(Path(folder), pre, limit)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    has_unc = callable(getattr(encoder, "uncertainty", None))
    feats, labels, keys, unc = [], [], [], []
    t0, n = time.time(), 0
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(int((read_stats(folder, i) or {}).get("count", 0)) for i in ds.shards) or None
        bar = tqdm(total=total, unit="img", desc=f"features {Path(folder).name}")
    for k, y, x in loader:
        x = x.to(dev, non_blocking=True)
        with torch.autocast(dev.type, enabled=dev.type == "cuda"):
            f = _pool(encoder(x)).float()
            if has_unc:
                unc.append(torch.as_tensor(encoder.uncertainty(x)).float().reshape(len(x), -1).mean(1).cpu())
        feats.append(f.cpu())
        labels.append(torch.as_tensor(y))
        keys.extend(k)
        n += len(k)
        if bar is not None:
            bar.update(len(k))
        if limit is not None and n >= limit:
            break
    if bar is not None:
        bar.close()
    if not keys:
        raise GenaugError(f"split folder {folder} has no images: check `genaug verify`")
    order = _shard_order(keys)
    fs = FeatureSet(
        torch.cat(feats).numpy()[order],
        torch.cat(labels).numpy().astype(np.int64)[order],
        [keys[i] for i in order],
        {"uncertainty": torch.cat(unc).numpy()[order]} if unc else {},
        {"images_per_s": n / max(1e-9, time.time() - t0), "preprocess": pre.resolved()},
    )
    if limit is not None:
        fs = fs.subset(fs.keys[:limit])
    return fs


def _shard_order(keys: list[str]) -> list[int]:
    """Permutation that sorts keys (workers interleave shards; keys sort in shard/row order)."""
    return sorted(range(len(keys)), key=keys.__getitem__)


def cached_features(
    encoder: nn.Module,
    encoder_id: str,
    folder: Path,
    cache_dir: Path | None,
    preprocess: Preprocess | None = None,
    limit: int | None = None,
    **kw,
) -> FeatureSet:
    """extract_features, reusing cache_dir/<split>-<hash>.npz keyed by (encoder_id, split content, preprocessing)."""
    pre = preprocess or getattr(encoder, "genaug_preprocess", None) or Preprocess()
    ident = {
        "v": CACHE_VERSION,
        "encoder": encoder_id,
        "split": split_identity(Path(folder)),
        "preprocess": pre.resolved(),
        "limit": limit,
    }
    h = stable_hash(ident)[:16]
    path = Path(cache_dir) / f"{Path(folder).name}-{h}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        return FeatureSet.load(path)
    fs = extract_features(encoder, folder, pre, limit=limit, **kw)
    fs.meta |= {"encoder": encoder_id, "split_folder": str(folder), "cache_key": h}
    if path is not None:
        fs.save(path)
    return fs
