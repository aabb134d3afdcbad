"""Every method trains on CPU with a tiny backbone (its loss decreases on a fixed batch); registry, heads, optim."""

from __future__ import annotations

import math

import pytest
import torch

from genaug.core.errors import GenaugError
from genaug.ssl.ema import momentum_schedule
from genaug.ssl.lars import LARS
from genaug.ssl.methods import METHODS, Progress, SSLMethod, build_method, ema_update, get_method, register_method
from genaug.train.optim import WarmupCosine, cosine_factor, param_groups, scaled_lr

SMALL = {
    "simclr": dict(proj_hidden=32, proj_out=16, temperature=0.2),
    "mocov2": dict(proj_hidden=32, proj_out=16, queue_size=64, momentum=0.9),
    "mocov3": dict(proj_hidden=32, proj_out=16, pred_hidden=32, temperature=0.2),
    "byol": dict(proj_hidden=32, proj_out=16, pred_hidden=32, momentum=0.9),
    "simsiam": dict(proj_hidden=32, proj_out=16, pred_hidden=8),
    "barlow": dict(proj_hidden=32, proj_out=32),
    "vicreg": dict(proj_hidden=32, proj_out=32),
    "dino": dict(out_dim=64, head_hidden=32, bottleneck=16, freeze_last_layer_epochs=0, momentum=0.9),
    "swav": dict(proj_hidden=32, proj_out=16, n_prototypes=8, queue_length=0, freeze_prototypes_steps=0),
}
CORE = ("simclr", "mocov2", "mocov3", "byol", "simsiam", "barlow", "vicreg", "dino", "swav")


def tiny(name: str, **extra) -> SSLMethod:
    torch.manual_seed(0)
    recipe = {
        "method": name,
        "backbone": {"name": "tiny", "width": 4},
        "data": {"image_size": 16},
        "method_args": {**SMALL[name], **extra},
    }
    return build_method(recipe)


def fixed_batch(n_views: int = 2, b: int = 16) -> dict:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(b, 3, 16, 16, generator=g)
    views = [base + 0.1 * torch.randn(b, 3, 16, 16, generator=g) for _ in range(n_views)]
    return {"views": views, "label": torch.arange(b) % 3}


def test_all_nine_methods_are_registered():
    assert set(CORE) <= set(METHODS)


@pytest.mark.parametrize("name", CORE)
def test_method_loss_decreases_on_a_fixed_batch(name):
    method = tiny(name)
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
    batch = fixed_batch(4 if name in ("dino", "swav") else 2)
    total, losses = 25, []
    # on a fixed batch MoCo v2's queue would fill with copies of its own positives: keep the initial negatives
    queue0 = method.queue.clone() if name == "mocov2" else None
    for step in range(total):
        prog = Progress(step, total, 5)
        if queue0 is not None:
            method.queue.copy_(queue0)
        out = method(batch, prog)
        opt.zero_grad()
        out["loss"].backward()
        method.on_before_optimizer_step(prog)
        opt.step()
        method.on_after_step(prog)
        losses.append(out["loss"].item())
        assert out["features"].shape == (16, method.feat_dim) and not out["features"].requires_grad
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < losses[0], losses


def test_momentum_teacher_queue_and_center_are_state():
    assert "backbone_k.features.0.weight" in tiny("mocov2").state_dict()
    assert {"queue", "queue_ptr"} <= set(tiny("mocov2").state_dict())
    assert "center" in tiny("dino").state_dict()
    assert "queue" in tiny("swav", queue_length=32).state_dict()
    teacher_params = [p for n, p in tiny("byol").named_parameters() if n.startswith("backbone_t.")]
    assert teacher_params and not any(p.requires_grad for p in teacher_params)


def test_swav_queue_fills_and_is_used():
    method = tiny("swav", queue_length=32, queue_start_epoch=0)
    batch = fixed_batch(2)
    for step in range(3):
        method(batch, Progress(step, 10, 5))
    assert int(method.queue_filled) == 48 and method.queue.abs().sum() > 0


def test_ema_update_hand_value():
    s, t = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    s.weight.data.fill_(1.0)
    t.weight.data.fill_(3.0)
    ema_update(s, t, 0.75)
    assert t.weight.item() == pytest.approx(0.75 * 3 + 0.25 * 1)


def test_registry_unknown_method_and_plugin_registration():
    with pytest.raises(GenaugError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(GenaugError, match="cannot be imported"):
        get_method("x", module="genaug.no_such_module")

    @register_method("unit-test-method")
    class Dummy(SSLMethod):
        def training_step(self, batch, progress):
            h = self.backbone(batch["views"][0])
            return {"loss": h.pow(2).mean(), "logs": {}, "features": h.detach()}

    m = build_method(
        {"method": "unit-test-method", "backbone": {"name": "tiny", "width": 4}, "data": {"image_size": 16}}
    )
    assert isinstance(m, Dummy) and m(fixed_batch(), Progress(0, 1, 1))["loss"].ndim == 0
    METHODS.pop("unit-test-method")
    with pytest.raises(GenaugError, match="needs at least 2 views"):
        tiny("simclr")({"views": [torch.zeros(2, 3, 16, 16)]}, Progress(0, 1, 1))


def test_lars_hand_value_and_exclusion():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # |w| = 5
    w.grad = torch.tensor([0.0, 1.0])
    LARS([{"params": [w], "weight_decay": 0.0, "lars_exclude": False}], lr=1.0, momentum=0.9, eta=0.1).step()
    # trust ratio eta * |w| / |g| = 0.1 * 5 / 1 = 0.5 -> update 0.5 * g
    assert w.tolist() == pytest.approx([3.0, 3.5])
    b = torch.nn.Parameter(torch.tensor([1.0]))
    b.grad = torch.tensor([2.0])
    LARS([{"params": [b], "weight_decay": 0.1, "lars_exclude": True}], lr=0.5).step()
    assert b.item() == pytest.approx(0.0)  # plain SGD, no decay, no adaptation


def test_param_groups_exclude_bias_and_norm_and_fix_predictor_lr():
    m = tiny("simsiam")
    groups = param_groups(m.named_parameters(), 0.1, 1e-4, True, None, m.fixed_lr_prefixes)
    by = {(g["lars_exclude"], g["fixed_lr"]): g for g in groups}
    assert by[(True, False)]["weight_decay"] == 0.0 and by[(False, False)]["weight_decay"] == 1e-4
    assert (False, True) in by  # predictor weights: fixed lr
    sched = WarmupCosine(torch.optim.SGD(groups, lr=0.1), total_steps=10, warmup_steps=2)
    for _ in range(5):
        sched.step()
    lrs = {(g["lars_exclude"], g["fixed_lr"]): g["lr"] for g in sched.optimizer.param_groups}
    assert lrs[(False, True)] == 0.1 and lrs[(False, False)] == pytest.approx(0.1 * cosine_factor(5, 10, 2))


def test_schedules_hand_values():
    assert cosine_factor(0, 100, 10) == pytest.approx(0.1)
    assert cosine_factor(9, 100, 10) == pytest.approx(1.0)
    assert cosine_factor(55, 100, 10) == pytest.approx(0.5)
    assert cosine_factor(100, 100, 10) == pytest.approx(0.0)
    assert momentum_schedule(0, 100, 0.996) == pytest.approx(0.996)
    assert momentum_schedule(50, 100, 0.996) == pytest.approx(0.998)
    assert momentum_schedule(100, 100, 0.996) == pytest.approx(1.0)
    assert scaled_lr(0.2, 4096) == pytest.approx(3.2) and scaled_lr(0.1, 1024, "sqrt") == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("name", "dim"), [("resnet18", 512), ("resnet18-half", 256), ("resnet50", 2048), ("vit_s", 384)]
)
def test_backbones_build_with_small_image_stems(name, dim):
    from genaug.ssl.backbones import build_backbone

    net, d = build_backbone(name, image_size=32)
    assert d == dim and net(torch.randn(2, 3, 32, 32)).shape == (2, dim)
    if name.startswith("resnet"):
        assert net.conv1.kernel_size == (3, 3) and isinstance(net.maxpool, torch.nn.Identity)  # CIFAR stem
    with pytest.raises(GenaugError, match="unknown backbone"):
        build_backbone("alexnet")


def test_adamw_takes_the_recipe_betas_and_eps():
    from genaug.train.optim import build_optimizer

    opt = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-3}],
                          {"name": "adamw", "eps": 1e-4, "betas": [0.5, 0.9]})  # fmt: skip
    assert opt.defaults["eps"] == 1e-4 and opt.defaults["betas"] == (0.5, 0.9)


def test_dino_clips_each_parameter_like_its_reference():
    """DINO's clip_gradients scales each parameter's gradient to norm <= clip on its own (not the global norm)."""
    from genaug.ssl.methods import get_method
    from genaug.train.loop import clip_each_parameter_

    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    a.grad, b.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.3, 0.4])  # norms 5 and 0.5
    clip_each_parameter_([a, b], 1.0)
    assert torch.allclose(a.grad, torch.tensor([0.6, 0.8, 0.0]), atol=1e-6)  # scaled to norm 1
    assert torch.equal(b.grad, torch.tensor([0.3, 0.4]))  # under the bound: untouched
    assert get_method("dino").clip_per_parameter and not get_method("byol").clip_per_parameter
