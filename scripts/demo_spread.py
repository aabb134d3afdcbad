"""The demo's claim, measured over seeds: probe top-1 of the trained backbone vs the same backbone at random init.

Ingests digits and generates the tiny column once, then for each seed trains the demo's run (SimCLR, tiny backbone,
p=0.5, the demo's DEMO_OVERRIDES plus any --set) and probes it (linear and kNN k=20) next to its random
initialisation. Prints one row per seed and the smallest gaps, which bound what the demo test may assert.
Usage: python scripts/demo_spread.py [--seeds 6 | --seed-list 0 2] [--steps 150] [--set key=value] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from genaug.demo import DEMO_OVERRIDES, random_init_run, write_digits_tree
from genaug.evaluate.options import KnnOptions, LinearOptions
from genaug.evaluate.run import eval_knn, eval_linear
from genaug.generate import generate
from genaug.ingest.run import ingest
from genaug.train.runner import train


def main() -> None:
    """Run the seeds and print trained, random-init and gap per seed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed-list", type=int, nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--method", default="simclr")
    ap.add_argument("--p", type=float, default=0.5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--set", action="append", default=[], help="recipe override key=value (YAML value), repeatable")
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="demo-spread-"))
    shards = out / "shards" / "digits"
    if not (shards / "val" / "manifest.json").exists():
        roots = write_digits_tree(out / "digits-src", size=a.size)
        for split in ("train", "val"):
            ingest(roots[split], shards, split=split, per_shard=256, workers=2, progress=False)
        generate(
            model="tiny", shards=str(shards), split="train", k=2, overrides={"output.size": a.size}, progress=False
        )
    probe = dict(shards=str(shards), train_split="train", val_split="val", epochs=50, batchnorm=True, quiet=True)
    import yaml

    over = {**DEMO_OVERRIDES, **{s.split("=", 1)[0]: yaml.safe_load(s.split("=", 1)[1]) for s in a.set}}
    tag = "-".join(s.replace("=", "") for s in a.set)
    gaps, kgaps = [], []
    knn = dict(shards=str(shards), train_split="train", val_split="val", ks=[20], quiet=True)
    print(
        f"{'seed':>4} {'trained':>8} {'random':>8} {'gap':>7} {'knn tr':>7} {'knn rnd':>7} {'gap':>7}"
        f"   ({a.method}, {a.steps} steps, p={a.p})"
    )
    for seed in a.seed_list or range(a.seeds):
        run = out / "runs" / f"{a.method}-p{a.p}-{a.steps}st{tag}-s{seed}"
        train(
            method=a.method, shards=str(shards), p=a.p, gen=["tiny"], out=run, steps=a.steps, batch_size=64,
            backbone="tiny", image_size=a.size, workers=0, seed=seed, overrides=over,
            progress_bar=False,
        )  # fmt: skip
        top1 = eval_linear(LinearOptions(model=run, image_size=a.size, **probe))["summary"]["linear/top1"]
        base = random_init_run(run, run.with_name(run.name + "-init"))
        top0 = eval_linear(LinearOptions(model=base, image_size=a.size, **probe))["summary"]["linear/top1"]
        k1 = eval_knn(KnnOptions(model=run, image_size=a.size, **knn))["summary"]["knn/k20/top1"]
        k0 = eval_knn(KnnOptions(model=base, image_size=a.size, **knn))["summary"]["knn/k20/top1"]
        gaps.append(top1 - top0)
        kgaps.append(k1 - k0)
        print(f"{seed:>4} {top1:8.4f} {top0:8.4f} {top1 - top0:+7.4f} {k1:7.4f} {k0:7.4f} {k1 - k0:+7.4f}", flush=True)
    print(f"linear: smallest gap {min(gaps):+.4f}, mean {sum(gaps) / len(gaps):+.4f} over {len(gaps)} seeds")
    print(f"kNN k=20: smallest gap {min(kgaps):+.4f}, mean {sum(kgaps) / len(kgaps):+.4f} over {len(kgaps)} seeds")


if __name__ == "__main__":
    main()
