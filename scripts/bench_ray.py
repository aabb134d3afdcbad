"""Images/s of `genaug generate --engine ray` vs the lease runner on the same CPU work, in the same run.

Both engines make the same column (tiny recipe, same shards, K, batch size) with the same parallelism: W lease-runner
processes at one thread each (as torchrun starts them) against W Ray CPU workers of one CPU each, on a local Ray.
Printed per engine: wall seconds, steady-state seconds (without Ray's start-up and the model loads), images/s, and
the share of worker time spent outside model calls (reading, encoding, committing, scheduling). Also checks that the
two columns are byte-identical.

    python scripts/bench_ray.py --shards 8 --per-shard 24 --k 2 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LEASE_CHILD = """
import json, sys
from genaug.generate.dispatch import generate
out = generate(model="tiny", shards=sys.argv[1], column="lease", k=int(sys.argv[2]), batch_size=int(sys.argv[3]),
               progress=False)
print("RESULT " + json.dumps({k: out[k] for k in ("images", "seconds", "model_seconds", "load_seconds")}))
"""


def lease_run(root: Path, k: int, batch: int, workers: int) -> dict:
    """W lease-runner processes at one thread each; wall time from launch to the last exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LEASE_CHILD, str(root), str(k), str(batch)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(workers)
    ]
    outs = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"lease runner failed with status {p.returncode}")
        outs.append(json.loads(stdout.split("RESULT ", 1)[1]))
    wall = time.perf_counter() - t
    return {
        "wall": wall,
        "steady": max(o["seconds"] for o in outs),  # Runner.run: after import and model load
        "images": sum(o["images"] for o in outs),
        "model_seconds": sum(o["model_seconds"] for o in outs),
    }


def ray_run(root: Path, k: int, batch: int, workers: int) -> dict:
    """The Ray engine on a local Ray of W CPUs (start-up timed apart)."""
    import ray

    from genaug.generate.dispatch import generate_ray

    t = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    init = time.perf_counter() - t
    try:
        t = time.perf_counter()
        out = generate_ray(model="tiny", shards=str(root), column="ray", k=k, batch_size=batch, workers=workers,
                           progress=False)  # fmt: skip
        wall = time.perf_counter() - t
    finally:
        ray.shutdown()
    return {
        "wall": wall,
        "init": init,
        "steady": out["work_seconds"],  # first shard started to last committed: without actor start-up and load
        "images": out["images"],
        "model_seconds": out["model_seconds"],
    }


def main() -> None:
    """Run both engines on one synthetic split and print the figures and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=24)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary shard set")
    args = ap.parse_args()

    from genaug.testing.shards import write_synthetic_split

    tmp = Path(tempfile.mkdtemp(prefix="genaug-bench-ray-"))
    os.environ.setdefault("GENAUG_CACHE", str(tmp / "cache"))
    root = tmp / "synth"
    write_synthetic_split(root, "train", num_shards=args.shards, per_shard=args.per_shard, size=32, seed=0)
    try:
        # warm-up: build and save the tiny model once, so neither engine pays for it
        from genaug.generate.recipe import resolve_recipe
        from genaug.testing.tiny import tiny_variation_dir

        tiny_variation_dir(resolve_recipe("tiny"))
        lease = lease_run(root, args.k, args.batch_size, args.workers)
        ray_ = ray_run(root, args.k, args.batch_size, args.workers)
        same = all(
            (root / "gen/lease/train" / f"{i:06d}.tar").read_bytes()
            == (root / "gen/ray/train" / f"{i:06d}.tar").read_bytes()
            for i in range(args.shards)
        )
        w = args.workers
        print(f"work: {args.shards} shards x {args.per_shard} images x k={args.k}, batch {args.batch_size}, "
              f"{w} workers at 1 thread, tiny recipe on CPU ({os.cpu_count()} cores)")  # fmt: skip
        for name, r in (("lease", lease), ("ray", ray_)):
            outside = 1 - r["model_seconds"] / (w * r["steady"])
            r["ips_wall"], r["ips_steady"], r["outside"] = r["images"] / r["wall"], r["images"] / r["steady"], outside
            extra = f", ray.init {r['init']:.1f}s apart" if "init" in r else ""
            print(f"  {name:5s}: {r['images']} images, wall {r['wall']:.1f}s ({r['ips_wall']:.2f} img/s), steady "
                  f"{r['steady']:.1f}s ({r['ips_steady']:.2f} img/s), model {r['model_seconds']:.1f} worker-s, "
                  f"outside model calls {100 * outside:.1f}% of worker time{extra}")  # fmt: skip
        print(f"  ratio ray/lease images/s: wall {ray_['ips_wall'] / lease['ips_wall']:.3f}, "
              f"steady {ray_['ips_steady'] / lease['ips_steady']:.3f}")  # fmt: skip
        print(f"  Ray engine overhead outside model calls, beyond the lease runner's: "
              f"{100 * (ray_['outside'] - lease['outside']):+.1f} points (goal <= 5)")  # fmt: skip
        print(f"  columns byte-identical: {same}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
