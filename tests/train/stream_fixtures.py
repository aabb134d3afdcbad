"""Helpers of the data-stream tests: generated columns written in the real format, a no-colour view recipe."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.shards.manifest import read_manifest, write_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.writer import commit_shard

# Crops only: a view's pixels then come straight from the image it was cut from.
PLAIN_VIEWS = {
    "preset": "simclr",
    "size": 16,
    "global": [
        {"flip": 0.5, "jitter": {"p": 0.0}, "grayscale": 0.0, "blur": {"p": 0.0}, "solarize": 0.0},
        {"flip": 0.5, "jitter": {"p": 0.0}, "grayscale": 0.0, "blur": {"p": 0.0}, "solarize": 0.0},
    ],
    "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0],
}

GEN_VALUE = 250  # generated variant k of column c is a flat image of value 250 in channel (c + k) % 3, 5 elsewhere


def gen_colour(column: int, k: int) -> tuple[int, int, int]:
    """The flat colour of variant k of the column-th generated column."""
    c = [5, 5, 5]
    c[(column + k) % 3] = GEN_VALUE
    return tuple(c)


def _jpeg(colour, size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_gen_column(
    root: Path, split: str, name: str, k: int = 2, column: int = 0, failed=(), extra=None, with_index: bool = True
) -> Path:
    """Write generated column `name` aligned with root/split: flat-colour variants, `failed` keys with json only.

    Like `genaug generate`, each shard gets its member index unless `with_index` is False (a column made before
    indexes existed)."""
    src = Path(root) / split
    dst = Path(root) / "gen" / name / split
    dst.mkdir(parents=True, exist_ok=True)
    man = read_manifest(src)
    write_manifest(
        dst,
        {
            "kind": "generated",
            "recipe": {"name": name},
            "recipe_hash": name,
            "k": k,
            "source_split": split,
            "shards": man["shards"],
        },
    )
    for sname in man["shards"]:
        samples = []
        for raw in iter_shard_raw(src / sname):
            key = raw["__key__"]
            if key in failed:
                samples.append({"__key__": key, "json": json.dumps({"seeds": [], "failed": "boom"})})
                continue
            size = Image.open(io.BytesIO(raw["jpg"])).size[0]
            s = {"__key__": key, "json": json.dumps({"seeds": list(range(k)), "failed": None})}
            for j in range(k):
                s[f"gen_{j}.jpg"] = _jpeg(gen_colour(column, j), size)
            if extra:
                s.update(extra)
            samples.append(s)
        commit_shard(dst, int(sname[:6]), samples, with_index=with_index)
    return dst


def classify_view(x: np.ndarray) -> str | tuple[int, int, int]:
    """'source' for a textured crop, else the flat colour (rounded to the generated palette) of a generated one."""
    x = np.asarray(x, dtype=np.float64) * 255  # views normalised with mean 0, std 1
    if x.std(axis=(1, 2)).max() > 3.0:
        return "source"
    m = x.mean(axis=(1, 2))
    return tuple(GEN_VALUE if v > 128 else 5 for v in m)
