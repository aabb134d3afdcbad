"""The online probe sees the representation that is evaluated: backbone features of the first view.

Mutations tried by hand, each caught here: BYOL handing the probe the second view's features (h2), Barlow Twins
handing it the projector output (z1); H-prob handing it the sample mean instead of the mean of q(h|x) (found
this way, and fixed)."""

from __future__ import annotations

import pytest
import torch

from genaug.core.recipes import apply_overrides, available, load_recipe
from genaug.ssl.methods import build_method
from genaug.ssl.methods.base import Progress
from genaug.testing.runs import tiny_overrides
from genaug.train.recipe import validate_train_recipe


def tiny_method(name: str):
    """The shipped recipe of `name` with a tiny backbone and heads, built as the trainer builds it."""
    over = {**tiny_overrides(name), "backbone.name": "tiny", "views.size": 16, "data.image_size": 16}
    recipe = validate_train_recipe(apply_overrides(load_recipe("trainers", name), over))
    return build_method(recipe), recipe


@pytest.mark.parametrize("name", available("trainers"))
def test_probe_features_are_first_view_backbone_features(name):
    torch.manual_seed(0)
    method, recipe = tiny_method(name)
    method.train()
    from genaug.data.transforms import parse_views

    views_recipe = parse_views(recipe["views"])
    views = [torch.rand(6, 3, v.size, v.size) for v in views_recipe.views]
    if name == "simvae":
        views = [v.clamp(0, 1) for v in views]
    out = method(
        {"views": views, "label": torch.zeros(6, dtype=torch.long)},
        Progress(step=0, total_steps=10, steps_per_epoch=5),
    )
    feats = out["features"]
    assert feats.shape[0] == 6 and not feats.requires_grad
    with torch.no_grad():
        method.eval()
        dim = method.encode(views[0]).shape[1]
        method.train()
        if name == "simvae":
            return  # its features are the posterior mean of view 0: encode's dimension is the check
        bb = method.backbone
        alone = bb(views[0])
        joint = bb(torch.cat(views[: views_recipe.n_global]))[:6]
        if hasattr(method, "h_head"):  # H-prob: the representation is the mean of q(h|x)
            alone = method.h_head(alone)[0]
    assert feats.shape[1] == dim
    assert torch.allclose(feats, alone, atol=1e-5) or torch.allclose(feats, joint, atol=1e-5)
