"""Ingest throughput: `genaug ingest` vs a plain PIL loop re-encoding the same images into a folder.

Both produce JPEGs of the same size (short side --short-side) at the same quality from the same source files.
Prints images/s of each and the ratio. Example: python scripts/bench_ingest.py --n 400 --workers 2
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


def main() -> None:
    """Run both and print images/s and ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--src-size", type=int, nargs=2, default=(500, 375), help="source width height")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        src = tmp / "src"
        make_source(src, args.n, args.classes, size=tuple(args.src_size))
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
