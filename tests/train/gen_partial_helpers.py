"""Helpers of the --gen-partial tests: a source split of unequal shards, a column committed shard by shard."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.shards.complete import finish_folder
from genaug.shards.layout import RECORD_NAME, shard_name
from genaug.shards.manifest import read_manifest, write_manifest
from genaug.shards.progress import PROGRESS_NAME, note_committed
from genaug.shards.reader import iter_shard_raw
from genaug.shards.storage import Location, as_location
from genaug.shards.writer import commit_shard, read_stats
from genaug.testing.servers import MotoRecorder

#: 20 images in shards of 6: counts 6, 6, 6, 2 (unequal, so a coverage by shard count is wrong)
IMAGES, PER_SHARD = 20, 6
COUNTS = [6, 6, 6, 2]
TINY = {"views.preset": "small", "backbone.width": 4, "method_args.proj_hidden": 32, "method_args.proj_out": 16}
SPE = sum(COUNTS) // 4  # steps per epoch at batch 4


def train_flags(gen: str, epochs: int, **extra) -> dict:
    """The keywords of genaug.train.runner.train both --gen-partial test files run: a tiny SimCLR on column `gen`,
    batch 4, `epochs` epochs, a checkpoint and a log line every step."""
    return dict(
        method="simclr", gen=gen, gen_partial=True, p=0.5, steps=epochs * SPE, batch_size=4, backbone="tiny",
        image_size=16, workers=0, log_every=1, ckpt_every=1, overrides=TINY, progress_bar=False, **extra,
    )  # fmt: skip


def image_folder(folder: Path, n: int = IMAGES) -> Path:
    """An ImageNet-style folder of `n` random 24 px images in 3 classes."""
    rng = np.random.default_rng(0)
    for i in range(n):
        d = Path(folder) / f"c{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return Path(folder)


def ingest_source(images: Path, shards: str) -> None:
    """Ingest `images` into `shards` (train split) in shards of PER_SHARD, as a user would."""
    from genaug.ingest.run import ingest

    ingest(str(images), shards, per_shard=PER_SHARD, workers=1, progress=False, order="sorted")


def column_folder(shards: str, name: str = "flat") -> Location:
    """The folder of generated column `name` of the train split."""
    return as_location(f"{shards}/gen/{name}/train")


def start_column(shards: str, name: str = "flat", k: int = 2) -> Location:
    """A generated column's manifest with no shard committed yet (what `generate` writes before its first shard)."""
    src = as_location(f"{shards}/train")
    man = read_manifest(src)
    dst = column_folder(shards, name)
    dst.mkdir(parents=True, exist_ok=True)
    write_manifest(
        dst,
        {
            "kind": "generated",
            "column": name,
            "recipe": {"name": name},
            "recipe_hash": name,
            "k": k,
            "source_split": "train",
            "source_plan_hash": man.get("plan_hash"),
            "shards": man["shards"],
        },
    )
    return dst


def _flat(size: int, value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, 5, 5)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def commit_column_shard(shards: str, index: int, name: str = "flat", k: int = 2) -> dict:
    """Commit shard `index` of the column (flat-colour variants) and note it in the progress record, as
    `generate`'s writer does; finish the column's completion record when it is the last one."""
    src, dst = as_location(f"{shards}/train"), column_folder(shards, name)
    samples = []
    for raw in iter_shard_raw(src / shard_name(index)):
        s = {"__key__": raw["__key__"], "json": json.dumps({"seeds": list(range(k)), "failed": None})}
        s.update({f"gen_{j}.jpg": _flat(24, 250) for j in range(k)})
        samples.append(s)
    doc = commit_shard(dst, index, samples, with_index=True)
    note_committed(dst, doc["shard"], doc, name)
    finish_folder(dst)
    return doc


def set_record(shards: str, committed: list[int], name: str = "flat") -> None:
    """Rewind the column's records so they list exactly shards `committed` (their stats stay on disk)."""
    write_record(column_folder(shards, name), [shard_name(i) for i in committed])


def write_record(column: Location, names: list[str]) -> None:
    """Make the column's progress record list exactly `names` (from their stats), its completion record gone."""
    from genaug.shards.progress import FORMAT
    from genaug.shards.storage import put_atomic

    (column / RECORD_NAME).unlink(missing_ok=True)
    entries = {}
    for n in names:
        st = read_stats(column, int(n[:6]))
        entries[n] = {"count": st["count"], "bytes": st["bytes"], "sha256": st["sha256"]}
    doc = {"format": FORMAT, "recipe_hash": read_manifest(column)["recipe_hash"], "shards": entries}
    put_atomic(column / PROGRESS_NAME, json.dumps(doc).encode("utf-8"))


def losses(run: Path) -> list[tuple]:
    """(step, loss, probe_loss, gen_epoch, gen_coverage) of every metrics row of a run."""
    rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("probe_loss"), r.get("gen_epoch"), r.get("gen_coverage")) for r in rows]


def partial_state(run: Path) -> dict:
    """The loader's --gen-partial state of a run's newest checkpoint: {"sets": {epoch: [names]}, "coverage": ...}."""
    from genaug.data.partial import unpack_sets
    from genaug.train.checkpoint import list_checkpoints, load_checkpoint

    st = load_checkpoint(list_checkpoints(Path(run))[-1][1])
    loader = st["data"][0]["loader"]
    saved = loader["gen_partial"]
    names = [shard_name(i) for i in range(len(COUNTS))]
    return {
        "epoch": loader["epoch"],
        "step": loader["step"],
        "sets": {int(e): sorted(unpack_sets(names, p)[0]) for e, p in saved["sets"].items()},
        "coverage": {int(e): c for e, c in saved["coverage"].items()},
    }


Recorder = MotoRecorder  # moto's own request log (genaug.testing.servers)
