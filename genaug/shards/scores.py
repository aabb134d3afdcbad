"""The fidelity-score format: per-sample docs, per-shard summaries, and where a column's scores live.

A generated sample's `json` may hold `fidelity`: {"space", "scores": [K cosines], "diversity", "blank": [k...],
"near_copy": [k...]}. The same doc is the `fidelity` of the `json` of a score side column,
shards/<set>/scores/<column>/<split>/NNNNNN.tar (written by `genaug score`, aligned 1:1 with the source shards;
a sample whose generation failed holds {"failed": ...} instead). Shard stats hold a summary (`summarize`) whose
histogram has fixed bins, so summaries of shards merge exactly (`merge_summaries`) into a column's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from genaug.core.errors import GenaugError
from genaug.core.jsonio import sample_json
from genaug.shards.layout import ShardSet, shard_name
from genaug.shards.manifest import read_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.storage import Location, as_location
from genaug.shards.writer import read_stats

SCORES_KIND = "scores"
HIST_BINS = 200  # bins of width 0.01 over [-1, 1]
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def hist_edges() -> list[float]:
    """Edges of the fixed score histogram: HIST_BINS + 1 values from -1 to 1."""
    return [round(-1.0 + 2.0 * i / HIST_BINS, 6) for i in range(HIST_BINS + 1)]


def _bin(x: float) -> int:
    return min(HIST_BINS - 1, max(0, int(math.floor((x + 1.0) / 2.0 * HIST_BINS))))


def is_score(x: object) -> bool:
    """True for a usable fidelity score: a finite real number (not a bool) in [-1, 1] (a cosine similarity)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and abs(x) <= 1.0 + 1e-6


def fidelity_problem(meta: object) -> str | None:
    """What is wrong with the fidelity doc of a sample's decoded json (None when it is fine or absent)."""
    if not isinstance(meta, dict) or meta.get("failed") or meta.get("fidelity") is None:
        return None
    doc = meta["fidelity"]
    if not isinstance(doc, dict) or not isinstance(doc.get("scores"), list):
        return "has a fidelity doc without a list of scores"
    bad = next((s for s in doc["scores"] if s is not None and not is_score(s)), None)
    if bad is not None or any(s is None for s in doc["scores"]):
        return f"has fidelity score {str(bad)[:40]!r}, not a number in [-1, 1] (a cosine): rerun `genaug score`"
    return None


def sample_fidelity(meta: object) -> dict | None:
    """The fidelity doc of a sample's decoded json (None when it has none, when generation failed, or when one of
    its scores is not a number in [-1, 1]: such a sample is used as one without scores)."""
    if not isinstance(meta, dict) or meta.get("failed"):
        return None
    doc = meta.get("fidelity")
    if not (isinstance(doc, dict) and isinstance(doc.get("scores"), list)):
        return None
    return doc if all(is_score(s) for s in doc["scores"]) else None


def raw_fidelity(raw: dict) -> dict | None:
    """The fidelity doc of a raw sample (its json field as bytes), or None; bad scores are ignored with a warning."""
    return meta_fidelity(sample_json(raw["json"]), raw) if "json" in raw else None


def meta_fidelity(meta: object, raw: dict) -> dict | None:
    """The fidelity doc of raw sample `raw` whose json is already decoded as `meta`; bad scores warn (see above)."""
    problem = fidelity_problem(meta)
    if problem:  # one message per shard: Python's default warning filter shows it once per process
        warnings.warn(
            f"genaug: a fidelity score in shard {raw.get('__shard__')} is not a number in [-1, 1] (a cosine): those "
            "samples' variants are used as unscored; `genaug verify` lists them, `genaug score --overwrite` redoes",
            stacklevel=2,
        )
    return sample_fidelity(meta)


def summarize(docs: Iterable[dict], space: str | None = None) -> dict:
    """Distribution summary of per-sample fidelity docs: n, mean, std, min, max, quantiles, histogram, flag counts."""
    scores: list[float] = []
    div: list[float] = []
    blank = near = 0
    for d in docs:
        scores += [float(s) for s in d.get("scores") or [] if s is not None]
        if d.get("diversity") is not None:
            div.append(float(d["diversity"]))
        blank += len(d.get("blank") or [])
        near += len(d.get("near_copy") or [])
    hist = [0] * HIST_BINS
    for s in scores:
        hist[_bin(s)] += 1
    out = {
        "space": space,
        "n": len(scores),
        "sum": sum(scores),
        "sumsq": sum(s * s for s in scores),
        "min": min(scores) if scores else None,
        "max": max(scores) if scores else None,
        "hist": hist,
        "blank": blank,
        "near_copy": near,
        "diversity_sum": sum(div),
        "diversity_n": len(div),
    }
    ordered = sorted(scores)
    out["quantiles"] = {f"p{int(q * 100):02d}": _quantile(ordered, q) for q in QUANTILES} if scores else {}
    return _finish(out)


def _quantile(ordered: list[float], q: float) -> float:
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 6)


def _finish(out: dict) -> dict:
    n = out["n"]
    out["mean"] = round(out["sum"] / n, 6) if n else None
    out["std"] = round(math.sqrt(max(0.0, out["sumsq"] / n - (out["sum"] / n) ** 2)), 6) if n else None
    out["diversity_mean"] = round(out["diversity_sum"] / out["diversity_n"], 6) if out["diversity_n"] else None
    out["blank_rate"] = round(out["blank"] / n, 6) if n else None
    out["near_copy_rate"] = round(out["near_copy"] / n, 6) if n else None
    return out


def merge_summaries(parts: Iterable[dict]) -> dict:
    """One summary of many shards' summaries (exact but for quantiles, read from the 0.01-wide histogram)."""
    parts = [p for p in parts if _summary_ok(p)]
    out = {
        "space": next((p.get("space") for p in parts if p.get("space")), None),
        "n": sum(int(p.get("n", 0)) for p in parts),
        "sum": sum(float(p.get("sum", 0.0)) for p in parts),
        "sumsq": sum(float(p.get("sumsq", 0.0)) for p in parts),
        "min": min((p["min"] for p in parts if p.get("min") is not None), default=None),
        "max": max((p["max"] for p in parts if p.get("max") is not None), default=None),
        "hist": [sum(int((p.get("hist") or [0] * HIST_BINS)[i]) for p in parts) for i in range(HIST_BINS)],
        "blank": sum(int(p.get("blank", 0)) for p in parts),
        "near_copy": sum(int(p.get("near_copy", 0)) for p in parts),
        "diversity_sum": sum(float(p.get("diversity_sum", 0.0)) for p in parts),
        "diversity_n": sum(int(p.get("diversity_n", 0)) for p in parts),
        "shards": len(parts),
    }
    out["quantiles"] = _hist_quantiles(out["hist"]) if out["n"] else {}
    return _finish(out)


def _summary_ok(p: object) -> bool:
    """True for a shard summary whose counts and sums are finite numbers (stats are files a user may have edited)."""
    if not isinstance(p, dict):
        return False
    nums = [p.get(k, 0) for k in ("n", "sum", "sumsq", "blank", "near_copy", "diversity_sum", "diversity_n")]
    nums += [p[k] for k in ("min", "max") if p.get(k) is not None]
    hist = p.get("hist")
    if hist is not None:
        if not isinstance(hist, list) or len(hist) != HIST_BINS:
            return False
        nums += hist
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in nums)


def _hist_quantiles(hist: list[int]) -> dict:
    total, edges, out = sum(hist), hist_edges(), {}
    for q in QUANTILES:
        target, acc = q * total, 0
        for i, c in enumerate(hist):
            acc += c
            if acc >= target and c:
                out[f"p{int(q * 100):02d}"] = round((edges[i] + edges[i + 1]) / 2, 6)
                break
    return out


def column_summary(folder: Path) -> dict | None:
    """The merged fidelity summary of every committed shard of a column or score folder (None when it has none)."""
    man = read_manifest(folder)
    parts = []
    for name in man.get("shards") or []:
        st = read_stats(folder, int(name[:6])) or {}
        if isinstance(st.get("fidelity"), dict):
            parts.append(st["fidelity"])
    return merge_summaries(parts) if parts else None


def score_source(ss: ShardSet, column: str, split: str) -> tuple[str, Path] | None:
    """Where the scores of a generated column live: ("side", scores folder) when `genaug score` wrote one, else
    ("inline", column folder) when generate wrote them into the column, else None."""
    side = ss.scores_dir(column, split)
    if (side / "manifest.json").is_file():
        return "side", side
    gdir = ss.gen_dir(column, split)
    if (gdir / "manifest.json").is_file() and read_manifest(gdir).get("fidelity"):
        return "inline", gdir
    return None


def require_scores(ss: ShardSet, column: str, split: str, why: str) -> tuple[str, Path]:
    """score_source, or a user error naming `genaug score` as the fix."""
    found = score_source(ss, column, split)
    if found is None:
        raise GenaugError(
            f"{why} needs fidelity scores, and generated column {column!r} (split {split!r}) has none: run "
            f"`genaug score --shards {ss.root} --gen {column} --split {split}` first"
        )
    return found


def iter_scores(folder: Location) -> Iterator[tuple[str, dict | None]]:
    """(key, fidelity doc or None) of every sample of a column or score folder, in shard order."""
    for name in read_manifest(folder).get("shards") or []:
        if not (as_location(folder) / name).exists():
            continue
        for raw in iter_shard_raw(as_location(folder) / name):
            yield raw["__key__"], raw_fidelity(raw)


def shard_path(folder: Location, index: int) -> Location:
    """Path of shard `index` of a score folder."""
    return as_location(folder) / shard_name(index)
