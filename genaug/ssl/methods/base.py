"""The base of every SSL method: backbone, heads, momentum teacher, and a training step returning loss and logs.

A method is an nn.Module whose ``forward(batch, progress)`` runs one training step (so DDP/FSDP wrap it as is) and
returns ``{"loss": scalar tensor, "logs": {name: float or 0-d tensor}, "features": detached [B, F] backbone
features of the first view or None}``. The loop owns optimisation; a method may hook in after each optimizer step
(EMA teachers, queues) and before it (freezing prototypes). ``encode(x)`` is the representation used for
evaluation (the backbone's by default; probabilistic methods may return their mean embedding instead).
Everything a method must carry across a resume (teacher weights, queues, DINO's center) lives in parameters or
registered buffers, so it is part of ``state_dict()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from genaug.core.errors import GenaugError
from genaug.ssl.ema import ema_update, ema_update_all, make_teacher, momentum_schedule  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from genaug.ssl.methods.args import MethodArgs


@dataclass(frozen=True)
class Progress:
    """Where training stands: optimizer step (0-based, before this step's update), totals and fractional epoch."""

    step: int
    total_steps: int
    steps_per_epoch: int

    @property
    def epoch(self) -> float:
        """Fractional epoch."""
        return self.step / max(1, self.steps_per_epoch)

    @property
    def fraction(self) -> float:
        """step / total_steps, in [0, 1]."""
        return min(1.0, self.step / max(1, self.total_steps))


def mlp(
    in_dim: int,
    hidden: int,
    out: int,
    layers: int = 2,
    bn: bool = True,
    last_bn: bool = False,
    last_bn_affine: bool = True,
    act: type[nn.Module] = nn.ReLU,
    bias: bool | None = None,
    last_bias: bool | None = None,
) -> nn.Sequential:
    """Projector / predictor MLP: (Linear [BN] act) x (layers - 1), Linear [BN].

    Hidden Linears have a bias when `bias` says so (default: when not followed by BN); the last Linear has one when
    `last_bias` says so (default: when not followed by BN).
    """
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden, bias=(not bn) if bias is None else bias)]
        if bn:
            mods.append(nn.BatchNorm1d(hidden))
        mods.append(act(inplace=True) if act is nn.ReLU else act())
        d = hidden
    mods.append(nn.Linear(d, out, bias=(not last_bn) if last_bias is None else last_bias))
    if last_bn:
        mods.append(nn.BatchNorm1d(out, affine=last_bn_affine))
    return nn.Sequential(*mods)


def fp32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half-precision (autocast) outputs to float32; float32 and float64 tensors are returned as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def each_view(net: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run `net` on every view separately (one BatchNorm batch per view, as BYOL, SimSiam, MoCo v3, Barlow Twins
    and VICReg do in their reference code)."""
    return [net(v) for v in views]


def forward_views(net: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run `net` on every view, batching consecutive views of the same shape together (one BN batch per shape)."""
    out: list[torch.Tensor] = []
    i = 0
    while i < len(views):
        j = i + 1
        while j < len(views) and views[j].shape == views[i].shape:
            j += 1
        y = net(torch.cat(views[i:j]))
        out.extend(y.chunk(j - i))
        i = j
    return out


class SSLMethod(nn.Module):
    """Base class: `self.backbone` [B,3,H,W] -> [B, feat_dim]; subclasses add heads and `training_step`."""

    name: ClassVar[str] = "base"
    #: parameter-name prefixes kept at a constant learning rate (SimSiam's predictor)
    fixed_lr_prefixes: ClassVar[tuple[str, ...]] = ()
    #: smallest number of views the method needs
    min_views: ClassVar[int] = 2
    #: the method's arguments (recipe key method_args) as one typed model (ssl/methods/args.py); None: a plug-in
    #: whose own __init__ signature declares them
    Args: ClassVar[type[MethodArgs] | None] = None

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.feat_dim = feat_dim
        model = type(self).Args
        if model is not None:
            #: the checked, typed arguments (every default filled in)
            self.args = model.check(method_args, self.name)
        elif method_args:
            raise GenaugError(f"method {self.name!r} does not take method_args {sorted(method_args)}: check the recipe")

    def forward(self, batch: dict, progress: Progress) -> dict:
        """One training step (the DDP entry point): see `training_step`."""
        views = batch["views"]
        if len(views) < self.min_views:
            raise GenaugError(
                f"method {self.name!r} needs at least {self.min_views} views per sample, got {len(views)}"
            )
        return self.training_step(batch, progress)

    def training_step(self, batch: dict, progress: Progress) -> dict:
        """Return {"loss", "logs", "features"} for one batch."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The representation used for evaluation: backbone features."""
        return self.backbone(x)

    #: (student attribute, teacher attribute) pairs updated by EMA; teacher-based methods set it
    teachers: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: base EMA momentum and whether it follows BYOL's cosine schedule to 1 (MoCo v2 keeps it constant)
    momentum: float = 0.0
    momentum_cosine: bool = True
    #: optim.clip_grad bounds each parameter's gradient norm on its own (DINO) instead of the global norm
    clip_per_parameter: bool = False

    def teacher_momentum(self, progress: Progress) -> float:
        """EMA momentum of the teachers at this step."""
        return momentum_schedule(progress.step, progress.total_steps, self.momentum, 1.0, self.momentum_cosine)

    def make_teachers(self) -> None:
        """Each teacher in `teachers` a frozen copy of its student; the EMA momentum (and, where the method has the
        argument, momentum_cosine) from the method's arguments."""
        for student, teacher in self.teachers:
            setattr(self, teacher, make_teacher(getattr(self, student)))
        self.momentum = self.args.momentum
        self.momentum_cosine = getattr(self.args, "momentum_cosine", type(self).momentum_cosine)

    @torch.no_grad()
    def update_teachers(self, progress: Progress) -> float:
        """EMA-update every teacher in `teachers` from its student; returns the momentum used."""
        m = self.teacher_momentum(progress)
        ema_update_all(((getattr(self, s), getattr(self, t)) for s, t in self.teachers), m)
        return m

    @torch.no_grad()
    def on_after_step(self, progress: Progress) -> None:
        """Hook after each optimizer step (EMA teacher updates)."""

    def on_before_optimizer_step(self, progress: Progress) -> None:
        """Hook between backward and optimizer step (gradient surgery such as frozen prototypes)."""


METHODS: dict[str, type[SSLMethod]] = {}


def register_method(name: str):
    """Class decorator registering an SSLMethod under `name` (the recipe's `method:` field)."""

    def deco(cls: type[SSLMethod]) -> type[SSLMethod]:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco
