"""Cost of `train --gen-partial`'s look at a column in a bucket at an epoch boundary: progress record vs shard by shard.

    OMP_NUM_THREADS=1 python scripts/bench_gen_partial.py --shards 200 --delay-ms 20

Writes a source split of `--shards` one-image shards and a K = 1 column of which half the shards are committed,
each noted in the column's progress record as `generate`'s writer does; starts a moto S3 server on 127.0.0.1
(with genaug.testing.latency_proxy in front when --delay-ms is given), uploads them, and times
`genaug.data.partial.committed_shards` (what each epoch start runs): first with the progress record, then with it
deleted (the per-shard fallback of a column written before records existed). Prints both times and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def write_set(root: Path, n: int) -> None:
    """A source split of n one-image shards and a column `a` with its even shards committed and noted."""
    from genaug.shards.layout import make_key
    from genaug.shards.manifest import write_manifest
    from genaug.shards.progress import note_committed
    from genaug.shards.writer import commit_shard
    from genaug.testing.shards import one_image_source

    jpg, names = one_image_source(root, n)
    d = root / "gen" / "a" / "train"
    d.mkdir(parents=True)
    write_manifest(d, {"kind": "generated", "recipe_hash": "a", "k": 1, "source_split": "train", "shards": names})
    for i in range(0, n, 2):
        sample = {"__key__": make_key(i, 0), "json": json.dumps({"failed": None}), "gen_0.jpg": jpg}
        doc = commit_shard(d, i, [sample], ("json", "gen_0.jpg"))
        note_committed(d, doc["shard"], doc, "a")


def time_look(url: str, n: int, repeats: int) -> tuple[float, int]:
    """Median seconds of one epoch's look at column `url` over `repeats` runs, and the shards it found."""
    from genaug.data.partial import committed_shards
    from genaug.shards.layout import shard_name
    from genaug.shards.storage import _FS_CACHE, as_location

    names, out, found = [shard_name(i) for i in range(n)], [], 0
    for _ in range(repeats):
        _FS_CACHE.clear()  # no listing or connection state carried from one look to the next
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fallback's warning
            found = len(committed_shards(as_location(url), names, [1] * n))
        out.append(time.perf_counter() - t)
    return statistics.median(out), found


def main() -> None:
    """Run the comparison and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=200, help="shards of the split (default 200; half committed)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="round trip added per request by the latency proxy")
    ap.add_argument("--repeats", type=int, default=3, help="looks timed per case (median)")
    a = ap.parse_args()
    import s3fs

    import genaug.data.stream  # noqa: F401 - import torch before timing
    from genaug.testing.servers import bench_bucket

    with tempfile.TemporaryDirectory() as tmp:
        write_set(Path(tmp) / "set", a.shards)
        with bench_bucket(Path(tmp) / "set", "bench_gen_partial", a.delay_ms) as url:
            column = "s3://bench/set/gen/a/train"
            with_record, n1 = time_look(column, a.shards, a.repeats)
            s3fs.S3FileSystem(endpoint_url=url).rm_file("bench/set/gen/a/train/progress.json")
            without, n2 = time_look(column, a.shards, max(1, a.repeats // 3))
    assert n1 == n2 == (a.shards + 1) // 2, (n1, n2)
    print(f"epoch-start look at a column of {a.shards} shards ({n1} committed), {a.delay_ms:g} ms added per request:")
    print(f"  shard by shard (no progress record): {without:.2f} s")
    print(f"  progress record:                     {with_record:.2f} s   ({without / with_record:.1f}x faster)")


if __name__ == "__main__":
    main()
