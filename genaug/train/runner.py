"""`train(...)`: resolve a method recipe, open the data stream, build the method and run the loop in a run directory.

The recipe schema (sections, types, defaults, flags) is genaug.train.recipe.TrainRecipe and the invocation's own
options genaug.train.options.TrainOptions; the code below reads typed settings only. The resolved recipe, with
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

from genaug.core.cli_model import parse_sets, split_settings
from genaug.core.errors import GenaugError
from genaug.core.locks import folder_lock
from genaug.core.recipes import dump_recipe, load_recipe
from genaug.train.options import TrainOptions
from genaug.train.recipe import TrainRecipe, parse_train_recipe


def _precision(name: str) -> str:
    """The precision of `loop.precision` on this machine (auto: bf16 where CUDA has it, fp16 on older CUDA, else no)."""
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _run_dir(out: str | Path | None, name: str) -> Path:
    from genaug.shards.layout import check_name

    if out:
        return Path(out)
    return Path("runs") / f"{check_name(name, 'recipe `name:`')}-{time.strftime('%Y%m%d-%H%M%S')}"


def _image_size(rec: TrainRecipe) -> int:
    from genaug.data.transforms import parse_views

    return int(parse_views(rec.views).views[0].size)


def _num_classes(shards: str | Path, split: str) -> int | None:
    from genaug.shards.manifest import open_split

    manifest = open_split(shards, split)[2]
    classes = manifest["classes"] if "classes" in manifest else None
    return len(classes) if classes else None


def train(method: str = "simclr", overrides: dict[str, Any] | None = None, **settings: Any) -> dict:
    """Train an SSL method on a shard set (views replaced by generated variants with probability p).

    `settings` are the command's options by their flag names (shards=, p=, gen=, batch_size=, lr=, out=, resume=,
    stop_after=, progress_bar=, probe=, ...: `genaug train --help` lists them); `overrides` are recipe keys
    ({"method_args.lambd": 0.01}, as --set). Returns {"run_dir", "step", "metrics", "is_main"}; the run directory
    holds recipe.yaml, checkpoints, metrics.jsonl/csv, tb/ events, and at the end backbone.safetensors and
    model.safetensors. A run directory that holds a checkpoint is resumed (exactly); `stop_after` ends this session
    after that many steps (as a preemption would).
    """
    opts, flags = split_settings(TrainOptions, TrainRecipe, {"method": method, **settings}, "train")
    return run_training(opts, {**flags, **(overrides or {})})


def resolve_train_recipe(opts: TrainOptions, flags: dict[str, Any]) -> TrainRecipe:
    """The typed recipe of an invocation: the method's recipe file, then the flags, then --set (last wins)."""

    views = {"views.size": opts.image_size} if opts.image_size is not None else {}
    raw = load_recipe("trainers", opts.method, {**flags, **views, **parse_sets(opts.sets)})
    return parse_train_recipe(raw)


def run_training(opts: TrainOptions, flags: dict[str, Any]) -> dict:
    """Resolve the recipe of an invocation (`flags`: dotted recipe keys from the command line) and train."""
    rec = resolve_train_recipe(opts, flags)
    if rec.run.shards is None:
        raise GenaugError("--shards is required: the shard set to train on (shards/NAME or a path)")
    from genaug.core.flags import output_folder
    from genaug.shards.cache import parse_size

    parse_size(rec.data.cache_limit, "--cache-limit (data.cache_limit)")  # before the set is opened
    output_folder(rec.data.cache_dir, "--cache-dir (data.cache_dir)")
    _record_weights(rec)
    run_dir = _run_dir(opts.out, rec.name or rec.method)
    output_folder(run_dir, "--out")
    return _train(rec, run_dir, opts)


def _record_weights(rec: TrainRecipe) -> None:
    """backbone.weights as an absolute path with its sha256 (weights_sha256), so the recipe names what it started
    from; a missing file is a one-line error naming the flag."""
    from genaug.core.hashing import file_sha256

    bb = rec.backbone
    if not bb.weights:
        return
    path = Path(bb.weights).expanduser().resolve()
    if not path.is_file():
        raise GenaugError(f"--backbone-weights {bb.weights} does not exist (recipe backbone.weights)")
    bb.weights, bb.weights_sha256 = str(path), file_sha256(path)


def _accelerator(rec: TrainRecipe):
    """The Accelerator of a run (gloo on CPU under torchrun), seeded per process."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    from genaug.train.loop import fresh_accelerate_state

    prec = _precision(rec.loop.precision)
    fresh_accelerate_state()
    # cpu=True lets Accelerate set up gloo for `torchrun` / `accelerate launch` on machines without a GPU
    acc = Accelerator(
        mixed_precision=prec,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )
    set_seed(rec.run.seed + acc.process_index)
    return acc, prec


def _loader(rec: TrainRecipe, acc, batch_size: int):
    """The training stream of this process (its rank's share of the shards, `batch_size` samples a batch), its
    colour stage where loop.augment_device says (auto: on the training device when it is CUDA, else the workers)."""
    from genaug.data.stream import build_train_loader

    run, data = rec.run, rec.data
    cuda = acc.device.type == "cuda"
    return build_train_loader(
        run.shards,
        augment_device=rec.loop.augment_device,
        device=acc.device if cuda else None,
        pin_memory=cuda,
        split=run.split,
        gen_columns=run.gen,
        p=run.p,
        views_recipe=rec.views,
        batch_size=batch_size,  # this session's per-process batch (elastic resume may change it)
        seed=run.seed,
        rank=acc.process_index,
        world_size=acc.num_processes,
        **data.stream_args(),
    )


def resolve_plan(rec: TrainRecipe, loader_steps_per_epoch: int, world_size: int, precision: str) -> dict:
    """The `resolved:` section of a new run: total and warm-up steps, global batch, scaled learning rates, precision,
    and this session's world size, workers, per-process batch and grad_accum (with its history, genaug.train.
    resume_plan)."""
    from genaug.train.optim import scaled_lr
    from genaug.train.resume_plan import session

    optim, sched = rec.optim, rec.schedule
    accum = rec.loop.grad_accum
    steps_per_epoch = max(1, loader_steps_per_epoch // accum)
    total = sched.steps if sched.steps else max(1, math.ceil(sched.epochs * steps_per_epoch))
    warmup = round(total * sched.warmup_epochs / max(1e-9, sched.epochs))  # the same fraction of training
    global_batch = rec.data.batch_size * world_size * accum
    scaling, ref = optim.lr_scaling, optim.ref_batch
    return {
        "total_steps": total,
        "steps_per_epoch": steps_per_epoch,
        "warmup_steps": warmup,
        "global_batch": global_batch,
        "lr": scaled_lr(optim.base_lr, global_batch, scaling, ref),
        "bias_lr": scaled_lr(optim.bias_lr, global_batch, scaling, ref) if optim.bias_lr is not None else None,
        "precision": precision,
        "world_size": world_size,
        "workers": rec.data.num_workers,
        "batch_size": rec.data.batch_size,
        "grad_accum": accum,
        "history": [session(0, world_size, rec.data.num_workers, rec.data.batch_size, accum)],
    }


def _factories(rec: TrainRecipe, method):
    """make_opt(module) and make_sched(opt) for the Trainer, from the recipe's optim/schedule and resolved lr."""
    from genaug.train.optim import WarmupCosine, build_optimizer, param_groups

    optim, res = rec.optim, rec.resolved

    def make_opt(module):
        named = [(n, p) for n, p in module.method.named_parameters()]
        extra = []
        if module.probe is not None:
            extra = [{"params": list(module.probe.parameters()), "lr": rec.probe.lr, "weight_decay": 0.0}]
        groups = param_groups(
            named,
            res["lr"],
            optim.weight_decay,
            optim.exclude_bias_norm,
            res["bias_lr"],
            method.fixed_lr_prefixes,
            extra,
        )
        return build_optimizer(groups, optim)

    def make_sched(opt):
        return WarmupCosine(
            opt, res["total_steps"], res["warmup_steps"], rec.schedule.final_lr_ratio, optim.final_weight_decay
        )

    return make_opt, make_sched


def _loop_config(rec: TrainRecipe, progress_bar: bool):
    """The Trainer's LoopConfig from the recipe's loop/optim sections and the resolved plan."""
    import torch

    from genaug.train.loop import LoopConfig

    loop, res = rec.loop, rec.resolved
    return LoopConfig(
        total_steps=res["total_steps"],
        steps_per_epoch=res["steps_per_epoch"],
        grad_accum=res["grad_accum"],
        clip_grad=rec.optim.clip_grad,
        log_every=loop.log_every,
        ckpt_every=loop.ckpt_every,
        keep_checkpoints=loop.keep_checkpoints,
        precision=res["precision"],
        channels_last=loop.channels_last and torch.cuda.is_available(),
        compile=loop.compile,
        sync_bn=loop.sync_bn,
        progress_bar=progress_bar,
        tensorboard=loop.tensorboard,
        wandb=loop.wandb,
        log_keys=loop.log_keys,
    )


def _check_resume(public: dict, run_dir: Path, resume, precision: str) -> tuple[Path | None, dict | None]:
    """(checkpoint to resume from, the run's saved recipe.yaml or None): genaug.train.resume_plan.check_resume."""
    from genaug.train.resume_plan import check_resume

    return check_resume({**public, "resolved": None}, run_dir, resume, precision)


def _train(rec: TrainRecipe, run_dir: Path, opts: TrainOptions) -> dict:
    from genaug.ssl.artifacts import export_model
    from genaug.ssl.methods import build_method
    from genaug.train.loop import Trainer
    from genaug.train.resume_plan import continue_plan, record_session

    acc, prec = _accelerator(rec)
    rec.views.setdefault("size", _image_size(rec))
    rec.data.image_size = int(rec.views["size"])
    # a run folder being resumed keeps its plan (global batch, lr, steps) on any number of processes; read-only here,
    # before the loader (its batch follows from the plan); the folder's lock is taken below before anything is written
    ckpt, saved = _check_resume(rec.as_recipe(), run_dir, opts.resume, prec)
    if saved is not None:
        rec.resolved = continue_plan(saved, rec.as_recipe(), acc.num_processes, run_dir)
        loader = _loader(rec, acc, rec.resolved["batch_size"])
    else:
        loader = _loader(rec, acc, rec.data.batch_size)
        rec.resolved = resolve_plan(rec, loader.steps_per_epoch, acc.num_processes, prec)
    use_probe = opts.probe and rec.probe.enabled
    num_classes = _num_classes(rec.run.shards, rec.run.split) if use_probe else None
    public = rec.as_recipe()
    method = build_method(public, init_weights=ckpt is None)  # a resumed run takes its weights from the checkpoint
    make_opt, make_sched = _factories(rec, method)
    cfg = _loop_config(rec, opts.progress_bar)
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
        trainer = Trainer(method, loader, make_opt, make_sched, cfg, run_dir, num_classes, public, acc)
        if ckpt is not None:
            # the run's plan kept (saved): the per-process batch may differ from the checkpoint's
            trainer.resume(ckpt, rebatch=saved is not None)
        rec.resolved = record_session(rec.resolved, trainer.step)
        public = trainer.recipe = rec.as_recipe()
        if acc.is_main_process:
            dump_recipe(public, run_dir / "recipe.yaml")
        acc.wait_for_everyone()
        if opts.stop_after is not None:
            trainer.cfg.stop_at = trainer.step + opts.stop_after
        metrics = trainer.fit()
        if trainer.step >= rec.resolved["total_steps"] and acc.is_main_process:
            export_model(run_dir, trainer.module.method, public)
        acc.wait_for_everyone()
    finally:
        lock.__exit__(None, None, None)
    return {"run_dir": run_dir, "step": trainer.step, "metrics": metrics, "is_main": acc.is_main_process}
