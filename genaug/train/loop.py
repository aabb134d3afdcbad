"""The training loop on Accelerate: DDP / FSDP, mixed precision, accumulation, clipping, logging and exact resume."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genaug.ssl.methods.base import Progress, SSLMethod
from genaug.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from genaug.train.probe import OnlineProbe


@dataclass
class LoopConfig:
    """Settings of the loop (the `loop:` section of a recipe plus CLI flags)."""

    total_steps: int
    steps_per_epoch: int
    grad_accum: int = 1
    clip_grad: float | None = None
    log_every: int = 10
    ckpt_every: int = 0
    keep_checkpoints: int = 2
    precision: str = "no"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = True
    progress_bar: bool = True
    tensorboard: bool = True
    wandb: bool = False
    stop_at: int | None = None  # end this session at this step (a preemption), checkpointing first
    log_keys: bool = False  # write the sample keys of every micro-batch to keys/rank<R>.jsonl (see KeysLog)


@torch.no_grad()
def clip_each_parameter_(params, clip: float) -> None:
    """Scale each parameter's gradient to norm at most `clip` (DINO's clip_gradients), in place."""
    for p in params:
        if p.grad is not None:
            n = p.grad.norm(2)
            p.grad.mul_(torch.clamp(clip / (n + 1e-6), max=1.0))


class TrainModule(nn.Module):
    """The method plus the online probe: one forward = one SSL step, so DDP/FSDP wrap and sync both."""

    def __init__(self, method: SSLMethod, probe: OnlineProbe | None = None) -> None:
        super().__init__()
        self.method, self.probe = method, probe

    def forward(self, batch: dict, progress: Progress) -> dict:
        """{"loss": SSL loss + probe loss, "logs": {..., "loss": SSL loss}}."""
        out = self.method(batch, progress)
        logs = {"loss": out["loss"].detach(), **out.get("logs", {})}
        loss = out["loss"]
        label = batch.get("label")
        if self.probe is not None and label is not None and out.get("features") is not None:
            probe_loss, probe_logs = self.probe(out["features"], label)
            loss = loss + probe_loss
            logs.update(probe_logs)
        return {"loss": loss, "logs": logs}


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = dict(batch)
    out["views"] = [v.to(device, non_blocking=True).contiguous(memory_format=fmt) for v in batch["views"]]
    if batch.get("label") is not None:
        out["label"] = batch["label"].to(device, non_blocking=True)
    return out


def _scalar(v: Any) -> float:
    return float(v.detach().float().item()) if torch.is_tensor(v) else float(v)


class MetricsLogger:
    """metrics.jsonl + metrics.csv in the run directory, TensorBoard events, and W&B when asked and installed."""

    CSV_FIELDS = ("step", "epoch", "loss", "lr", "images_per_s", "data_wait", "probe_acc", "probe_loss")

    def __init__(self, run_dir: Path, resume_step: int | None, tensorboard: bool, wandb: bool, config: dict) -> None:
        self.run_dir = Path(run_dir)
        self.jsonl, self.csv = self.run_dir / "metrics.jsonl", self.run_dir / "metrics.csv"
        rows = self._read_rows()
        if resume_step is None:
            rows = []
        rows = [r for r in rows if r.get("step", 0) <= (resume_step or 0)]  # drop rows past the checkpoint
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with open(self.csv, "w", newline="") as f:
            w = csv.DictWriter(f, self.CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=resume_step)
            except ImportError:
                self.tb = None
        self.wb = None
        if wandb:
            try:
                import wandb as wb

                self.wb = wb.init(project="genaug", dir=str(self.run_dir), config=config, resume="allow")
            except ImportError:
                self.wb = None

    def _read_rows(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        rows = []
        for line in self.jsonl.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a killed run
        return rows

    def log(self, row: dict) -> None:
        """Append one row (step and scalar figures) to every sink."""
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, self.CSV_FIELDS, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])
        if self.wb is not None:
            self.wb.log(row, step=row["step"])

    def close(self) -> None:
        """Flush and close the sinks."""
        if self.tb is not None:
            self.tb.close()
        if self.wb is not None:
            self.wb.finish()


class KeysLog:
    """keys/rank<R>.jsonl of a run: one row {step, epoch, keys} per micro-batch this process consumed (`step`: the
    optimizer step it went into; `epoch`: its data epoch). A session starting at step s first drops every rank's
    rows past s (their steps were lost with the process), so the files list what the run's checkpoint trained on."""

    def __init__(self, run_dir: Path, step: int, acc: Any) -> None:
        folder = Path(run_dir) / "keys"
        if acc.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted(folder.glob("rank*.jsonl")):
                rows = []
                for line in path.read_text().splitlines():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a torn last line of a killed process
                    if int(row.get("step", 0)) <= step:
                        rows.append(line + "\n")
                path.write_text("".join(rows))
        acc.wait_for_everyone()
        self.file = open(folder / f"rank{acc.process_index}.jsonl", "a")  # noqa: SIM115 - open for the whole fit

    def write(self, step: int, epoch: int, keys) -> None:
        """Append the row of one micro-batch (flushed: a killed process leaves whole rows)."""
        self.file.write(json.dumps({"step": int(step), "epoch": int(epoch), "keys": list(keys or [])}) + "\n")
        self.file.flush()

    def close(self) -> None:
        """Close this process's file."""
        self.file.close()


def fresh_accelerate_state() -> None:
    """Forget the precision of a previous Accelerator in this process (Accelerate keeps it in a singleton and
    refuses another one), but keep the distributed state (the process group of torchrun / accelerate launch)."""
    try:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    except (ImportError, AttributeError):  # another Accelerate version: a second run keeps the first precision
        pass


class Trainer:
    """Runs `cfg.total_steps` optimizer steps of `method` on batches from `loader`, checkpointing into `run_dir`."""

    def __init__(
        self,
        method: SSLMethod,
        loader: Iterable[dict],
        optimizer_factory,
        scheduler_factory,
        cfg: LoopConfig,
        run_dir: Path,
        num_classes: int | None = None,
        recipe: dict | None = None,
        accelerator: Any = None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.cfg, self.run_dir, self.loader, self.recipe = cfg, Path(run_dir), loader, recipe or {}
        if accelerator is None:
            fresh_accelerate_state()  # a notebook or a sweep builds several trainers in one process
        self.acc = accelerator or Accelerator(
            mixed_precision=cfg.precision, kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)]
        )
        if cfg.channels_last:
            method = method.to(memory_format=torch.channels_last)
        if cfg.compile:
            method.backbone.compile()
        probe = OnlineProbe(method.feat_dim, num_classes) if num_classes else None
        module = TrainModule(method, probe)
        if cfg.sync_bn and self.acc.num_processes > 1 and self.acc.device.type == "cuda":  # SyncBN is GPU-only
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        self.optimizer = optimizer_factory(module)
        self.model, self.optimizer = self.acc.prepare(module, self.optimizer)
        self.scheduler = scheduler_factory(self.optimizer)
        self.step = 0
        self.data_epoch, self.data_batches = 0, 0
        self._it, self._skip = None, 0

    # -- state -------------------------------------------------------------------------------------------------
    @property
    def module(self) -> TrainModule:
        """The unwrapped TrainModule."""
        return self.acc.unwrap_model(self.model)

    def _gather_objects(self, obj: Any) -> list:
        if self.acc.num_processes == 1:
            return [obj]
        out = [None] * self.acc.num_processes
        torch.distributed.all_gather_object(out, obj)
        return out

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: model (with teachers, queues, centers), optimizer, schedule,
        scaler, RNG states and the data position / mixing RNG of every rank."""
        loader_state = self.loader.state_dict() if hasattr(self.loader, "state_dict") else None
        scaler = getattr(self.acc, "scaler", None)
        return {
            "step": self.step,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": self._gather_objects(rng_state()),
            "data": self._gather_objects(
                {"epoch": self.data_epoch, "batches": self.data_batches, "loader": loader_state}
            ),
            "recipe": self.recipe,
            "world_size": self.acc.num_processes,
            "log_window": self._log_window_state(),
        }

    def _log_window_state(self) -> dict:
        """The sums and step count of the log row being accumulated (a resume continues that row's average)."""
        w = getattr(self, "_window", None) or {"sums": {}, "n": 0}
        return {"sums": {k: float(_scalar(v)) for k, v in w["sums"].items()}, "n": int(w["n"])}

    def load_state_dict(self, st: dict, rebatch: bool = False) -> None:
        """Restore from state_dict(): exactly on the same number of processes and workers; on others (or, with
        `rebatch`, another per-process batch: the caller keeps the global batch) the data stream deals the rest of
        the interrupted epoch out again and each process's RNGs are seeded from (run seed, step, rank)."""
        self.module.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        scaler = getattr(self.acc, "scaler", None)
        if scaler is not None and st.get("scaler") is not None:
            scaler.load_state_dict(st["scaler"])
        self.step = int(st["step"])
        win = st.get("log_window")
        if isinstance(win, dict) and isinstance(win.get("sums"), dict):
            self._resumed_window = {"sums": dict(win["sums"]), "n": int(win.get("n", 0))}
        same = len(st["rng"]) == self.acc.num_processes
        r = self.acc.process_index if same else 0
        if same:
            set_rng_state(st["rng"][r])
        else:  # another world size: no saved state is this rank's; fresh streams, distinct per rank
            from accelerate.utils import set_seed

            seed = int((self.recipe.get("run") or {}).get("seed", 0))
            set_seed(int(np.random.SeedSequence([seed, self.step, self.acc.process_index]).generate_state(1)[0]))
        data = st["data"][r]
        self.data_epoch, self.data_batches = int(data["epoch"]), int(data["batches"])
        if data.get("loader") is not None and hasattr(self.loader, "load_state_dict"):
            every = [d.get("loader") for d in st["data"]]
            # every rank's state: on another world size or worker count the stream deals the epoch's rest out again
            got = every if all(e is not None for e in every) else data["loader"]
            if rebatch:
                self.loader.load_state_dict(got, rebatch=True)
            else:
                self.loader.load_state_dict(got)
            self._skip = 0
            self._sync_epoch()
        else:  # a deterministic stream without state: replay up to the saved position
            self._skip = self.data_batches

    def _sync_epoch(self) -> None:
        """Follow a just-restored loader's epoch: one saved right after its epoch's last batch (the iterator had not
        yet ended), or whose resumed rest is empty, starts the next epoch once, as the uninterrupted run does (the
        loop once re-selected the finished epoch at the next boundary and repeated it)."""
        ld = self.loader
        if not hasattr(ld, "epoch") or not hasattr(ld, "set_epoch"):
            return
        if getattr(ld, "step", 0) >= getattr(ld, "steps_per_epoch", math.inf):
            if hasattr(ld, "io"):
                ld.last_io = dict(ld.io)  # the finished epoch's I/O counts, as its iterator would have kept them
            ld.set_epoch(int(ld.epoch) + 1)
        if int(ld.epoch) != self.data_epoch:
            self.data_epoch, self.data_batches = int(ld.epoch), int(getattr(ld, "step", 0))

    def resume(self, path: Path, rebatch: bool = False) -> None:
        """Load checkpoint `path` (`rebatch`: see load_state_dict)."""
        self.load_state_dict(load_checkpoint(path), rebatch=rebatch)

    def save(self) -> Path | None:
        """Checkpoint the current step (main process writes; every rank contributes its RNG and data state)."""
        st = self.state_dict()
        path = None
        if self.acc.is_main_process:
            path = save_checkpoint(self.run_dir, self.step, st, keep=self.cfg.keep_checkpoints)
        self.acc.wait_for_everyone()
        return path

    # -- data --------------------------------------------------------------------------------------------------
    def _next_batch(self) -> dict:
        while True:
            if self._it is None:
                if hasattr(self.loader, "set_epoch"):
                    self.loader.set_epoch(self.data_epoch)
                self._it = iter(self.loader)
                for _ in range(self._skip):
                    next(self._it)
                self._skip = 0
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                self.data_epoch += 1
                self.data_batches = 0
                continue
            self.data_batches += 1
            return batch

    # -- training ----------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train up to cfg.total_steps; returns the last logged figures."""
        cfg, acc = self.cfg, self.acc
        logger = (
            MetricsLogger(
                self.run_dir,
                self.step if self.step else None,
                cfg.tensorboard and acc.is_main_process,
                cfg.wandb and acc.is_main_process,
                self.recipe,
            )
            if acc.is_main_process
            else None
        )
        bar = None
        if cfg.progress_bar and acc.is_main_process:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.total_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        method = self.module.method
        last: dict = {}
        window = {"t0": time.perf_counter(), "wait": 0.0, "images": 0, "sums": {}, "n": 0}
        resumed = getattr(self, "_resumed_window", None)
        if resumed:  # the row a checkpoint cut in two: its average goes on over the steps before the resume
            window.update(sums=dict(resumed["sums"]), n=resumed["n"])
            self._resumed_window = None
        self._window = window
        keys = KeysLog(self.run_dir, self.step, acc) if cfg.log_keys else None
        self.model.train()
        end = min(cfg.total_steps, cfg.stop_at) if cfg.stop_at is not None else cfg.total_steps
        while self.step < end:
            progress = Progress(self.step, cfg.total_steps, cfg.steps_per_epoch)
            for micro in range(cfg.grad_accum):
                t = time.perf_counter()
                batch = self._next_batch()
                window["wait"] += time.perf_counter() - t
                if keys is not None:
                    keys.write(self.step + 1, self.data_epoch, batch.get("key"))
                batch = _to_device(batch, acc.device, cfg.channels_last)
                window["images"] += batch["views"][0].shape[0] * acc.num_processes
                if torch.is_tensor(batch.get("replaced")):
                    rep = batch["replaced"].float().mean()
                    window["sums"]["replaced"] = window["sums"].get("replaced", 0.0) + rep / cfg.grad_accum
                sync = micro == cfg.grad_accum - 1
                ctx = acc.no_sync(self.model) if not sync else _nullcontext()
                with ctx, acc.autocast():
                    out = self.model(batch, progress)
                    loss = out["loss"] / cfg.grad_accum
                acc.backward(loss)
                for k, v in out["logs"].items():  # kept on the device: no host sync until the next log row
                    v = v.detach().float() if torch.is_tensor(v) else float(v)
                    window["sums"][k] = window["sums"].get(k, 0.0) + v / cfg.grad_accum
            method.on_before_optimizer_step(progress)
            if cfg.clip_grad and getattr(method, "clip_per_parameter", False):
                acc.unscale_gradients()  # DINO's reference clips each parameter's gradient norm on its own
                clip_each_parameter_(self.model.parameters(), float(cfg.clip_grad))
            elif cfg.clip_grad:
                acc.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            method.on_after_step(progress)
            lr = next((g["lr"] for g in self.optimizer.param_groups if not g.get("fixed_lr")), 0.0)
            self.scheduler.step()
            self.step += 1
            window["n"] += 1
            if bar is not None:
                bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.total_steps:
                figures = {k: _scalar(v) / window["n"] for k, v in window["sums"].items()}
                if not math.isfinite(figures["loss"]):
                    raise FloatingPointError(f"loss is {figures['loss']} at step {self.step}: lower the lr or clip")
                elapsed = max(1e-9, time.perf_counter() - window["t0"])
                row = {
                    "step": self.step,
                    "epoch": round(self.step / max(1, cfg.steps_per_epoch), 4),
                    "lr": lr,
                    **figures,
                    "images_per_s": window["images"] / elapsed,
                    "data_wait": window["wait"] / elapsed,
                    "data_skipped": int(getattr(self.loader, "skipped", 0)),  # corrupt samples skipped so far
                    "gen_fallback": int(getattr(self.loader, "gen_fallback", 0)),  # samples of damaged gen shards
                    # samples none of whose variants passed --gen-min-score (source only), and their share
                    "gen_filtered": int(getattr(self.loader, "gen_filtered", 0)),
                    "gen_filtered_rate": int(getattr(self.loader, "gen_filtered", 0))
                    / max(1, int(getattr(self.loader, "gen_seen", 0))),
                    # this data epoch's I/O on this rank (see io_row): from the store, the shard cache, used
                    **io_row(self.loader),
                    **coverage_row(self.loader, self.data_epoch),  # --gen-partial: the epoch's column coverage
                }
                last = row
                if logger is not None:
                    logger.log(row)
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{row['loss']:.4f}",
                        lr=f"{lr:.3g}",
                        img_s=f"{row['images_per_s']:.0f}",
                        wait=f"{row['data_wait']:.0%}",
                        fetched=_megabytes(row.get("bytes_fetched", 0)),
                        used=_megabytes(row.get("bytes_used", 0)),
                        cached=_megabytes(row.get("bytes_from_cache", 0)),
                        **({"cover": f"{row['gen_coverage']:.0%}"} if "gen_coverage" in row else {}),
                    )
                window = {"t0": time.perf_counter(), "wait": 0.0, "images": 0, "sums": {}, "n": 0}
                self._window = window
            if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < end:
                self.save()
        self.save()
        if keys is not None:
            keys.close()
        if bar is not None:
            bar.close()
        if logger is not None:
            logger.close()
        return last


def io_row(loader) -> dict:
    """This process's I/O counts of the current epoch (the one just finished, right at its end), for metrics.jsonl.

    bytes_fetched: shard bytes read from the store (tars or their ranges, indexes); bytes_used: bytes of the encoded
    images the views were cut from; bytes_from_cache: bytes served by a local shard cache; index_fallback: column
    shards read whole because their index disagreed (genaug.data.ranges)."""
    io = getattr(loader, "io", None)
    if io is None:
        return {}
    epoch = int(getattr(loader, "epoch", 0))
    if getattr(loader, "step", 0) == 0 and epoch > 0 and any(getattr(loader, "last_io", {}).values()):
        io, epoch = loader.last_io, epoch - 1
    return {"io_epoch": epoch, **{k: int(v) for k, v in io.items()}}


def coverage_row(loader, epoch: int) -> dict:
    """{"gen_epoch", "gen_coverage"}: the data epoch of the last batch and the share of its samples that had
    generated variants (--gen-partial only: a column still being made; {} otherwise)."""
    of = getattr(loader, "coverage_of", None)
    got = of(epoch) if of is not None else None
    return {} if got is None else {"gen_epoch": int(epoch), "gen_coverage": float(got)}


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f}MB"


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
