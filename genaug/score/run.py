"""`genaug score`: fidelity scores of an existing generated column, written as an aligned side column.

The side column is shards/<set>/scores/<column>/<split>/: manifest.json (kind "scores"), NNNNNN.tar with one
`<key>.json` per source sample ({"fidelity": doc}, or {"failed": ...} where generation failed) and NNNNNN.json
stats (with the shard's score summary), written by the commit protocol; the generated shards are never rewritten.
A rerun resumes; `genaug verify` checks it like any column.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genaug.core.errors import GenaugError
from genaug.core.jsonio import sample_json
from genaug.core.locks import folder_lock
from genaug.generate.base import generator_class
from genaug.generate.column import source_indices
from genaug.generate.fidelity import Scorer, random_weight_mark, settings
from genaug.score.options import ScoreOptions
from genaug.shards.complete import finish_folder
from genaug.shards.layout import IMAGE_FIELDS, shard_name, status_command, verify_command
from genaug.shards.manifest import open_gen_split, open_split, read_manifest, write_manifest
from genaug.shards.reader import decode_image, iter_shard_raw
from genaug.shards.scores import SCORES_KIND, column_summary, summarize
from genaug.shards.storage import Location, RemotePath
from genaug.shards.writer import ShardWriter, commit_shard, is_shard_done, read_stats

ENCODERS = ("clip", "swav")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class Embedder:
    """A feature space for scoring: embed(images) -> [N, D] rows, its space name and what it was built from."""

    def __init__(self, embed: Callable, space: str, encoder: str, close: Callable[[], None] | None = None) -> None:
        self.embed, self.space, self.encoder = embed, space, encoder
        self.close = close or (lambda: None)


def _clip_folder(path: Path, device: str) -> Embedder:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from genaug.generate.models.sd import model_card_preprocess

    model = CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True).to(device).eval()
    proc_dir = next(
        (d for d in (path, path.parent / "feature_extractor") if (d / "preprocessor_config.json").is_file()), None
    )
    proc = CLIPImageProcessor.from_pretrained(str(proc_dir)) if proc_dir else None
    pre = {"size": int(model.config.image_size), "mean": CLIP_MEAN, "std": CLIP_STD}

    @torch.no_grad()
    def embed(images: list) -> torch.Tensor:
        if proc is not None:
            pixels = proc(images=[im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        else:
            pixels = model_card_preprocess(images, pre)
        return model(pixels.to(device)).image_embeds.float().cpu()

    return Embedder(embed, f"clip-image:{path.name}", str(path))


def _swav_file(path: Path, device: str) -> Embedder:
    import torch

    from genaug.generate.models.icgan.swav import SwAVFeatures, preprocess

    net = SwAVFeatures()
    net.load_swav(path)
    net = net.to(device).eval()

    @torch.no_grad()
    def embed(images: list) -> torch.Tensor:
        return net(preprocess(images, 224).to(device)).float().cpu()

    return Embedder(embed, "swav", str(path))


def _column_generator(recipe: dict, weights: str | None, device: str) -> Embedder:
    import warnings

    from genaug.generate.runner import quiet_hub_bars

    cls = generator_class(recipe["generator"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        quiet_hub_bars()
        gen = cls(recipe, device=device, weights=weights)
    return Embedder(gen.embed, cls.feature_space, "generator", gen.close)


def resolve_embedder(encoder: str | None, recipe: dict, weights: str | None, device: str) -> Embedder:
    """The feature space of `--encoder` (default: the column's own generator's) for a column made with `recipe`."""
    own = getattr(generator_class(recipe["generator"]), "feature_space", "") if recipe.get("generator") else ""
    named = {"clip": "clip-image", "swav": "swav"}.get(encoder or "")  # None for a path
    if encoder in (None, "") or (named is not None and named == own and own):
        if not own:
            raise GenaugError(
                f"the column's generator {recipe.get('generator')!r} has no feature space of its own: pass --encoder "
                "PATH (a CLIP image-encoder folder or a SwAV checkpoint)"
            )
        return _column_generator(recipe, weights, device)
    if encoder == "swav":
        from genaug.generate.models.icgan.swav import find_swav

        if not weights:
            raise GenaugError(
                "--encoder swav for a non-IC-GAN column needs --weights DIR holding swav_800ep_pretrain.pth.tar"
            )
        return _swav_file(find_swav([Path(weights).expanduser()]), device)
    if encoder == "clip":
        raise GenaugError(
            f"--encoder clip: column's generator {recipe.get('generator')!r} has no CLIP encoder: pass --encoder PATH "
            "to a CLIP image-encoder folder (e.g. the image_encoder folder of a diffusers pipeline)"
        )
    path = Path(str(encoder)).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return _clip_folder(path, device)
    if path.is_file():
        return _swav_file(path, device)
    raise GenaugError(
        f"--encoder {encoder}: not clip, swav, a CLIP image-encoder folder (with config.json) or a SwAV checkpoint file"
    )


def _pairs(src: Path, gen: Path, name: str):
    for s, g in itertools.zip_longest(iter_shard_raw(src / name), iter_shard_raw(gen / name)):
        if s is None or g is None or s["__key__"] != g["__key__"]:
            raise GenaugError(
                f"{gen / name} is not aligned with {src / name}: run {verify_command(gen)}, then regenerate it"
            )
        yield s, g


def _score_shard(src: Path, gdir: Path, k: int, index: int, scorer: Scorer) -> tuple[list[dict], list[dict]]:
    keys, failed, sources, variants = [], {}, [], []
    for s, g in _pairs(src, gdir, shard_name(index)):
        key = s["__key__"]
        keys.append(key)
        meta = sample_json(g.get("json", b"{}"))
        meta = meta if isinstance(meta, dict) else {}
        if meta.get("failed") or not all(f"gen_{j}.jpg" in g for j in range(k)):
            failed[key] = str(meta.get("failed") or "no variants")
            continue
        field = next((f for f in IMAGE_FIELDS if f in s), None)
        try:
            if field is None:
                raise ValueError("source sample has no image field")
            sources.append(decode_image(s[field]))
            variants.append([decode_image(g[f"gen_{j}.jpg"]) for j in range(k)])
        except Exception as e:  # noqa: BLE001 - a corrupt image: recorded, the shard goes on
            failed[key] = f"{type(e).__name__}: {e}"
    docs = dict(zip([x for x in keys if x not in failed], scorer.score(sources, variants), strict=True))
    samples = []
    for key in keys:
        body = {"failed": failed[key]} if key in failed else {"failed": None, "fidelity": docs[key]}
        samples.append({"__key__": key, "json": json.dumps(body, sort_keys=True)})
    return samples, list(docs.values())


def score_lock(folder: Location):
    """One `genaug score` per side column: a lock in the folder, or for a URL in this machine's cache folder."""
    if not isinstance(folder, RemotePath):
        return folder_lock(folder, what="genaug score")
    from genaug.core.files import cache_home

    local = cache_home() / "locks" / re.sub(r"[^A-Za-z0-9_.-]+", "_", str(folder)).strip("_")
    return folder_lock(local, what=f"genaug score of {folder}")


def score(
    shards: str,
    gen: str,
    split: str = "train",
    encoder: str | None = None,
    weights: str | None = None,
    device: str | None = None,
    batch_size: int = 16,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write fidelity scores of generated column `gen` into shards/<set>/scores/<gen>/<split>/ (resumable)."""
    opts = {
        "shards": str(shards),
        "gen": gen,
        "split": split,
        "encoder": encoder,
        "weights": weights,
        "device": device,
        "batch_size": batch_size,
        "overwrite": overwrite,
        "no_progress": not progress,
    }
    return run_score(ScoreOptions.parse(opts))


def run_score(o: ScoreOptions) -> dict[str, Any]:
    """Write fidelity scores of generated column `o.gen` into shards/<set>/scores/<gen>/<split>/ (resumable)."""
    shards, gen, split, encoder, weights, device = o.shards, o.gen, o.split, o.encoder, o.weights, o.device
    batch_size, overwrite, progress = o.batch_size, o.overwrite, not o.no_progress
    ss, src, src_man = open_split(shards, split)
    gdir, gman = open_gen_split(ss, gen, split, shards)
    indices = source_indices(src, src_man)
    if gman.get("shards") != src_man.get("shards"):
        raise GenaugError(f"generated column {gdir} lists other shards than {src}: regenerate it")
    unfinished = [i for i in indices if not is_shard_done(gdir, i, check_sha=False)]
    if unfinished:
        raise GenaugError(
            f"{gdir / shard_name(unfinished[0])} is not complete: finish the column first (rerun the generate "
            f"command that made it; {status_command(gdir)} shows what is left)"
        )
    folder = ss.scores_dir(gen, split)
    recipe, k = gman.get("recipe") or {}, int(gman.get("k") or 0)
    out = {"folder": str(folder), "shards": [], "samples": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    with score_lock(folder):
        todo = [i for i in indices if not is_shard_done(folder, i, check_sha=False)]
        if (folder / "manifest.json").exists() and not overwrite and not todo:
            man = read_manifest(folder)
            if man.get("requested") == (encoder or "") and man.get("column_recipe_hash") == gman.get("recipe_hash"):
                finish_folder(folder)  # a column scored before completion records existed gets one
                return {**out, "summary": (man.get("fidelity") or {}).get("summary")}  # done already
        from genaug.core.devices import default_device

        embedder = resolve_embedder(encoder, recipe, weights, device or default_device())
        try:
            own = embedder.encoder == "generator" and not weights  # the column's own model, as the recipe builds it
            fid = settings(embedder.space, embedder.encoder, **(random_weight_mark(recipe) if own else {}))
            manifest = {
                "kind": SCORES_KIND,
                "column": gen,
                "source_split": split,
                "source_plan_hash": src_man.get("plan_hash"),
                "shards": src_man.get("shards"),
                "num_shards": len(indices),
                "k": k,
                "column_recipe_hash": gman.get("recipe_hash"),
                "space": fid["space"],
                "encoder": fid["encoder"],
                "requested": encoder or "",
                "fidelity": fid,
            }
            writer = ShardWriter(folder, manifest, ("column_recipe_hash", "k", "space", "encoder", "requested"))
            writer.prepare(overwrite)
            scorer = Scorer(embedder.embed, fid, batch_size)
            bar = None
            pending = writer.pending(indices, check_sha=False)
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(pending), unit="shard", desc=f"score {gen}", dynamic_ncols=True)
            for i in pending:
                samples, docs = _score_shard(src, gdir, k, i, scorer)
                gstats = read_stats(gdir, i) or {}
                stats = {"fidelity": summarize(docs, fid["space"]), "column_sha256": gstats.get("sha256")}
                commit_shard(folder, i, samples, ("json",), stats, with_index=True)
                out["shards"].append(i)
                out["samples"] += len(samples)
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
        finally:
            embedder.close()
        man = read_manifest(folder)
        man["fidelity"] = {**fid, "summary": column_summary(folder)}
        write_manifest(folder, man)
        finish_folder(folder)  # after the last manifest write: the record is tied to that manifest
    out["seconds"] = time.perf_counter() - t0
    out["summary"] = man["fidelity"]["summary"]
    return out
