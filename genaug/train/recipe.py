"""The training recipe schema (trainers/<method>.yaml): typed sections, validation, every default filled in.

One dialect: the learning rate is optim.base_lr (scaled with the global batch by optim.lr_scaling), the length
and warm-up are schedule.epochs / schedule.steps / schedule.warmup_epochs. Unknown or misspelt keys and wrong
types are one-line errors naming the key and the closest valid one; method_args are checked against the method's
arguments model (ssl/methods/args.py; a plug-in's plain __init__ signature where it has none). The resolved
recipe written to <run>/recipe.yaml holds every value used.
"""

from __future__ import annotations

import inspect
import math
import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, field_validator

from genaug.core.config import Number, PathText, Probability, Settings, check_value, close_key, lenient, setting
from genaug.core.errors import GenaugError
from genaug.data.mixing import Cosine, MixViews, Weighting
from genaug.shards.cache import CACHE_DIR_HELP, CACHE_LIMIT_HELP


def _split_names(value: Any) -> Any:
    """`--gen sd,icgan` and `--gen sd --gen icgan` mean the same: a list of column names."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [c.strip() for v in value for c in v.split(",") if c.strip()]
    return value


def _once_each(names: list[str]) -> list[str]:
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise ValueError(
            f"--gen names column {', '.join(twice)} more than once: each generated column is given once "
            "(its variants are already drawn with equal weight; use --gen-weighting score to weight them)"
        )
    return names


#: generated column names: a list, or one comma-separated string; each name once
ColumnNames = Annotated[list[str], BeforeValidator(_split_names), AfterValidator(_once_each)]

# keys of older recipes and where they live now (an error says so instead of guessing)
RENAMED = {
    "optim.lr": "optim.base_lr",
    "optim.warmup_epochs": "schedule.warmup_epochs",
    "loop.epochs": "schedule.epochs",
    "loop.steps": "schedule.steps",
    "loop.warmup_epochs": "schedule.warmup_epochs",
}


class Backbone(Settings):
    """The encoder being trained."""

    name: str = setting(
        "resnet50",
        "tiny, resnet18, resnet18-half, resnet50, vit_s, vit_b, or timm:NAME (any timm model without its classifier; "
        "pip install 'genaug[timm]'; model arguments: --set backbone.timm_args.KEY=VALUE).",
        flag="--backbone",
    )
    cifar_stem: bool | Literal["auto"] = setting("auto", "3x3 stem without max-pool (auto: images of 64 px or less).")
    width: int = setting(16, "The tiny conv net's width.", ge=1)
    timm_args: dict = setting(factory=dict, help="timm.create_model keyword arguments of timm:NAME (e.g. patch_size).")
    weights: PathText | None = setting(
        None,
        "Start the backbone from this local .safetensors or torch checkpoint (a timm or torchvision checkpoint, or a "
        "genaug backbone.safetensors); its classifier is dropped.",
        flag="--backbone-weights",
    )
    weights_sha256: str | None = setting(None, "Filled in by the trainer: the identity of `weights`.")


class Data(Settings):
    """The training stream of each process."""

    batch_size: int = setting(256, "Per-process batch size.", flag="--batch-size", ge=1)
    num_workers: int = setting(4, "Data loader worker processes per rank.", flag="--workers", ge=0)
    mix_views: MixViews = setting("each", "Views that may be replaced: each or second.", "--mix-views")
    shuffle_buffer: int = setting(1000, "Samples in each worker's shuffle buffer.", ge=1)
    read_ahead: int = setting(1, "Remote shards fetched ahead per worker while one is decoded (0: none).", ge=0, le=16)
    cache_dir: PathText | None = setting(None, CACHE_DIR_HELP, flag="--cache-dir")
    cache_limit: str | int | None = setting(None, CACHE_LIMIT_HELP, flag="--cache-limit")
    range_reads: Literal["auto", "on", "off"] = setting(
        "auto", "Fetch only the variants views use: on, off, or auto (object stores)."
    )
    range_gap: str | int = setting(
        4096,
        "Range reads: ranges of one column shard closer than this (bytes, or 64K, 1M) are fetched as one request; "
        "wider: fewer requests, more bytes (BENCHMARKS.md).",
    )
    image_size: int | None = setting(None, "Filled in from views.size.", ge=1)
    gen_min_score: Cosine | None = setting(
        None,
        "Draw only variants whose fidelity score is at least X (a source with none left keeps its image); needs "
        "scores (docs/fidelity.md).",
        flag="--gen-min-score",
    )
    gen_weighting: Weighting = setting(
        "uniform", "uniform, or score: draw variant k in proportion to its fidelity score.", flag="--gen-weighting"
    )
    gen_partial: bool = setting(
        False,
        "Train while the --gen column is still being generated: each epoch uses the column shards committed when it "
        "starts (the others' samples keep their source images); coverage per epoch in metrics.jsonl.",
        flag="--gen-partial",
    )

    @field_validator("range_gap")
    @classmethod
    def _range_gap(cls, v: str | int) -> str | int:
        from genaug.shards.cache import parse_size

        parse_size(v, "recipe key data.range_gap")
        return v

    #: fields that are not keywords of genaug.data.stream.build_train_loader (the batch a session uses is its own)
    NOT_STREAM: ClassVar[frozenset[str]] = frozenset({"batch_size", "image_size"})

    def stream_args(self) -> dict:
        """The keywords of build_train_loader this section sets (every field but batch_size and image_size)."""
        return {k: getattr(self, k) for k in type(self).model_fields if k not in self.NOT_STREAM}


class Optim(Settings):
    """Optimizer and learning rate: lr = base_lr x global batch / ref_batch (lr_scaling linear)."""

    name: Literal["lars", "sgd", "adamw"] = setting("sgd", "The optimizer.")
    base_lr: Number = setting(0.1, "Base lr (scaled with the global batch as lr_scaling says).", flag="--lr", gt=0.0)
    bias_lr: Number | None = setting(None, "A fixed, separately scaled lr for biases and norms (Barlow Twins).")
    lr_scaling: Literal["linear", "sqrt", "none"] = setting("linear", "How the lr scales with the global batch.")
    ref_batch: int = setting(256, "The global batch base_lr is given for.", ge=1)
    weight_decay: Number = setting(0.0, "Weight decay.", ge=0.0)
    final_weight_decay: Number | None = setting(None, "Cosine weight-decay schedule to this value (DINO).")
    momentum: Number = setting(0.9, "SGD / LARS momentum.", ge=0.0, le=1.0)
    eta: Number = setting(0.001, "LARS trust coefficient.", gt=0.0)
    betas: list[Number] = setting(factory=lambda: [0.9, 0.999], help="AdamW betas.")
    eps: Number = setting(1e-8, "AdamW epsilon.", gt=0.0)
    exclude_bias_norm: bool = setting(True, "No weight decay (and no LARS adaptation) for biases and norms.")
    clip_grad: Number | None = setting(None, "Clip the gradient norm to this value.", gt=0.0)


class Schedule(Settings):
    """Length and learning-rate schedule (linear warm-up, then cosine to final_lr_ratio x lr)."""

    epochs: Number = setting(100.0, "Epochs over the split.", flag="--epochs", gt=0.0)
    steps: int | None = setting(
        None, "Optimizer steps (replaces epochs; the warm-up keeps its fraction of training).", flag="--steps", ge=1
    )
    warmup_epochs: Number = setting(0.0, "Linear warm-up, in epochs.", ge=0.0)
    final_lr_ratio: Number = setting(0.0, "The cosine ends at this fraction of the lr.", ge=0.0, le=1.0)


class Probe(Settings):
    """The online linear probe on detached features (when the split has labels)."""

    enabled: bool = setting(True, "Train the online probe.")
    lr: Number = setting(0.1, "The probe's learning rate.", gt=0.0)


class Loop(Settings):
    """How the loop runs (may change when a run is resumed)."""

    precision: Literal["auto", "no", "bf16", "fp16"] = setting("auto", "auto, no, bf16 or fp16.", flag="--precision")
    augment_device: Literal["auto", "cpu", "cuda"] = setting(
        "auto",
        "Where colour jitter, blur, solarize and normalisation run: auto (the GPU when training on CUDA, else the "
        "loader workers), cpu or cuda.",
        flag="--augment-device",
    )
    channels_last: bool = setting(False, "channels_last memory.", flag="--channels-last/--no-channels-last")
    compile: bool = setting(False, "torch.compile the backbone.", flag="--compile/--no-compile")
    sync_bn: bool = setting(True, "Synchronise batch norm across processes.")
    grad_accum: int = setting(1, "Gradient accumulation steps.", flag="--grad-accum", ge=1)
    log_every: int = setting(10, "Log every N steps.", flag="--log-every", ge=1)
    ckpt_every: int = setting(0, "Checkpoint every N steps (and at the end; 0: at the end only).", "--ckpt-every", ge=0)
    keep_checkpoints: int = setting(2, "Checkpoints kept in the run folder.", ge=0)
    tensorboard: bool = setting(True, "Write TensorBoard events.")
    wandb: bool = setting(False, "Log to Weights & Biases.")
    log_keys: bool = setting(
        False, "Write each micro-batch's sample keys to keys/rank<R>.jsonl (step, data epoch, keys)."
    )


class Run(Settings):
    """What the run trains on (filled in from the command's flags, hence errors name the flags)."""

    where: ClassVar[str] = "flag"

    seed: int = setting(0, "Seed of the run (model init, data order, mixing).", flag="--seed", ge=0)
    shards: PathText | None = setting(None, "Shard set name (shards/NAME), path or URL (s3://...).", flag="--shards")
    split: str = setting("train", "Source split to train on.", flag="--split")
    gen: ColumnNames = setting(factory=list, help="Generated column(s): repeatable or sd,icgan.", flag="--gen")
    p: Probability = setting(0.0, "Probability of replacing a view by a generated variant.", flag="--p")


class TrainRecipe(Settings):
    """A whole training recipe."""

    renamed: ClassVar[dict[str, str]] = RENAMED

    method: str = setting(..., "The SSL method (a registered name).")
    name: str = setting("", "The recipe's name (runs/<name>-<time> by default).")
    description: str = setting("", "What the recipe is.")
    module: str | None = setting(None, "A plug-in module that registers `method`.")
    backbone: Backbone = setting(factory=Backbone)
    method_args: dict = setting(factory=dict, help="The method class's own arguments (checked against it).")
    views: dict = setting(factory=dict, help="The views (checked by genaug.data.transforms.parse_views).")
    data: Data = setting(factory=Data)
    optim: Optim = setting(factory=Optim)
    schedule: Schedule = setting(factory=Schedule)
    probe: Probe = setting(factory=Probe)
    loop: Loop = setting(factory=Loop)
    run: Run = setting(factory=Run)
    resolved: dict | None = setting(None, "Written by the trainer; recomputed for every run.")


def method_arguments(recipe: dict) -> dict:
    """method_args checked against the method's arguments model (a plug-in's: its __init__ signature), every default
    filled in; the given keys first, in their order, then the defaults."""
    from genaug.ssl.methods import get_method
    from genaug.ssl.methods.args import args_model

    cls = get_method(recipe["method"], recipe.get("module"))
    given = recipe.get("method_args") or {}
    model = args_model(cls)
    if model is not None:
        values = model.check(given, recipe["method"]).model_dump()
        return {**{k: values[k] for k in given}, **values}
    return signature_arguments(cls, recipe["method"], given)


def signature_arguments(cls: type, method: str, args: dict) -> dict:
    """method_args of a plug-in method checked against its plain __init__ signature (names, type hints)."""
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - an unresolvable annotation of a plug-in: check names only
        hints = {}
    params = {n: p for n, p in sig.parameters.items() if n not in ("self", "backbone", "feat_dim")}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return dict(args)
    out = {}
    for key, value in args.items():
        if key not in params:
            valid = [n for n, p in params.items() if p.kind != p.VAR_POSITIONAL]
            near = close_key(str(key), valid, "method_args.")
            raise GenaugError(f"unknown recipe key method_args.{key} for method {method!r}{near}")
        out[key] = check_value(lenient(hints.get(key, Any)), value, f"recipe key method_args.{key}")
        if isinstance(out[key], float) and not math.isfinite(out[key]):  # an unannotated argument (Any)
            raise GenaugError(f"recipe key method_args.{key} must be a finite number, got {out[key]}")
    for name, p in params.items():
        if name not in out and p.default is not inspect.Parameter.empty:
            out[name] = p.default
    return out


def check_backbone_name(name: str) -> None:
    """A backbone name genaug builds (one of BACKBONES, or timm:NAME of a model timm has), or a one-line error."""
    from genaug.ssl.backbones import BACKBONES
    from genaug.ssl.timm_backbone import is_timm, timm_name

    if is_timm(name):
        timm_name(name)
    elif name not in BACKBONES:
        raise GenaugError(
            f"recipe key backbone.name must be one of {', '.join(BACKBONES)} or timm:NAME (any timm model, "
            f"pip install 'genaug[timm]'), got {name!r} (--backbone)"
        )


def parse_train_recipe(doc: dict) -> TrainRecipe:
    """A training recipe checked against the schema, every default (method_args too) filled in, as typed settings."""
    from genaug.data.transforms import parse_views

    rec = TrainRecipe.parse(doc)
    rec.method_args = method_arguments(rec.as_recipe())
    parse_views(rec.views)  # raises naming the views key
    check_backbone_name(rec.backbone.name)
    if rec.data.gen_partial and not rec.run.gen:
        raise GenaugError(
            "--gen-partial (data.gen_partial) trains on a generated column while it is made: pass --gen NAME too"
        )
    rec.resolved = None
    return rec


def validate_train_recipe(doc: dict) -> dict:
    """A training recipe checked against the schema, with every default (method_args too) filled in, as a mapping."""
    return parse_train_recipe(doc).as_recipe()
