"""What each `genaug eval` command takes, declared once: each field is a flag of the command (built by
genaug.core.cli_model.command) and an attribute of the options object the genaug.evaluate.run function it calls
receives (`eval_linear(LinearOptions(model=..., shards=...))`); defaults and bounds live here only. Paths may be
given as pathlib.Path from Python (they are kept as text).

The blocks several commands share (the features they extract, their bootstrap, the labeled splits of a probe) are
one base model each; a command's model lists its own fields and then the blocks it takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Strict, field_validator

from genaug.core.config import Number, PathText, Settings, setting
from genaug.core.errors import GenaugError
from genaug.shards.options import cache_dir_field, cache_limit_field, storage_option_field

MODEL_HELP = "Run folder, its backbone.safetensors, a checkpoint, or a HF CLIP image encoder folder."
SHARDS_HELP = "Labeled shard set the features come from: name (shards/NAME), path or URL (s3://...)."
RESULT_HELP = "Result .json path or folder (default: <run>/eval/)."
#: fields that set up where and how a command runs, not what the eval function computes (never in a setting id)
CLI_ONLY = ("storage_option", "cache_dir", "cache_limit")


def _existing_files(value: str | list[str] | None, flag: str) -> None:
    for path in value if isinstance(value, list) else [value] if value else []:
        if not Path(path).is_file():
            raise GenaugError(f"{flag} {path} does not exist: give the file a previous run wrote")


def _output_path(value: str | None, flag: str) -> str | None:
    from genaug.core.flags import output_path

    output_path(value, flag)
    return value


class EvalOptions(Settings):
    """The base of every eval command's options: errors name the flag."""

    where: ClassVar[str] = "flag"


class FeatureFlags(EvalOptions):
    """How the commands that embed images extract features, and the shard storage they read."""

    image_size: int | None = setting(
        None, "Centre-crop side (default 224, or the encoder's own).", "--image-size", ge=1
    )
    extract_batch_size: int = setting(256, "Images per forward pass.", "--extract-batch-size", ge=1)
    workers: int = setting(0, "DataLoader worker processes decoding images.", "--workers", ge=0)
    device: str | None = setting(None, "cuda, cpu, ... (default: cuda when available).", "--device")
    limit: int | None = setting(None, "Use only the first N images of each split (smoke runs).", "--limit", ge=1)
    quiet: bool = setting(False, "Do not print the table.", "--quiet")
    storage_option: list[str] = storage_option_field()
    cache_dir: str | None = cache_dir_field()
    cache_limit: str | None = cache_limit_field()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        from genaug.core.devices import check_device

        check_device(v)
        return v


class Bootstrap(EvalOptions):
    """The bootstrap intervals over test images."""

    seed: int = setting(0, "Seed of the probe (linear) and of the bootstrap.", "--seed")
    n_boot: int = setting(1000, "Bootstrap resamples of the test images.", "--boot", ge=1)
    ci: Number = setting(0.95, "Coverage of the bootstrap interval (between 0 and 1).", "--ci", gt=0)

    @field_validator("ci")
    @classmethod
    def _ci(cls, v: float) -> float:
        if not v < 1:
            raise GenaugError(f"--ci must lie strictly between 0 and 1, got {v}")
        return v


class ResultOut(EvalOptions):
    """Where the result .json goes."""

    out: PathText | None = setting(None, RESULT_HELP, "--out")

    @field_validator("out")
    @classmethod
    def _out(cls, v: str | None) -> str | None:
        return _output_path(v, "--out")


class ProbeData(EvalOptions):
    """The model and the labeled train and val splits (or their precomputed features) of a probe."""

    model: PathText | None = setting(None, MODEL_HELP, "MODEL", argument=True)
    shards: PathText | None = setting(None, SHARDS_HELP, "--shards")
    train_split: str = setting("train", "Split the probe is fitted on.", "--train-split")
    val_split: str = setting("val", "Split the probe is tested on.", "--val-split")
    train_features: PathText | None = setting(None, "Precomputed features .npz.", "--train-features")
    val_features: PathText | None = setting(None, "Precomputed features .npz.", "--val-features")

    @field_validator("train_features", "val_features")
    @classmethod
    def _features(cls, v: str | None, info) -> str | None:  # noqa: ANN001 - pydantic's ValidationInfo
        _existing_files(v, "--" + info.field_name.replace("_", "-"))
        return v


class _Linear(EvalOptions):
    solver: Literal["sgd", "lars", "ridge"] = setting("sgd", "sgd, lars or ridge (closed form).", "--solver")
    epochs: int = setting(100, "Probe epochs.", "--epochs", ge=1)
    batch_size: int = setting(256, "Probe batch size.", "--batch-size", ge=1)
    lr: Number | None = setting(None, "Default 0.1 x batch size / 256.", "--lr", gt=0)
    weight_decay: Number = setting(0.0, "Weight decay of the probe.", "--weight-decay", ge=0)
    batchnorm: bool = setting(False, "BatchNorm without affine before the linear layer.", "--batchnorm")
    fast: bool = setting(False, "Closed-form ridge probe instead of SGD (seconds).", "--fast")


class LinearOptions(FeatureFlags, ResultOut, Bootstrap, _Linear, ProbeData):
    """Linear probe on frozen features (SGD/LARS, cosine schedule); top-1/top-5 on val."""


class _Knn(EvalOptions):
    ks: list[int] = setting(
        factory=lambda: [20, 200], help="Neighbours (repeatable; capped at the train size).", flag="--k"
    )
    temperature: Number = setting(0.07, "Temperature T of the votes exp(sim/T).", "--temperature", gt=0)

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        for k in v:
            if k < 1:
                raise GenaugError(f"--k must be at least 1, got {k}")
        return v


class KnnOptions(FeatureFlags, ResultOut, Bootstrap, _Knn, ProbeData):
    """Weighted kNN on frozen features (cosine, votes exp(sim/T)); top-1/top-5 per k."""


SCORES = ("msp", "mahalanobis", "knn", "uncertainty")


class _Ood(EvalOptions):
    model: PathText | None = setting(None, MODEL_HELP, "MODEL", argument=True)
    in_set: PathText | None = setting(
        None, "In-distribution shard set, name, path or URL (its train split fits the scores).", "--in"
    )
    out_sets: list[PathText] = setting(
        factory=list, help="Out-of-distribution shard set, name, path or URL (repeatable).", flag="--out"
    )
    split: str = setting("val", "Test split of the in and out sets.", "--split")
    train_split: str = setting("train", "Split of the in set the scores are fitted on.", "--train-split")
    train_features: PathText | None = setting(None, "Precomputed features .npz of the train split.", "--train-features")
    in_features: PathText | None = setting(None, "Precomputed features .npz of the in set.", "--in-features")
    out_features: list[PathText] = setting(
        factory=list, help="Precomputed features .npz (repeatable).", flag="--out-features"
    )
    scores: list[Literal["msp", "mahalanobis", "knn", "uncertainty"]] = setting(
        factory=lambda: list(SCORES), help="Scores to compute (repeatable).", flag="--score"
    )
    knn_k: int = setting(50, "k of the kNN-distance score (Sun et al. 2022).", "--knn-k", ge=1)
    uncertainty_in: PathText | None = setting(None, "Per-sample scores (.npy/.npz/txt).", "--uncertainty-in")
    uncertainty_out: list[PathText] = setting(factory=list, help="One per out set.", flag="--uncertainty-out")
    # Annotated: cli_model types a plain `bool | None` as text (its `bool | 'auto'` rule), which drops the /--x-out pair
    uncertainty_higher_is_in: Annotated[bool, Strict()] | None = setting(
        None,
        "Direction of the uncertainty score (default: what the trained method declares; else higher is in).",
        "--uncertainty-higher-is-in/--uncertainty-higher-is-out",
    )
    probe_epochs: int = setting(100, "Epochs of the probe behind the max-softmax score.", "--probe-epochs", ge=1)
    fast: bool = setting(False, "Closed-form probe for the max-softmax score.", "--fast")
    out: PathText | None = setting(None, RESULT_HELP, "--result")

    @field_validator("train_features", "in_features", "out_features", "uncertainty_in", "uncertainty_out")
    @classmethod
    def _files(cls, v: str | list[str] | None, info) -> str | list[str] | None:  # noqa: ANN001 - ValidationInfo
        _existing_files(v, "--" + info.field_name.replace("_", "-"))
        return v

    @field_validator("out")
    @classmethod
    def _out(cls, v: str | None) -> str | None:
        return _output_path(v, "--result")


class OodOptions(FeatureFlags, _Ood):
    """OOD detection: AUROC, AUPR-in/out, FPR@95 of max softmax, Mahalanobis, kNN distance and the uncertainty of
    probabilistic methods."""


class _Similarity(EvalOptions):
    a: PathText = setting(..., MODEL_HELP + " Or a features .npz.", "A", argument=True)
    b: PathText = setting(..., "The other encoder (e.g. the generator's image_encoder) or .npz.", "B", argument=True)
    shards: PathText | None = setting(
        None, "Shard set of the images: name (shards/NAME), path or URL (s3://...).", "--shards"
    )
    split: str = setting("val", "Split whose images both encoders embed.", "--split")


class SimilarityOptions(FeatureFlags, ResultOut, Bootstrap, _Similarity):
    """Linear CKA and orthogonal Procrustes distance of two encoders on the same images."""

    n_boot: int = setting(200, "Bootstrap resamples of the images.", "--boot", ge=1)


class ReportOptions(EvalOptions):
    """Table (and PNG bar chart) comparing the results of several runs."""

    runs: list[PathText] = setting(..., "Run folders (with eval/*.json) or result .json files.", "RUNS", argument=True)
    png: PathText | None = setting(None, "Write a grouped bar chart here.", "--png")
    metrics: list[str] = setting(factory=list, help="Metrics to show (repeatable; default all).", flag="--metric")
    quiet: bool = setting(False, "Do not print the table.", "--quiet")

    @field_validator("png")
    @classmethod
    def _png(cls, v: str | None) -> str | None:
        return _output_path(v, "--png")
