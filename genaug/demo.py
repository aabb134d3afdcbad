"""`genaug demo`: the whole job end to end on CPU in a few minutes, on scikit-learn's digits (real labeled images)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar, Literal

import typer

from genaug.core.cli_model import command
from genaug.core.config import Probability, Settings, setting


def write_digits_tree(out: Path, size: int = 64, val_fraction: float = 0.2, seed: int = 0) -> dict[str, Path]:
    """Write scikit-learn's 1797 digits as an ImageNet-style tree per split (upscaled PNGs); return split folders."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.images))
    n_val = int(round(len(order) * val_fraction))
    splits = {"val": order[:n_val], "train": order[n_val:]}
    roots = {}
    for split, idx in splits.items():
        root = out / split
        for i in idx:
            label = int(digits.target[i])
            d = root / f"digit{label}"
            d.mkdir(parents=True, exist_ok=True)
            arr = (digits.images[i] / 16.0 * 255.0).astype(np.uint8)
            img = Image.fromarray(arr, "L").resize((size, size), Image.BICUBIC).convert("RGB")
            img.save(d / f"{i:04d}.png")
        roots[split] = root
    return roots


def random_init_run(run_dir: Path, out: Path) -> Path:
    """A run folder holding the method of `run_dir`'s recipe at its random initialisation (the probe's baseline)."""
    import shutil

    import torch
    import yaml

    from genaug.ssl.artifacts import export_model
    from genaug.ssl.methods import build_method

    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    torch.manual_seed(int((recipe.get("run") or {}).get("seed", 0)))
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "recipe.yaml", out / "recipe.yaml")
    export_model(out, build_method(recipe), recipe)
    return out


# The demo's training settings, chosen by measurement (scripts/demo_spread.py, BENCHMARKS.md): the shipped SimCLR
# recipe's LARS at lr 0.3 x 64/256 barely moves a tiny net in 150 steps, and flips and small crops destroy digits.
DEMO_OVERRIDES = {
    "views.preset": "small",
    "views.global": [{"flip": 0.0, "scale": [0.5, 1.0]}, {"flip": 0.0, "scale": [0.5, 1.0]}],
    "optim.name": "adamw",
    "optim.base_lr": 1e-3,
    "optim.lr_scaling": "none",
    "optim.weight_decay": 1e-4,
}
# The smallest kNN (k=20) gain over the same backbone at random init measured across seeds 0-5 was +0.014.
DEMO_KNN_MARGIN = 0.01
# The in-domain generator the demo fits (genaug fit-generator) at the digits' native 8 x 8: a UNet of widths 32, 64
# for 600 steps of 64 images (about 80 s of one CPU core); cached under OUT/generator between runs.
DEMO_FIT = {"size": 8, "channels": 3, "widths": [32, 64], "steps": 600, "batch_size": 64}


def fit_digits_generator(shards: Path, out: Path, steps: int, progress: bool) -> dict:
    """Fit (or find cached) the demo's digits diffusion model on the train split; fit_generator's summary."""
    from genaug.core.hashing import stable_hash
    from genaug.fit.run import fit_generator

    cfg = {**DEMO_FIT, "steps": steps}
    folder = Path(out) / f"digits-{stable_hash(cfg)[:8]}"  # other settings, another folder: each stays cached
    return fit_generator(str(shards), folder, split="train", progress=progress, **cfg)


def generate_variants(shards: Path, out: Path, model: str, k: int, size: int, fit_steps: int, progress: bool,
                      say) -> dict:  # fmt: skip
    """K variants per training digit: img2img from the fitted digits model, or the `tiny` noise generator."""
    from genaug.generate import generate

    if model == "tiny":
        say(f"2/6 generating K={k} variants per training image with the `tiny` recipe (random weights: a smoke run)")
        return generate(model="tiny", shards=str(shards), split="train", k=k, overrides={"output.size": size},
                        progress=progress)  # fmt: skip
    say(f"2/6 fitting a diffusion model of the training digits ({fit_steps} steps at 8x8; cached) -> {out}")
    fit = fit_digits_generator(shards, out, fit_steps, progress)
    if fit["cached"]:
        say(f"    {fit['model']}: already fitted with these settings, reused")
    else:
        say(f"    {fit['model']}: {fit['trained_steps']} steps in {fit['seconds']:.0f}s, last loss "
            f"{fit['log'][-1]['loss']:.4f}")  # fmt: skip
    say(
        f"    generating K={k} variants per training image with `{model}` (SDEdit: noise each digit part-way, "
        "denoise it back)"
    )
    return generate(model=model, shards=str(shards), split="train", k=k, weights=fit["model"],
                    overrides={"output.size": size}, progress=progress)  # fmt: skip


# The demo's probes are `genaug eval linear|knn` with these settings: the command each result records (and the demo
# prints) reruns it into the same eval/<kind>-val-<setting id>.json with the same figure.
DEMO_LINEAR = {"epochs": 50, "batchnorm": True}  # SGD, 50 epochs, BatchNorm without affine before the linear layer
DEMO_KNN = {"ks": [20]}


def run_demo(
    out: Path = Path("genaug-demo"),
    size: int = 32,
    workers: int = 2,
    k: int = 2,
    method: str = "simclr",
    p: float = 0.5,
    steps: int = 150,
    progress: bool = True,
    seed: int = 0,
    model: str = "img2img-ddpm",
    fit_steps: int = DEMO_FIT["steps"],
) -> dict:
    """Ingest digits, fit a digits generator, generate K variants, train an SSL method at p, probe it, draw sheets."""
    from genaug.core.flags import output_folder
    from genaug.core.recipes import load_recipe
    from genaug.evaluate.options import KnnOptions, LinearOptions
    from genaug.evaluate.run import eval_knn, eval_linear
    from genaug.ingest.run import ingest
    from genaug.inspect import contact_sheet, views_sheet
    from genaug.shards.verify import verify_set
    from genaug.train.runner import train

    output_folder(out, "--out")
    load_recipe("trainers", method)  # an unknown --method is one line now, not after minutes of ingest and generate
    t0 = time.perf_counter()
    out = Path(out)
    shards = out / "shards" / "digits"
    written: dict[str, str] = {}

    def say(msg: str) -> None:
        print(f"[demo {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)

    say(f"1/6 writing scikit-learn's digits as {size}px PNG class folders under {out / 'digits-src'}")
    roots = write_digits_tree(out / "digits-src", size=size)
    for split in ("train", "val"):
        s = ingest(roots[split], shards, split=split, per_shard=256, workers=workers, progress=progress)
        say(f"    ingest {split}: {s['images_written']} images in {s['shards']} shards -> {s['folder']}")
        written[f"shards/{split}"] = s["folder"]
    g = generate_variants(shards, out / "generator", model, k, size, fit_steps, progress, say)
    column = g["column"]
    say(f"    column {column}: {g['images']} images -> {g['folder']}")
    written[f"gen/{column}/train"] = str(g["folder"])
    _, problems = verify_set(str(shards))
    if problems:
        raise RuntimeError("demo shard set failed verification:\n" + "\n".join(problems))
    say(f"    verify: shard set {shards} (source splits and generated column) is complete and consistent")
    run_dir = out / "runs" / f"{method}-p{p}"
    say(f"3/6 training {method} for {steps} steps at p={p} (tiny backbone, {size}px views) -> {run_dir}")
    res = train(
        method=method,
        shards=str(shards),
        p=p,
        gen=[column],
        out=run_dir,
        steps=steps,
        batch_size=64,
        backbone="tiny",
        image_size=size,
        workers=0,
        seed=seed,
        overrides=DEMO_OVERRIDES,
        progress_bar=progress,
    )
    written["run"] = str(res["run_dir"])
    say("4/6 linear probe on frozen features (SGD, 50 epochs, BatchNorm without affine before the linear layer)")
    run_dir = str(res["run_dir"])
    lin = eval_linear(LinearOptions(model=run_dir, shards=shards, quiet=True, **DEMO_LINEAR))
    top1 = lin["summary"]["linear/top1"]
    base = str(random_init_run(Path(run_dir), out / "runs" / f"{method}-random-init"))
    lin0 = eval_linear(LinearOptions(model=base, shards=shards, quiet=True, **DEMO_LINEAR))
    top0 = lin0["summary"]["linear/top1"]
    say(
        f"    linear probe top-1 on val: {_pct(lin, 'linear/top1')} trained vs {_pct(lin0, 'linear/top1')} for the "
        "same backbone at random init (10 classes: chance is 10%; [95% bootstrap interval over val images])"
    )
    say(f"    rerun: {lin['command']}")
    knn, knn0 = (eval_knn(KnnOptions(model=r, shards=shards, quiet=True, **DEMO_KNN)) for r in (run_dir, base))
    k1, k0 = knn["summary"]["knn/k20/top1"], knn0["summary"]["knn/k20/top1"]
    trained, random_init = _pct(knn, "knn/k20/top1"), _pct(knn0, "knn/k20/top1")
    say(f"    kNN (k=20) top-1 on val: {trained} trained vs {random_init} at random init")
    say(f"    rerun: {knn['command']}")
    written["eval"] = str(Path(run_dir) / "eval")
    written["linear_result"], written["knn_result"] = lin["path"], knn["path"]
    say("5/6 contact sheet: each row is a source image, then its K generated variants")
    sheet = contact_sheet(shards, column, split="train", n=8, seed=0, tile=96, out=out / f"contact-{column}.png")
    written["contact_sheet"] = str(sheet)
    say(f"    {sheet}")
    say(f"6/6 views sheet: source, then pairs of training views at p={p} (orange border = generated variant)")
    views = views_sheet(
        shards,
        column,
        split="train",
        p=p,
        n=6,
        seed=0,
        tile=96,
        view_size=size,
        method=method,
        run=res["run_dir"],  # the views and mixing rule the run trained with (DEMO_OVERRIDES included)
        out=out / f"views-{column}-p{p}.png",
    )
    written["views_sheet"] = str(views)
    say(f"    {views}")
    say("done. Wrote:")
    for name, path in written.items():
        print(f"    {name:16s} {path}")
    written["linear_top1"] = top1
    written["random_init_top1"] = top0
    written["knn_top1"], written["random_init_knn_top1"] = k1, k0
    return written


def _pct(doc: dict, metric: str) -> str:
    """A result's metric in percent with its bootstrap interval: 96.1% [94.2, 97.8]."""
    value = 100 * doc["summary"][metric]
    iv = (doc.get("intervals") or {}).get(metric)
    return f"{value:.1f}%" + (f" [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]" if iv else "")


class DemoOptions(Settings):
    """Run the main job end to end on a bundled real dataset (scikit-learn's digits, upscaled) on CPU in a few minutes,
    printing where each stage wrote its output."""

    where: ClassVar[str] = "flag"

    out: str = setting("genaug-demo", "Folder for everything the demo writes.", "--out")
    size: int = setting(  # the views are cut from these images: smaller ones hold no crop
        32, "Side of the upscaled digit images, in pixels.", "--size", ge=8
    )
    workers: int = setting(2, "Worker processes for ingest.", "--workers", ge=0)
    k: int = setting(2, "Generated variants per training image.", "--k", ge=1)
    method: str = setting("simclr", "SSL method to train.", "--method")
    p: Probability = setting(0.5, "Probability of replacing a view by a generated variant.", "--p")
    steps: int = setting(150, "Training steps.", "--steps", ge=1)
    seed: int = setting(0, "Seed of the training run (init, data order, mixing).", "--seed")
    model: Literal["img2img-ddpm", "tiny"] = setting(
        "img2img-ddpm",
        "img2img-ddpm: fit a digits diffusion model (cached) and make SDEdit variants; tiny: the random-weight "
        "noise generator (a smoke run).",
        "--model",
    )
    fit_steps: int = setting(DEMO_FIT["steps"], "Steps of the digits model's fit.", "--fit-steps", ge=1)


def register(app: typer.Typer) -> None:
    """Add the `demo` command to the CLI."""

    @command(app, "demo", options=DemoOptions)
    def demo(o: DemoOptions, overrides: dict) -> None:
        run_demo(
            Path(o.out),
            o.size,
            o.workers,
            o.k,
            o.method,
            o.p,
            o.steps,
            seed=o.seed,
            model=o.model,
            fit_steps=o.fit_steps,
        )
