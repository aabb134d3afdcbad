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
    from genaug.generate.dispatch import generate

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
        *newer_invalid_invocations(f, tr, ing, gen),
        *session_29_invalid_invocations(f, tr, ing, gen),
        *audit_25_invalid_invocations(f, tr, ing, gen),
    ]


def newer_invalid_invocations(f: dict, tr: list[str], ing: list[str], gen: list[str]) -> list[tuple[str, list[str]]]:
    """Rows for the flags added since the table was first written (issue 25): every flag of every command."""
    import torch

    s, run, r = str(f["shards"]), str(f["run"]), f["root"]
    a_file = r / "a-file"
    a_file.write_text("not a folder\n")
    local = ["--storage-option", "anon=true"]  # options of an object store, given for a local set
    sc = ["score", "--shards", s, "--gen", "tiny"]
    ins = ["inspect", "--shards", s, "--gen", "tiny"]
    lin = ["eval", "linear", run, "--shards", s]
    knn = ["eval", "knn", run, "--shards", s]
    ood = ["eval", "ood", run, "--in", s]
    sim = ["eval", "similarity", run, run, "--shards", s]
    rows = [
        ("ingest: --max-bytes 0", [*ing, "--max-bytes", "0"]),
        ("ingest: --max-side 0", [*ing, "--max-side", "0"]),
        ("ingest: --min-side -1", [*ing, "--min-side", "-1"]),
        ("ingest: --short-side 0", [*ing, "--short-side", "0"]),
        ("ingest: --overwrite given a value", [*ing, "--overwrite=yes"]),
        ("ingest: --quiet given a value", [*ing, "--quiet=1"]),
        ("ingest: --reencode given a value", [*ing, "--reencode=1"]),
        ("ingest: --storage-option for a local set", [*ing, *local]),
        ("generate: --compile given a value", [*gen, "--compile=1"]),
        ("generate: --device tpu", [*gen, "--device", "tpu"]),
        ("generate: --engine unknown", [*gen, "--engine", "spark"]),
        ("generate: --fidelity given a value", [*gen, "--fidelity=1"]),
        ("generate: --json without --status", [*gen, "--json"]),
        ("generate: --lease-dir is a file", [*gen, "--lease-dir", str(a_file)]),
        ("generate: --limit-shards 0", [*gen, "--limit-shards", "0"]),
        ("generate: --no-progress given a value", [*gen, "--no-progress=1"]),
        ("generate: --num-gpus-per-worker -1", [*gen, "--engine", "ray", "--num-gpus-per-worker", "-1"]),
        ("generate: --ray-address without --engine ray", [*gen, "--ray-address", "127.0.0.1:6379"]),
        ("generate: --ray-address malformed", [*gen, "--engine", "ray", "--ray-address", "nohost"]),
        ("generate: --seed not a number", [*gen, "--seed", "abc"]),
        ("generate: --status of a missing column", [*gen, "--status", "--column", "nope"]),
        ("generate: --storage-option for a local set", [*gen, *local]),
        ("generate: --storage-option anon=maybe", [*gen, "--storage-option", "anon=maybe"]),
        ("generate: --workers without --engine ray", [*gen, "--workers", "2"]),
        ("score: --device tpu", [*sc, "--device", "tpu"]),
        ("score: --batch-size 0", [*sc, "--batch-size", "0"]),
        ("score: --overwrite given a value", [*sc, "--overwrite=1"]),
        ("score: --no-progress given a value", [*sc, "--no-progress=1"]),
        ("score: --storage-option for a local set", [*sc, *local]),
        ("train: --allow-module not a module name", [*tr, "--allow-module", "../evil"]),
        ("train: --channels-last given a value", [*tr, "--channels-last=1"]),
        ("train: --compile given a value", [*tr, "--compile=1"]),
        ("train: --no-probe given a value", [*tr, "--no-probe=1"]),
        ("train: --quiet given a value", [*tr, "--quiet=1"]),
        ("train: --grad-accum 0", [*tr, "--grad-accum", "0"]),
        ("train: --log-every 0", [*tr, "--log-every", "0"]),
        ("train: --lr -1", [*tr, "--lr", "-1"]),
        ("train: --mix-views first", [*tr, "--mix-views", "first"]),
        ("train: --seed not a number", [*tr, "--seed", "abc"]),
        ("train: --stop-after 0", [*tr, "--stop-after", "0"]),
        ("train: --storage-option for a local set", [*tr, *local]),
        ("train: --set method_args.temperature=-1", [*tr, "--set", "method_args.temperature=-1"]),
        ("train: --gen naming a column twice", [*tr, "--p", "0.5", "--gen", "tiny,tiny"]),
        ("inspect: --keys not in the split", [*ins, "--keys", "s000099r000000"]),
        ("inspect: --mix-views first", [*ins, "--views", "--mix-views", "first"]),
        ("inspect: --n 0", [*ins, "--n", "0"]),
        ("inspect: --no-labels given a value", [*ins, "--no-labels=1"]),
        ("inspect: --pairs 0", [*ins, "--views", "--pairs", "0"]),
        ("inspect: --seed not a number", [*ins, "--seed", "abc"]),
        ("inspect: --tile 0", [*ins, "--tile", "0"]),
        ("inspect: --view-size 0", [*ins, "--views", "--view-size", "0"]),
        ("inspect: --storage-option for a local set", [*ins, *local]),
        ("verify: --no-sha given a value", ["verify", "--shards", s, "--no-sha=1"]),
        ("verify: --storage-option anon=maybe", ["verify", "--shards", s, "--storage-option", "anon=maybe"]),
        ("demo: --size 0", ["demo", "--out", str(r / "demo"), "--size", "0"]),
        ("demo: --seed not a number", ["demo", "--out", str(r / "demo"), "--seed", "abc"]),
        ("eval linear: --batchnorm given a value", [*lin, "--batchnorm=1"]),
        ("eval linear: --device tpu", [*lin, "--device", "tpu"]),
        ("eval linear: --extract-batch-size 0", [*lin, "--extract-batch-size", "0"]),
        ("eval linear: --fast given a value", [*lin, "--fast=1"]),
        ("eval linear: --limit 0", [*lin, "--limit", "0"]),
        ("eval linear: --lr -1", [*lin, "--lr", "-1"]),
        ("eval linear: --quiet given a value", [*lin, "--quiet=1"]),
        ("eval linear: --seed not a number", [*lin, "--seed", "abc"]),
        ("eval linear: --solver adam", [*lin, "--solver", "adam"]),
        ("eval linear: --train-features missing", ["eval", "linear", "--train-features", str(r / "no.npz")]),
        ("eval linear: --val-features missing", [*lin, "--val-features", str(r / "no.npz")]),
        ("eval linear: --weight-decay -1", [*lin, "--weight-decay", "-1"]),
        ("eval linear: --train-split missing", [*lin, "--train-split", "test"]),
        ("eval linear: --storage-option for a local set", [*lin, *local]),
        ("eval knn: --device tpu", [*knn, "--device", "tpu"]),
        ("eval knn: --extract-batch-size 0", [*knn, "--extract-batch-size", "0"]),
        ("eval knn: --limit -1", [*knn, "--limit", "-1"]),
        ("eval knn: --temperature 0", [*knn, "--temperature", "0"]),
        ("eval knn: --k 0", [*knn, "--k", "0"]),
        ("eval knn: --train-features missing", ["eval", "knn", "--train-features", str(r / "no.npz")]),
        ("eval knn: --val-features missing", [*knn, "--val-features", str(r / "no.npz")]),
        ("eval knn: --train-split ..", [*knn, "--train-split", ".."]),
        ("eval knn: --quiet given a value", [*knn, "--quiet=1"]),
        ("eval knn: --storage-option for a local set", [*knn, *local]),
        ("eval ood: --in missing", ["eval", "ood", run, "--in", str(r / "missing"), "--out", s]),
        ("eval ood: no --out", [*ood]),
        ("eval ood: --score unknown", [*ood, "--out", s, "--score", "entropy"]),
        ("eval ood: --knn-k 0", [*ood, "--out", s, "--knn-k", "0"]),
        ("eval ood: --probe-epochs 0", [*ood, "--out", s, "--probe-epochs", "0"]),
        ("eval ood: --in-features missing", [*ood, "--out", s, "--in-features", str(r / "no.npz")]),
        ("eval ood: --out-features missing", [*ood, "--out-features", str(r / "no.npz")]),
        ("eval ood: --train-features missing", [*ood, "--out", s, "--train-features", str(r / "no.npz")]),
        ("eval ood: --uncertainty-in missing", [*ood, "--out", s, "--uncertainty-in", str(r / "no.npy")]),
        (
            "eval ood: --uncertainty-out file missing",
            [*ood, "--out", s, "--uncertainty-out", str(r / "no.npy")],
        ),  # fmt: skip
        ("eval ood: --uncertainty-higher-is-in given a value", [*ood, "--out", s, "--uncertainty-higher-is-in=2"]),
        ("eval ood: --result is a file's folder", [*ood, "--out", s, "--result", str(a_file / "x.json")]),
        ("eval ood: --device tpu", [*ood, "--out", s, "--device", "tpu"]),
        ("eval ood: --extract-batch-size 0", [*ood, "--out", s, "--extract-batch-size", "0"]),
        ("eval ood: --fast given a value", [*ood, "--out", s, "--fast=1"]),
        ("eval ood: --limit 0", [*ood, "--out", s, "--limit", "0"]),
        ("eval ood: --train-split ..", [*ood, "--out", s, "--train-split", ".."]),
        ("eval ood: --quiet given a value", [*ood, "--out", s, "--quiet=1"]),
        ("eval ood: --storage-option for a local set", [*ood, "--out", s, *local]),
        ("eval similarity: --boot -1", [*sim, "--boot", "-1"]),
        ("eval similarity: --ci 2", [*sim, "--ci", "2"]),
        ("eval similarity: --device tpu", [*sim, "--device", "tpu"]),
        ("eval similarity: --extract-batch-size 0", [*sim, "--extract-batch-size", "0"]),
        ("eval similarity: --limit 0", [*sim, "--limit", "0"]),
        ("eval similarity: --seed not a number", [*sim, "--seed", "abc"]),
        ("eval similarity: --quiet given a value", [*sim, "--quiet=1"]),
        ("eval similarity: --storage-option for a local set", [*sim, *local]),
        ("eval report: --metric unknown", ["eval", "report", run, "--metric", "nope/top1"]),
        ("eval report: --png is a file's folder", ["eval", "report", run, "--png", str(a_file / "x.png")]),
        ("eval report: --quiet given a value", ["eval", "report", run, "--quiet=1"]),
    ]
    if not torch.cuda.is_available():  # on a GPU machine these are valid
        rows += [
            ("score: --device cuda without a GPU", [*sc, "--device", "cuda"]),
            (
                "generate: --num-gpus-per-worker 1 without a GPU",
                [*gen, "--engine", "ray", "--num-gpus-per-worker", "1", "--column", "gpu"],
            ),  # fmt: skip
        ]
    return rows


def session_29_invalid_invocations(
    f: dict, tr: list[str], ing: list[str], gen: list[str]
) -> list[tuple[str, list[str]]]:
    """Rows for the flags and commands added with issues 24, 26, 27 and 28."""
    s, run, r = str(f["shards"]), str(f["run"]), f["root"]
    order = r / "order-bad.txt"
    order.write_text("000009.tar\n")
    fit = ["fit-generator", "--shards", s, "--out", str(r / "fit")]
    return [
        ("generate: --update of a column that does not exist", [*gen, "--column", "nosuch", "--update"]),
        ("generate: --update with a change touching every variant", [*gen, "--update", "--steps", "3"]),
        ("generate: --order file missing", [*gen, "--order", str(r / "no-order.txt")]),
        ("generate: --order names a shard not in the split", [*gen, "--order", str(order)]),
        ("generate: --strength 1.5", [*gen, "--strength", "1.5"]),
        ("train: --cache-limit not a size", [*tr, "--cache-limit", "lots"]),
        ("eval knn: --cache-limit not a size", ["eval", "knn", run, "--shards", s, "--cache-limit", "lots"]),
        ("inspect: --cache-limit not a size", ["inspect", "--shards", s, "--gen", "tiny", "--cache-limit", "lots"]),
        ("train: --backbone timm: unknown model", [*tr, "--backbone", "timm:no_such_net"]),
        ("train: --backbone-weights missing", [*tr, "--backbone-weights", str(r / "no.safetensors")]),
        ("ingest: --order unknown", [*ing, "--order", "random"]),
        ("fit-generator: shard set missing", ["fit-generator", "--shards", str(r / "missing"), "--out", str(r / "f")]),
        ("fit-generator: --widths not numbers", [*fit, "--widths", "a,b"]),
        ("fit-generator: --split missing", [*fit, "--split", "test"]),
        ("export: --format unknown", ["export", run, "--format", "onnx"]),
        ("export: run folder missing", ["export", str(r / "no-run"), "--format", "timm"]),
        ("train: --gen-partial without --gen", [*tr, "--gen-partial"]),
        ("train: data.gen_partial=true without --gen", [*tr, "--set", "data.gen_partial=true"]),
        ("train: --gen-partial with a column that does not exist", [*tr, "--gen", "nosuch", "--gen-partial"]),
        ("train: data.gen_partial not a boolean", [*tr, "--gen", "tiny", "--set", "data.gen_partial=sometimes"]),
    ]


def audit_25_invalid_invocations(f: dict, tr: list[str], ing: list[str], gen: list[str]) -> list[tuple[str, list[str]]]:
    """Rows for the flags no row gave a bad value yet (issue 25's audit: every option of every command)."""
    s, img, run, r = str(f["shards"]), str(f["images"]), str(f["run"]), f["root"]
    a_file = r / "b-file"
    a_file.write_text("not a folder\n")
    missing = str(r / "missing")
    sc = ["score", "--shards", s, "--gen", "tiny"]
    ins = ["inspect", "--shards", s, "--gen", "tiny"]
    fit = ["fit-generator", "--shards", s, "--out", str(r / "fit")]
    demo = ["demo", "--out", str(r / "demo")]
    export = ["export", run, "--format", "timm"]
    local = ["--storage-option", "anon=true"]
    lin = ["eval", "linear", run, "--shards", s]
    knn = ["eval", "knn", run, "--shards", s]
    ood = ["eval", "ood", run, "--in", s, "--out", s]
    sim = ["eval", "similarity", run, run, "--shards", s]
    rows = [
        ("ingest: --shards is a file", ["ingest", img, "--shards", str(a_file)]),
        ("ingest: --order-seed not a number", [*ing, "--order-seed", "abc"]),
        ("ingest: --label-key on an image folder", [*ing, "--label-key", "cls"]),
        ("ingest: --image-column on an image folder", [*ing, "--image-column", "img"]),
        ("ingest: --label-column on an image folder", [*ing, "--label-column", "label"]),
        ("ingest: --hf-config on an image folder", [*ing, "--hf-config", "plain"]),
        ("ingest: --hf-split on an image folder", [*ing, "--hf-split", "test"]),
        ("ingest: --hf-cache-dir on an image folder", [*ing, "--hf-cache-dir", str(r / "hf")]),
        ("generate: --set unknown recipe key", [*gen, "--set", "runtime.nope=1"]),
        ("generate: --progress given a value", [*gen, "--progress=1"]),
        ("generate: --no-fidelity given a value", [*gen, "--no-fidelity=1"]),
        ("generate: --no-compile given a value", [*gen, "--no-compile=1"]),
        ("generate: --cpus-per-worker 0", [*gen, "--engine", "ray", "--cpus-per-worker", "0"]),
        ("generate: --max-restarts -1", [*gen, "--engine", "ray", "--max-restarts", "-1"]),
        ("generate: --max-shard-attempts 0", [*gen, "--engine", "ray", "--max-shard-attempts", "0"]),
        ("score: shard set missing", ["score", "--shards", missing, "--gen", "tiny"]),
        ("score: --split missing", [*sc, "--split", "test"]),
        ("score: --weights folder missing", [*sc, "--weights", str(r / "no-weights")]),
        ("fit-generator: --out is a file", ["fit-generator", "--shards", s, "--out", str(a_file)]),
        ("fit-generator: --ckpt-every -1", [*fit, "--ckpt-every", "-1"]),
        ("fit-generator: --no-progress given a value", [*fit, "--no-progress=1"]),
        ("fit-generator: --size 0", [*fit, "--size", "0"]),
        ("fit-generator: --channels 2", [*fit, "--channels", "2"]),
        ("fit-generator: --steps 0", [*fit, "--steps", "0"]),
        ("fit-generator: --batch-size 0", [*fit, "--batch-size", "0"]),
        ("fit-generator: --lr 1.5", [*fit, "--lr", "1.5"]),
        ("fit-generator: --ema-decay 1", [*fit, "--ema-decay", "1"]),
        ("fit-generator: --seed not a number", [*fit, "--seed", "abc"]),
        ("train: shard set missing", ["train", "--method", "simclr", "--shards", missing]),
        ("train: --out is a file", [*tr, "--out", str(a_file)]),
        ("train: --image-size 0", [*tr, "--image-size", "0"]),
        ("train: --probe given a value", [*tr, "--probe=1"]),
        ("train: --progress-bar given a value", [*tr, "--progress-bar=1"]),
        ("train: --no-channels-last given a value", [*tr, "--no-channels-last=1"]),
        ("train: --no-compile given a value", [*tr, "--no-compile=1"]),
        ("train: --cache-dir is a file", [*tr, "--cache-dir", str(a_file)]),
        ("train: data.range_gap not a size", [*tr, "--set", "data.range_gap=lots"]),
        ("train: data.read_ahead 99", [*tr, "--set", "data.read_ahead=99"]),
        ("train: method_args.proj_hidden 0", [*tr, "--set", "method_args.proj_hidden=0"]),
        ("inspect: --split missing", [*ins, "--split", "test"]),
        ("inspect: --views given a value", [*ins, "--views=1"]),
        ("inspect: --method unknown", [*ins, "--views", "--method", "simclrr"]),
        ("inspect: --run missing", [*ins, "--views", "--run", missing]),
        ("inspect: --out in a file's folder", [*ins, "--out", str(a_file / "c.png")]),
        ("inspect: --cache-dir is a file", [*ins, "--cache-dir", str(a_file)]),
        ("verify: --write-records given a value", ["verify", "--shards", s, "--write-records=1"]),
        ("index: shard set missing", ["index", "--shards", missing, "--gen", "tiny"]),
        ("index: --storage-option for a local set", ["index", "--shards", s, "--gen", "tiny", *local]),
        ("demo: --workers -1", [*demo, "--workers", "-1"]),
        ("demo: --k 0", [*demo, "--k", "0"]),
        ("demo: --method unknown", [*demo, "--method", "simclrr"]),
        ("demo: --p 2", [*demo, "--p", "2"]),
        ("demo: --steps 0", [*demo, "--steps", "0"]),
        ("demo: --model unknown", [*demo, "--model", "sdxl"]),
        ("demo: --fit-steps 0", [*demo, "--fit-steps", "0"]),
        ("demo: --out is a file", ["demo", "--out", str(a_file)]),
        ("export: --out not a .safetensors file", [*export, "--out", str(r / "x.pt")]),
        ("export: --out in a file's folder", [*export, "--out", str(a_file / "x.safetensors")]),
        ("eval linear: shard set missing", ["eval", "linear", run, "--shards", missing]),
        ("eval linear: --epochs 0", [*lin, "--epochs", "0"]),
        ("eval linear: --batch-size 0", [*lin, "--batch-size", "0"]),
        ("eval linear: --boot -1", [*lin, "--boot", "-1"]),
        ("eval linear: --ci 2", [*lin, "--ci", "2"]),
        ("eval linear: --out in a file's folder", [*lin, "--out", str(a_file / "x.json")]),
        ("eval linear: --image-size 0", [*lin, "--image-size", "0"]),
        ("eval linear: --workers -1", [*lin, "--workers", "-1"]),
        ("eval linear: --cache-dir is a file", [*lin, "--cache-dir", str(a_file)]),
        ("eval linear: --cache-limit not a size", [*lin, "--cache-limit", "lots"]),
        ("eval knn: shard set missing", ["eval", "knn", run, "--shards", missing]),
        ("eval knn: --val-split missing", [*knn, "--val-split", "test"]),
        ("eval knn: --seed not a number", [*knn, "--seed", "abc"]),
        ("eval knn: --boot -1", [*knn, "--boot", "-1"]),
        ("eval knn: --ci 2", [*knn, "--ci", "2"]),
        ("eval knn: --out in a file's folder", [*knn, "--out", str(a_file / "x.json")]),
        ("eval knn: --image-size 0", [*knn, "--image-size", "0"]),
        ("eval knn: --workers -1", [*knn, "--workers", "-1"]),
        ("eval knn: --cache-dir is a file", [*knn, "--cache-dir", str(a_file)]),
        ("eval ood: --split missing", [*ood, "--split", "test"]),
        ("eval ood: --uncertainty-higher-is-out given a value", [*ood, "--uncertainty-higher-is-out=2"]),
        ("eval ood: --image-size 0", [*ood, "--image-size", "0"]),
        ("eval ood: --workers -1", [*ood, "--workers", "-1"]),
        ("eval ood: --cache-dir is a file", [*ood, "--cache-dir", str(a_file)]),
        ("eval ood: --cache-limit not a size", [*ood, "--cache-limit", "lots"]),
        ("eval similarity: shard set missing", ["eval", "similarity", run, run, "--shards", missing]),
        ("eval similarity: --split missing", [*sim, "--split", "test"]),
        ("eval similarity: --out in a file's folder", [*sim, "--out", str(a_file / "x.json")]),
        ("eval similarity: --image-size 0", [*sim, "--image-size", "0"]),
        ("eval similarity: --workers -1", [*sim, "--workers", "-1"]),
        ("eval similarity: --cache-dir is a file", [*sim, "--cache-dir", str(a_file)]),
        ("eval similarity: --cache-limit not a size", [*sim, "--cache-limit", "lots"]),
    ]
    return rows
