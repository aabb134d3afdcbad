"""`generate --order`: the order in which shards are generated, from a list or from the trainer's own read order.

A column being trained on while it is generated (`train --gen-partial`) is most useful when the shards the trainer
reads first are made first. `--order FILE` names shards (one per line, `000012.tar`, `000012` or `12`, or a JSON
list); `--order RUN_DIR` takes a training run folder and derives the order its stream reads the source shards in
epoch 0 (the run's seed, `genaug.data.stream.epoch_shard_order`). Shards the list leaves out follow in their usual
order. Every process walks the same order; the leases split it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from genaug.core.errors import GenaugError
from genaug.data.stream import epoch_shard_order
from genaug.shards.layout import SHARD_RE


def _index(entry: object, where: str, known: set[int]) -> int:
    """A shard index from one entry of an order file: 12, "12", "000012" or "000012.tar"."""
    text = str(entry).strip()
    m = SHARD_RE.match(text) or SHARD_RE.match(f"{text}.tar")
    if m:
        idx = int(m.group(1))
    elif text.isdigit() and len(text) <= 9:
        idx = int(text)
    else:
        raise GenaugError(f"--order {where}: {text[:60]!r} is not a shard (write 000012.tar, 000012 or 12 per line)")
    if idx not in known:
        raise GenaugError(f"--order {where}: shard {idx:06d}.tar is not in the split: fix the list")
    return idx


def _from_run(run: Path, indices: list[int]) -> list[int]:
    """The source shards in the order a training run's stream reads them in epoch 0."""
    doc = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8")) or {}
    seed = (doc.get("run") or {}).get("seed") if isinstance(doc, dict) else None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GenaugError(f"--order {run}: its recipe.yaml has no integer run.seed: pass a training run folder")
    names = [f"{i:06d}.tar" for i in indices]
    return [int(n[:6]) for n in epoch_shard_order(names, seed, 0)]


def shard_priority(spec: str | os.PathLike | None, indices: list[int]) -> list[int] | None:
    """All of `indices`, those `spec` names first in its order; None without a spec."""
    if spec is None:
        return None
    path = Path(spec).expanduser()
    known = set(indices)
    if path.is_dir():
        if not (path / "recipe.yaml").is_file():
            raise GenaugError(f"--order {path}: a folder must be a training run (with recipe.yaml)")
        first = _from_run(path, indices)
    elif path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            msg = f"--order {path}: cannot read it ({type(e).__name__}): pass a text or JSON list"
            raise GenaugError(msg) from None
        if text.lstrip().startswith("["):
            try:
                entries = json.loads(text)
            except (ValueError, RecursionError):
                raise GenaugError(f"--order {path}: not a valid JSON list of shards") from None
            if not isinstance(entries, list):
                raise GenaugError(f"--order {path}: not a JSON list of shards")
        else:
            entries = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        first = [_index(e, str(path), known) for e in entries]
    else:
        raise GenaugError(f"--order {path}: no such file or run folder")
    seen = set()
    out = [i for i in first if not (i in seen or seen.add(i))]
    return out + [i for i in indices if i not in seen]
