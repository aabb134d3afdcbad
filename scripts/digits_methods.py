"""Every SSL method on scikit-learn digits (CPU, minutes): linear probe of the trained backbone vs random init.

Writes the 1797 digits (8x8, upscaled to 32 px RGB PNG) as a labeled shard set in the real format (train: 80 %,
val: 20 %, stratified by order), trains each method through `genaug.train.runner.train` (the real stream, views,
loop) with a tiny conv backbone, then fits a logistic-regression probe on frozen features (method.encode of the
un-augmented train images) and scores it on val, against the same backbone at its random initialisation.

    python scripts/digits_methods.py [--steps 300] [--methods simclr,byol] [--out /tmp/digits]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from genaug.core.hashing import stable_hash
from genaug.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from genaug.shards.layout import make_key, shard_name
from genaug.shards.manifest import write_manifest
from genaug.shards.writer import commit_shard
from genaug.ssl.artifacts import load_trained
from genaug.ssl.methods import build_method
from genaug.train.runner import train

SIZE = 32
METHODS = ("simclr", "mocov2", "mocov3", "byol", "simsiam", "barlow", "vicreg", "dino", "swav")
# heads shrunk for a 64-d tiny backbone; everything else comes from the shipped recipe
HEADS = {
    "simclr": {"proj_hidden": 128, "proj_out": 64, "temperature": 0.2},
    "mocov2": {"proj_hidden": 128, "proj_out": 64, "queue_size": 1024, "momentum": 0.99},
    "mocov3": {"proj_hidden": 128, "proj_out": 64, "pred_hidden": 128, "temperature": 1.0, "momentum": 0.9},
    "byol": {"proj_hidden": 128, "proj_out": 64, "pred_hidden": 128, "momentum": 0.9},
    "simsiam": {"proj_hidden": 128, "proj_out": 128, "pred_hidden": 32},
    "barlow": {"proj_hidden": 256, "proj_out": 256},
    "vicreg": {"proj_hidden": 256, "proj_out": 256},
    "dino": {
        "out_dim": 256,
        "head_hidden": 128,
        "bottleneck": 64,
        "freeze_last_layer_epochs": 0,
        "momentum": 0.99,
        "warmup_teacher_temp_epochs": 1,
    },
    "swav": {"proj_hidden": 128, "proj_out": 64, "n_prototypes": 30, "queue_length": 0, "freeze_prototypes_steps": 20},
}
# CPU-scale optimisation: the published lrs assume thousands of images per batch and hundreds of epochs
OPTIM = {
    "simclr": 0.3,
    "mocov2": 0.06,
    "mocov3": 0.6,
    "byol": 0.4,
    "simsiam": 0.1,
    "barlow": 0.2,
    "vicreg": 0.2,
    "dino": 0.001,
    "swav": 0.3,
}
VIEWS = {
    "preset": "small",
    "size": SIZE,
    "global": [
        {"scale": [0.4, 1.0], "flip": 0.0, "grayscale": 0.0},
        {"scale": [0.4, 1.0], "flip": 0.0, "grayscale": 0.0},
    ],
}


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """The digits as uint8 [N, 32, 32, 3] (white on black, bilinear upscale) and labels."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=SIZE, mode="bilinear", align_corners=False).clamp(0, 1)
    img = (x.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return img, d.target


def write_digits(root: Path, per_shard: int = 128) -> tuple[dict, dict]:
    """Write shards/<root>/{train,val} in the genaug source format; returns the in-memory arrays of both splits."""
    img, y = digits_images()
    n_train = int(len(y) * 0.8)
    splits = {"train": (img[:n_train], y[:n_train]), "val": (img[n_train:], y[n_train:])}
    classes = [str(c) for c in range(10)]
    for split, (xs, ys) in splits.items():
        folder = root / split
        if (folder / "manifest.json").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        n_shards = (len(ys) + per_shard - 1) // per_shard
        write_manifest(
            folder,
            {
                "kind": "source",
                "split": split,
                "source": "sklearn.datasets.load_digits",
                "classes": classes,
                "num_shards": n_shards,
                "shards": [shard_name(i) for i in range(n_shards)],
                "plan_hash": stable_hash(["digits", split, per_shard, SIZE]),
            },
        )
        for s in range(n_shards):
            samples = []
            for r, i in enumerate(range(s * per_shard, min(len(ys), (s + 1) * per_shard))):
                buf = io.BytesIO()
                Image.fromarray(xs[i]).save(buf, format="PNG")
                meta = {"source": f"digits/{split}/{i}", "width": SIZE, "height": SIZE, "class_name": classes[ys[i]]}
                samples.append(
                    {"__key__": make_key(s, r), "png": buf.getvalue(), "cls": str(int(ys[i])), "json": json.dumps(meta)}
                )
            commit_shard(folder, s, samples, ("png", "json", "cls"), {"failures": []})
    return splits["train"], splits["val"]


def _tensor(xs: np.ndarray) -> torch.Tensor:
    x = torch.tensor(xs, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@torch.no_grad()
def features(method, xs: np.ndarray) -> np.ndarray:
    """Frozen features (method.encode) of un-augmented images, in eval mode."""
    method.eval()
    x = _tensor(xs)
    return torch.cat([method.encode(x[i : i + 256]) for i in range(0, len(x), 256)]).float().numpy()


def probe_accuracy(method, train_split, val_split) -> float:
    """Logistic-regression probe fitted on train features, top-1 accuracy on val."""
    sc = StandardScaler().fit(features(method, train_split[0]))
    clf = LogisticRegression(max_iter=2000).fit(sc.transform(features(method, train_split[0])), train_split[1])
    return float(clf.score(sc.transform(features(method, val_split[0])), val_split[1]))


def overrides(name: str, width: int) -> dict:
    """Recipe overrides of the digits runs."""
    return {
        "backbone.width": width,
        "views": VIEWS,
        "optim.base_lr": OPTIM[name],
        "schedule.warmup_epochs": 1,
        "schedule.epochs": 10,
        **{f"method_args.{k}": v for k, v in HEADS[name].items()},
    }


def run(root: Path, methods, steps: int, batch: int, width: int, workers: int, seed: int = 0) -> list[dict]:
    """Train each method and return table rows {method, random, trained, steps, seconds}."""
    train_split, val_split = write_digits(root / "digits")
    rows = []
    for name in methods:
        torch.manual_seed(seed)
        ov = overrides(name, width)
        t = time.time()
        res = train(
            name,
            shards=root / "digits",
            out=root / "runs" / name,
            steps=steps,
            batch_size=batch,
            backbone="tiny",
            image_size=SIZE,
            workers=workers,
            seed=seed,
            log_every=max(1, steps // 5),
            overrides=ov,
            progress_bar=False,
        )
        secs = time.time() - t
        trained, recipe = load_trained(res["run_dir"])
        torch.manual_seed(seed)
        random_init = build_method(recipe)  # same architecture, same seed, no training
        rows.append(
            {
                "method": name,
                "random": probe_accuracy(random_init, train_split, val_split),
                "trained": probe_accuracy(trained, train_split, val_split),
                "steps": res["step"],
                "seconds": secs,
                "loss": res["metrics"].get("loss"),
            }
        )
        print(
            f"{name:8s} random {rows[-1]['random']:.3f}  trained {rows[-1]['trained']:.3f}  ({secs:.0f} s)", flush=True
        )
    return rows


def main() -> None:
    """Print the table of linear-probe accuracies."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()
    import tempfile

    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="genaug-digits-"))
    rows = run(root, args.methods.split(","), args.steps, args.batch_size, args.width, args.workers)
    print("\n| method | random-init probe | trained probe | gain | steps | CPU s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['random']:.3f} | {r['trained']:.3f} | {r['trained'] - r['random']:+.3f} | "
            f"{r['steps']} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
