"""`genaug eval`: linear probe, kNN, OOD detection, CKA/OPD similarity and run reports."""

from __future__ import annotations

from pathlib import Path

import typer

from genaug.core.errors import GenaugError
from genaug.shards.cache import CACHE_DIR_HELP, CACHE_LIMIT_HELP
from genaug.shards.storage import STORAGE_OPTION_HELP

MODEL_HELP = "Run folder, its backbone.safetensors, a checkpoint, or a HF CLIP image encoder folder."

# options shared by the commands that extract features
_common = {
    "image_size": typer.Option(None, "--image-size", help="Centre-crop side (default 224, or the encoder's own)."),
    "extract_batch_size": typer.Option(256, "--extract-batch-size", help="Images per forward pass."),
    "workers": typer.Option(0, "--workers", help="DataLoader worker processes decoding images."),
    "device": typer.Option(None, "--device", help="cuda, cpu, ... (default: cuda when available)."),
    "limit": typer.Option(None, "--limit", help="Use only the first N images of each split (smoke runs)."),
    "out": typer.Option(None, "--out", help="Result .json path or folder (default: <run>/eval/)."),
    "quiet": typer.Option(False, "--quiet", help="Do not print the table."),
    "storage_option": typer.Option(
        [],
        "--storage-option",
        help=STORAGE_OPTION_HELP,
    ),
    "cache_dir": typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP),
    "cache_limit": typer.Option(None, "--cache-limit", help=CACHE_LIMIT_HELP),
}
SHARDS_HELP = "Labeled shard set the features come from: name (shards/NAME), path or URL (s3://...)."


def _check_values(args: dict) -> None:
    """Range checks of the flags eval commands share, before any model or image is loaded (one line each)."""
    from genaug.core import flags
    from genaug.core.devices import check_device

    check_device(args.get("device"))
    for key, flag in (("extract_batch_size", "--extract-batch-size"), ("batch_size", "--batch-size"),
                      ("epochs", "--epochs"), ("probe_epochs", "--probe-epochs"), ("knn_k", "--knn-k"),
                      ("limit", "--limit"), ("image_size", "--image-size")):  # fmt: skip
        flags.at_least(args.get(key), 1, flag)
    flags.at_least(args.get("workers"), 0, "--workers")
    flags.at_least(args.get("weight_decay"), 0, "--weight-decay")
    flags.at_least(args.get("n_boot"), 1, "--boot")
    flags.above(args.get("lr"), 0, "--lr")
    flags.above(args.get("temperature"), 0, "--temperature")
    flags.between(args.get("ci"), 0, 1, "--ci")
    for k in args.get("ks") or ():
        flags.at_least(k, 1, "--k")
    flags.one_of([args["solver"]] if args.get("solver") else [], ("sgd", "lars", "ridge"), "--solver")
    flags.one_of(args.get("scores") or (), ("msp", "mahalanobis", "knn", "uncertainty"), "--score")
    flags.output_path(args.get("out"), "--out" if "out_sets" not in args else "--result")
    for key, flag in (("uncertainty_in", "--uncertainty-in"), ("uncertainty_out", "--uncertainty-out"),
                      ("train_features", "--train-features"), ("val_features", "--val-features"),
                      ("in_features", "--in-features"), ("out_features", "--out-features")):  # fmt: skip
        given = args.get(key)
        for path in given if isinstance(given, list) else [given] if given else []:
            if not Path(path).is_file():
                raise GenaugError(f"{flag} {path} does not exist: give the file a previous run wrote")


def _storage(args: dict) -> dict:
    """Apply (and drop) the --storage-option flags of a command's arguments; the rest are the eval function's."""
    from genaug.shards.storage_flags import apply_storage_flags

    _check_values(args)
    apply_storage_flags(args.pop("storage_option", None), args.get("shards"), args.get("in_set"), args.get("out_sets"))
    from genaug.shards.cache import set_cache_env

    set_cache_env(args.pop("cache_dir", None), args.pop("cache_limit", None))
    return args


def register(app: typer.Typer) -> None:
    """Add the `eval` command group to the CLI."""
    ev = typer.Typer(
        help="Evaluate frozen representations: linear probe, kNN, OOD detection, CKA/OPD, reports comparing runs.",
        no_args_is_help=True,
    )

    @ev.command("linear", help="Linear probe on frozen features (SGD/LARS, cosine schedule); top-1/top-5 on val.")
    def linear(
        model: str | None = typer.Argument(None, help=MODEL_HELP),
        shards: str | None = typer.Option(None, "--shards", help=SHARDS_HELP),
        train_split: str = typer.Option("train", "--train-split"),
        val_split: str = typer.Option("val", "--val-split"),
        train_features: str | None = typer.Option(None, "--train-features", help="Precomputed features .npz."),
        val_features: str | None = typer.Option(None, "--val-features", help="Precomputed features .npz."),
        solver: str = typer.Option("sgd", "--solver", help="sgd, lars or ridge (closed form)."),
        epochs: int = typer.Option(100, "--epochs"),
        batch_size: int = typer.Option(256, "--batch-size"),
        lr: float | None = typer.Option(None, "--lr", help="Default 0.1 x batch size / 256."),
        weight_decay: float = typer.Option(0.0, "--weight-decay"),
        batchnorm: bool = typer.Option(False, "--batchnorm", help="BatchNorm without affine before the linear layer."),
        fast: bool = typer.Option(False, "--fast", help="Closed-form ridge probe instead of SGD (seconds)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the probe and the bootstrap."),
        n_boot: int = typer.Option(1000, "--boot", help="Bootstrap resamples of the val images (0: no intervals)."),
        ci: float = typer.Option(0.95, "--ci", help="Coverage of the bootstrap interval."),
        image_size: int | None = _common["image_size"],
        extract_batch_size: int = _common["extract_batch_size"],
        workers: int = _common["workers"],
        device: str | None = _common["device"],
        limit: int | None = _common["limit"],
        out: str | None = _common["out"],
        quiet: bool = _common["quiet"],
        storage_option: list[str] = _common["storage_option"],
        cache_dir: str | None = _common["cache_dir"],
        cache_limit: str | None = _common["cache_limit"],
    ) -> None:
        args = _storage(dict(locals()))
        from genaug.evaluate.run import eval_linear

        eval_linear(**args)

    @ev.command("knn", help="Weighted kNN on frozen features (cosine, votes exp(sim/T)); top-1/top-5 per k.")
    def knn(
        model: str | None = typer.Argument(None, help=MODEL_HELP),
        shards: str | None = typer.Option(None, "--shards", help=SHARDS_HELP),
        train_split: str = typer.Option("train", "--train-split"),
        val_split: str = typer.Option("val", "--val-split"),
        train_features: str | None = typer.Option(None, "--train-features", help="Precomputed features .npz."),
        val_features: str | None = typer.Option(None, "--val-features", help="Precomputed features .npz."),
        ks: list[int] = typer.Option([20, 200], "--k", help="Neighbours (repeatable; capped at the train size)."),
        temperature: float = typer.Option(0.07, "--temperature"),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
        n_boot: int = typer.Option(1000, "--boot", help="Bootstrap resamples of the val images (0: no intervals)."),
        ci: float = typer.Option(0.95, "--ci", help="Coverage of the bootstrap interval."),
        image_size: int | None = _common["image_size"],
        extract_batch_size: int = _common["extract_batch_size"],
        workers: int = _common["workers"],
        device: str | None = _common["device"],
        limit: int | None = _common["limit"],
        out: str | None = _common["out"],
        quiet: bool = _common["quiet"],
        storage_option: list[str] = _common["storage_option"],
        cache_dir: str | None = _common["cache_dir"],
        cache_limit: str | None = _common["cache_limit"],
    ) -> None:
        args = _storage(dict(locals()))
        from genaug.evaluate.run import eval_knn

        eval_knn(**args)

    @ev.command(
        "ood",
        help="OOD detection: AUROC, AUPR-in/out, FPR@95 of max softmax, Mahalanobis, kNN distance "
        "and the uncertainty of probabilistic methods.",
    )
    def ood(
        model: str | None = typer.Argument(None, help=MODEL_HELP),
        in_set: str | None = typer.Option(
            None, "--in", help="In-distribution shard set, name, path or URL (its train split fits the scores)."
        ),
        out_sets: list[str] = typer.Option(
            [], "--out", help="Out-of-distribution shard set, name, path or URL (repeatable)."
        ),
        split: str = typer.Option("val", "--split", help="Test split of the in and out sets."),
        train_split: str = typer.Option("train", "--train-split"),
        train_features: str | None = typer.Option(None, "--train-features"),
        in_features: str | None = typer.Option(None, "--in-features"),
        out_features: list[str] = typer.Option([], "--out-features", help="Repeatable."),
        scores: list[str] = typer.Option(["msp", "mahalanobis", "knn", "uncertainty"], "--score", help="Repeatable."),
        knn_k: int = typer.Option(50, "--knn-k", help="k of the kNN-distance score (Sun et al. 2022)."),
        uncertainty_in: str | None = typer.Option(None, "--uncertainty-in", help="Per-sample scores (.npy/.npz/txt)."),
        uncertainty_out: list[str] = typer.Option([], "--uncertainty-out", help="One per out set."),
        uncertainty_higher_is_in: bool = typer.Option(
            None,
            "--uncertainty-higher-is-in/--uncertainty-higher-is-out",
            help="Direction of the uncertainty score (default: what the trained method declares; else higher is in).",
        ),
        probe_epochs: int = typer.Option(100, "--probe-epochs"),
        fast: bool = typer.Option(False, "--fast", help="Closed-form probe for the max-softmax score."),
        image_size: int | None = _common["image_size"],
        extract_batch_size: int = _common["extract_batch_size"],
        workers: int = _common["workers"],
        device: str | None = _common["device"],
        limit: int | None = _common["limit"],
        out: str | None = typer.Option(None, "--result", help="Result .json path or folder (default: <run>/eval/)."),
        quiet: bool = _common["quiet"],
        storage_option: list[str] = _common["storage_option"],
        cache_dir: str | None = _common["cache_dir"],
        cache_limit: str | None = _common["cache_limit"],
    ) -> None:
        args = _storage(dict(locals()))
        from genaug.evaluate.run import eval_ood

        eval_ood(**args)

    @ev.command("similarity", help="Linear CKA and orthogonal Procrustes distance of two encoders on the same images.")
    def similarity(
        a: str = typer.Argument(..., help=MODEL_HELP + " Or a features .npz."),
        b: str = typer.Argument(..., help="The other encoder (e.g. the generator's image_encoder) or .npz."),
        shards: str | None = typer.Option(
            None, "--shards", help="Shard set of the images: name (shards/NAME), path or URL (s3://...)."
        ),
        split: str = typer.Option("val", "--split"),
        n_boot: int = typer.Option(200, "--boot", help="Bootstrap resamples of the images."),
        ci: float = typer.Option(0.95, "--ci"),
        seed: int = typer.Option(0, "--seed"),
        image_size: int | None = _common["image_size"],
        extract_batch_size: int = _common["extract_batch_size"],
        workers: int = _common["workers"],
        device: str | None = _common["device"],
        limit: int | None = _common["limit"],
        out: str | None = _common["out"],
        quiet: bool = _common["quiet"],
        storage_option: list[str] = _common["storage_option"],
        cache_dir: str | None = _common["cache_dir"],
        cache_limit: str | None = _common["cache_limit"],
    ) -> None:
        args = _storage(dict(locals()))
        from genaug.evaluate.run import eval_similarity

        eval_similarity(**args)

    @ev.command("report", help="Table (and PNG bar chart) comparing the results of several runs.")
    def report(
        runs: list[str] = typer.Argument(..., help="Run folders (with eval/*.json) or result .json files."),
        png: str | None = typer.Option(None, "--png", help="Write a grouped bar chart here."),
        metrics: list[str] = typer.Option([], "--metric", help="Metrics to show (repeatable; default all)."),
        quiet: bool = _common["quiet"],
    ) -> None:
        from genaug.core.flags import output_path
        from genaug.evaluate.run import eval_report

        output_path(png, "--png")
        eval_report(runs, png, metrics or None, quiet)

    app.add_typer(ev, name="eval")
