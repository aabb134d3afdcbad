"""Contact sheets for looking at generated data before training: each source image with its K variants, and the two
views the trainer would make at a given replacement probability p."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from genaug.core.errors import GenaugError
from genaug.core.files import write_json_atomic
from genaug.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from genaug.shards.layout import IMAGE_FIELDS, list_shards, shard_name
from genaug.shards.manifest import open_gen_split, open_split
from genaug.shards.reader import decode_image, iter_shard_raw

KEY_RE = re.compile(r"^s(\d{6})r\d{6}$")
BLANK = (200, 200, 200)
BACKGROUND = (255, 255, 255)
MARK = (255, 140, 0)  # border of a view that is a generated variant
LABEL_H = 12

# make_views(source, variants, p, rng) -> (view1, view2) or (view1, view2, {"replaced": [bool, bool]})
MakeViews = Callable[[Image.Image, list, float, np.random.Generator], tuple]


def open_column(shards: str | os.PathLike, gen: str | None, split: str) -> tuple[Path, Path, dict]:
    """Source folder, generated column folder and its manifest; errors name what is missing and the fix."""
    ss, src, _ = open_split(shards, split)
    cols = ss.columns()
    if gen is None:
        if len(cols) != 1:
            raise GenaugError(f"give --gen: shard set {ss.root} has generated columns {cols or 'none'}")
        gen = cols[0]
    col, man = open_gen_split(ss, gen, split, shards)
    return src, col, man


def _read_shard(folder: Path, index: int) -> dict[str, dict]:
    return {s["__key__"]: s for s in iter_shard_raw(folder / shard_name(index))}


def _pick_keys(src: Path, keys: Sequence[str] | None, n: int, seed: int) -> list[str]:
    """The chosen keys as given, or n keys drawn with `seed` from a few randomly chosen shards."""
    if keys:
        return list(keys)
    rng = np.random.default_rng(seed)
    shards = list_shards(src)
    if not shards:
        raise GenaugError(f"{src} holds no shards")
    pool: list[str] = []
    for i in rng.permutation(shards):
        pool += list(_read_shard(src, int(i)))
        if len(pool) >= 4 * n:
            break
    chosen = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[i] for i in sorted(chosen)]


def load_rows(shards, gen: str | None, split: str, keys: Sequence[str] | None, n: int, seed: int) -> tuple[list, int]:
    """[(key, source image, [variant images or None per k], failure or None)] and K of the column."""
    src, col, man = open_column(shards, gen, split)
    k = int(man.get("k") or 0)
    chosen = _pick_keys(src, keys, n, seed)
    by_shard: dict[int | None, list[str]] = {}
    for key in chosen:
        m = KEY_RE.match(key)
        by_shard.setdefault(int(m.group(1)) if m else None, []).append(key)
    found_src: dict[str, dict] = {}
    found_gen: dict[str, dict] = {}
    for idx in by_shard:
        for i in [idx] if idx is not None else list_shards(src):
            if (src / shard_name(i)).exists():
                found_src |= _read_shard(src, i)
                found_gen |= _read_shard(col, i) if (col / shard_name(i)).exists() else {}
    rows = []
    for key in chosen:
        if key not in found_src:
            raise GenaugError(f"--keys: sample {key!r} is not in split {split!r} of {shards}")
        s = found_src[key]
        field = next(f for f in IMAGE_FIELDS if f in s)
        g = found_gen.get(key)
        meta = json.loads(g["json"].decode("utf-8")) if g is not None and "json" in g else {}
        failed = meta.get("failed") if g is not None else "missing from the generated column"
        variants = [
            decode_image(g[f"gen_{j}.jpg"]) if g is not None and f"gen_{j}.jpg" in g else None for j in range(k)
        ]
        rows.append((key, decode_image(s[field]), variants, failed))
    return rows, k


def fit_tile(img: Image.Image | None, tile: int) -> Image.Image:
    """An image centre-cropped to a square and resized to tile x tile; a blank tile for None."""
    if img is None:
        return Image.new("RGB", (tile, tile), BLANK)
    return ImageOps.fit(img.convert("RGB"), (tile, tile), Image.BICUBIC)


def sheet_size(rows: int, cols: int, tile: int, pad: int, labels: bool) -> tuple[int, int]:
    """Width and height of a sheet of rows x cols tiles."""
    lh = LABEL_H if labels else 0
    return cols * tile + (cols + 1) * pad, rows * (tile + lh) + (rows + 1) * pad


def tile_box(r: int, c: int, tile: int, pad: int, labels: bool) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom) of the tile in row r, column c."""
    lh = LABEL_H if labels else 0
    x = pad + c * (tile + pad)
    y = pad + r * (tile + lh + pad) + lh
    return x, y, x + tile, y + tile


def _compose(
    grid: list[list[Image.Image | None]],
    captions: list[str],
    tile: int,
    pad: int,
    labels: bool,
    marks: list[list[bool]] | None = None,
) -> Image.Image:
    cols = max(len(r) for r in grid)
    sheet = Image.new("RGB", sheet_size(len(grid), cols, tile, pad, labels), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(grid):
        for c, img in enumerate(row):
            box = tile_box(r, c, tile, pad, labels)
            sheet.paste(fit_tile(img, tile), box[:2])
            if marks and marks[r][c]:
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=MARK, width=max(1, tile // 32))
        if labels:
            draw.text((pad, tile_box(r, 0, tile, pad, labels)[1] - LABEL_H), captions[r], fill=(0, 0, 0))
    return sheet


def _save(sheet: Image.Image, out: Path, doc: dict) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    write_json_atomic(out.with_suffix(".json"), doc)
    return out


def contact_sheet(
    shards: str | os.PathLike,
    gen: str | None = None,
    split: str = "train",
    keys: Sequence[str] | None = None,
    n: int = 8,
    seed: int = 0,
    tile: int = 128,
    pad: int = 2,
    labels: bool = True,
    out: str | os.PathLike | None = None,
) -> Path:
    """PNG with one row per source image: the source, then its K variants (a blank tile where generation failed)."""
    rows, k = load_rows(shards, gen, split, keys, n, seed)
    grid = [[src, *variants] for _, src, variants, _ in rows]
    captions = [key + (f"  FAILED: {str(f)[:60]}" if f else "") for key, _, _, f in rows]
    name = gen or "gen"
    path = Path(out) if out else Path(f"contact-{name}-{split}.png")
    doc = {
        "shards": str(shards),
        "gen": gen,
        "split": split,
        "k": k,
        "tile": tile,
        "pad": pad,
        "labels": labels,
        "columns": ["source"] + [f"gen_{j}" for j in range(k)],
        "keys": [r[0] for r in rows],
        "failed": {r[0]: r[3] for r in rows if r[3]},
    }
    return _save(_compose(grid, captions, tile, pad, labels), path, doc)


def trainer_make_views(views: dict | None = None, mix_views: str = "each") -> MakeViews:
    """The trainer's own views: its mixing rule, crops and colour stage from a recipe `views:` section."""
    import io
    import random

    import torch

    from genaug.data.color import apply_color_stage
    from genaug.data.mixing import MixPolicy
    from genaug.data.transforms import make_views, parse_views

    recipe = parse_views(views or {"preset": "simclr"})
    n_views = len(recipe.views)

    def encode(img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()

    def make(source: Image.Image, variants: list, p: float, rng: np.random.Generator) -> tuple:
        usable = [v for v in variants if v is not None]
        policy = MixPolicy(p, mix_views)
        chosen = policy.decide(rng.random(2 * n_views).tolist(), n_views, len(usable))
        images = [encode(source)] + [encode(v) for v in usable]
        crops, rows = make_views(images, chosen, recipe, random.Random(int(rng.integers(2**31))))
        params = torch.tensor(rows, dtype=torch.float32)
        out = apply_color_stage(torch.stack(crops), params)
        return out[0], out[1], {"replaced": [c > 0 for c in chosen[:2]]}

    return make


def to_pil(view) -> Image.Image:
    """A view as a PIL image: PIL as is; a CHW tensor in [0, 1], or ImageNet-normalised when it has negatives."""
    if isinstance(view, Image.Image):
        return view.convert("RGB")
    import torch

    t = torch.as_tensor(view).detach().float().cpu()
    if t.ndim == 3 and t.shape[0] in (1, 3) and t.min() < 0:
        mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        std = torch.tensor(IMAGENET_STD)[:, None, None]
        t = t * std + mean
    if t.max() > 1.5:
        t = t / 255.0
    arr = (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr if arr.shape[2] == 3 else arr[:, :, 0])


def views_sheet(
    shards: str | os.PathLike,
    gen: str | None = None,
    split: str = "train",
    p: float = 0.5,
    keys: Sequence[str] | None = None,
    n: int = 8,
    seed: int = 0,
    pairs: int = 3,
    tile: int = 128,
    pad: int = 2,
    labels: bool = True,
    view_size: int = 224,
    make_views: MakeViews | None = None,
    out: str | os.PathLike | None = None,
    method: str = "simclr",
    mix_views: str = "each",
) -> Path:
    """PNG with one row per source image: the source, then `pairs` (view1, view2) draws at probability p.

    By default the views are the trainer's own (the `views:` section of training recipe `method`, at `view_size`,
    with its mixing rule); generated views get an orange border ({"replaced": [...]} from make_views).
    """
    if not 0.0 <= p <= 1.0:
        raise GenaugError(f"--p {p} must be between 0 and 1")
    rows, k = load_rows(shards, gen, split, keys, n, seed)
    if make_views is None:
        from genaug.core.recipes import load_recipe

        section = dict(load_recipe("trainers", method).get("views") or {"preset": "simclr"})
        section["size"] = view_size
        make_views = trainer_make_views(section, mix_views)
    mv = make_views
    rng = np.random.default_rng(seed)
    grid, marks, captions = [], [], []
    for key, src, variants, failed in rows:
        row, mark = [src], [False]
        for _ in range(pairs):
            out_ = mv(src, variants, p, rng)
            info = out_[2] if len(out_) > 2 else {}
            row += [to_pil(out_[0]), to_pil(out_[1])]
            mark += list(info.get("replaced", [False, False]))
        grid.append(row)
        marks.append(mark)
        captions.append(f"{key}  p={p}" + ("  (generation failed: source only)" if failed else ""))
    path = Path(out) if out else Path(f"views-{gen or 'gen'}-{split}-p{p}.png")
    doc = {
        "shards": str(shards),
        "gen": gen,
        "split": split,
        "p": p,
        "pairs": pairs,
        "seed": seed,
        "tile": tile,
        "pad": pad,
        "labels": labels,
        "keys": [r[0] for r in rows],
        "replaced": {r[0]: m[1:] for r, m in zip(rows, marks, strict=True)},
    }
    return _save(_compose(grid, captions, tile, pad, labels, marks), path, doc)
