"""A training step of every method under bf16 autocast, with channels_last, and with torch.compile, on CPU.

Tolerances against the same step in fp32 (same weights, same batch): loss within 5% relative (+0.05 absolute);
channels_last within 1e-4 relative. A dtype mismatch anywhere raises inside the step (a test failure); the loss is
float32 and finite and every gradient has its parameter's dtype. One compile test runs in CI (SimCLR, tiny
backbone); the compile test of every method is marked slow.
"""

from __future__ import annotations

import copy

import pytest
import torch

from genaug.core.recipes import available, load_recipe
from genaug.data.transforms import parse_views
from genaug.ssl.methods import Progress, build_method
from genaug.testing.runs import tiny_overrides
from genaug.train.recipe import validate_train_recipe

SHIPPED = available("trainers")  # every shipped method: the nine core ones, Z-/H-prob and SimVAE
# Barlow Twins' loss came back in bf16 under autocast (its cross-correlation summed in bf16: 57344 instead of ~57000
# in fp32); found by this test and fixed in genaug.ssl.losses (the cross-correlation is computed in float32).
KNOWN_BF16: set[str] = set()


def _method_and_batch(name: str):
    over = {**tiny_overrides(name), "backbone.name": "tiny", "backbone.width": 4, "views.size": 16}
    raw = load_recipe("trainers", name, over)
    raw.setdefault("views", {})
    if (raw["views"].get("local") or {}).get("n", 0) or parse_views(raw["views"]).n_views > 2:
        raw["views"]["local"] = {**(raw["views"].get("local") or {}), "size": 8}
    raw["run"] = {"shards": "x"}
    recipe = validate_train_recipe(raw)
    recipe["data"]["image_size"] = 16
    views = parse_views(recipe["views"])
    torch.manual_seed(0)
    method = build_method(recipe)
    g = torch.Generator().manual_seed(1)
    batch = {  # SimVAE trains on [0, 1] pixels (its recipe's mean 0 / std 1 views): rand is that
        "views": [torch.rand(8, 3, v.size, v.size, generator=g) for v in views.views],
        "label": torch.arange(8) % 3,
    }
    return method, batch


def _step(method, batch, bf16: bool = False, channels_last: bool = False):
    method = copy.deepcopy(method).train()
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
        batch = {**batch, "views": [v.contiguous(memory_format=torch.channels_last) for v in batch["views"]]}
    torch.manual_seed(2)  # the probabilistic methods and SimVAE draw noise: the same draws in every variant
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = method(batch, Progress(0, 10, 5))
    loss = out["loss"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss), (loss.dtype, loss)
    loss.backward()
    for n, p in method.named_parameters():
        if p.grad is not None:
            assert p.grad.dtype == p.dtype, n
            assert torch.isfinite(p.grad).all(), n
    return float(loss.detach())


@pytest.mark.parametrize(
    "name",
    [pytest.param(m, marks=pytest.mark.xfail(strict=True, reason="loss in bf16")) if m in KNOWN_BF16 else m
     for m in SHIPPED],
)  # fmt: skip
def test_bf16_autocast_and_channels_last_step_close_to_fp32(name):
    method, batch = _method_and_batch(name)
    ref = _step(method, batch)
    bf = _step(method, batch, bf16=True)
    assert abs(bf - ref) <= 0.05 * abs(ref) + 0.05, (ref, bf)
    cl = _step(method, batch, channels_last=True)
    assert abs(cl - ref) <= 1e-4 * abs(ref) + 1e-4, (ref, cl)
    both = _step(method, batch, bf16=True, channels_last=True)
    assert abs(both - ref) <= 0.05 * abs(ref) + 0.05, (ref, both)


def _compiled_matches(name: str) -> None:
    method, batch = _method_and_batch(name)
    ref = _step(method, batch)
    comp = copy.deepcopy(method)
    comp.backbone.compile()
    got = _step(comp, batch)
    assert abs(got - ref) <= 1e-3 * abs(ref) + 1e-3, (ref, got)


def test_compiled_backbone_step_matches_eager():
    _compiled_matches("simclr")


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_compiled_backbone_step_matches_eager_every_method(name):
    _compiled_matches(name)
