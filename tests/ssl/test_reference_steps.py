"""Each SSL method's training step checked against an independent reference written here in plain torch.

For simclr, mocov2, mocov3, byol, simsiam, barlow, vicreg, dino and swav a reference step is written in this file
from the official code (not from genaug's losses or method classes):

* SimCLR: Chen et al. 2020 eq. 1 (NT-Xent over 2N views, both views in one BN batch, google-research/simclr).
* MoCo v2: facebookresearch/moco moco/builder.py (momentum update before the keys, [D, K] queue, enqueue after
  the logits); the queue write is key by key, so a batch larger than the queue keeps its newest keys.
* MoCo v3: facebookresearch/moco-v3 moco/builder.py (MoCo_ResNet: 2-layer projector, predictor without last BN,
  no biases, momentum update with m(k) before the per-view keys) and main_moco.py (adjust_moco_momentum).
* BYOL: deepmind-research/byol byol_experiment.py (per-view online and target passes, 2 - 2 cos, target EMA with
  the cosine tau after the online update).
* SimSiam: facebookresearch/simsiam simsiam/builder.py and main_simsiam.py (per-view, fixed predictor lr).
* Barlow Twins: facebookresearch/barlowtwins main.py (per-view, BN without affine, c / N, lambda).
* VICReg: facebookresearch/vicreg main_vicreg.py (per-view, repr / std / cov terms, Projector biases).
* DINO: facebookresearch/dino main_dino.py and utils.py (MultiCropWrapper, DINOHead with weight-normalised last
  layer, DINOLoss with its per-epoch teacher-temperature linspace and center EMA, cancel_gradients_last_layer,
  cosine teacher momentum, AdamW with the cosine weight-decay schedule 0.04 -> 0.4 on the regularised group).
* SwAV: facebookresearch/swav main_swav.py and src/resnet50.py (prototype normalisation, one projection-head pass
  over every crop, queue trimmed to a multiple of the batch, started at epoch_queue_starts and used once full,
  distributed_sinkhorn, freeze_prototypes_niters).

genaug's side runs in the real `genaug.train.loop.Trainer` with the runner's optimizer / schedule factories
(`genaug.train.runner._factories`: param groups, weight-decay exclusions, fixed-lr prefixes, WarmupCosine), so the
hook order is the loop's own (forward, backward, on_before_optimizer_step, optimizer step, on_after_step,
scheduler step); a forward hook records the loss, an optimizer pre-step hook the gradients and the schedule
wrapper the state after on_after_step. The reference side uses torch's SGD / AdamW with the same lr schedule
(linear warm-up (k + 1) / W then cosine, genaug's; the official repos differ slightly in the warm-up start).
Six float64 steps of 2 steps per epoch cross the warm-up end (step 2), the queue start (epoch 1), the SwAV queue
becoming full (step 4), the prototype freeze end (step 3), the DINO last-layer freeze end (epoch 1) and the DINO
teacher-temperature warm-up; loss, gradients and post-step state (students, teachers, queues, center) must agree
to 1e-9 relative.

Where genaug's heads carry a parameter the reference lacks or vice versa, the extra one is a bias that a following
(or final) BatchNorm / standardisation cancels: it is checked to get no gradient (Barlow's and VICReg's last
projector bias in genaug, VICReg's hidden Linear biases in the reference).

Mutations tried (one at a time in genaug's code, each reverted; the test that caught it):

M1   BYOL loss paired with its own target (p1 with t1, p2 with t2)          test_matches_reference[byol]
M2   MoCo v3 on_after_step without the EMA update                           test_matches_reference[mocov3]
M3   MoCo v3 EMA with m(step) instead of the reference's m(step + 1)         test_matches_reference[mocov3]
M4   DINO last-layer freeze skipped                                         test_matches_reference_multicrop[dino]
M5   DINO center not updated                                                test_matches_reference_multicrop[dino]
M6   SwAV prototype freeze skipped                                          test_matches_reference_multicrop[swav]
M7   SwAV queue filled but never used in the Sinkhorn input                 test_matches_reference_multicrop[swav]
M8   SwAV projector run per crop instead of once over all crops             test_matches_reference_multicrop[swav]
M9a  BYOL online backbone: joint BN forward of both views                   test_matches_reference[byol]
M9b  SimSiam backbone: joint BN forward                                     test_matches_reference[simsiam]
M9c  MoCo v3 base encoder: joint BN forward                                 test_matches_reference[mocov3]
M9d  MoCo v3 momentum encoder: joint BN forward                             test_matches_reference[mocov3]
M9e  BYOL target backbone: joint BN forward                                 test_matches_reference[byol]
M9f  Barlow / VICReg project(): joint BN forward       test_matches_reference[barlow], test_matches_reference[vicreg]
M10  MoCo v2 queue not updated          test_matches_reference_mocov2[12], test_matches_reference_mocov2[6]
M11  MoCo v2 oversize batch writes its oldest keys                          test_matches_reference_mocov2[6]
M12  DINO teacher EMA skipped                                               test_matches_reference_multicrop[dino]
M13  MoCo v3 predictor with a last BN (the ViT variant) by default          test_matches_reference[mocov3]
M14  DINO teacher temperature on the fractional epoch (not the reference's per-epoch linspace)
                                                                            test_matches_reference_multicrop[dino]
M15  SwAV queue not trimmed to a multiple of the global batch     test_matches_reference_multicrop[swav],
                         test_swav_shipped_batch_and_queue_do_not_crash, test_swav_state_does_not_depend_on_world_size
M16  MoCo v2 EMA skipped                 test_matches_reference_mocov2[12], test_matches_reference_mocov2[6]
M17  SwAV prototypes not normalised before the step                         test_matches_reference_multicrop[swav]
M18  SimCLR projector per view instead of one BN batch                      test_matches_reference[simclr]

Not mutated (outside this test's files): WarmupCosine ignoring `final_weight_decay` (genaug/train/optim.py); the
DINO reference applies the 0.04 -> 0.4 schedule, and test_dino_recipe_weight_decay_schedule checks it directly.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from genaug.ssl.methods import METHODS, Progress
from genaug.train.loop import LoopConfig, Trainer, TrainModule
from genaug.train.recipe import TrainRecipe
from genaug.train.runner import _factories

ROOT = Path(__file__).resolve().parents[2]
B, T, SPE, WARMUP, LR, WD = 8, 6, 2, 2, 0.05, 1e-3
GLOBAL, LOCAL = 8, 4  # crop sizes


class TinyNet(nn.Module):
    """Conv + BatchNorm backbone, so that how views share a BN batch changes the result."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, width]."""
        return self.net(x)


def batches(sizes: list[int], seed: int = 0) -> list[dict]:
    """T batches of float64 views (fresh data every step)."""
    g = torch.Generator().manual_seed(seed)
    return [{"views": [torch.randn(B, 3, s, s, generator=g, dtype=torch.float64) for s in sizes]} for _ in range(T)]


def lr_factor(k: int) -> float:
    """Linear warm-up (k + 1) / W, then cosine to 0 at T."""
    if k < WARMUP:
        return (k + 1) / WARMUP
    return 0.5 * (1 + math.cos(math.pi * (k - WARMUP) / (T - WARMUP)))


def cosine_momentum(k: int, base: float) -> float:
    """BYOL / DINO / MoCo v3 momentum: 1 - (1 - base) (cos(pi k / K) + 1) / 2."""
    return 1 - (1 - base) * (math.cos(math.pi * k / T) + 1) / 2


@torch.no_grad()
def ema(student: nn.Module, teacher: nn.Module, m: float) -> None:
    """teacher <- m teacher + (1 - m) student, parameters only (the official repos' updates)."""
    for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
        pt.copy_(pt * m + ps * (1 - m))


def frozen(module: nn.Module) -> nn.Module:
    """A copy without gradients (a teacher)."""
    t = copy.deepcopy(module)
    for p in t.parameters():
        p.requires_grad_(False)
    return t


# ------------------------------------------------------------------------------------------------ references
class Ref(nn.Module):
    """A reference step: `loss(views, k)`, `before_step(k)` (grad surgery), `after_step(k)`, `state(k)`."""

    opt_name, fixed_prefixes, exclude = "sgd", (), True

    def link(self, gen: nn.Module, pairs: list[tuple]) -> None:
        """Copy genaug's initial weights into the reference modules and remember which tensor matches which name."""
        self.map: dict[str, nn.Parameter] = {}
        self.gen_extra: list[str] = []
        for gname, rmod, gskip, rskip in pairs:
            gps = [(n, p) for n, p in getattr(gen, gname).named_parameters() if n not in gskip]
            rps = [p for n, p in rmod.named_parameters() if n not in rskip]
            assert len(gps) == len(rps), (gname, [n for n, _ in gps], [n for n, _ in rmod.named_parameters()])
            for (n, gp), rp in zip(gps, rps, strict=True):
                assert gp.shape == rp.shape, (gname, n)
                rp.data.copy_(gp.data)
                self.map[f"{gname}.{n}"] = rp
            self.gen_extra += [f"{gname}.{n}" for n in gskip]

    def before_step(self, k: int) -> None:
        """Gradient surgery between backward and the optimizer step."""

    def after_step(self, k: int) -> None:
        """Updates after the optimizer step."""

    def state(self, k: int) -> dict[str, torch.Tensor]:
        """Tensors to compare with genaug's state_dict after step k."""
        return {n: p.detach() for n, p in self.map.items()}


def linear_bn_mlp(dims: list[int], bias_hidden: bool, bias_last: bool, last_bn: bool = False) -> nn.Sequential:
    """Linear(bias) BN ReLU ... Linear(bias) [BN without affine]."""
    mods: list[nn.Module] = []
    for i in range(len(dims) - 2):
        mods += [nn.Linear(dims[i], dims[i + 1], bias=bias_hidden), nn.BatchNorm1d(dims[i + 1]), nn.ReLU()]
    mods.append(nn.Linear(dims[-2], dims[-1], bias=bias_last))
    if last_bn:
        mods.append(nn.BatchNorm1d(dims[-1], affine=False))
    return nn.Sequential(*mods)


class RefSimCLR(Ref):
    """SimCLR: both views in one batch, NT-Xent over the 2N views."""

    args = dict(proj_hidden=10, proj_out=5, proj_layers=2, temperature=0.5)

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.bb, self.proj = TinyNet(), linear_bn_mlp([6, 10, 5], False, True)
        self.link(gen, [("backbone", self.bb, (), ()), ("projector", self.proj, (), ())])

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        z = F.normalize(self.proj(self.bb(torch.cat(views[:2]))), dim=1)
        n = z.shape[0] // 2
        sim = (z @ z.T / 0.5).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        return F.cross_entropy(sim, torch.cat([torch.arange(n) + n, torch.arange(n)]))


class RefMoCoV2(Ref):
    """MoCo v2: momentum update, keys, InfoNCE against the queue, enqueue (moco/builder.py)."""

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.bb, self.proj = TinyNet(), nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 5))
        self.bb_k, self.proj_k = frozen(self.bb), frozen(self.proj)
        pairs = [
            ("backbone", self.bb),
            ("projector", self.proj),
            ("backbone_k", self.bb_k),
            ("projector_k", self.proj_k),
        ]
        self.link(gen, [(g, r, (), ()) for g, r in pairs])
        self.register_buffer("queue", gen.queue.detach().T.clone())  # [D, K] as in the reference
        self.ptr, self.m = 0, 0.8

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        ema(nn.ModuleList([self.bb, self.proj]), nn.ModuleList([self.bb_k, self.proj_k]), self.m)
        q = F.normalize(self.proj(self.bb(views[0])), dim=1)
        with torch.no_grad():
            key = F.normalize(self.proj_k(self.bb_k(views[1])), dim=1)
        logits = torch.cat([(q * key).sum(1, keepdim=True), q @ self.queue.clone()], dim=1) / 0.2
        loss = F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))
        for row in key:  # one key after the other: the newest keys of an oversize batch remain
            self.queue[:, self.ptr] = row
            self.ptr = (self.ptr + 1) % self.queue.shape[1]
        return loss

    def state(self, k: int) -> dict[str, torch.Tensor]:  # noqa: D102
        st = super().state(k)
        # genaug updates after step k what the reference updates at the start of step k + 1 (same m)
        nxt = frozen(nn.ModuleList([self.bb_k, self.proj_k]))
        ema(nn.ModuleList([self.bb, self.proj]), nxt, self.m)
        names = [n for n in self.map if n.startswith(("backbone_k.", "projector_k."))]
        st.update(zip(names, [p.detach() for p in nxt.parameters()], strict=True))
        return {**st, "queue": self.queue.T}


def moco3_mlp(layers: int, d_in: int, hidden: int, d_out: int, last_bn: bool = True) -> nn.Sequential:
    """MoCo v3's _build_mlp: Linear without bias, BN + ReLU between, BN without affine at the end if last_bn."""
    mods: list[nn.Module] = []
    for i in range(layers):
        a, b = d_in if i == 0 else hidden, d_out if i == layers - 1 else hidden
        mods.append(nn.Linear(a, b, bias=False))
        if i < layers - 1:
            mods += [nn.BatchNorm1d(b), nn.ReLU()]
        elif last_bn:
            mods.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*mods)


class RefMoCoV3(Ref):
    """MoCo v3 (ResNet): m(k) update before the per-view keys, symmetric contrastive loss x 2T."""

    args = dict(proj_hidden=10, proj_out=5, pred_hidden=7, temperature=0.5, momentum=0.8)

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.bb, self.proj, self.pred = TinyNet(), moco3_mlp(2, 6, 10, 5), moco3_mlp(2, 5, 7, 5, last_bn=False)
        self.bb_k, self.proj_k = frozen(self.bb), frozen(self.proj)
        pairs = [("backbone", self.bb), ("projector", self.proj), ("predictor", self.pred)]
        pairs += [("backbone_k", self.bb_k), ("projector_k", self.proj_k)]
        self.link(gen, [(g, r, (), ()) for g, r in pairs])

    def ctr(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:  # noqa: D102
        logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / 0.5
        return F.cross_entropy(logits, torch.arange(q.shape[0])) * (2 * 0.5)

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        ema(nn.ModuleList([self.bb, self.proj]), nn.ModuleList([self.bb_k, self.proj_k]), cosine_momentum(k, 0.8))
        q1, q2 = (self.pred(self.proj(self.bb(v))) for v in views[:2])
        with torch.no_grad():
            k1, k2 = (self.proj_k(self.bb_k(v)) for v in views[:2])
        return self.ctr(q1, k2) + self.ctr(q2, k1)

    def state(self, k: int) -> dict[str, torch.Tensor]:  # noqa: D102
        st = super().state(k)
        nxt = frozen(nn.ModuleList([self.bb_k, self.proj_k]))
        ema(nn.ModuleList([self.bb, self.proj]), nxt, cosine_momentum(k + 1, 0.8))
        names = [n for n in self.map if n.startswith(("backbone_k.", "projector_k."))]
        st.update(zip(names, [p.detach() for p in nxt.parameters()], strict=True))
        return st


class RefBYOL(Ref):
    """BYOL: per-view online / target passes, symmetric 2 - 2 cos, target EMA after the update."""

    args = dict(proj_hidden=10, proj_out=5, pred_hidden=7, momentum=0.8)

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.bb, self.proj, self.pred = (
            TinyNet(),
            linear_bn_mlp([6, 10, 5], True, True),
            linear_bn_mlp([5, 7, 5], True, True),
        )
        self.bb_t, self.proj_t = frozen(self.bb), frozen(self.proj)
        pairs = [("backbone", self.bb), ("projector", self.proj), ("predictor", self.pred)]
        pairs += [("backbone_t", self.bb_t), ("projector_t", self.proj_t)]
        self.link(gen, [(g, r, (), ()) for g, r in pairs])

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        p1, p2 = (self.pred(self.proj(self.bb(v))) for v in views[:2])
        with torch.no_grad():
            t1, t2 = (self.proj_t(self.bb_t(v)) for v in views[:2])

        def reg(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return 2 - 2 * (F.normalize(x, dim=-1) * F.normalize(y, dim=-1)).sum(-1)

        return (reg(p1, t2) + reg(p2, t1)).mean()

    def after_step(self, k: int) -> None:  # noqa: D102
        ema(nn.ModuleList([self.bb, self.proj]), nn.ModuleList([self.bb_t, self.proj_t]), cosine_momentum(k, 0.8))


class RefSimSiam(Ref):
    """SimSiam: per-view, -(D(p1, sg z2) + D(p2, sg z1)) / 2, predictor at a fixed lr."""

    args = dict(proj_hidden=10, proj_out=5, pred_hidden=3)
    fixed_prefixes, exclude = ("predictor.",), False

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        # the reference's last projector Linear has a bias frozen at init (followed by BN): left out here
        self.bb, self.proj = TinyNet(), linear_bn_mlp([6, 10, 10, 5], False, False, last_bn=True)
        self.pred = linear_bn_mlp([5, 3, 5], False, True)
        pairs = [("backbone", self.bb), ("projector", self.proj), ("predictor", self.pred)]
        self.link(gen, [(g, r, (), ()) for g, r in pairs])

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        z1, z2 = (self.proj(self.bb(v)) for v in views[:2])
        p1, p2 = self.pred(z1), self.pred(z2)
        return -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean()) * 0.5


class RefBarlow(Ref):
    """Barlow Twins: per-view, cross-correlation of BN(affine=False) embeddings / N."""

    args = dict(proj_hidden=10, proj_out=8, proj_layers=3, lambd=0.05)

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.bb, self.proj = TinyNet(), linear_bn_mlp([6, 10, 10, 8], False, False)
        self.link(gen, [("backbone", self.bb, (), ()), ("projector", self.proj, ("6.bias",), ())])

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        z1, z2 = (self.proj(self.bb(v)) for v in views[:2])

        def bn(z: torch.Tensor) -> torch.Tensor:
            return F.batch_norm(z, None, None, training=True, eps=1e-5)

        c = bn(z1).T @ bn(z2) / z1.shape[0]
        on = (torch.diagonal(c) - 1).pow(2).sum()
        off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        return on + 0.05 * off


class RefVICReg(Ref):
    """VICReg: per-view, 25 repr + 25 std + 1 cov over the batch (main_vicreg.py)."""

    args = dict(proj_hidden=10, proj_out=8, proj_layers=3)

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.bb, self.proj = TinyNet(), linear_bn_mlp([6, 10, 10, 8], True, False)
        self.link(gen, [("backbone", self.bb, (), ()), ("projector", self.proj, ("6.bias",), ("0.bias", "3.bias"))])
        self.ref_extra = [self.proj[0].bias, self.proj[3].bias]

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        x, y = (self.proj(self.bb(v)) for v in views[:2])
        repr_loss = F.mse_loss(x, y)
        x, y = x - x.mean(dim=0), y - y.mean(dim=0)
        std_x, std_y = torch.sqrt(x.var(dim=0) + 0.0001), torch.sqrt(y.var(dim=0) + 0.0001)
        std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
        n, d = x.shape

        def off(m: torch.Tensor) -> torch.Tensor:
            return m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()

        cov_loss = off(x.T @ x / (n - 1)).pow(2).sum() / d + off(y.T @ y / (n - 1)).pow(2).sum() / d
        return 25 * repr_loss + 25 * std_loss + cov_loss


class WNLinear(nn.Module):
    """DINO's weight-normalised last layer: W = g v / ||v|| (row-wise), g frozen at 1."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(d_out, 1), requires_grad=False)
        self.v = nn.Parameter(torch.zeros(d_out, d_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x @ (self.g * self.v / self.v.norm(dim=1, keepdim=True)).T


class RefHead(nn.Module):
    """DINOHead: 3-layer GELU MLP, L2 normalisation, weight-normalised last layer."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 12), nn.GELU(), nn.Linear(12, 4))
        self.last = WNLinear(4, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.last(F.normalize(self.mlp(x), dim=-1))


class RefDINO(Ref):
    """DINO: multi-crop student, centred / sharpened teacher on the global crops, frozen last layer, center EMA."""

    args = dict(out_dim=16, head_hidden=12, bottleneck=4, student_temp=0.1, teacher_temp=0.07,
                warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=3, center_momentum=0.8, momentum=0.8,
                freeze_last_layer_epochs=1)  # fmt: skip
    opt_name = "adamw"

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.bb, self.head = TinyNet(), RefHead()
        self.bb_t, self.head_t = frozen(self.bb), frozen(self.head)
        pairs = [("backbone", self.bb), ("head", self.head), ("backbone_t", self.bb_t), ("head_t", self.head_t)]
        self.link(gen, [(g, r, (), ()) for g, r in pairs])
        self.register_buffer("center", torch.zeros(1, 16, dtype=torch.float64))
        w = 3  # teacher temperature: np.linspace(0.04, 0.07, 3) then 0.07
        self.temps = [0.04 + (0.07 - 0.04) * i / (w - 1) for i in range(w)] + [0.07] * (T // SPE - w)

    def multicrop(self, net: nn.Module, head: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:  # noqa: D102
        out = torch.cat([net(torch.cat(views[:2]))] + ([net(torch.cat(views[2:]))] if len(views) > 2 else []))
        return list(head(out).chunk(len(views)))

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        student = self.multicrop(self.bb, self.head, views)
        with torch.no_grad():
            teacher = self.multicrop(self.bb_t, self.head_t, views[:2])
        temp = self.temps[k // SPE]
        total, n = 0.0, 0
        for iq, t in enumerate(teacher):
            q = F.softmax((t - self.center) / temp, dim=-1)
            for v, s in enumerate(student):
                if v == iq:
                    continue
                total = total + torch.sum(-q * F.log_softmax(s / 0.1, dim=-1), dim=-1).mean()
                n += 1
        with torch.no_grad():
            out = torch.cat(teacher)
            self.center.copy_(self.center * 0.8 + out.sum(0, keepdim=True) / len(out) * 0.2)
        return total / n

    def before_step(self, k: int) -> None:  # noqa: D102
        if k // SPE < 1:
            for p in self.head.last.parameters():
                p.grad = None

    def after_step(self, k: int) -> None:  # noqa: D102
        ema(nn.ModuleList([self.bb, self.head]), nn.ModuleList([self.bb_t, self.head_t]), cosine_momentum(k, 0.8))

    def state(self, k: int) -> dict[str, torch.Tensor]:  # noqa: D102
        return {**super().state(k), "center": self.center}


class RefSwAV(Ref):
    """SwAV (main_swav.py): normalised prototypes, one head pass, queue, Sinkhorn codes, swapped prediction."""

    args = dict(proj_hidden=10, proj_out=5, n_prototypes=6, temperature=0.1, epsilon=0.05, sinkhorn_iters=3,
                queue_length=20, queue_start_epoch=1, freeze_prototypes_steps=3, assign_views=2)  # fmt: skip

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.bb, self.proj = TinyNet(), linear_bn_mlp([6, 10, 5], True, True)
        self.prototypes = nn.Linear(5, 6, bias=False)
        pairs = [("backbone", self.bb), ("projector", self.proj), ("prototypes", self.prototypes)]
        self.link(gen, [(g, r, (), ()) for g, r in pairs])
        self.queue_length = 20 - 20 % B  # the reference trims the queue to a multiple of the batch
        self.queue: torch.Tensor | None = None
        self.use_the_queue, self.epoch = False, -1

    @staticmethod
    def sinkhorn(out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        q = torch.exp(out / 0.05).t()
        b, k = q.shape[1], q.shape[0]
        q /= q.sum()
        for _ in range(3):
            q /= q.sum(dim=1, keepdim=True)
            q /= k
            q /= q.sum(dim=0, keepdim=True)
            q /= b
        return (q * b).t()

    def loss(self, views: list[torch.Tensor], k: int) -> torch.Tensor:  # noqa: D102
        epoch = k // SPE
        if epoch != self.epoch:  # train() starts a new epoch
            self.epoch, self.use_the_queue = epoch, False
            if self.queue_length > 0 and epoch >= 1 and self.queue is None:
                self.queue = torch.zeros(2, self.queue_length, 5, dtype=torch.float64)
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight.clone(), dim=1))
        feats = torch.cat([self.bb(torch.cat(views[:2])), self.bb(torch.cat(views[2:]))])
        emb = F.normalize(self.proj(feats), dim=1)
        output = self.prototypes(emb)
        emb = emb.detach()
        bs, loss = B, 0.0
        for i, crop_id in enumerate([0, 1]):
            with torch.no_grad():
                out = output[bs * crop_id : bs * (crop_id + 1)].detach()
                if self.queue is not None:
                    if self.use_the_queue or not torch.all(self.queue[i, -1, :] == 0):
                        self.use_the_queue = True
                        out = torch.cat((self.queue[i] @ self.prototypes.weight.t(), out))
                    self.queue[i, bs:] = self.queue[i, :-bs].clone()
                    self.queue[i, :bs] = emb[crop_id * bs : (crop_id + 1) * bs]
                q = self.sinkhorn(out)[-bs:]
            subloss = 0.0
            for v in [x for x in range(len(views)) if x != crop_id]:
                x = output[bs * v : bs * (v + 1)] / 0.1
                subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
            loss += subloss / (len(views) - 1)
        return loss / 2

    def before_step(self, k: int) -> None:  # noqa: D102
        if k < 3:
            self.prototypes.weight.grad = None

    def state(self, k: int) -> dict[str, torch.Tensor]:  # noqa: D102
        queue = torch.zeros(2, 20, 5, dtype=torch.float64)
        if self.queue is not None:
            queue[:, : self.queue_length] = self.queue
        return {**super().state(k), "queue": queue}


REFS: dict[str, type[Ref]] = {
    "simclr": RefSimCLR,
    "mocov2": RefMoCoV2,
    "mocov3": RefMoCoV3,
    "byol": RefBYOL,
    "simsiam": RefSimSiam,
    "barlow": RefBarlow,
    "vicreg": RefVICReg,
    "dino": RefDINO,
    "swav": RefSwAV,
}
MOCOV2_ARGS = dict(proj_hidden=10, proj_out=5, temperature=0.2, momentum=0.8)


# ----------------------------------------------------------------------------------------------------- drivers
def optim_cfg(ref: Ref) -> dict:
    """The recipe's optim section for this reference."""
    if ref.opt_name == "adamw":
        return {"name": "adamw", "weight_decay": 0.04, "final_weight_decay": 0.4, "exclude_bias_norm": True}
    return {"name": "sgd", "momentum": 0.9, "weight_decay": WD, "exclude_bias_norm": ref.exclude}


def run_genaug(method: nn.Module, data: list[dict], optim: dict, run_dir: Path) -> list[dict]:
    """Train with the real Trainer and the runner's factories; per step: losses, gradients, post-step state."""
    recipe = TrainRecipe.parse({"method": "simclr", "optim": optim, "schedule": {"final_lr_ratio": 0.0}})
    recipe.resolved = {"lr": LR, "bias_lr": None, "total_steps": T, "warmup_steps": WARMUP}
    make_opt, make_sched = _factories(recipe, method)
    steps: list[dict] = []
    cur: dict = {"loss": []}
    trainable = {n: p for n, p in method.named_parameters() if p.requires_grad}

    def grads(opt, args, kwargs) -> None:
        cur["grads"] = {n: None if p.grad is None else p.grad.detach().clone() for n, p in trainable.items()}

    def opt_factory(module: TrainModule):
        opt = make_opt(module)
        opt.register_step_pre_hook(grads)
        return opt

    class Recorder:
        """The schedule, recording the method's state first (the loop steps it right after on_after_step)."""

        def __init__(self, opt) -> None:
            self.inner = make_sched(opt)

        def step(self) -> None:
            cur["state"] = {k: v.detach().clone() for k, v in method.state_dict().items()}
            steps.append(dict(cur))
            cur.clear()
            cur["loss"] = []
            self.inner.step()

        def state_dict(self) -> dict:
            return self.inner.state_dict()

        def load_state_dict(self, st: dict) -> None:
            self.inner.load_state_dict(st)

    hook = method.register_forward_hook(lambda m, a, out: cur["loss"].append(out["loss"].detach().clone()))
    cfg = LoopConfig(total_steps=T, steps_per_epoch=SPE, log_every=T, progress_bar=False, tensorboard=False)
    Trainer(method, data, opt_factory, Recorder, cfg, run_dir).fit()
    hook.remove()
    return steps


def run_reference(ref: Ref, data: list[dict]) -> list[dict]:
    """The reference loop: lr (and DINO weight decay) schedule, forward, backward, surgery, step, updates."""
    groups: dict[tuple[bool, bool], list] = {}
    names = {id(p): n for n, p in ref.map.items()}
    for p in ref.parameters():
        if not p.requires_grad:
            continue
        n = names.get(id(p), "extra.bias")
        decay = not (ref.exclude and (p.ndim <= 1 or n.endswith(".bias")))
        groups.setdefault((decay, n.startswith(ref.fixed_prefixes)), []).append(p)
    wd = 0.04 if ref.opt_name == "adamw" else WD
    pg = [{"params": ps, "weight_decay": wd if decay else 0.0, "decay": decay, "fixed": fixed}
          for (decay, fixed), ps in groups.items()]  # fmt: skip
    opt = torch.optim.AdamW(pg, lr=LR) if ref.opt_name == "adamw" else torch.optim.SGD(pg, lr=LR, momentum=0.9)
    out = []
    for k, batch in enumerate(data):
        for g in opt.param_groups:
            g["lr"] = LR if g["fixed"] else LR * lr_factor(k)
            if ref.opt_name == "adamw" and g["decay"]:  # DINO: cosine 0.04 -> 0.4 over the iterations
                g["weight_decay"] = 0.4 + 0.5 * (0.04 - 0.4) * (1 + math.cos(math.pi * k / T))
        loss = ref.loss(batch["views"], k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ref.before_step(k)
        grads = {n: None if p.grad is None else p.grad.detach().clone() for n, p in ref.map.items() if p.requires_grad}
        extra = [p.grad for p in getattr(ref, "ref_extra", [])]
        opt.step()
        ref.after_step(k)
        out.append({"loss": loss.detach(), "grads": grads, "extra": extra, "state": ref.state(k)})
        out[-1]["state"] = {n: t.detach().clone() for n, t in out[-1]["state"].items()}
    return out


def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Tight float64 equality."""
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m: f"{what}: {m}")


def build(name: str, args: dict) -> nn.Module:
    """genaug's method over a TinyNet, in float64."""
    torch.manual_seed(0)
    return METHODS[name](TinyNet(), 6, **args).double()


def check(name: str, args: dict, tmp_path: Path, sizes: list[int]) -> None:
    """Run genaug and the reference side by side and compare every step."""
    gen = build(name, args)
    ref = REFS[name](gen).double()
    data = batches(sizes)
    got = run_genaug(gen, data, optim_cfg(ref), tmp_path)
    want = run_reference(ref, data)
    assert len(got) == len(want) == T
    for k, (g, r) in enumerate(zip(got, want, strict=True)):
        assert len(g["loss"]) == 1
        close(g["loss"][0], r["loss"], f"step {k} loss")
        for n, rg in r["grads"].items():
            gg = g["grads"][n]
            assert (gg is None) == (rg is None), f"step {k} {n}: gradient {'kept' if rg is None else 'cancelled'}"
            if rg is not None:
                close(gg, rg, f"step {k} grad {n}")
        for n in ref.gen_extra:  # biases a BN / standardisation cancels: no gradient in genaug either
            assert g["grads"][n] is None or g["grads"][n].abs().max() < 1e-10, n
        for e in r["extra"]:
            assert e is None or e.abs().max() < 1e-10
        for n, t in r["state"].items():
            close(g["state"][n], t, f"after step {k}: {n}")


# ------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", ["simclr", "mocov3", "byol", "simsiam", "barlow", "vicreg"])
def test_matches_reference(name: str, tmp_path: Path) -> None:
    """Two-view methods: loss, gradients and state equal the reference step for step."""
    check(name, REFS[name].args, tmp_path, [GLOBAL, GLOBAL])


@pytest.mark.parametrize("queue", [12, 6])
def test_matches_reference_mocov2(queue: int, tmp_path: Path) -> None:
    """MoCo v2 with a queue that wraps within a batch (12) and one smaller than the batch (6: newest keys kept)."""
    check("mocov2", dict(MOCOV2_ARGS, queue_size=queue), tmp_path, [GLOBAL, GLOBAL])


@pytest.mark.parametrize("name", ["dino", "swav"])
def test_matches_reference_multicrop(name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """DINO and SwAV with 2 global + 2 local crops: freezes, queue, center and schedules as the reference."""
    with caplog.at_level(logging.WARNING):
        check(name, REFS[name].args, tmp_path, [GLOBAL, GLOBAL, LOCAL, LOCAL])
    if name == "swav":
        assert "trimmed to 16" in caplog.text


def recipe_args(name: str) -> dict:
    """method_args of a shipped trainer recipe."""
    return yaml.safe_load((ROOT / "trainers" / f"{name}.yaml").read_text())["method_args"]


def test_swav_shipped_batch_and_queue_do_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    """trainers/swav.yaml (batch 4096 > queue 3840) at its queue start: the reference trims the queue to 0 rows."""
    args = recipe_args("swav")
    torch.manual_seed(0)
    method = METHODS["swav"](TinyNet(), 6, **args)
    batch = {"views": [torch.randn(4096, 3, 4, 4) for _ in range(2)]}
    with caplog.at_level(logging.WARNING):
        out = method(batch, Progress(15 * 10, 400 * 10, 10))
    assert torch.isfinite(out["loss"]) and "no queue is used" in caplog.text
    assert method.queue.shape == (2, 3840, 128) and int(method.queue_filled) == 0


def test_swav_state_does_not_depend_on_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue buffer is the global queue: a 2-process state_dict loads in 1 process and back."""
    import genaug.ssl.methods.swav as swav_mod

    one = METHODS["swav"](TinyNet(), 6, **RefSwAV.args)
    monkeypatch.setattr(swav_mod, "world_size", lambda: 2)
    two = METHODS["swav"](TinyNet(), 6, **RefSwAV.args)
    assert {k: v.shape for k, v in one.state_dict().items()} == {k: v.shape for k, v in two.state_dict().items()}
    one.load_state_dict(two.state_dict())
    assert two.queue_rows(16) == 16 and one.queue_rows(8) == 16


def test_mocov3_recipe_builds_the_resnet_heads() -> None:
    """trainers/mocov3.yaml: 2-layer projector ending in BN without affine, predictor without last BN, no biases."""
    args = dict(recipe_args("mocov3"), proj_hidden=10, proj_out=5, pred_hidden=7)
    m = METHODS["mocov3"](TinyNet(), 6, **args)
    linears = [x for x in m.projector if isinstance(x, nn.Linear)]
    assert len(linears) == 2 and isinstance(m.projector[-1], nn.BatchNorm1d) and not m.projector[-1].affine
    assert isinstance(m.predictor[-1], nn.Linear)
    assert all(x.bias is None for x in [*m.projector, *m.predictor] if isinstance(x, nn.Linear))


def test_dino_recipe_weight_decay_schedule() -> None:
    """trainers/dino.yaml's weight decay 0.04 -> 0.4 (cosine) reaches the AdamW groups that decay."""
    optim = yaml.safe_load((ROOT / "trainers" / "dino.yaml").read_text())["optim"]
    method = build("dino", RefDINO.args)
    recipe = TrainRecipe.parse({"method": "dino", "optim": optim, "schedule": {"final_lr_ratio": 0.0}})
    recipe.resolved = {"lr": 1e-3, "bias_lr": None, "total_steps": 10, "warmup_steps": 2}
    make_opt, make_sched = _factories(recipe, method)
    opt = make_opt(TrainModule(method))
    sched = make_sched(opt)
    assert isinstance(opt, torch.optim.AdamW)
    seen = []
    for _ in range(11):
        seen.append(sorted({g["weight_decay"] for g in opt.param_groups}))
        sched.step()
    assert (
        seen[0] == pytest.approx([0.0, 0.04])
        and seen[5] == pytest.approx([0.0, 0.22])
        and seen[10] == pytest.approx([0.0, 0.4])
    )
