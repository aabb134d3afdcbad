"""Every generator in fp32, bf16 and fp16 on CPU: tiny sd-variation, tiny sd-unclip and a random IC-GAN.

Tolerance against the same generator in fp32 (same seeds, uint8 output images): mean |diff| <= 3 levels, max 48;
sd-unclip in bf16 mean <= 6 (its noise-augmented image embedding and 2-step DDIM amplify bf16's 8-bit mantissa).
Measured: tiny sd-variation bf16 mean 0.5 / max 2, fp16 mean 0.05 / max 1; tiny sd-unclip bf16 mean 3.7 / max 31.
A dtype mismatch anywhere (a layer left in fp32 fed a bf16 tensor, or the reverse) raises inside the
generator: a test failure.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genaug.core.recipes import apply_overrides, load_recipe
from genaug.generate.base import generator_class
from genaug.generate.models.icgan.generator import ICGAN
from genaug.generate.models.icgan.model import ICGANConfig
from genaug.testing.icgan import write_random_checkpoint

DTYPES = ("fp32", "bf16", "fp16")
MEAN_TOL, MAX_TOL = 3.0, 48


def _images() -> list[Image.Image]:
    return [Image.fromarray(np.random.default_rng(s).integers(0, 256, (40, 48, 3), dtype=np.uint8)) for s in range(2)]


def _run(recipe: dict, weights: str | None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers warns that fp16 pipelines are meant for accelerators
        gen = generator_class(recipe["generator"])(recipe, "cpu", weights)
        out = gen.generate(_images(), ["a", "b"], [[11, 12], [13, 14]])
    return np.stack([np.asarray(v.image).astype(np.int32) for vs in out for v in vs])


def _check(outs: dict[str, np.ndarray], bf16_mean: float = MEAN_TOL) -> None:
    for dt in ("bf16", "fp16"):
        d = np.abs(outs[dt] - outs["fp32"])
        assert outs[dt].shape == outs["fp32"].shape
        tol = bf16_mean if dt == "bf16" else MEAN_TOL
        assert d.mean() <= tol and d.max() <= MAX_TOL, (dt, float(d.mean()), int(d.max()))


@pytest.fixture(scope="module")
def unclip_weights(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_unclip import write_tokenizer
    from transformers import CLIPTokenizer

    from genaug.testing.tiny import TINY_DEFAULTS, build_tiny_unclip

    root = tmp_path_factory.mktemp("unclip_prec")
    tok = CLIPTokenizer.from_pretrained(str(write_tokenizer(root / "tok")), local_files_only=True)
    build_tiny_unclip(TINY_DEFAULTS, tok).save_pretrained(root / "weights", safe_serialization=True)
    return root / "weights"


@pytest.fixture(scope="module")
def icgan_weights(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("icgan_prec")
    cfg = ICGANConfig.from_dict({**load_recipe("pipelines", "icgan-64")["model"], "G_ch": 4})
    write_random_checkpoint(root, cfg, "icgan_biggan_imagenet_res64", seed=0, feature_width=8, best_fids=(20.0, 10.0))
    return root


def test_tiny_sd_variation_in_every_dtype():
    outs = {dt: _run(apply_overrides(load_recipe("pipelines", "tiny"), {"dtype": dt}), None) for dt in DTYPES}
    _check(outs)


def test_tiny_sd_unclip_in_every_dtype(unclip_weights):
    tiny = {"k": 2, "sampling.steps": 2, "sampling.resolution": 32, "output.size": 24}
    outs = {
        dt: _run(apply_overrides(load_recipe("pipelines", "sd-unclip"), {**tiny, "dtype": dt}), str(unclip_weights))
        for dt in DTYPES
    }
    _check(outs, bf16_mean=6.0)


def test_icgan_in_every_dtype(icgan_weights):
    tiny = {"model.G_ch": 4, "features.width_per_group": 8, "runtime.batch_size": 4, "k": 2}
    outs = {}
    for dt in DTYPES:
        recipe = apply_overrides(load_recipe("pipelines", "icgan-64"), {**tiny, "dtype": dt})
        gen = ICGAN(recipe, "cpu", str(icgan_weights))
        assert next(gen.G.parameters()).dtype == {"fp32": torch.float32, "bf16": torch.bfloat16,
                                                  "fp16": torch.float16}[dt]  # fmt: skip
        outs[dt] = _run(recipe, str(icgan_weights))
    _check(outs)


@pytest.fixture(scope="module")
def img2img_weights(tmp_path_factory) -> dict[str, Path]:
    from genaug.testing.img2img import save_tiny_ddpm, save_tiny_sd_img2img

    root = tmp_path_factory.mktemp("img2img_prec")
    return {"img2img-sd": save_tiny_sd_img2img(root / "sd"), "img2img-ddpm": save_tiny_ddpm(root / "ddpm")}


@pytest.mark.parametrize("model", ["img2img-sd", "img2img-ddpm"])
def test_img2img_in_every_dtype(model, img2img_weights):
    small = {"k": 2, "sampling.steps": 4, "output.size": 32}
    if model == "img2img-sd":
        small.update({"sampling.resolution": 32, "sampling.guidance": 3.0})
    outs = {
        dt: _run(apply_overrides(load_recipe("pipelines", model), {**small, "dtype": dt}), str(img2img_weights[model]))
        for dt in DTYPES
    }
    _check(outs)
