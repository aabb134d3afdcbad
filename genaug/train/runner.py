"""`train(...)`: resolve a method recipe, open the data stream, build the method and run the loop in a run directory.

The recipe schema (sections, types, defaults) is genaug.train.recipe.TrainRecipe; the resolved recipe, with
every default filled in and a `resolved:` section (total steps, warm-up steps, global batch, lr, precision, world
size), is written to <run>/recipe.yaml. A resumed run keeps that plan on any number of processes
(genaug.train.resume_plan: per-process batch and grad_accum share the global batch; `resolved.history`).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import yaml

from genaug.core.errors import GenaugError
from genaug.core.locks import folder_lock
from genaug.core.recipes import dump_recipe, load_recipe
from genaug.train.recipe import validate_train_recipe


def _precision(name: str) -> str:
    import torch

    if name != "auto":
        if name not in ("no", "bf16", "fp16"):
            raise GenaugError(f"--precision must be auto, no, bf16 or fp16, got {name!r}")
        return name
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _resolve(method: str, flags: dict[str, Any], overrides: dict[str, Any] | None) -> dict:
    mapping = {
        "batch_size": "data.batch_size",
        "workers": "data.num_workers",
        "mix_views": "data.mix_views",
        "gen_min_score": "data.gen_min_score",
        "gen_weighting": "data.gen_weighting",
        "cache_dir": "data.cache_dir",
        "cache_limit": "data.cache_limit",
        "image_size": "views.size",
        "backbone": "backbone.name",
        "lr": "optim.base_lr",
        "epochs": "schedule.epochs",
        "steps": "schedule.steps",
        "precision": "loop.precision",
        "augment_device": "loop.augment_device",
        "compile": "loop.compile",
        "channels_last": "loop.channels_last",
        "grad_accum": "loop.grad_accum",
        "ckpt_every": "loop.ckpt_every",
        "log_every": "loop.log_every",
        "seed": "run.seed",
    }
    ov = {mapping[k]: v for k, v in flags.items() if k in mapping}
    ov.update(overrides or {})
    return load_recipe("trainers", method, ov)


def _run_dir(out: str | Path | None, name: str) -> Path:
    from genaug.shards.layout import check_name

    if out:
        return Path(out)
    return Path("runs") / f"{check_name(name, 'recipe `name:`')}-{time.strftime('%Y%m%d-%H%M%S')}"


def _image_size(recipe: dict) -> int:
    from genaug.data.transforms import parse_views

    return int(parse_views(recipe.get("views")).views[0].size)


def _num_classes(shards: str | Path, split: str) -> int | None:
    from genaug.shards.manifest import open_split

    classes = open_split(shards, split)[2].get("classes")
    return len(classes) if classes else None


def train(
    method: str = "simclr",
    shards: str | Path | None = None,
    p: float = 0.0,
    gen: list[str] | tuple[str, ...] | str | None = None,
    split: str = "train",
    out: str | Path | None = None,
    resume: str | Path | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    backbone: str | None = None,
    backbone_weights: str | Path | None = None,
    image_size: int | None = None,
    workers: int | None = None,
    mix_views: str | None = None,
    gen_min_score: float | None = None,
    gen_weighting: str | None = None,
    cache_dir: str | Path | None = None,
    cache_limit: str | None = None,
    seed: int | None = None,
    precision: str | None = None,
    augment_device: str | None = None,
    compile: bool | None = None,
    channels_last: bool | None = None,
    grad_accum: int | None = None,
    ckpt_every: int | None = None,
    log_every: int | None = None,
    overrides: dict[str, Any] | None = None,
    stop_after: int | None = None,
    progress_bar: bool = True,
    probe: bool = True,
) -> dict:
    """Train an SSL method on a shard set (views replaced by generated variants with probability p).

    Returns {"run_dir", "step", "metrics"}; the run directory holds recipe.yaml, checkpoints, metrics.jsonl/csv,
    tb/ events, and at the end backbone.safetensors and model.safetensors. A run directory that holds a
    checkpoint is resumed (exactly); `stop_after` ends this session after that many steps (as a preemption would).
    `backbone_weights` (a local .safetensors or torch checkpoint) is the backbone's starting point, recorded with its
    sha256 in the recipe.
    """
    if not 0.0 <= float(p) <= 1.0:
        raise GenaugError(f"--p must lie in [0, 1], got {p}")
    if stop_after is not None and stop_after < 1:
        raise GenaugError(f"--stop-after must be at least 1 (steps of this session), got {stop_after}")
    if shards is None:
        raise GenaugError("--shards is required: the shard set to train on (shards/NAME or a path)")
    gen_cols = [c.strip() for g in ([gen] if isinstance(gen, str) else list(gen or [])) for c in g.split(",")]
    gen_cols = [c for c in gen_cols if c]  # `--gen sd,icgan` and `--gen sd --gen icgan` mean the same
    twice = sorted({c for c in gen_cols if gen_cols.count(c) > 1})
    if twice:
        raise GenaugError(
            f"--gen names column {', '.join(twice)} more than once: each generated column is given once "
            "(its variants are already drawn with equal weight; use --gen-weighting score to weight them)"
        )
    flags = dict(
        batch_size=batch_size,
        workers=workers,
        mix_views=mix_views,
        gen_min_score=gen_min_score,
        gen_weighting=gen_weighting,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        cache_limit=cache_limit,
        image_size=image_size,
        backbone=backbone,
        lr=lr,
        epochs=epochs,
        steps=steps,
        precision=precision,
        augment_device=augment_device,
        compile=compile,
        channels_last=channels_last,
        grad_accum=grad_accum,
        ckpt_every=ckpt_every,
        log_every=log_every,
        seed=seed,
    )
    raw = _resolve(method, flags, overrides)
    raw.setdefault("run", {})
    if not isinstance(raw["run"], dict):
        raise GenaugError(f"recipe key run must be a mapping, got {raw['run']!r}")
    raw["run"].update({"shards": str(shards), "split": split, "gen": gen_cols, "p": float(p)})
    if backbone_weights is not None:
        raw.setdefault("backbone", {})["weights"] = str(backbone_weights)
    recipe = validate_train_recipe(raw)
    from genaug.shards.cache import parse_size

    parse_size(recipe["data"].get("cache_limit"), "--cache-limit (data.cache_limit)")  # before the set is opened
    _record_weights(recipe)
    run_dir = _run_dir(out, recipe.get("name", method))
    return _train(recipe, run_dir, resume, stop_after, progress_bar, probe)


def _record_weights(recipe: dict) -> None:
    """backbone.weights as an absolute path with its sha256 (weights_sha256), so the recipe names what it started
    from; a missing file is a one-line error naming the flag."""
    from genaug.core.hashing import file_sha256

    bb = recipe["backbone"]
    if not bb.get("weights"):
        return
    path = Path(bb["weights"]).expanduser().resolve()
    if not path.is_file():
        raise GenaugError(f"--backbone-weights {bb['weights']} does not exist (recipe backbone.weights)")
    bb["weights"], bb["weights_sha256"] = str(path), file_sha256(path)


def _accelerator(recipe: dict):
    """The Accelerator of a run (gloo on CPU under torchrun), seeded per process."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    from genaug.train.loop import fresh_accelerate_state

    prec = _precision(str(recipe["loop"].get("precision", "auto")))
    fresh_accelerate_state()
    # cpu=True lets Accelerate set up gloo for `torchrun` / `accelerate launch` on machines without a GPU
    acc = Accelerator(
        mixed_precision=prec,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )
    set_seed(int(recipe["run"]["seed"]) + acc.process_index)
    return acc, prec


def _loader(recipe: dict, acc, batch_size: int):
    """The training stream of this process (its rank's share of the shards, `batch_size` samples a batch), its
    colour stage where loop.augment_device says (auto: on the training device when it is CUDA, else the workers)."""
    from genaug.data.stream import build_train_loader

    run, data = recipe["run"], recipe["data"]
    cuda = acc.device.type == "cuda"
    return build_train_loader(
        run["shards"],
        augment_device=str(recipe["loop"].get("augment_device", "auto")),
        device=acc.device if cuda else None,
        pin_memory=cuda,
        split=run["split"],
        gen_columns=run["gen"],
        p=run["p"],
        mix_views=data.get("mix_views", "each"),
        views_recipe=recipe.get("views"),
        batch_size=int(batch_size),
        num_workers=int(data.get("num_workers", 4)),
        seed=int(run["seed"]),
        rank=acc.process_index,
        world_size=acc.num_processes,
        shuffle_buffer=int(data.get("shuffle_buffer", 1000)),
        read_ahead=int(data.get("read_ahead", 1)),
        cache_dir=data.get("cache_dir"),
        cache_limit=data.get("cache_limit"),
        range_reads=str(data.get("range_reads") or "auto"),
        gen_min_score=data.get("gen_min_score"),
        gen_weighting=data.get("gen_weighting") or "uniform",
    )


def resolve_plan(recipe: dict, loader_steps_per_epoch: int, world_size: int, precision: str) -> dict:
    """The `resolved:` section of a new run: total and warm-up steps, global batch, scaled learning rates, precision,
    and this session's world size, workers, per-process batch and grad_accum (with its history, genaug.train.
    resume_plan)."""
    from genaug.train.optim import scaled_lr
    from genaug.train.resume_plan import session

    data, loop, optim, sched = recipe["data"], recipe["loop"], recipe["optim"], recipe["schedule"]
    accum = int(loop.get("grad_accum", 1))
    steps_per_epoch = max(1, loader_steps_per_epoch // accum)
    rec_epochs = float(sched.get("epochs", 100))
    total = int(sched["steps"]) if sched.get("steps") else max(1, math.ceil(rec_epochs * steps_per_epoch))
    warmup = round(total * float(sched.get("warmup_epochs", 0)) / max(1e-9, rec_epochs))  # same fraction of training
    global_batch = int(data.get("batch_size", 256)) * world_size * accum
    scaling, ref = optim.get("lr_scaling", "linear"), int(optim.get("ref_batch", 256))
    bias_lr = optim.get("bias_lr")
    return {
        "total_steps": total,
        "steps_per_epoch": steps_per_epoch,
        "warmup_steps": warmup,
        "global_batch": global_batch,
        "lr": scaled_lr(float(optim.get("base_lr", 0.1)), global_batch, scaling, ref),
        "bias_lr": scaled_lr(float(bias_lr), global_batch, scaling, ref) if bias_lr is not None else None,
        "precision": precision,
        "world_size": world_size,
        "workers": int(data.get("num_workers", 4)),
        "batch_size": int(data.get("batch_size", 256)),
        "grad_accum": accum,
        "history": [session(0, world_size, int(data.get("num_workers", 4)), int(data.get("batch_size", 256)), accum)],
    }


def _factories(recipe: dict, method):
    """make_opt(module) and make_sched(opt) for the Trainer, from the recipe's optim/schedule and resolved lr."""
    from genaug.train.optim import WarmupCosine, build_optimizer, param_groups

    optim, sched, res = recipe["optim"], recipe["schedule"], recipe["resolved"]
    probe_lr = float((recipe.get("probe") or {}).get("lr", 0.1))

    def make_opt(module):
        named = [(n, p) for n, p in module.method.named_parameters()]
        extra = []
        if module.probe is not None:
            extra = [{"params": list(module.probe.parameters()), "lr": probe_lr, "weight_decay": 0.0}]
        groups = param_groups(
            named,
            res["lr"],
            float(optim.get("weight_decay", 0.0)),
            bool(optim.get("exclude_bias_norm", True)),
            res["bias_lr"],
            method.fixed_lr_prefixes,
            extra,
        )
        return build_optimizer(groups, optim)

    def make_sched(opt):
        return WarmupCosine(
            opt,
            res["total_steps"],
            res["warmup_steps"],
            float(sched.get("final_lr_ratio", 0.0)),
            optim.get("final_weight_decay"),
        )

    return make_opt, make_sched


def _loop_config(recipe: dict, progress_bar: bool):
    """The Trainer's LoopConfig from the recipe's loop/optim sections and the resolved plan."""
    import torch

    from genaug.train.loop import LoopConfig

    loop, res = recipe["loop"], recipe["resolved"]
    return LoopConfig(
        total_steps=res["total_steps"],
        steps_per_epoch=res["steps_per_epoch"],
        grad_accum=int(res.get("grad_accum") or loop.get("grad_accum", 1)),
        clip_grad=recipe["optim"].get("clip_grad"),
        log_every=int(loop.get("log_every", 10)),
        ckpt_every=int(loop.get("ckpt_every", 0) or 0),
        keep_checkpoints=int(loop.get("keep_checkpoints", 2)),
        precision=res["precision"],
        channels_last=bool(loop.get("channels_last", False)) and torch.cuda.is_available(),
        compile=bool(loop.get("compile", False)),
        sync_bn=bool(loop.get("sync_bn", True)),
        progress_bar=progress_bar,
        tensorboard=bool(loop.get("tensorboard", True)),
        wandb=bool(loop.get("wandb", False)),
        log_keys=bool(loop.get("log_keys", False)),
    )


def _check_resume(recipe: dict, run_dir: Path, resume, precision: str) -> tuple[Path | None, dict | None]:
    """(checkpoint to resume from, the run's saved recipe.yaml or None): genaug.train.resume_plan.check_resume."""
    from genaug.train.resume_plan import check_resume

    return check_resume(_public({**recipe, "resolved": None}), run_dir, resume, precision)


def _train(recipe: dict, run_dir: Path, resume, stop_after: int | None, progress_bar: bool, probe: bool) -> dict:
    from genaug.ssl.artifacts import export_model
    from genaug.ssl.methods import build_method
    from genaug.train.loop import Trainer
    from genaug.train.resume_plan import continue_plan, record_session

    run = recipe["run"]
    for section in ("data", "loop", "optim", "schedule"):
        recipe.setdefault(section, {})
    acc, prec = _accelerator(recipe)
    recipe.setdefault("views", {})
    recipe["views"].setdefault("size", _image_size(recipe))
    recipe["data"]["image_size"] = int(recipe["views"]["size"])
    # a run folder being resumed keeps its plan (global batch, lr, steps) on any number of processes; read-only here,
    # before the loader (its batch follows from the plan); the folder's lock is taken below before anything is written
    ckpt, saved = _check_resume(recipe, run_dir, resume, prec)
    if saved is not None:
        recipe["resolved"] = continue_plan(saved, recipe, acc.num_processes, run_dir)
        loader = _loader(recipe, acc, recipe["resolved"]["batch_size"])
    else:
        loader = _loader(recipe, acc, int(recipe["data"].get("batch_size", 256)))
        recipe["resolved"] = resolve_plan(recipe, loader.steps_per_epoch, acc.num_processes, prec)
    use_probe = probe and (recipe.get("probe") or {}).get("enabled", True)
    num_classes = _num_classes(run["shards"], run["split"]) if use_probe else None
    method = build_method(recipe, init_weights=ckpt is None)  # a resumed run takes its weights from the checkpoint
    make_opt, make_sched = _factories(recipe, method)
    cfg = _loop_config(recipe, progress_bar)
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    # one training run per folder: the main process holds an advisory lock (the kernel drops it if we die)
    lock = folder_lock(run_dir, what="training run") if acc.is_main_process else contextlib.nullcontext()
    refused = None
    try:
        lock.__enter__()
    except GenaugError as e:
        refused = str(e)
    if acc.num_processes > 1:  # every rank learns the main process's answer, so none waits at a barrier
        import torch.distributed as dist

        box = [refused]
        dist.broadcast_object_list(box, src=0)
        refused = box[0]
    if refused:
        raise GenaugError(refused)
    try:
        trainer = Trainer(method, loader, make_opt, make_sched, cfg, run_dir, num_classes, _public(recipe), acc)
        if ckpt is not None:
            # the run's plan kept (saved): the per-process batch may differ from the checkpoint's
            trainer.resume(ckpt, rebatch=saved is not None)
        recipe["resolved"] = record_session(recipe["resolved"], trainer.step)
        trainer.recipe = _public(recipe)
        if acc.is_main_process:
            dump_recipe(_public(recipe), run_dir / "recipe.yaml")
        acc.wait_for_everyone()
        if stop_after is not None:
            trainer.cfg.stop_at = trainer.step + int(stop_after)
        metrics = trainer.fit()
        if trainer.step >= recipe["resolved"]["total_steps"] and acc.is_main_process:
            export_model(run_dir, trainer.module.method, _public(recipe))
        acc.wait_for_everyone()
    finally:
        lock.__exit__(None, None, None)
    return {"run_dir": run_dir, "step": trainer.step, "metrics": metrics, "is_main": acc.is_main_process}


def _public(recipe: dict) -> dict:
    """The recipe as written next to the outputs (plain YAML types only)."""
    return yaml.safe_load(yaml.safe_dump(recipe))
