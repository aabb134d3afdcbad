"""Time to open a split and its generated columns in a bucket: with completion records vs shard by shard.

    OMP_NUM_THREADS=1 python scripts/bench_open.py --shards 200 --delay-ms 50

Writes a set of `--shards` one-image shards (a source split and two K = 1 columns) locally with genaug's commit
path, finished with their completion records; starts a moto S3 server on 127.0.0.1 (with
genaug.testing.latency_proxy in front when --delay-ms is given), uploads the set, and times the stream's
`open_columns` from the bucket: first with the records, then with the records deleted (the path of a set written
before records existed). Prints both times and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def write_set(root: Path, n: int) -> None:
    """A source split `train` of n one-image shards and columns a, b, committed and finished as the writers do."""
    from genaug.shards.complete import finish_folder
    from genaug.shards.layout import make_key
    from genaug.shards.manifest import write_manifest
    from genaug.shards.writer import commit_shard
    from genaug.testing.shards import one_image_source

    jpg, names = one_image_source(root, n)
    src = root / "train"
    finish_folder(src)
    for col in ("a", "b"):
        d = root / "gen" / col / "train"
        d.mkdir(parents=True)
        write_manifest(d, {"kind": "generated", "recipe_hash": col, "k": 1, "source_split": "train", "shards": names})
        for i in range(n):
            sample = {"__key__": make_key(i, 0), "json": json.dumps({"failed": None}), "gen_0.jpg": jpg}
            commit_shard(d, i, [sample], ("json", "gen_0.jpg"))
        finish_folder(d)


def time_open(url: str, repeats: int) -> float:
    """Median seconds of open_columns(url, "train", ["a", "b"]) over `repeats` runs (a fresh filesystem each)."""
    from genaug.data.stream import open_columns
    from genaug.shards.storage import _FS_CACHE

    out = []
    for _ in range(repeats):
        _FS_CACHE.clear()  # no listing or connection state carried from one open to the next
        t = time.perf_counter()
        open_columns(url, "train", ["a", "b"])
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    """Run the comparison and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=200, help="shards per folder (default 200)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="round trip added per request by the latency proxy")
    ap.add_argument("--repeats", type=int, default=3, help="opens timed per case (median)")
    a = ap.parse_args()
    import s3fs

    import genaug.data.stream  # noqa: F401 - import torch before timing
    from genaug.testing.servers import bench_bucket

    with tempfile.TemporaryDirectory() as tmp:
        write_set(Path(tmp) / "set", a.shards)
        with bench_bucket(Path(tmp) / "set", "bench_open", a.delay_ms) as url:
            with_records = time_open("s3://bench/set", a.repeats)
            fs = s3fs.S3FileSystem(endpoint_url=url)
            for folder in ("set/train", "set/gen/a/train", "set/gen/b/train"):
                fs.rm_file(f"bench/{folder}/complete.json")
            without = time_open("s3://bench/set", max(1, a.repeats // 3))
    print(f"open a split of {a.shards} shards with 2 columns, {a.delay_ms:g} ms added per request:")
    print(f"  shard by shard (no records): {without:.2f} s")
    print(f"  completion records:          {with_records:.2f} s   ({without / with_records:.1f}x faster)")


if __name__ == "__main__":
    main()
