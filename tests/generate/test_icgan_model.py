"""IC-GAN generator: official state-dict layout, spectral norm numbers, and a plain reference forward pass."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genaug.core.recipes import load_recipe
from genaug.generate.models.icgan.model import ICGANConfig, ICGANGenerator
from genaug.testing.icgan import randomize_

# Written from facebookresearch/ic_gan config_files/ImageNet/IC-GAN/*.json (resolution, G_ch, G_attn, shared_dim,
# shared_dim_feat, hier) and utils.py parser defaults (dim_z 120, num_G_SVs 1); n_classes = 1000 (trainer.py).
OFFICIAL = {
    "icgan-64": {"res": 64, "ch": 64, "attn": 32},
    "icgan-128": {"res": 128, "ch": 96, "attn": 64},
    "icgan": {"res": 256, "ch": 96, "attn": 64},
    "icgan-256-half": {"res": 256, "ch": 64, "attn": 64},
}
# BigGAN.py G_arch: channel multipliers (in, out) per block; block b outputs resolution 8 * 2**b
G_ARCH = {
    64: ([16, 16, 8, 4], [16, 8, 4, 2]),
    128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1]),
    256: ([16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1]),
}


def expected_shapes(res: int, ch: int, attn: int, dim_z: int = 120) -> dict[str, tuple[int, ...]]:
    """The official Generator's state dict (G_shared, G_shared_feat, hier, instance_cond only), by hand."""
    ins, outs = ([m * ch for m in mults] for mults in G_ARCH[res])
    chunk = dim_z // (len(ins) + 1)
    cond = chunk + 512  # BN input: z chunk + shared_dim_feat (no class embedding: class_cond false)
    sd: dict[str, tuple[int, ...]] = {}

    def sn(prefix: str, w: tuple[int, ...], bias: bool = True) -> None:
        sd[f"{prefix}.weight"] = w
        if bias:
            sd[f"{prefix}.bias"] = (w[0],)
        sd[f"{prefix}.u0"] = (1, w[0])
        sd[f"{prefix}.sv0"] = (1,)

    sd["shared.weight"] = (1000, 128)
    sn("shared_feat", (512, 2048))
    sn("linear", (ins[0] * 16, chunk))
    for b, (cin, cout) in enumerate(zip(ins, outs, strict=True)):
        p = f"blocks.{b}.0"
        sn(f"{p}.conv1", (cout, cin, 3, 3))
        sn(f"{p}.conv2", (cout, cout, 3, 3))
        sn(f"{p}.conv_sc", (cout, cin, 1, 1))
        for bn, c in (("bn1", cin), ("bn2", cout)):
            sn(f"{p}.{bn}.gain", (c, cond), bias=False)
            sn(f"{p}.{bn}.bias", (c, cond), bias=False)
            sd[f"{p}.{bn}.stored_mean"] = (c,)
            sd[f"{p}.{bn}.stored_var"] = (c,)
        if 8 * 2**b == attn:
            a = f"blocks.{b}.1"
            sd[f"{a}.gamma"] = ()
            for name, o, i in (
                ("theta", cout // 8, cout),
                ("phi", cout // 8, cout),
                ("g", cout // 2, cout),
                ("o", cout, cout // 2),
            ):
                sn(f"{a}.{name}", (o, i, 1, 1), bias=False)
    sd["output_layer.0.stored_mean"] = (outs[-1],)
    sd["output_layer.0.stored_var"] = (outs[-1],)
    sd["output_layer.0.gain"] = (outs[-1],)
    sd["output_layer.0.bias"] = (outs[-1],)
    sn("output_layer.2", (3, outs[-1], 3, 3))
    return sd


def recipe_config(name: str, **overrides: object) -> ICGANConfig:
    return ICGANConfig.from_dict({**load_recipe("pipelines", name)["model"], **overrides})


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_full_size_state_dict_matches_official_layout(name: str) -> None:
    o = OFFICIAL[name]
    with torch.device("meta"):  # full width, no memory
        gen = ICGANGenerator(recipe_config(name))
    got = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    assert got == expected_shapes(o["res"], o["ch"], o["attn"])


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_reduced_width_random_weights_layout(name: str) -> None:
    o = OFFICIAL[name]
    gen = ICGANGenerator(recipe_config(name, G_ch=8))
    got = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    assert got == expected_shapes(o["res"], 8, o["attn"])


def test_z_split_facts() -> None:
    assert (recipe_config("icgan-64").z_chunk, recipe_config("icgan-64").z_dim_used) == (24, 120)
    assert (recipe_config("icgan-128").z_chunk, recipe_config("icgan-128").z_dim_used) == (20, 120)
    assert (recipe_config("icgan").z_chunk, recipe_config("icgan").z_dim_used) == (17, 119)


def test_spectral_norm_hand_computed() -> None:
    """W = [[0, 2], [1, 0]], u0 = [0.6, 0.8]: v = uW/|uW| = [.8, 1.2]/sqrt(2.08), sigma = |W v| = sqrt(6.4/2.08)."""
    from genaug.generate.models.icgan.layers import SNLinear

    lin = SNLinear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 2.0], [1.0, 0.0]]))
        lin.u0.copy_(torch.tensor([[0.6, 0.8]]))
    sigma = math.sqrt(6.4 / 2.08)
    out = lin(torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(out, torch.tensor([[2.0, 1.0]]) / sigma, atol=1e-6)
    lin.freeze()
    assert torch.allclose(lin(torch.tensor([[1.0, 1.0]])), out)


def test_spectral_norm_converged_u_gives_matrix_2_norm() -> None:
    from genaug.generate.models.icgan.layers import SNConv2d

    conv = SNConv2d(5, 7)
    w = conv.weight.detach().reshape(7, -1)
    u_top = torch.linalg.svd(w).U[:, 0]
    with torch.no_grad():
        conv.u0.copy_(u_top[None])
    eff = conv.effective_weight().reshape(7, -1)
    assert torch.linalg.matrix_norm(eff, ord=2).item() == pytest.approx(1.0, abs=1e-5)


# ---- plain reference forward pass, written from the official BigGAN.py / layers.py semantics (eval mode) ----


def _sn_weight(sd: dict, p: str, eps: float = 1e-6) -> torch.Tensor:
    w = sd[f"{p}.weight"]
    wm = w.view(w.shape[0], -1)
    v = sd[f"{p}.u0"] @ wm
    v = v / max(v.norm().item(), eps)
    u = v @ wm.t()
    u = u / max(u.norm().item(), eps)
    sv = (v @ wm.t() @ u.t()).squeeze()
    return w / sv


def _ccbn(sd: dict, p: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mean, var = sd[f"{p}.stored_mean"], sd[f"{p}.stored_var"]
    xn = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-5)
    gain = 1 + y @ _sn_weight(sd, f"{p}.gain").t()
    bias = y @ _sn_weight(sd, f"{p}.bias").t()
    return xn * gain[:, :, None, None] + bias[:, :, None, None]


def _conv(sd: dict, p: str, x: torch.Tensor, pad: int, bias: bool = True) -> torch.Tensor:
    return F.conv2d(x, _sn_weight(sd, p), sd[f"{p}.bias"] if bias else None, padding=pad)


def _up(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def _attention(sd: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    theta = _conv(sd, f"{p}.theta", x, 0, bias=False).reshape(b, c // 8, h * w)
    phi = F.max_pool2d(_conv(sd, f"{p}.phi", x, 0, bias=False), 2).reshape(b, c // 8, -1)
    g = F.max_pool2d(_conv(sd, f"{p}.g", x, 0, bias=False), 2).reshape(b, c // 2, -1)
    beta = torch.softmax(torch.einsum("bci,bcj->bij", theta, phi), dim=-1)
    o = torch.einsum("bcj,bij->bci", g, beta).reshape(b, c // 2, h, w)
    return sd[f"{p}.gamma"] * _conv(sd, f"{p}.o", o, 0, bias=False) + x


def reference_forward(sd: dict, z: torch.Tensor, feats: torch.Tensor, n_blocks: int, chunk: int, attn_block: int):
    y = feats @ _sn_weight(sd, "shared_feat").t() + sd["shared_feat.bias"]
    zs = [z[:, i * chunk : (i + 1) * chunk] for i in range(n_blocks + 1)]
    h = zs[0] @ _sn_weight(sd, "linear").t() + sd["linear.bias"]
    h = h.view(z.shape[0], -1, 4, 4)
    for b in range(n_blocks):
        cond = torch.cat([y, zs[b + 1]], dim=1)
        p = f"blocks.{b}.0"
        r = F.relu(_ccbn(sd, f"{p}.bn1", h, cond))
        r = _conv(sd, f"{p}.conv1", _up(r), 1)
        r = _conv(sd, f"{p}.conv2", F.relu(_ccbn(sd, f"{p}.bn2", r, cond)), 1)
        h = r + _conv(sd, f"{p}.conv_sc", _up(h), 0)
        if b == attn_block:
            h = _attention(sd, f"blocks.{b}.1", h)
    mean, var = sd["output_layer.0.stored_mean"], sd["output_layer.0.stored_var"]
    h = (h - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-5)
    h = F.relu(h * sd["output_layer.0.gain"][None, :, None, None] + sd["output_layer.0.bias"][None, :, None, None])
    return torch.tanh(_conv(sd, "output_layer.2", h, 1))


@pytest.mark.parametrize("freeze", [False, True])
def test_forward_equals_plain_reference(freeze: bool) -> None:
    cfg = recipe_config("icgan-64", G_ch=4)
    gen = randomize_(ICGANGenerator(cfg), seed=3)
    sd = {k: v.clone() for k, v in gen.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 120, generator=g)
    feats = F.normalize(torch.randn(3, 2048, generator=g), dim=1)
    if freeze:
        gen.freeze()
    with torch.no_grad():
        out = gen(z, feats)
        ref = reference_forward(sd, z, feats, n_blocks=4, chunk=24, attn_block=2)
    assert out.shape == (3, 3, 64, 64)
    assert out.abs().max() <= 1
    assert ref.std() > 0.05  # not saturated / not constant
    assert torch.allclose(out, ref, atol=2e-5), (out - ref).abs().max()
    # the attention block matters: zeroing its gain changes the output
    sd["blocks.2.1.gamma"] = torch.tensor(0.0)
    assert not torch.allclose(reference_forward(sd, z, feats, 4, 24, 2), ref, atol=1e-3)


def test_class_embedding_is_unused_and_z_tail_ignored() -> None:
    cfg = recipe_config("icgan-64", G_ch=2)
    gen = randomize_(ICGANGenerator(cfg), seed=1)
    z = torch.randn(2, 128)  # the colab passes 128-d noise; the official split ignores what is past dim_z
    feats = F.normalize(torch.randn(2, 2048), dim=1)
    with torch.no_grad():
        a = gen(z, feats)
        gen.shared.weight.add_(1.0)
        z2 = z.clone()
        z2[:, 120:] = 5.0
        b = gen(z2, feats)
    assert torch.equal(a, b)
    with torch.no_grad():  # the instance feature does condition the output
        c = gen(z, F.normalize(torch.randn(2, 2048), dim=1))
    assert (c - a).abs().mean() > 1e-3
