"""Client CPU and wall time of one shard's range read: genaug's path (fsspec s3fs `cat_ranges`) vs obstore.

    OMP_NUM_THREADS=1 python scripts/bench_range_client.py --delay-ms 0
    OMP_NUM_THREADS=1 python scripts/bench_range_client.py --delay-ms 50
    # with `pip install obstore` it also times obstore (Rust object_store): get_ranges (at most 10 requests at a
    # time) and one get_range_async per range gathered at once

Writes a K = 10 column of 48-sample shards (the bench_stream set), starts a moto S3 server on 127.0.0.1 (behind
genaug.testing.latency_proxy with --delay-ms), draws one variant per sample (p = 0.5 with two views uses about one)
and fetches those members of one shard: the ranges read_columns sends, unmerged (4 KiB never joins two variants).
Prints, per way and per shard, wall ms and client CPU ms (this process's user + system time, the server's not
counted), best of --repeats rounds of 5 reads. The figure a range read pays per request on the client is the CPU
ms over the number of ranges.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    """Run the comparison and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import bench_stream as bs

    from genaug.shards.index import members_by_key, read_index
    from genaug.shards.storage import as_location, read_ranges, set_storage_options
    from genaug.shards.writer import read_stats
    from genaug.testing.servers import bench_bucket

    bs.K = 10
    with tempfile.TemporaryDirectory() as tmp:
        bs.make_data(Path(tmp), 192)
        with bench_bucket(Path(tmp) / "set", "bench_range_client", a.delay_ms):
            endpoint = os.environ["AWS_ENDPOINT_URL"]  # the proxy when --delay-ms
            set_storage_options(None)
            col = as_location("s3://bench/set/gen/bench/train")
            doc, _ = read_index(col, 0, read_stats(col, 0))
            keys, table = members_by_key(doc)
            rng = np.random.default_rng(0)
            spans = [table[k][f"gen_{rng.integers(10)}.jpg"] for k in keys]
            ranges = [(off, off + size) for off, size, _ in spans]
            path = col / "000000.tar"
            ways = {"s3fs cat_ranges (genaug)": lambda: read_ranges(path, ranges)}
            try:
                import obstore
                from obstore.store import S3Store

                store = S3Store(
                    "bench", endpoint=endpoint, region="us-east-1", access_key_id="testing",
                    secret_access_key="testing", client_options={"allow_http": True},
                )  # fmt: skip
                key = "set/gen/bench/train/000000.tar"
                starts, ends = [s for s, _ in ranges], [e for _, e in ranges]

                async def gathered():
                    return await asyncio.gather(
                        *[obstore.get_range_async(store, key, start=s, end=e) for s, e in ranges]
                    )

                ways["obstore get_ranges"] = lambda: obstore.get_ranges(
                    store, key, starts=starts, ends=ends, coalesce=0
                )
                ways["obstore gathered"] = lambda: asyncio.run(gathered())
            except ImportError:
                print("obstore is not installed: timing genaug's path only (pip install obstore for the comparison)")
            ref = [bytes(b) for b in ways["s3fs cat_ranges (genaug)"]()]
            best: dict[str, tuple[float, float]] = {}
            for _ in range(a.repeats):
                for name, fetch in ways.items():
                    t, c = time.perf_counter(), _cpu()
                    for _ in range(5):
                        got = fetch()
                    wall, cpu = (time.perf_counter() - t) / 5, (_cpu() - c) / 5
                    if [bytes(b) for b in got] != ref:
                        sys.exit(f"{name} returned other bytes")
                    old = best.get(name, (1e9, 1e9))
                    best[name] = (min(old[0], wall), min(old[1], cpu))
            print(f"{len(ranges)} ranges of one shard, +{a.delay_ms:g} ms per request (moto on 127.0.0.1)")
            base = best["s3fs cat_ranges (genaug)"][1]
            for name, (wall, cpu) in best.items():
                print(
                    f"{name:<26} wall {wall * 1000:7.1f} ms  client CPU {cpu * 1000:6.1f} ms "
                    f"({cpu * 1000 / len(ranges):.2f} ms a request, {base / cpu:.1f}x less than s3fs)"
                )


if __name__ == "__main__":
    main()
