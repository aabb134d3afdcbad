"""The probabilistic methods in the trainer's registry: recipes, a few CPU steps in the loop, checkpoint and resume."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from genaug.core.errors import GenaugError
from genaug.core.recipes import load_recipe
from genaug.ssl.methods import Progress, build_method
from genaug.train.loop import LoopConfig, Trainer
from genaug.train.optim import WarmupCosine, build_optimizer, param_groups

PROB = ["barlow-zprob", "barlow-hprob", "vicreg-zprob", "vicreg-hprob", "simvae"]
PUBLISHED_BETA = {"barlow-zprob": 1e-2, "barlow-hprob": 1e-3, "vicreg-zprob": 1e-3, "vicreg-hprob": 1e-4}


def _tiny(name: str) -> dict:
    """The shipped recipe shrunk to a CPU-sized model (the method's own args untouched otherwise)."""
    r = load_recipe("trainers", name)
    r["backbone"] = {"name": "tiny", "width": 4}
    r.setdefault("data", {})["image_size"] = 16
    args = dict(r.get("method_args") or {})
    if name == "simvae":
        args.update(z_dim=6, width=4, hidden=16, image_size=16)
    else:
        args.update(proj_hidden=16, proj_out=8, samples=2)
    r["method_args"] = args
    return r


def _batches(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"views": [torch.rand(6, 3, 16, 16, generator=g) for _ in range(2)]} for _ in range(n)]


def _trainer(method, loader, run_dir, total):
    def opt(module):
        return build_optimizer(param_groups(module.named_parameters(), 1e-3, 0.0, True), {"name": "adamw"})

    cfg = LoopConfig(total_steps=total, steps_per_epoch=total, log_every=1, ckpt_every=0, progress_bar=False,
                     tensorboard=False)  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(method, loader, opt, lambda o: WarmupCosine(o, total, 0), cfg, run_dir)


@pytest.mark.parametrize("name", PROB)
def test_recipe_builds_registered_method_with_published_settings(name):
    r = load_recipe("trainers", name)
    assert "module" not in r and r["method"] == name  # registered under ssl/methods like the nine others
    if name in PUBLISHED_BETA:
        assert r["method_args"]["beta"] == PUBLISHED_BETA[name]
        assert r["method_args"]["samples"] == 12
    m = build_method(_tiny(name))
    assert m.name == name
    x = torch.rand(5, 3, 16, 16)
    m.eval()
    feats, score = m.encode(x), m.uncertainty(x)
    assert feats.shape == (5, m.feat_dim) and score.shape == (5,)
    assert torch.equal(m.encode(x), feats)  # evaluation features are reproducible (H-prob: fixed-seed samples)
    assert (score > 0).all()
    assert m.uncertainty_high_is_in_distribution is (name != "simvae")


@pytest.mark.parametrize("name", PROB)
def test_trains_and_resumes_exactly(name, tmp_path):
    torch.manual_seed(0)
    data = _batches(4, seed=1)
    full = _trainer(build_method(_tiny(name)), data, tmp_path / "full", 4)
    full.fit()
    ref = {k: v.clone() for k, v in full.module.method.state_dict().items()}
    first_loss = None

    torch.manual_seed(0)
    part = _trainer(build_method(_tiny(name)), data, tmp_path / "part", 4)
    part.cfg.total_steps = 2  # stopped halfway through the same 4-step schedule
    first_loss = part.fit()["loss"]
    ckpt = part.save()
    resumed = _trainer(build_method(_tiny(name)), data, tmp_path / "part", 4)
    resumed.resume(ckpt)
    assert resumed.step == 2
    resumed.fit()
    got = resumed.module.method.state_dict()
    assert set(got) == set(ref)
    for k in ref:
        assert torch.allclose(got[k].float(), ref[k].float(), atol=1e-6), k
    before = build_method(_tiny(name)).state_dict()
    moved = [k for k in ref if ref[k].is_floating_point() and not torch.allclose(ref[k], before[k])]
    assert moved and first_loss is not None


def test_methods_reject_bad_settings():
    r = _tiny("barlow-zprob")
    r["method_args"]["samples"] = 0
    with pytest.raises(GenaugError, match="samples"):
        build_method(r)
    r = _tiny("barlow-hprob")
    r["method_args"]["prior"] = "laplace"
    with pytest.raises(GenaugError, match="prior"):
        build_method(r)
    m = build_method(_tiny("simvae"))
    with pytest.raises(GenaugError, match=r"\[0, 1\]"):
        m({"views": [torch.randn(4, 3, 16, 16) * 3, torch.randn(4, 3, 16, 16)]}, Progress(0, 1, 1))


def test_loss_is_ssl_plus_beta_kl_and_features_live_in_the_right_space():
    torch.manual_seed(0)
    batch = _batches(1, seed=3)[0]
    for name, dim in (("barlow-hprob", None), ("vicreg-zprob", "backbone")):
        m = build_method(_tiny(name))
        out = m(batch, Progress(0, 1, 1))
        beta = m.prob_loss.beta
        assert beta == PUBLISHED_BETA[name]
        assert torch.isclose(out["loss"].detach(), out["logs"]["ssl"] + beta * out["logs"]["kl"], rtol=1e-6)
        assert out["logs"]["kl"] > 0
        # H-prob: features are the mean of q(h|x) samples (latent dim); Z-prob: backbone features (16 * 8 wide)
        assert out["features"].shape == (6, m.feat_dim if dim is None else 32)


def test_a_trainer_after_another_precision_in_the_same_process(tmp_path):
    from accelerate import Accelerator

    from genaug.train.loop import fresh_accelerate_state

    fresh_accelerate_state()  # whatever the tests before this one left
    Accelerator(mixed_precision="bf16", cpu=True)  # e.g. an earlier bf16 run in this notebook
    tr = _trainer(build_method(_tiny("barlow-zprob")), _batches(2, seed=0), tmp_path, 2)
    assert tr.acc.mixed_precision == "no"
    assert torch.isfinite(torch.tensor(tr.fit()["loss"]))


def test_every_method_is_registered_under_ssl_methods_with_no_module_line():
    """A fresh process sees all 14 methods after importing the registry only; each class lives in ssl/methods/."""
    code = (
        "import sys; from genaug.ssl.methods import METHODS; "
        "assert 'genaug.ssl.prob_methods' not in sys.modules; "
        "import json; print(json.dumps({n: c.__module__ for n, c in METHODS.items()}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    pairs = json.loads(out)
    assert len(pairs) == 14, pairs
    assert {"barlow-zprob", "barlow-hprob", "vicreg-zprob", "vicreg-hprob", "simvae"} <= set(pairs)
    assert all(m.startswith("genaug.ssl.methods.") for m in pairs.values()), pairs


@pytest.mark.parametrize("name", PROB)
def test_a_run_recipe_written_before_the_move_still_builds(name):
    """Run folders made before the move name `module: genaug.ssl.prob_methods`; they build the same class."""
    r = _tiny(name)
    old = build_method({**r, "module": "genaug.ssl.prob_methods"})
    new = build_method(r)
    assert type(old) is type(new)
    assert list(old.state_dict()) == list(new.state_dict())
