"""Ingest throughput: `genaug ingest` vs a plain PIL loop re-encoding the same images into a folder.

Both produce JPEGs of the same size (short side --short-side) at the same quality from the same source files.
Prints images/s of each and the ratio. Example: python scripts/bench_ingest.py --n 400 --workers 2

`--sources`: the same images as class folders, as WebDataset tars and as a Hugging Face `datasets` save_to_disk
folder, each ingested in-process in sorted and in shuffled order; ratios against class folders in sorted order.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.ingest.images import ImageOptions, target_size
from genaug.ingest.run import ingest


def make_source(root: Path, n: int, classes: int, seed: int = 0, size: tuple[int, int] = (500, 375)) -> None:
    """ImageNet-like source: n photo-ish JPEGs of `size` (q 90) in `classes` class folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / f"n{i % classes:08d}"
        d.mkdir(parents=True, exist_ok=True)
        lo = rng.random((12, 16, 3))
        img = Image.fromarray((lo * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
        arr = np.asarray(img).astype(np.float32) + rng.normal(0, 12, (size[1], size[0], 3))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(d / f"img{i:06d}.JPEG", quality=90)


def plain_loop(src: Path, out: Path, short_side: int, quality: int) -> int:
    """The baseline: open, convert, resize, save each image with PIL, one file per image."""
    opts = ImageOptions(short_side=short_side, quality=quality)
    n = 0
    for p in sorted(src.rglob("*.JPEG")):
        img = Image.open(p).convert("RGB")
        img = img.resize(target_size(*img.size, opts), Image.BICUBIC)
        dst = out / p.parent.name
        dst.mkdir(parents=True, exist_ok=True)
        img.save(dst / p.name, format="JPEG", quality=quality)
        n += 1
    return n


def sources_bench(tmp: Path, src: Path, args) -> None:
    """Ingest the same images from three source kinds, in both orders; print images/s and ratios."""
    import io
    import tarfile

    import datasets

    files = sorted(src.rglob("*.JPEG"))
    names = sorted({p.parent.name for p in files})
    tars = tmp / "tars"
    tars.mkdir()
    per_tar = 100
    for t in range(0, len(files), per_tar):
        with tarfile.open(tars / f"{t // per_tar:05d}.tar", "w") as tf:
            for p in files[t : t + per_tar]:
                for field, data in (("jpg", p.read_bytes()), ("cls", str(names.index(p.parent.name)))):
                    data = data.encode() if isinstance(data, str) else data
                    info = tarfile.TarInfo(f"{p.stem}.{field}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    rows = {"image": [{"bytes": p.read_bytes(), "path": None} for p in files]}
    rows["label"] = [names.index(p.parent.name) for p in files]
    datasets.disable_progress_bars()
    datasets.Dataset.from_dict(rows, features=feats).save_to_disk(str(tmp / "hf"))
    ingest(tars / "00000.tar", tmp / "warm-up", workers=0, progress=False)  # imports (webdataset, torch) paid here
    base = None
    print(f"images: {len(files)}; in-process ingest, short side {args.short_side}, quality {args.quality}")
    for kind, path in (("class folders", src), ("WebDataset tars", tars), ("datasets save_to_disk", tmp / "hf")):
        for order in ("sorted", "shuffled"):
            t = time.perf_counter()
            s = ingest(path, tmp / f"o-{kind[:3]}-{order}", per_shard=100, short_side=args.short_side,
                       quality=args.quality, workers=0, progress=False, order=order)  # fmt: skip
            rate = s["images_written"] / (time.perf_counter() - t)
            base = base or rate
            print(f"{kind:22s} {order:8s}: {rate:8.1f} images/s   ratio {rate / base:5.2f}x")


def main() -> None:
    """Run both and print images/s and ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--src-size", type=int, nargs=2, default=(500, 375), help="source width height")
    ap.add_argument("--sources", action="store_true", help="compare source kinds and orders (needs genaug[hf])")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        src = tmp / "src"
        make_source(src, args.n, args.classes, size=tuple(args.src_size))
        if args.sources:
            sources_bench(tmp, src, args)
            return
        t = time.perf_counter()
        n = plain_loop(src, tmp / "plain", args.short_side, args.quality)
        base = n / (time.perf_counter() - t)
        results = {}
        for workers in (0, args.workers):
            t = time.perf_counter()
            s = ingest(
                src,
                tmp / f"set{workers}",
                per_shard=100,
                short_side=args.short_side,
                quality=args.quality,
                workers=workers,
                progress=False,
            )
            results[workers] = s["images_written"] / (time.perf_counter() - t)
        w, h = args.src_size
        print(f"images: {args.n} JPEG {w}x{h} -> short side {args.short_side}, quality {args.quality}")
        print(f"plain PIL loop (1 process, folder of JPEGs): {base:8.1f} images/s")
        for w, r in results.items():
            label = "genaug ingest, in-process" if w == 0 else f"genaug ingest, {w} workers"
            print(f"{label:43s}: {r:8.1f} images/s   ratio {r / base:5.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
