"""Tar I/O on webdataset vs plain tarfile, same run: MB/s of genaug's write_samples/read_samples and the baseline.

The baseline is Python's tarfile alone with the same member layout (what genaug's hand-written tar code did before
it moved onto webdataset's TarWriter, tar_file_expander and group_by_keys). Prints MB/s and the ratio for writing
and for reading one shard of `--samples` samples of `--kb` KiB images with K generated variants each.

    python scripts/bench_tario.py --samples 1000 --kb 100 --k 2 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import time

from genaug.shards.tario import TAR_MTIME, read_samples, write_samples


def _samples(n: int, kb: int, k: int) -> list[dict]:
    rnd = os.urandom(kb * 1024)
    out = []
    for r in range(n):
        s = {"__key__": f"s000000r{r:06d}", "jpg": rnd, "cls": str(r % 10), "json": '{"source": "x.jpg"}'}
        for j in range(k):
            s[f"gen_{j}.jpg"] = rnd
        out.append(s)
    return out


def baseline_write(f, samples: list[dict]) -> None:
    """Plain tarfile: the same USTAR members genaug writes."""
    with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            for field in sorted(x for x in s if not x.startswith("__")):
                data = s[field].encode() if isinstance(s[field], str) else s[field]
                info = tarfile.TarInfo(f"{s['__key__']}.{field}")
                info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o444
                tar.addfile(info, io.BytesIO(data))


def baseline_read(f) -> int:
    """Plain streaming tarfile, grouping consecutive members by key."""
    n, cur = 0, None
    with tarfile.open(fileobj=f, mode="r|") as tar:
        for m in tar:
            key = m.name.split(".", 1)[0]
            tar.extractfile(m).read()
            if key != cur:
                n, cur = n + 1, key
    return n


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    """Run the comparison and print a small table with ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--kb", type=int, default=100)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    samples = _samples(a.samples, a.kb, a.k)
    buf = io.BytesIO()
    write_samples(buf, samples)
    data = buf.getvalue()
    ref = io.BytesIO()
    baseline_write(ref, samples)
    assert ref.getvalue() == data, "the baseline must write the same bytes"
    mb = len(data) / 1e6
    w_ours = _best(lambda: write_samples(io.BytesIO(), samples), a.repeats)
    w_base = _best(lambda: baseline_write(io.BytesIO(), samples), a.repeats)
    r_ours = _best(lambda: sum(1 for _ in read_samples(io.BytesIO(data))), a.repeats)
    r_base = _best(lambda: baseline_read(io.BytesIO(data)), a.repeats)
    print(f"shard: {a.samples} samples x (1 + {a.k}) images of {a.kb} KiB = {mb:.1f} MB (identical bytes)")
    print(f"write  genaug (webdataset TarWriter) {mb / w_ours:8.0f} MB/s   tarfile {mb / w_base:8.0f} MB/s   "
          f"ratio {w_base / w_ours:.2f}x")  # fmt: skip
    print(f"read   genaug (webdataset iterator)  {mb / r_ours:8.0f} MB/s   tarfile {mb / r_base:8.0f} MB/s   "
          f"ratio {r_base / r_ours:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
