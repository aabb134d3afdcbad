"""`genaug fit-generator`: train a small unconditional diffusers UNet2DModel (DDPM epsilon objective) on a split.

The model is trained at a small side (`size`, default 8: the digits' native size) on the split's images, with
diffusers' DDPMScheduler for the forward process, Accelerate for devices and processes, and diffusers' EMAModel for
the weights that are saved. Every random draw of step s (the batch rows, timesteps and noise) comes from a
torch.Generator seeded by (seed, s), so a run resumed from a checkpoint (model, EMA, optimizer, LR schedule, step)
repeats the uninterrupted run exactly. The result is `OUT/model`, a DDPMPipeline folder (model_index.json, unet/,
scheduler/) that `genaug generate --model img2img-ddpm --weights OUT/model` loads.

The split is read into memory at `size` x `size` (a small in-domain model: 100k images at 32 px are 1.2 GB of
float32); images that cannot be decoded are skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genaug.core.errors import GenaugError
from genaug.core.files import fsync_dir, tmp_suffix
from genaug.fit.options import FitSettings
from genaug.shards.writer import _fault
from genaug.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

#: the settings of a fit and their defaults (declared in genaug.fit.options.FitSettings)
FIT_DEFAULTS: dict[str, Any] = FitSettings().as_recipe()
RUN_ONLY = ("ckpt_every", "log_every")  # may differ between a run and its resume


def fit_config(**overrides: Any) -> dict:
    """FIT_DEFAULTS with the non-None overrides applied, checked by FitSettings."""
    given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items() if v is not None}
    return FitSettings.parse(given).as_recipe()


def build_unet(cfg: dict) -> Any:
    """The UNet2DModel of a fit config: plain ResNet down/up blocks (no attention at these sizes)."""
    from diffusers import UNet2DModel

    n = len(cfg["widths"])
    return UNet2DModel(
        sample_size=int(cfg["size"]),
        in_channels=int(cfg["channels"]),
        out_channels=int(cfg["channels"]),
        block_out_channels=tuple(int(w) for w in cfg["widths"]),
        layers_per_block=int(cfg["layers_per_block"]),
        down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n,
        norm_num_groups=int(cfg["norm_groups"]),
        add_attention=False,
    )


def build_scheduler(cfg: dict) -> Any:
    """The DDPMScheduler of the forward process (saved beside the UNet; img2img recipes may swap it for DDIM)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=int(cfg["train_timesteps"]), beta_schedule=cfg["beta_schedule"])


def save_model_folder(unet: Any, scheduler: Any, folder: Path) -> Path:
    """DDPMPipeline(unet, scheduler).save_pretrained into `folder`, atomically (a temp folder renamed into place)."""
    from diffusers import DDPMPipeline

    folder = Path(folder)
    tmp = folder.with_name(folder.name + tmp_suffix())
    shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    fsync_dir(folder.parent)
    return folder


def load_split_pixels(shards: str, split: str, size: int, channels: int) -> tuple[torch.Tensor, dict]:
    """The split's images as [N, C, size, size] floats in [-1, 1] (box-downscaled), and what was read."""
    from genaug.data.evaluation import iter_encoded
    from genaug.shards.manifest import open_split
    from genaug.shards.reader import decode_image

    _, folder, manifest = open_split(shards, split)
    if manifest.get("kind") not in (None, "source"):
        raise GenaugError(f"--split {split} of {shards} is a {manifest.get('kind')} split, not source images: "
                          "pass a split made by `genaug ingest`")  # fmt: skip
    mode = "L" if channels == 1 else "RGB"
    rows, bad, keys = [], 0, 0
    for _key, _label, data in iter_encoded(folder):
        keys += 1
        try:
            img = decode_image(data).convert(mode).resize((size, size), Image.BOX)
        except Exception:  # noqa: BLE001 - one bad image never ends a run: counted and skipped
            bad += 1
            continue
        a = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
        rows.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    if not rows:
        what = f"{keys} samples, none with a decodable image" if keys else "no sample with an image field"
        raise GenaugError(f"--split {split} of {shards} holds no images to fit a generator on ({what}): "
                          "pass the split of an image set made by `genaug ingest`")  # fmt: skip
    return torch.from_numpy(np.stack(rows)), {"images": len(rows), "skipped": bad, "folder": str(folder)}


def step_draws(cfg: dict, step: int, n: int, rows: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch rows, timesteps, noise) of step `step`: a function of (seed, step) alone; `rows` = this rank's share."""
    digest = hashlib.sha256(f"fit/{int(cfg['seed'])}/{int(step)}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    b, c, s = int(cfg["batch_size"]), int(cfg["channels"]), int(cfg["size"])
    idx = torch.randint(0, n, (b,), generator=g)
    t = torch.randint(0, int(cfg["train_timesteps"]), (b,), generator=g)
    noise = torch.randn((b, c, s, s), generator=g)
    return idx[rows], t[rows], noise[rows]


def lr_factor(cfg: dict, step: int) -> float:
    """Linear warmup over `warmup` steps, then cosine from 1 to 0.1 at `steps`."""
    w, total = int(cfg["warmup"]), int(cfg["steps"])
    if step < w:
        return (step + 1) / w
    frac = (step - w) / max(1, total - w)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def _check_out(out: Path, cfg: dict) -> dict | None:
    """The saved fit.json of `out` (None for a new run); other settings there are refused with the way out."""
    meta = out / "fit.json"
    if not meta.is_file():
        return None
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GenaugError(f"{meta} is not valid JSON ({e}): delete {out} to start again") from None
    old = doc.get("config") or {}
    diff = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
    if diff:
        changes = ", ".join(f"{k} {old.get(k)!r} -> {cfg.get(k)!r}" for k in diff)
        raise GenaugError(f"--out {out} holds a fit with other settings ({changes}): pass the same settings to "
                          "resume, or another --out")  # fmt: skip
    return doc


def fit_generator(
    shards: str,
    out: str | os.PathLike,
    split: str = "train",
    ckpt_every: int = 250,
    log_every: int = 100,
    progress: bool = True,
    **settings: Any,
) -> dict:
    """Train (or resume, or find done) the UNet of `settings` on `split`; returns the model folder and a summary."""
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    cfg = fit_config(**settings)
    out = Path(out)
    doc = _check_out(out, cfg)
    model_dir = out / "model"
    if doc and doc.get("done") and (model_dir / "model_index.json").is_file():
        return {**doc, "model": str(model_dir), "trained_steps": 0, "cached": True}
    if ckpt_every < 0 or log_every < 1:
        raise GenaugError("fit-generator --ckpt-every must be >= 0 and --log-every >= 1")
    pixels, read = load_split_pixels(shards, split, int(cfg["size"]), int(cfg["channels"]))
    from genaug.train.loop import fresh_accelerate_state

    fresh_accelerate_state()  # a process that ran another Accelerator (the demo trains after it fits) keeps its group
    # cpu=True lets Accelerate set up gloo under torchrun / accelerate launch on machines without a GPU (as train does):
    # a plain Accelerator() there runs every process as rank 0 of 1, all writing the same checkpoints
    acc = Accelerator(cpu=not torch.cuda.is_available())
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if doc is None:
            _write_json(out / "fit.json", {"config": cfg, "shards": str(shards), "split": split, "done": False})
    torch.manual_seed(int(cfg["seed"]))
    unet = build_unet(cfg)
    sched = build_scheduler(cfg)
    ema = EMAModel(unet.parameters(), decay=float(cfg["ema_decay"]), use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    opt = torch.optim.AdamW(unet.parameters(), lr=float(cfg["lr"]), weight_decay=0.0)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    start, log = 0, []
    ckpt = latest_checkpoint(out / "checkpoints")
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        unet.load_state_dict(state["unet"])
        opt.load_state_dict(state["opt"])
        lr_sched.load_state_dict(state["lr_sched"])
        ema.load_state_dict(state["ema"])
        start, log = int(state["step"]), list(state.get("log") or [])
    unet, opt = acc.prepare(unet, opt)
    ema.to(acc.device)
    rows = slice(acc.process_index, None, acc.num_processes)
    total = int(cfg["steps"])
    bar = None
    if progress and acc.is_main_process:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, unit="step", desc="fit-generator", dynamic_ncols=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    unet.train()
    for step in range(start, total):
        idx, t, noise = step_draws(cfg, step, len(pixels), rows)
        x0 = pixels[idx].to(acc.device)
        noise, t = noise.to(acc.device), t.to(acc.device)
        pred = unet(sched.add_noise(x0, noise, t), t).sample
        loss = F.mse_loss(pred.float(), noise)
        acc.backward(loss)
        opt.step()
        lr_sched.step()
        opt.zero_grad(set_to_none=True)
        ema.step(acc.unwrap_model(unet).parameters())
        if (step + 1) % log_every == 0 or step + 1 == total:
            log.append({"step": step + 1, "loss": round(float(loss.detach()), 6)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
        if ckpt_every and (step + 1) % ckpt_every == 0 and step + 1 < total:
            _save(acc, out, step + 1, unet, opt, lr_sched, ema, log)
        _fault("fit-step", step + 1)  # tests: GENAUG_FAULT=fit-step:<n> SIGKILLs here
    if bar is not None:
        bar.close()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    acc.wait_for_everyone()
    result = {"config": cfg, "shards": str(shards), "split": split, "done": True, "read": read, "log": log,
              "processes": acc.num_processes}  # fmt: skip
    if acc.is_main_process:
        final = build_unet(cfg)
        ema.copy_to(final.parameters())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            save_model_folder(final.eval(), sched, model_dir)
        _write_json(out / "fit.json", result)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the model folder is the result; resume is over
    acc.wait_for_everyone()
    return {**result, "model": str(model_dir), "trained_steps": total - start, "seconds": seconds,
            "cpu_seconds": cpu, "cached": False, "main": acc.is_main_process}  # fmt: skip


def _save(acc: Any, out: Path, step: int, unet: Any, opt: Any, lr_sched: Any, ema: Any, log: list) -> None:
    if acc.is_main_process:
        state = {
            "step": step,
            "unet": acc.unwrap_model(unet).state_dict(),
            "opt": opt.state_dict(),
            "lr_sched": lr_sched.state_dict(),
            "ema": ema.state_dict(),
            "log": log,
        }
        save_checkpoint(out / "checkpoints", step, state, keep=2)
    acc.wait_for_everyone()


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + tmp_suffix())
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
