"""Small synthetic source splits in the real shard format, for tests, benchmarks and smoke runs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from genaug import __version__
from genaug.core.hashing import stable_hash
from genaug.shards.complete import finish_folder
from genaug.shards.layout import make_key, shard_name
from genaug.shards.manifest import write_manifest
from genaug.shards.writer import commit_shard

SOURCE_REQUIRED = ("jpg", "json")


def synthetic_image(rng: np.random.Generator, size: int, label: int, num_classes: int) -> Image.Image:
    """A smooth random RGB image whose mean colour depends on its label (so labels are learnable)."""
    base = np.zeros(3)
    base[label % 3] = 0.35 + 0.5 * (label / max(1, num_classes - 1))
    lo = rng.random((4, 4, 3)) * 0.5 + base * 0.5
    img = Image.fromarray((np.clip(lo, 0, 1) * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_synthetic_split(
    root: Path,
    split: str = "train",
    num_shards: int = 2,
    per_shard: int = 8,
    size: int = 64,
    num_classes: int = 4,
    seed: int = 0,
    quality: int = 90,
    record: bool = False,
) -> Path:
    """Write a labeled source split of num_shards x per_shard JPEGs under root/split; return that folder.

    `record`: finish the split as ingest does, with its completion record (genaug.shards.complete)."""
    folder = Path(root) / split
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = [f"class{c}" for c in range(num_classes)]
    names = [shard_name(i) for i in range(num_shards)]
    manifest = {
        "kind": "source",
        "split": split,
        "source": "synthetic",
        "classes": classes,
        "num_shards": num_shards,
        "num_planned": num_shards * per_shard,
        "samples_per_shard": per_shard,
        "shards": names,
        "options": {"size": size, "quality": quality, "seed": seed},
        "plan_hash": stable_hash(["synthetic", num_shards, per_shard, size, num_classes, seed, quality]),
        "genaug_version": __version__,
    }
    write_manifest(folder, manifest)
    for s in range(num_shards):
        samples = []
        for r in range(per_shard):
            label = int(rng.integers(num_classes))
            buf = io.BytesIO()
            synthetic_image(rng, size, label, num_classes).save(buf, format="JPEG", quality=quality)
            key = make_key(s, r)
            meta = {"source": f"synthetic/{key}", "width": size, "height": size, "class_name": classes[label]}
            samples.append({"__key__": key, "jpg": buf.getvalue(), "cls": str(label), "json": json.dumps(meta)})
        commit_shard(folder, s, samples, SOURCE_REQUIRED + ("cls",), {"failures": []})
    if record:
        finish_folder(folder)
    return folder


def write_image_tree(root: Path, classes: int = 2, per_class: int = 12, size: tuple[int, int] = (24, 32)) -> Path:
    """An ImageFolder-style tree of small random JPEGs (class0/00.jpg, ...) under `root`: the input of ingest tests."""
    root = Path(root)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = np.random.default_rng(100 * c + i).integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"{i:02d}.jpg", quality=90)
    return root


def ingest_quiet(tree: Path, shards: str | Path, per_shard: int = 6, **kw) -> dict:
    """genaug's real ingest of `tree` into `shards` (a name, path or URL), in-process and without progress bars."""
    from genaug.ingest.run import ingest

    return ingest(tree, shards, per_shard=per_shard, workers=0, progress=False, **kw)


def one_image_source(root: Path, n: int) -> tuple[bytes, list[str]]:
    """A source split `train` of n one-image shards under `root` (the benchmarks' many-small-shards set); returns
    the image's JPEG bytes and the shard names, for columns the caller adds."""
    import io

    from PIL import Image

    from genaug.shards.layout import make_key, shard_name
    from genaug.shards.manifest import write_manifest
    from genaug.shards.writer import commit_shard

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 3, 5)).save(buf, format="JPEG")
    jpg, names = buf.getvalue(), [shard_name(i) for i in range(n)]
    src = Path(root) / "train"
    src.mkdir(parents=True)
    write_manifest(src, {"kind": "source", "split": "train", "shards": names})
    for i in range(n):
        commit_shard(src, i, [{"__key__": make_key(i, 0), "jpg": jpg, "json": "{}"}], ("jpg",))
    return jpg, names
