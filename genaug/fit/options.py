"""What `genaug fit-generator` takes, declared once: `FitSettings`, the model's settings (recorded in fit.json; a
resume must repeat them), and `FitOptions`, what one invocation takes. Both give the command its flags
(genaug.core.cli_model.command); the bounds are checked here and nowhere else."""

from __future__ import annotations

from typing import ClassVar

from pydantic import field_validator, model_validator

from genaug.core.config import Number, Settings, setting
from genaug.core.errors import GenaugError


class FitSettings(Settings):
    """The settings of a fitted UNet (genaug.fit.run.fit_config); a field without a flag is set from Python only."""

    where: ClassVar[str] = "flag"

    size: int = setting(8, "Training side in pixels (the digits' native 8; images are resized).", "--size", ge=4)
    channels: int = setting(3, "3 (RGB) or 1 (grey).", "--channels")
    widths: list[int] = setting(
        factory=lambda: [32, 64], help="UNet2DModel block widths (one down / up block each, no attention)."
    )  # the flag --widths takes them as one text, 32,64 (FitOptions.widths)
    layers_per_block: int = setting(1, "ResNet layers per UNet block.", ge=1)
    norm_groups: int = setting(8, "GroupNorm groups (every width is a multiple of it).", ge=1)
    steps: int = setting(1500, "Optimizer steps.", "--steps", ge=1)
    batch_size: int = setting(64, "Images per step, over all processes.", "--batch-size", ge=1)
    lr: Number = setting(2e-3, "AdamW peak learning rate, in (0, 1).", "--lr", gt=0)
    warmup: int = setting(50, "Linear LR warmup steps, then cosine decay to 10%.", ge=0)
    ema_decay: Number = setting(0.999, "Largest EMA decay of the saved weights, in [0, 1).", "--ema-decay", ge=0)
    train_timesteps: int = setting(1000, "Timesteps of the DDPM forward process.", ge=2)
    beta_schedule: str = setting("squaredcos_cap_v2", "diffusers DDPMScheduler beta schedule.")
    seed: int = setting(0, "Seed of the init and of every step's draws.", "--seed")

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: int) -> int:
        if v not in (1, 3):
            raise GenaugError(f"fit-generator --channels must be 1 or 3, got {v!r}")
        return v

    @field_validator("lr", "ema_decay")
    @classmethod
    def _below_one(cls, v: float, info) -> float:  # noqa: ANN001 - pydantic's ValidationInfo
        if not v < 1:
            raise GenaugError(f"fit-generator --{info.field_name.replace('_', '-')} must be below 1, got {v!r}")
        return v

    @model_validator(mode="after")
    def _shape(self) -> FitSettings:
        w = self.widths
        if not w or any(x < 1 or x % self.norm_groups for x in w):
            raise GenaugError(f"fit-generator --widths must be positive multiples of {self.norm_groups}, got {w}")
        if self.size % (2 ** (len(w) - 1)):
            raise GenaugError(f"fit-generator --size {self.size} must be divisible by 2^{len(w) - 1} "
                              f"(one halving per extra width in --widths {w})")  # fmt: skip
        return self


def parse_widths(text: str | None) -> list[int] | None:
    """ "32,64" -> [32, 64]; a malformed list is one line naming the flag."""
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GenaugError(f"--widths must be comma-separated integers such as 32,64, got {text!r}") from None


class FitOptions(Settings):
    """Train a small unconditional diffusion model (diffusers UNet2DModel, DDPM objective, EMA weights) on a split's
    images and save it as a diffusers folder OUT/model for `genaug generate --model img2img-ddpm --weights
    OUT/model`. Checkpoints under OUT/checkpoints; rerun the same command to resume. Runs under accelerate launch /
    torchrun for several GPUs."""

    where: ClassVar[str] = "flag"

    shards: str = setting(..., "Shard set name (shards/NAME), path or URL.", "--shards")
    out: str = setting(..., "Run folder: fit.json, checkpoints/, and the result model/.", "--out")
    split: str = setting("train", "Source split whose images the model learns.", "--split")
    widths: str | None = setting(None, "UNet block widths, e.g. 32,64 (default).", "--widths")
    ckpt_every: int = setting(250, "Checkpoint every N steps (0: none).", "--ckpt-every")
    no_progress: bool = setting(False, "No progress bar.", "--no-progress")

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: str | None) -> str | None:
        parse_widths(v)
        return v
