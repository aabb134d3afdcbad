"""Invalid invocations a user could type, each of which must end in one line `genaug: error: ...` and exit 2.

`invalid_invocations(root)` builds a small labelled shard set with a generated column and a finished run under
`root`, and returns (label, argv) pairs; `scripts/invalid_invocations.py` prints the table for BENCHMARKS.md and
`tests/test_invalid_invocations.py` checks every row.
"""

from __future__ import annotations

from pathlib import Path

from genaug.testing.runs import tiny_overrides, train_tiny
from genaug.testing.shards import write_synthetic_split


def fixtures(root: Path) -> dict[str, Path]:
    """A shard set with train/val splits and a `tiny` column, an image folder and a finished run, under `root`."""
    from genaug.generate.runner import generate

    shards = root / "set"
    if not (shards / "val" / "manifest.json").exists():
        write_synthetic_split(shards, "train", num_shards=2, per_shard=8, size=24, num_classes=2, seed=0)
        write_synthetic_split(shards, "val", num_shards=1, per_shard=8, size=24, num_classes=2, seed=1)
        generate(model="tiny", shards=str(shards), split="train", k=1, progress=False)
    images = root / "images" / "cat"
    images.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 10, 10)).save(images / "a.jpg")
    run = root / "run"
    if not (run / "model.safetensors").exists():
        train_tiny("simclr", shards, run, steps=2)
    return {"shards": shards, "images": images.parent, "run": run, "root": root}


def invalid_invocations(root: Path) -> list[tuple[str, list[str]]]:
    """(what is wrong, argv) for every invalid invocation of the table."""
    f = fixtures(Path(root))
    s, img, run, r = str(f["shards"]), str(f["images"]), str(f["run"]), f["root"]
    tiny = [a for k, v in tiny_overrides("simclr").items() for a in ("--set", f"{k}={v}")]
    tr = ["train", "--method", "simclr", "--shards", s, "--backbone", "tiny", "--image-size", "16",
          "--batch-size", "8", "--workers", "0", "--out", str(r / "t"), *tiny]  # fmt: skip
    ing = ["ingest", img, "--shards", str(r / "ing")]
    gen = ["generate", "--model", "tiny", "--shards", s]
    return [
        ("ingest: source folder missing", ["ingest", str(r / "nope"), "--shards", str(r / "x")]),
        ("ingest: --split ..", [*ing, "--split", ".."]),
        ("ingest: --split with a slash", [*ing, "--split", "a/b"]),
        ("ingest: --per-shard 0", [*ing, "--per-shard", "0"]),
        ("ingest: --quality 101", [*ing, "--quality", "101"]),
        ("ingest: --workers -1", [*ing, "--workers", "-1"]),
        ("ingest: --max-pixels 0", [*ing, "--max-pixels", "0"]),
        ("ingest: --layout unknown", [*ing, "--layout", "zip"]),
        ("ingest: unknown flag", [*ing, "--bogus"]),
        ("generate: unknown model", ["generate", "--model", "nope", "--shards", s]),
        ("generate: shard set missing", ["generate", "--model", "tiny", "--shards", str(r / "missing")]),
        ("generate: --steps 0", [*gen, "--steps", "0"]),
        ("generate: --k 0", [*gen, "--k", "0"]),
        ("generate: --guidance nan", [*gen, "--guidance", "nan"]),
        ("generate: --batch-size 0", [*gen, "--batch-size", "0"]),
        ("generate: --lease-timeout 0", [*gen, "--lease-timeout", "0"]),
        ("generate: --dtype fp8", [*gen, "--dtype", "fp8"]),
        ("generate: --column ../x", [*gen, "--column", "../x"]),
        ("generate: --split missing", [*gen, "--split", "test"]),
        ("generate: --weights without model_index.json", [*gen, "--weights", str(r), "--column", "w"]),
        ("train: unknown method", ["train", "--method", "simclrr", "--shards", s]),
        ("train: --p 1.5", [*tr, "--p", "1.5"]),
        ("train: --p 0.5 without a column", [*tr, "--p", "0.5", "--gen", "nope"]),
        ("train: --steps 0", [*tr, "--steps", "0"]),
        ("train: --steps -5", [*tr, "--steps", "-5"]),
        ("train: --epochs -1", [*tr, "--epochs", "-1"]),
        ("train: --ckpt-every -1", [*tr, "--ckpt-every", "-1"]),
        ("train: --workers -1", [*tr, "--workers", "-1"]),
        ("train: --batch-size 0", [*tr, "--batch-size", "0"]),
        ("train: --precision fp8", [*tr, "--precision", "fp8"]),
        ("train: --backbone resnet9", [*tr, "--backbone", "resnet9"]),
        ("train: misspelt --set key", [*tr, "--set", "optim.wieght_decay=0.5"]),
        ("train: --set of the wrong type", [*tr, "--set", "optim.weight_decay=abc"]),
        ("train: --set without =", [*tr, "--set", "optim.weight_decay"]),
        ("train: unknown method_args", [*tr, "--set", "method_args.temprature=0.2"]),
        ("train: old dialect optim.lr", [*tr, "--set", "optim.lr=0.1"]),
        ("train: --split ..", [*tr, "--split", ".."]),
        ("train: recipe file missing", ["train", "--method", str(r / "mine.yaml"), "--shards", s]),
        ("train: --resume file missing", [*tr, "--resume", str(r / "nope.pt")]),
        ("eval linear: no model", ["eval", "linear", "--shards", s]),
        ("eval linear: model missing", ["eval", "linear", str(r / "nope"), "--shards", s]),
        ("eval linear: --val-split missing", ["eval", "linear", run, "--shards", s, "--val-split", "test"]),
        ("eval linear: --val-split ..", ["eval", "linear", run, "--shards", s, "--val-split", ".."]),
        ("eval knn: folder that is no run", ["eval", "knn", str(f["images"]), "--shards", s]),
        ("eval ood: no --in", ["eval", "ood", run]),
        ("eval report: no results", ["eval", "report", str(r / "images")]),
        ("inspect: shard set missing", ["inspect", "--shards", str(r / "missing")]),
        ("inspect: --p 2", ["inspect", "--shards", s, "--views", "--p", "2"]),
        ("inspect: unknown column", ["inspect", "--shards", s, "--gen", "sd"]),
        ("verify: shard set missing", ["verify", "--shards", str(r / "missing")]),
        ("train: --augment-device cuda without CUDA", [*tr, "--augment-device", "cuda"]),
        ("train: --augment-device unknown", [*tr, "--augment-device", "gpu"]),
        ("train: --gen-weighting unknown", [*tr, "--p", "0.5", "--gen", "tiny", "--gen-weighting", "cosine"]),
        ("train: --gen-min-score nan", [*tr, "--p", "0.5", "--gen", "tiny", "--gen-min-score", "nan"]),
        ("inspect: --sort unknown", ["inspect", "--shards", s, "--sort", "best"]),
        ("score: column missing", ["score", "--shards", s, "--gen", "sd"]),
        ("index: column missing", ["index", "--shards", s, "--gen", "sd"]),
        ("index: --split missing", ["index", "--shards", s, "--gen", "tiny", "--split", "test"]),
        ("train: data.range_reads unknown", [*tr, "--set", "data.range_reads=maybe"]),
        ("score: --encoder path missing", ["score", "--shards", s, "--gen", "tiny", "--encoder", str(r / "no.pt")]),
    ]
