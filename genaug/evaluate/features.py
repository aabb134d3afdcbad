"""Frozen features of an encoder over a labeled shard split: batched, on the accelerator, cached by checkpoint hash."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genaug.core.devices import resolve_device
from genaug.core.errors import GenaugError
from genaug.core.hashing import stable_hash
from genaug.data.evaluation import Preprocess, SplitDataset, iter_images  # noqa: F401  (re-exported)
from genaug.shards.layout import list_shards, shard_name
from genaug.shards.manifest import open_split, read_manifest
from genaug.shards.storage import as_location
from genaug.shards.writer import read_stats

CACHE_VERSION = 1


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
    return open_split(shards, split)[1]


def split_identity(folder: Path) -> dict:
    """What identifies a split's content: its manifest's plan hash and the sha256 of each committed shard."""
    man = read_manifest(folder)
    shas = []
    for i in list_shards(folder):
        st = read_stats(folder, i) or {}
        shas.append([shard_name(i), st.get("sha256")])
    return {"plan_hash": man.get("plan_hash"), "shards": shas}


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
    dev = resolve_device(device)
    encoder = encoder.to(dev).eval()
    ds = SplitDataset(as_location(folder), pre, limit)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    has_unc = callable(getattr(encoder, "uncertainty", None))
    feats, labels, keys, unc = [], [], [], []
    t0, n = time.time(), 0
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(int((read_stats(folder, i) or {}).get("count", 0)) for i in ds.shards) or None
        bar = tqdm(total=total, unit="img", desc=f"features {as_location(folder).name}")
    try:
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
    finally:  # a damaged shard ends the loop with a GenaugError: the bar is closed before its one line is printed
        if bar is not None:
            bar.close()
    if not keys:
        from genaug.shards.layout import verify_command

        raise GenaugError(f"split folder {folder} has no images: check with {verify_command(folder)}")
    order = _shard_order(keys)
    fs = FeatureSet(
        torch.cat(feats).numpy()[order],
        torch.cat(labels).numpy().astype(np.int64)[order],
        [keys[i] for i in order],
        {"uncertainty": torch.cat(unc).numpy()[order]} if unc else {},
        {"images_per_s": n / max(1e-9, time.time() - t0), "preprocess": pre.resolved()},
    )
    if limit is None:  # undecodable images are skipped (with a warning each) and counted here
        loc = as_location(folder)
        stored = sum(int((read_stats(loc, i) or {}).get("count", 0)) for i in list_shards(loc))
        fs.meta["skipped_images"] = max(0, stored - len(keys))
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
        "split": split_identity(as_location(folder)),
        "preprocess": pre.resolved(),
        "limit": limit,
    }
    h = stable_hash(ident)[:16]
    path = Path(cache_dir) / f"{as_location(folder).name}-{h}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        return FeatureSet.load(path)
    fs = extract_features(encoder, folder, pre, limit=limit, **kw)
    fs.meta |= {"encoder": encoder_id, "split_folder": str(folder), "cache_key": h}
    if path is not None:
        fs.save(path)
    return fs
