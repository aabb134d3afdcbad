"""The training recipe schema (trainers/<method>.yaml): typed sections, validation, every default filled in.

One dialect: the learning rate is optim.base_lr (scaled with the global batch by optim.lr_scaling), the length
and warm-up are schedule.epochs / schedule.steps / schedule.warmup_epochs. Unknown or misspelt keys and wrong
types are one-line errors naming the key and the closest valid one; method_args are checked against the method
class's own arguments. The resolved recipe written to <run>/recipe.yaml holds every value used.
"""

from __future__ import annotations

import inspect
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from genaug.core.errors import GenaugError
from genaug.core.schema import bounded, close_key, coerce, validate

# keys of older recipes and where they live now (an error says so instead of guessing)
RENAMED = {
    "optim.lr": "optim.base_lr",
    "optim.warmup_epochs": "schedule.warmup_epochs",
    "loop.epochs": "schedule.epochs",
    "loop.steps": "schedule.steps",
    "loop.warmup_epochs": "schedule.warmup_epochs",
}


@dataclass
class Backbone:
    """The encoder being trained."""

    name: str = "resnet50"  # tiny, resnet18, resnet18-half, resnet50, vit_s, vit_b, or timm:NAME (any timm model)
    cifar_stem: bool | Literal["auto"] = "auto"  # 3x3 stem without max-pool (auto: images of 64 px or less)
    width: int = bounded(16, 1)  # the tiny conv net's width
    timm_args: dict = field(default_factory=dict)  # timm.create_model keyword arguments of timm:NAME (e.g. patch_size)
    weights: str | None = None  # starting weights (--backbone-weights): a local .safetensors or torch checkpoint
    weights_sha256: str | None = None  # filled in by the trainer: the identity of `weights`


@dataclass
class Data:
    """The training stream of each process."""

    batch_size: int = bounded(256, 1)  # per process
    num_workers: int = bounded(4, 0)
    mix_views: Literal["each", "second"] = "each"
    shuffle_buffer: int = bounded(1000, 1)
    read_ahead: int = bounded(1, 0, 16)  # remote shards fetched ahead per worker while one is decoded (0: none)
    cache_dir: str | None = None  # the machine's local cache of remote shards, shared by every rank and worker
    cache_limit: str | int | None = None  # its size: 500G, 20M or bytes (least recently used evicted; None: no limit)
    range_reads: Literal["auto", "on", "off"] = "auto"  # fetch only the variants views use (auto: object stores)
    image_size: int | None = bounded(None, 1)  # filled in from views.size
    gen_min_score: float | None = bounded(None, -1.0, 1.0)  # draw only variants scoring at least this (fidelity)
    gen_weighting: Literal["uniform", "score"] = "uniform"  # draw variant k uniformly or in proportion to its score


@dataclass
class Optim:
    """Optimizer and learning rate: lr = base_lr x global batch / ref_batch (lr_scaling linear)."""

    name: Literal["lars", "sgd", "adamw"] = "sgd"
    base_lr: float = bounded(0.1, 0.0, above=True)
    bias_lr: float | None = None  # a fixed, separately scaled lr for biases and norms (Barlow Twins)
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"
    ref_batch: int = bounded(256, 1)
    weight_decay: float = bounded(0.0, 0.0)
    final_weight_decay: float | None = None  # cosine weight-decay schedule to this value (DINO)
    momentum: float = bounded(0.9, 0.0, 1.0)
    eta: float = bounded(0.001, 0.0, above=True)  # LARS trust coefficient
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW
    eps: float = bounded(1e-8, 0.0, above=True)  # AdamW
    exclude_bias_norm: bool = True
    clip_grad: float | None = bounded(None, 0.0, above=True)


@dataclass
class Schedule:
    """Length and learning-rate schedule (linear warm-up, then cosine to final_lr_ratio x lr)."""

    epochs: float = bounded(100.0, 0.0, above=True)
    steps: int | None = bounded(None, 1)  # replaces epochs; the warm-up keeps its fraction of training
    warmup_epochs: float = bounded(0.0, 0.0)
    final_lr_ratio: float = bounded(0.0, 0.0, 1.0)


@dataclass
class Probe:
    """The online linear probe on detached features (when the split has labels)."""

    enabled: bool = True
    lr: float = bounded(0.1, 0.0, above=True)


@dataclass
class Loop:
    """How the loop runs (may change when a run is resumed)."""

    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    augment_device: Literal["auto", "cpu", "cuda"] = "auto"  # colour stage: in the workers or on the GPU (auto)
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = True
    grad_accum: int = bounded(1, 1)
    log_every: int = bounded(10, 1)
    ckpt_every: int = bounded(0, 0)
    keep_checkpoints: int = bounded(2, 0)
    tensorboard: bool = True
    wandb: bool = False
    log_keys: bool = False  # write each micro-batch's sample keys to keys/rank<R>.jsonl (step, data epoch, keys)


@dataclass
class Run:
    """What the run trains on (filled in from the command's flags)."""

    seed: int = bounded(0, 0)
    shards: str | None = None
    split: str = "train"
    gen: list[str] = field(default_factory=list)
    p: float = bounded(0.0, 0.0, 1.0)


@dataclass
class TrainRecipe:
    """A whole training recipe."""

    method: str
    name: str = ""
    description: str = ""
    module: str | None = None  # a plug-in module that registers `method`
    backbone: Backbone = field(default_factory=Backbone)
    method_args: dict = field(default_factory=dict)
    views: dict = field(default_factory=dict)  # checked by genaug.data.transforms.parse_views
    data: Data = field(default_factory=Data)
    optim: Optim = field(default_factory=Optim)
    schedule: Schedule = field(default_factory=Schedule)
    probe: Probe = field(default_factory=Probe)
    loop: Loop = field(default_factory=Loop)
    run: Run = field(default_factory=Run)
    resolved: dict | None = None  # written by the trainer; recomputed for every run


#: method_args that divide (temperatures, epsilons): they must be positive
POSITIVE_ARG = re.compile(r"(^|_)(temperature|temp|eps|epsilon)$")


def check_method_value(key: str, value: Any) -> None:
    """A number in method_args is finite, and positive where it divides (temperature, *_temp, eps)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise GenaugError(f"recipe key method_args.{key} must be a finite number, got {value}")
    if POSITIVE_ARG.search(key) and value <= 0:
        raise GenaugError(
            f"recipe key method_args.{key} must be greater than 0 (it divides the similarities), got {value}: "
            f"fix --set method_args.{key}=... or the recipe"
        )


def method_arguments(recipe: dict) -> dict:
    """method_args checked against the method class's own arguments, with the class defaults filled in."""
    from genaug.ssl.methods import get_method

    cls = get_method(recipe["method"], recipe.get("module"))
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - an unresolvable annotation of a plug-in: check names only
        hints = {}
    params = {n: p for n, p in sig.parameters.items() if n not in ("self", "backbone", "feat_dim")}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return dict(recipe.get("method_args") or {})
    args = recipe.get("method_args") or {}
    out = {}
    for key, value in args.items():
        if key not in params:
            valid = [n for n, p in params.items() if p.kind != p.VAR_POSITIONAL]
            raise GenaugError(
                f"unknown recipe key method_args.{key} for method {recipe['method']!r}"
                f"{close_key(str(key), valid, 'method_args.')}"
            )
        out[key] = coerce(value, hints.get(key, Any), f"method_args.{key}")
        check_method_value(key, out[key])
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


def validate_train_recipe(doc: dict) -> dict:
    """A training recipe checked against the schema, with every default (method_args too) filled in."""
    from genaug.data.transforms import parse_views

    out = validate(doc, TrainRecipe, "", RENAMED)
    out["method_args"] = method_arguments(out)
    parse_views(out["views"])  # raises naming the views key
    check_backbone_name(out["backbone"]["name"])
    if out["data"]["batch_size"] < 1:
        raise GenaugError(f"recipe key data.batch_size must be at least 1, got {out['data']['batch_size']}")
    if out["loop"]["grad_accum"] < 1:
        raise GenaugError(f"recipe key loop.grad_accum must be at least 1, got {out['loop']['grad_accum']}")
    if not 0.0 <= out["run"]["p"] <= 1.0:
        raise GenaugError(f"--p must lie in [0, 1], got {out['run']['p']}")
    out["resolved"] = None
    return out
