"""Contact sheets for looking at generated data before training: each source image with its K variants, and the two
views the trainer would make at a given replacement probability p."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from genaug.core.config import Probability, check_value
from genaug.core.errors import GenaugError
from genaug.core.files import write_json_atomic
from genaug.core.jsonio import sample_json
from genaug.data.prefetch import shard_bytes
from genaug.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from genaug.shards.layout import IMAGE_FIELDS, list_shards, parse_key, shard_name
from genaug.shards.manifest import open_gen_split, open_split
from genaug.shards.reader import decode_image, iter_checked_shard
from genaug.shards.scores import column_summary, hist_edges, iter_scores, require_scores, score_source
from genaug.shards.storage import as_location

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
    path = as_location(folder) / shard_name(index)
    return {s["__key__"]: s for s in iter_checked_shard(folder, index, *shard_bytes(path))}  # via --cache-dir if set


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
        where = parse_key(key)
        by_shard.setdefault(where[0] if where else None, []).append(key)
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
        meta = sample_json(g["json"]) if g is not None and "json" in g else {}
        meta = meta if isinstance(meta, dict) else {"failed": "unreadable json field"}
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


def load_scores(shards: str | os.PathLike, gen: str, split: str, why: str | None = None) -> dict[str, dict]:
    """{key: fidelity doc} of a column (from its score side column, else inline); {} when it has none (or an error
    naming `genaug score` when `why`, the flag that needs them, is given)."""
    ss, _, _ = open_split(shards, split)
    found = require_scores(ss, gen, split, why) if why else score_source(ss, gen, split)
    if found is None:
        return {}
    return {key: doc for key, doc in iter_scores(found[1]) if doc is not None}


def random_scorer(shards: str | os.PathLike, gen: str, split: str) -> bool:
    """True when a column's fidelity scores come from an encoder with random weights (recorded at scoring)."""
    from genaug.shards.manifest import read_manifest

    ss, _, _ = open_split(shards, split)
    found = score_source(ss, gen, split)
    if found is None:
        return False
    return bool((read_manifest(found[1]).get("fidelity") or {}).get("random_weights"))


def sort_by_score(docs: dict[str, dict], n: int) -> list[tuple[str, str]]:
    """(key, "worst" | "best") of n sources: the n//2 whose worst variant scores lowest, then the highest-scoring."""
    ranked = sorted(docs, key=lambda x: (min(docs[x]["scores"]), x))
    worst = ranked[: n // 2]
    best = [x for x in sorted(docs, key=lambda x: (-max(docs[x]["scores"]), x)) if x not in worst][: n - len(worst)]
    return [(x, "worst") for x in worst] + [(x, "best") for x in best]


def score_histogram(shards: str | os.PathLike, gen: str, split: str, out: str | os.PathLike) -> Path | None:
    """PNG histogram of a column's fidelity scores (from its shard summaries); None when it has no scores."""
    ss, _, _ = open_split(shards, split)
    found = score_source(ss, gen, split)
    summary = column_summary(found[1]) if found else None
    if not summary or not summary.get("n"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = hist_edges()
    hist = summary["hist"]
    used = [i for i, c in enumerate(hist) if c]
    lo, hi = max(0, used[0] - 2), min(len(hist), used[-1] + 3)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.bar(edges[lo:hi], hist[lo:hi], width=edges[1] - edges[0], align="edge")
    q = summary.get("quantiles") or {}
    ax.set_title(
        f"{gen}/{split}: {summary['n']} variants, mean {summary['mean']}, p05 {q.get('p05')}, "
        f"blank {summary['blank']}, near-copy {summary['near_copy']}",
        fontsize=8,
    )
    ax.set_xlabel(f"fidelity score (cosine, {summary.get('space')})")
    ax.set_ylabel("variants")
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


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
    sort: str | None = None,
) -> Path:
    """PNG with one row per source image: the source, then its K variants (a blank tile where generation failed).

    `sort="score"`: the sources whose worst variant scores lowest first, then the best ones, each row's variants in
    ascending score order with the scores in the caption. A column with scores also gets its score histogram,
    scores-<gen>-<split>.png, next to the sheet."""
    if sort not in (None, "score"):
        raise GenaugError(f"--sort must be score (or left out), got {sort!r}")
    gen = gen or open_column(shards, gen, split)[1].parent.name
    docs = load_scores(shards, gen, split, "--sort score" if sort else None)
    ranks: dict[str, str] = {}
    if sort:
        if keys:
            raise GenaugError("--sort score picks the keys itself: leave out --keys")
        picked = sort_by_score(docs, n)
        ranks, keys = dict(picked), [x for x, _ in picked]
    rows, k = load_rows(shards, gen, split, keys, n, seed)
    rnd = random_scorer(shards, gen, split) if docs else False
    label = "scores of a random-weight scorer, meaningless" if rnd else "scores"
    grid, captions = [], []
    for key, src, variants, failed in rows:
        order = list(range(len(variants)))
        doc = docs.get(key)
        if sort and doc:
            order = sorted(order, key=lambda j: doc["scores"][j])
        grid.append([src, *[variants[j] for j in order]])
        cap = key + (f"  FAILED: {str(failed)[:60]}" if failed else "")
        if doc:
            flags = "".join(
                f" {name} {doc[f]}" for f, name in (("blank", "blank"), ("near_copy", "near-copy")) if doc.get(f)
            )
            scores = " ".join(f"{doc['scores'][j]:.2f}" for j in order)
            cap += f"  {ranks.get(key, label)}{' (random-weight scorer)' if rnd and key in ranks else ''}: "
            cap += f"{scores}{flags}"
        captions.append(cap)
    name = gen or "gen"
    path = Path(out) if out else Path(f"contact-{name}-{split}{'-by-score' if sort else ''}.png")
    hist = score_histogram(shards, gen, split, path.with_name(f"scores-{name}-{split}.png")) if docs else None
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
        "sort": sort,
        "fidelity": {r[0]: docs[r[0]] for r in rows if r[0] in docs},
        "scorer_random_weights": rnd,  # true: the scores come from an encoder with random weights (tiny)
        "histogram": str(hist) if hist else None,
    }
    return _save(_compose(grid, captions, tile, pad, labels), path, doc)


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


def trainer_draws(
    shards: str | os.PathLike,
    gen: str | None,
    split: str,
    p: float,
    views: dict,
    mix_views: str,
    seed: int,
    keys: Sequence[str] | None,
    n: int,
    epochs: int,
    num_workers: int = 0,
    batch_size: int = 1,
    shuffle_buffer: int = 1000,
) -> tuple[list[str], dict[str, list[tuple[list, list[bool]]]]]:
    """The views the trainer's own stream makes of each key, epoch by epoch: (keys, {key: [(views, replaced)]}).

    The stream is genaug.data.stream's training loader with the given seed, workers, batch size and shuffle buffer
    (rank 0 of 1), so every crop, colour parameter and replacement is the trainer's draw. Without `keys`, the
    first n samples of epoch 0 are shown; later epochs are scanned until those keys come by."""
    from genaug.data.stream import build_train_loader

    loader = build_train_loader(
        shards, split=split, gen_columns=[gen] if gen else [], p=p, mix_views=mix_views, views_recipe=views,
        batch_size=batch_size, num_workers=num_workers, seed=seed, rank=0, world_size=1,
        shuffle_buffer=shuffle_buffer,
    )  # fmt: skip
    wanted = list(keys) if keys else None
    found: dict[str, list] = {k: [] for k in wanted or []}
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        seen = 0
        for batch in loader:
            for i, key in enumerate(batch["key"]):
                if wanted is None and epoch == 0 and len(found) < n:
                    found[key] = []
                if key in found and len(found[key]) == epoch:
                    found[key].append(([v[i] for v in batch["views"]], batch["replaced"][i].tolist()))
                    seen += 1
            if seen == (len(wanted) if wanted is not None else n):
                break
        if wanted is None and epoch == 0:
            wanted = list(found)
        for key in wanted:
            found.setdefault(key, [])
        missing = [k for k in wanted if len(found[k]) <= epoch]
        if missing:
            raise GenaugError(f"keys {missing[:3]} are not in split {split!r} of {shards} (or fell off its epoch)")
    return list(wanted or []), found


def run_views(run: str | os.PathLike) -> tuple[dict, str, str]:
    """The resolved `views:` section and mixing rule a training run trained with (its recipe.yaml), and its path."""
    import yaml

    folder = Path(run)
    if not (folder / "recipe.yaml").is_file():
        raise GenaugError(f"--run {folder} is not a training run folder (one holding recipe.yaml)")
    try:
        recipe = yaml.safe_load((folder / "recipe.yaml").read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise GenaugError(f"recipe {folder / 'recipe.yaml'} is not valid YAML: {e}") from None
    views = recipe.get("views") if isinstance(recipe, dict) else None
    if not isinstance(views, dict) or not views:
        raise GenaugError(f"{folder / 'recipe.yaml'} has no views: section: is it a genaug training run?")
    mix = str((recipe.get("data") or {}).get("mix_views") or "each")  # recipe is a mapping: it has views
    return dict(views), mix, str(folder / "recipe.yaml")


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
    workers: int = 0,
    run: str | os.PathLike | None = None,
) -> Path:
    """PNG with one row per source image: the source, then its first two views in `pairs` epochs at probability p.

    By default the views are the trainer's own draws: its stream (seed, workers) with the `views:` section of
    training recipe `method` at `view_size` and its mixing rule; generated views get an orange border. `run` (a
    training run folder) takes the views and mixing rule the run resolved and trained with (its recipe.yaml, with
    every override) instead. A custom `make_views(source, variants, p, rng)` replaces the stream (one call per pair).
    """
    p = check_value(Probability, p, "--p")  # the one declaration of a probability, as the CLI's --p checks it
    views_from = None
    if make_views is None:
        from genaug.core.recipes import load_recipe
        from genaug.data.transforms import parse_views

        if run is not None:
            section, mix_views, views_from = run_views(run)
        else:
            section = dict(load_recipe("trainers", method).get("views") or {"preset": "simclr"})
            section["size"] = view_size
            views_from = f"trainers/{method} at {view_size} px"
        if gen is None:  # the set's only generated column, as the contact sheet picks it
            gen = open_column(shards, gen, split)[1].parent.name
        rec = parse_views(section)
        order, draws = trainer_draws(shards, gen, split, p, section, mix_views, seed, keys, n, pairs, workers)
        rows, _ = load_rows(shards, gen, split, order, len(order), seed)
        mean = np.asarray(rec.mean)[:, None, None]
        std = np.asarray(rec.std)[:, None, None]

        def pil(view) -> Image.Image:
            arr = view.detach().float().cpu().numpy() * std + mean
            return Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0))

        def row_views(key: str, src, variants):
            for views, replaced in draws[key]:
                yield pil(views[0]), pil(views[1]), replaced[:2]
    else:
        rows, _ = load_rows(shards, gen, split, keys, n, seed)
        rng = np.random.default_rng(seed)

        def row_views(key: str, src, variants):
            for _ in range(pairs):
                out_ = make_views(src, variants, p, rng)
                info = out_[2] if len(out_) > 2 else {}
                yield to_pil(out_[0]), to_pil(out_[1]), list(info.get("replaced", [False, False]))

    grid, marks, captions = [], [], []
    for key, src, variants, failed in rows:
        row, mark = [src], [False]
        for a, b, replaced in row_views(key, src, variants):
            row += [a, b]
            mark += [bool(r) for r in replaced]
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
        "workers": workers,
        "draws": "trainer stream (epochs 0..pairs-1)" if make_views is None else "custom make_views",
        "views_from": views_from,
        "mix_views": mix_views,
        "tile": tile,
        "pad": pad,
        "labels": labels,
        "keys": [r[0] for r in rows],
        "replaced": {r[0]: m[1:] for r, m in zip(rows, marks, strict=True)},
    }
    return _save(_compose(grid, captions, tile, pad, labels, marks), path, doc)
