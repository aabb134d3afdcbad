"""Samples/s of the genaug training stream vs a folder-of-JPEGs dataset (the paper code's non-DALI path) and vs the
ceiling of decode + transforms from bytes in memory, on the same images, transforms and worker count.

    OMP_NUM_THREADS=1 python scripts/bench_stream.py --images 384 --workers 2 --batch 32 [--gpu]
    OMP_NUM_THREADS=1 python scripts/bench_stream.py --deferred-only   # float32 path vs uint8 + deferred, on CPU
    OMP_NUM_THREADS=1 python scripts/bench_stream.py --remote   # the same set from a local S3 server vs local disk
    OMP_NUM_THREADS=1 python scripts/bench_stream.py --remote --delay-ms 50 --mbps 50   # a far store: read-ahead 0 vs 1
    # --remote also times the shard cache (data.cache_dir): cold (an empty cache dir, filled as the epoch reads) and
    # warm (the same dir in the next epoch), each against local disk
    OMP_NUM_THREADS=1 python scripts/bench_stream.py --remote --ranges --k 10 --delay-ms 50   # range reads vs whole
    # --range-gap 4K 64K 1M: one range-read case per data.range_gap; --pin: client on core 0, store on core 1

The remote comparison: a moto S3 server on 127.0.0.1 (a subprocess, needs `pip install 'moto[server]' s3fs`, stopped
at the end), the benchmark's shard set copied object by object into s3://, and the training stream timed from the
bucket and from disk in the same run, alternating (goal: bucket / disk >= 0.9x).

The range-read comparison (--remote --ranges): whole column shards vs range reads of the variants the views take
(data.range_reads off/on), from local disk, from moto directly (+0 ms) and through the latency proxy (+--delay-ms,
default 50), all in the same run, alternating; it prints samples/s, the bytes fetched per epoch over the image bytes
used (the loader's own counts), the CPU-s the store (moto + proxy) spent per epoch, and each case's ratio to local
disk read whole. With --pin the client (training process and workers) runs on core 0 and the store on core 1 in
every case, local disk included: the store's per-request CPU then does not come out of the client's cores, as
with a real store (without it, on a 2-core machine, the Python server competes with the decoding workers).

The deferred comparison: "float32" = colour stage in the workers, float32 views made in the main process (what a
GPU run copies to the device); "uint8 + deferred" = workers deliver uint8 crops + parameter rows, the colour stage
and normalisation run batched in the main process (the device path, on a CPU tensor here: kornia blur). It also
prints the bytes per sample each path hands over (the host-to-device copy of a GPU run).

Data: 256 px JPEG sources (synthetic) and one generated column with K=2 (perturbed copies of the sources), written
to a temp dir both as shards and as separate JPEG files in folders. Views: the BYOL recipe, 2 views of 224 px,
p = 0.5. With --gpu (and a CUDA device) it also times the stream with the colour stage on the GPU.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageFilter
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from genaug.data.color import apply_color_stage, normalize
from genaug.data.stream import build_train_loader
from genaug.data.transforms import make_views, parse_views
from genaug.shards.manifest import read_manifest, write_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.shards.writer import commit_shard
from genaug.testing.servers import stop_server
from genaug.testing.shards import write_synthetic_split

P = 0.5
K = 2


def make_data(root: Path, n: int) -> tuple[list[tuple[bytes, list[bytes]]], Path]:
    """Write shards + a generated column + the same JPEGs as files; return the in-memory copy and the folder."""
    shards = max(4, n // 48)
    write_synthetic_split(root / "set", "train", num_shards=shards, per_shard=n // shards, size=256)
    src = root / "set" / "train"
    gen = root / "set" / "gen" / "bench" / "train"
    gen.mkdir(parents=True)
    man = read_manifest(src)
    write_manifest(gen, {"kind": "generated", "k": K, "source_split": "train", "shards": man["shards"]})
    folder = root / "folder"
    memory = []
    for name in man["shards"]:
        samples = []
        for raw in iter_shard_raw(src / name):
            key = raw["__key__"]
            img = Image.open(io.BytesIO(raw["jpg"])).convert("RGB")
            variants = []
            for k in range(K):
                buf = io.BytesIO()
                img.rotate(90 * (k + 1)).filter(ImageFilter.SMOOTH).save(buf, format="JPEG", quality=90)
                variants.append(buf.getvalue())
            samples.append(
                {"__key__": key, "json": '{"failed": null}', **{f"gen_{k}.jpg": v for k, v in enumerate(variants)}}
            )
            d = folder / f"class{int(raw['cls'])}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{key}.jpg").write_bytes(raw["jpg"])
            for k, v in enumerate(variants):
                (folder / "gen" / f"{key}_{k}.jpg").parent.mkdir(parents=True, exist_ok=True)
                (folder / "gen" / f"{key}_{k}.jpg").write_bytes(v)
            memory.append((raw["jpg"], variants))
        commit_shard(gen, int(name[:6]), samples, with_index=True)  # as `genaug generate` writes it
    return memory, folder


class PILBlur(torch.nn.Module):
    """Gaussian blur with PIL's ImageFilter, as the SimCLR/BYOL/MoCo/DINO reference code does."""

    def __init__(self, sigma: tuple[float, float]) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, img):
        return img.filter(ImageFilter.GaussianBlur(random.uniform(*self.sigma)))


def torchvision_view(spec) -> v2.Compose:
    """The paper code's per-view torchvision transform on PIL images (BYOL view spec, PIL blur)."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(spec.size, scale=spec.scale),
            v2.RandomHorizontalFlip(spec.flip),
            v2.RandomApply(
                [v2.ColorJitter(spec.brightness, spec.contrast, spec.saturation, spec.hue)], p=spec.jitter_p
            ),
            v2.RandomGrayscale(spec.grayscale),
            v2.RandomApply([PILBlur(spec.blur_sigma)], p=spec.blur_p),
            v2.RandomSolarize(128, p=spec.solarize),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )


class FolderDataset(Dataset):
    """ImageFolder-style: source and generated images as separate JPEG files, PIL loader, torchvision views."""

    def __init__(self, folder: Path, recipe) -> None:
        self.files = sorted(p for p in folder.glob("class*/*.jpg"))
        self.gen = folder / "gen"
        self.tf = [torchvision_view(s) for s in recipe.views]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        views = []
        for tf in self.tf:
            if random.random() < P:
                path_v = self.gen / f"{path.stem}_{random.randrange(K)}.jpg"
            else:
                path_v = path
            with open(path_v, "rb") as f:
                img = Image.open(f).convert("RGB")
            views.append(tf(img))
        return views, int(path.parent.name[5:])


class MemoryDataset(Dataset):
    """The ceiling: genaug's decode + view transforms straight from bytes in memory (no files, no tars)."""

    def __init__(self, memory, recipe) -> None:
        self.memory, self.recipe = memory, recipe

    def __len__(self) -> int:
        return len(self.memory)

    def __getitem__(self, i: int):
        src, variants = self.memory[i]
        rnd = random.Random(i * 7919 + random.randrange(1 << 30))
        sources = [1 + rnd.randrange(K) if rnd.random() < P else 0 for _ in self.recipe.views]
        crops, rows = make_views([src, *variants], sources, self.recipe, rnd)
        return crops, rows


def memory_collate(items):
    """Stack crops per view, run the batched colour stage, normalise (as the stream does)."""
    out = []
    for v in range(len(items[0][0])):
        x = torch.stack([it[0][v] for it in items])
        pr = torch.tensor([it[1][v] for it in items], dtype=torch.float32)
        out.append(apply_color_stage(x, pr))
    return out


def rate(it, n_expected: int, batch: int, finish=None) -> float:
    """Samples/s over an iterator of batches, the first batch (worker start-up) excluded."""
    t0 = None
    n = 0
    for b in it:
        if finish is not None:
            finish(b)
        if t0 is None:
            t0 = time.perf_counter()
            continue
        n += batch
    return n / (time.perf_counter() - t0)


def epoch_rate(loader) -> float:
    """Samples/s over a whole epoch, start-up and every fetch included (the remote comparison: fetches count)."""
    t0, n = time.perf_counter(), 0
    for b in loader:
        n += len(b["key"])
    return n / (time.perf_counter() - t0)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the loader's workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def batch_bytes(b: dict) -> int:
    """Bytes of the tensors a batch hands to the training step (views, and parameter rows when deferred)."""
    n = sum(v.numel() * v.element_size() for v in b["views"])
    return n + sum(p.numel() * p.element_size() for p in (b.get("params") or []))


def deferred_compare(root: Path, recipe, workers: int, batch: int, repeats: int) -> dict:
    """Samples/s and bytes/sample of the float32 path vs the uint8 + deferred-augmentation path (CPU)."""
    from genaug.data.color import apply_color_stage as color

    out: dict = {"float32": [], "uint8_deferred": []}
    sizes: dict = {}
    for rep in range(repeats):
        for name, deferred in (("float32", False), ("uint8_deferred", True)):
            loader = build_train_loader(
                root, "train", ["bench"], p=P, views_recipe=recipe, batch_size=batch, num_workers=workers,
                seed=rep, shuffle_buffer=256, gpu_augment=deferred, device="cpu",
            )  # fmt: skip
            loader._finish = _recording(loader, sizes, name, color)
            out[name].append(rate(loader, 0, batch))
        print(f"  repeat {rep}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in out.items()), flush=True)
    return {k: {"samples_per_s": max(v), "bytes_per_sample": sizes[k] / batch} for k, v in out.items()}


def _recording(loader, sizes: dict, name: str, color):
    """Wrap loader._finish to record the bytes of the first batch the workers hand over (before the colour stage)."""
    finish = loader._finish

    def wrapped(b: dict) -> dict:
        if name not in sizes:
            sizes[name] = batch_bytes(b) if b.get("params") is not None else 4 * batch_bytes(b)  # float32 views
        return finish(b)

    return wrapped


def start_s3_server() -> tuple[subprocess.Popen, str]:
    """A moto S3 server on a free 127.0.0.1 port (a subprocess); the AWS_* variables point at it."""
    from genaug.testing.servers import ServerUnavailable, start_moto

    try:
        proc, url = start_moto()
    except ServerUnavailable as e:
        sys.exit(f"--remote: {e}")
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)  # DataLoader workers inherit them
    for k in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "GENAUG_STORAGE_OPTIONS"):
        os.environ.pop(k, None)
    return proc, url


def copy_set(local: Path, url: str) -> int:
    """Copy every file of the local shard set to the same relative keys under `url`; return the bytes copied."""
    from genaug.shards.storage import as_location

    dst = as_location(url)
    n = 0
    for p in sorted(local.rglob("*")):
        if p.is_file():
            n += (dst / p.relative_to(local).as_posix()).write_bytes(p.read_bytes())
    return n


def remote_compare(
    root: Path, recipe, workers: int, batch: int, repeats: int, delay_ms: float = 0.0, mbps: float = 0.0
) -> None:
    """Samples/s of the training stream from a local S3 server vs from local disk, in the same run.

    Whole epochs are timed, start-up and fetches included, with a shuffle buffer (16) smaller than a shard (48), so
    a worker fetches shards while it delivers batches, as it does with ImageNet's 1000-sample shards.

    With `delay_ms`/`mbps` the server sits behind genaug.testing.latency_proxy (a round trip per request and a
    bandwidth cap per connection), and the stream is timed with and without shard read-ahead.

    The shard cache: "cache cold" reads the bucket through an empty cache dir (a fresh one each repeat), "cache warm"
    reads it again through that dir (every shard a local hit, the stats revalidated by one HEAD each)."""
    import boto3

    from genaug.shards.storage import set_storage_options
    from genaug.testing.servers import start_latency_proxy

    proc, endpoint = start_s3_server()
    proxy = None
    try:
        bucket = "bench"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/set"
        t0 = time.perf_counter()
        size = copy_set(root, url)
        print(f"copied the set to {url} ({size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s", flush=True)
        variants = [("disk", root, 1), ("s3 read-ahead 0", url, 0), ("s3 read-ahead 1", url, 1)]
        variants += [("s3 cache cold", url, 1), ("s3 cache warm", url, 1)]
        caches = Path(tempfile.mkdtemp(prefix="genaug-bench-cache-"))  # "warm" is filled by one untimed epoch
        if delay_ms or mbps:
            proxy, far = start_latency_proxy(endpoint, delay_ms, mbps)
            os.environ["AWS_ENDPOINT_URL"] = far  # DataLoader workers inherit it
            set_storage_options(None)  # drop filesystems made for the direct endpoint
            print(f"s3 behind a proxy: {delay_ms:g} ms per request, {mbps:g} MB/s per connection", flush=True)
        res: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in variants}  # CPU-s of this process and its workers

        def make(shards, ahead, cache, rep):
            return build_train_loader(
                shards, "train", ["bench"], p=P, views_recipe=recipe, batch_size=batch, num_workers=workers,
                seed=rep, shuffle_buffer=16, read_ahead=ahead, cache_dir=cache,
                range_reads="off",  # whole shards (without a cache too); see --ranges
            )  # fmt: skip

        epoch_rate(make(url, 1, caches / "warm", 0))  # fills the warm cache, untimed
        for rep in range(repeats):
            for name, shards, ahead in variants[rep % len(variants) :] + variants[: rep % len(variants)]:  # rotated
                cache = {"s3 cache cold": caches / f"cold{rep}", "s3 cache warm": caches / "warm"}.get(name)
                loader = make(shards, ahead, cache, rep)
                c0 = cpu_seconds()
                res[name].append(epoch_rate(loader))
                cpu[name].append(cpu_seconds() - c0)  # a buffer smaller than a shard: fetches fall inside the epoch
            print(f"  repeat {rep}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in res.items()), flush=True)
        best = {k: max(v) for k, v in res.items()}
        where = "moto on 127.0.0.1" + (f", +{delay_ms:g} ms, {mbps:g} MB/s" if proxy else "")
        for name, value in best.items():
            print(f"genaug stream from {name:<18} {value:8.1f} samples/s" + ("" if name == "disk" else f" ({where})"))
        for name, value in best.items():
            if name != "disk" and "cache" not in name:
                print(f"ratio {name} / local disk: {value / best['disk']:.2f}x (goal >= 0.9x)")
        print(f"ratio read-ahead 1 / read-ahead 0: {best['s3 read-ahead 1'] / best['s3 read-ahead 0']:.2f}x")
        print(f"ratio cache cold / local disk: {best['s3 cache cold'] / best['disk']:.2f}x")
        print(f"ratio cache warm / local disk: {best['s3 cache warm'] / best['disk']:.2f}x (goal >= 0.95x)")
        least = {k: min(v) for k, v in cpu.items()}  # a shared machine slows wall time; CPU time is steadier
        print("CPU-s per epoch (main + workers, not the server; least of repeats): ", end="")
        print(", ".join(f"{k} {v:.2f}" for k, v in least.items()))
        print(f"ratio CPU-s local disk / cache warm: {least['disk'] / least['s3 cache warm']:.2f}x")
        shutil.rmtree(caches, ignore_errors=True)
    finally:
        if proxy is not None:
            stop_server(proxy)
        stop_server(proc)


def _cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pin(pid: int, cores: set[int]) -> None:
    """Every thread of process `pid` (and the threads it starts later) on `cores`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cores)


def ranges_compare(
    root: Path, recipe, workers: int, batch: int, repeats: int, delay_ms: float, gaps=("4K",), pin: bool = False
) -> None:
    """Samples/s, bytes fetched / bytes used and the store's CPU-s of whole-shard vs range reads (one case per
    data.range_gap in `gaps`): local disk, s3 +0 ms, s3 +delay_ms.

    `pin`: the training process and its workers on core 0, the S3 server and the latency proxy on core 1, in every
    case (local disk too), so the store's per-request CPU does not come out of the client's cores, as with a real
    store; without it all share every core."""
    import boto3

    from genaug.shards.storage import set_storage_options
    from genaug.testing.servers import start_latency_proxy

    proc, endpoint = start_s3_server()
    proxy = None
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
        url = "s3://bench/set"
        size = copy_set(root, url)
        print(f"copied the set to {url} ({size / 2**20:.1f} MiB)", flush=True)
        proxy, far = start_latency_proxy(endpoint, delay_ms)
        if pin:
            _pin(proc.pid, {1})
            _pin(proxy.pid, {1})
            os.sched_setaffinity(0, {0})  # DataLoader workers inherit it
            print("pinned: training process and workers on core 0, S3 server and proxy on core 1", flush=True)
        cases = [("disk whole", root, None, "off", "4K"), ("disk ranges", root, None, "on", "4K")]
        for tag, ep in (("+0 ms", endpoint), (f"+{delay_ms:g} ms", far)):
            cases += [(f"s3 {tag} whole", url, ep, "off", "4K")]
            cases += [(f"s3 {tag} ranges gap {g}", url, ep, "on", g) for g in gaps]
        res: dict[str, list[float]] = {c[0]: [] for c in cases}
        ratio: dict[str, float] = {}
        store_cpu: dict[str, list[float]] = {c[0]: [] for c in cases}
        for rep in range(repeats):
            for name, shards, ep, mode, gap in cases:
                if ep is not None:
                    os.environ["AWS_ENDPOINT_URL"] = ep  # DataLoader workers inherit it
                    set_storage_options(None)
                loader = build_train_loader(
                    shards, "train", ["bench"], p=P, views_recipe=recipe, batch_size=batch, num_workers=workers,
                    seed=rep, shuffle_buffer=16, read_ahead=1, range_reads=mode, range_gap=gap,
                )  # fmt: skip
                c0 = _cpu_seconds_of(proc.pid) + _cpu_seconds_of(proxy.pid)
                res[name].append(epoch_rate(loader))
                store_cpu[name].append(_cpu_seconds_of(proc.pid) + _cpu_seconds_of(proxy.pid) - c0)
                ratio[name] = loader.last_io["bytes_fetched"] / max(1, loader.last_io["bytes_used"])
            print(f"  repeat {rep}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in res.items()), flush=True)
        best = {k: max(v) for k, v in res.items()}
        for name, value in best.items():
            print(
                f"{name:<28} {value:8.1f} samples/s  {value / best['disk whole']:.2f}x disk whole  "
                f"fetched/used {ratio[name]:.2f}x  store CPU-s/epoch {min(store_cpu[name]):.2f}"
            )
        print(f"ratio disk ranges / disk whole: {best['disk ranges'] / best['disk whole']:.2f}x")
        for g in gaps:
            cold = best[f"s3 +{delay_ms:g} ms ranges gap {g}"] / best["disk whole"]
            print(f"ratio s3 +{delay_ms:g} ms ranges (gap {g}) / local disk: {cold:.2f}x (goal >= 0.9x)")
    finally:
        if proxy is not None:
            stop_server(proxy)
        stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--deferred-only", action="store_true", help="only float32 vs uint8 + deferred augmentation")
    ap.add_argument("--remote", action="store_true", help="only the stream from a local S3 server vs local disk")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="--remote: round trip added per request (a proxy)")
    ap.add_argument("--mbps", type=float, default=0.0, help="--remote: MB/s cap per connection (a proxy)")
    ap.add_argument("--ranges", action="store_true", help="--remote: range reads vs whole shards, +0 and +delay ms")
    ap.add_argument("--range-gap", nargs="+", default=["4K"], help="--ranges: data.range_gap values to compare")
    ap.add_argument("--pin", action="store_true", help="--ranges: client on core 0, S3 server + proxy on core 1")
    ap.add_argument("--k", type=int, default=K, help="variants per image of the generated column")
    a = ap.parse_args()
    globals()["K"] = a.k
    torch.set_num_threads(1)
    recipe = parse_views({"preset": "byol", "size": 224})
    with tempfile.TemporaryDirectory() as tmp:
        memory, folder = make_data(Path(tmp), a.images)
        n = len(memory)
        if a.deferred_only:
            res = deferred_compare(Path(tmp) / "set", recipe, a.workers, a.batch, a.repeats)
            f, d = res["float32"], res["uint8_deferred"]
            print(f"float32 path (colour in workers, float32 views):   {f['samples_per_s']:8.1f} samples/s, "
                  f"{f['bytes_per_sample'] / 1024:.0f} KiB/sample")  # fmt: skip
            print(f"uint8 + deferred colour stage (main process, CPU): {d['samples_per_s']:8.1f} samples/s, "
                  f"{d['bytes_per_sample'] / 1024:.0f} KiB/sample")  # fmt: skip
            print(f"ratio deferred / float32: {d['samples_per_s'] / f['samples_per_s']:.2f}x samples/s, "
                  f"{d['bytes_per_sample'] / f['bytes_per_sample']:.3f}x bytes")  # fmt: skip
            return None
        if a.remote:
            print(
                f"{n} samples of 256 px JPEG (+ {K} generated each), 2 views of 224 px (BYOL recipe), p = {P}, "
                f"{a.workers} workers, batch {a.batch}",
                flush=True,
            )
            if a.ranges:
                ranges_compare(
                    Path(tmp) / "set", recipe, a.workers, a.batch, a.repeats, a.delay_ms or 50.0, a.range_gap, a.pin
                )
                return None
            remote_compare(Path(tmp) / "set", recipe, a.workers, a.batch, a.repeats, a.delay_ms, a.mbps)
            return None
        print(
            f"{n} samples of 256 px JPEG (+ {K} generated each), 2 views of 224 px (BYOL recipe), p = {P}, "
            f"{a.workers} workers, batch {a.batch}",
            flush=True,
        )
        kw = dict(batch_size=a.batch, num_workers=a.workers, drop_last=True, persistent_workers=False)
        res: dict[str, list[float]] = {"folder": [], "ceiling": [], "stream": [], "stream_gpu": []}
        mean, std = recipe.mean, recipe.std
        for rep in range(a.repeats):
            dl = DataLoader(FolderDataset(folder, recipe), shuffle=True, **kw)
            res["folder"].append(rate(dl, n, a.batch))
            dl = DataLoader(MemoryDataset(memory, recipe), shuffle=True, collate_fn=memory_collate, **kw)
            res["ceiling"].append(rate(dl, n, a.batch, finish=lambda b: [normalize(x, mean, std) for x in b]))
            loader = build_train_loader(
                Path(tmp) / "set",
                "train",
                ["bench"],
                p=P,
                views_recipe=recipe,
                batch_size=a.batch,
                num_workers=a.workers,
                seed=rep,
                shuffle_buffer=256,
            )
            res["stream"].append(rate(loader, n, a.batch))
            if a.gpu and torch.cuda.is_available():
                loader = build_train_loader(
                    Path(tmp) / "set",
                    "train",
                    ["bench"],
                    p=P,
                    views_recipe=recipe,
                    batch_size=a.batch,
                    num_workers=a.workers,
                    seed=rep,
                    shuffle_buffer=256,
                    gpu_augment=True,
                    device="cuda",
                    pin_memory=True,
                )
                res["stream_gpu"].append(rate(loader, n, a.batch, finish=lambda b: torch.cuda.synchronize()))
            print(f"  repeat {rep}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in res.items() if v), flush=True)
        best = {k: max(v) for k, v in res.items() if v}
        print(f"folder baseline (PIL + torchvision v2, files): {best['folder']:8.1f} samples/s")
        print(f"ceiling (genaug decode + transforms, memory): {best['ceiling']:8.1f} samples/s")
        print(f"genaug stream (shards + gen column, p={P}):    {best['stream']:8.1f} samples/s")
        print(f"ratio stream / folder baseline: {best['stream'] / best['folder']:.2f}x (goal >= 1.0x)")
        print(f"ratio stream / ceiling:         {best['stream'] / best['ceiling']:.2f}x (goal >= 0.9x)")
        if "stream_gpu" in best:
            print(
                f"genaug stream, colour stage on GPU: {best['stream_gpu']:8.1f} samples/s "
                f"({best['stream_gpu'] / best['stream']:.2f}x the CPU colour stage)"
            )
    return None


if __name__ == "__main__":
    sys.exit(main())
