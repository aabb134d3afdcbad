"""The sd-unclip path with tiny random components and a local tokenizer (no download), loaded from --weights."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genaug.generate.base import variant_seed
from genaug.generate.dispatch import generate
from genaug.generate.models.unclip import UnCLIPGenerator
from genaug.generate.recipe import resolve_recipe
from genaug.shards.manifest import read_manifest
from genaug.shards.reader import iter_shard_raw
from genaug.testing.img2img import write_clip_tokenizer as write_tokenizer
from genaug.testing.shards import write_synthetic_split
from genaug.testing.tiny import TINY_DEFAULTS, build_tiny_unclip

TINY = {"dtype": "fp32", "k": 2, "sampling.steps": 2, "sampling.resolution": 32, "output.size": 24}


@pytest.fixture(scope="module")
def unclip_weights(tmp_path_factory) -> Path:
    """A tiny StableUnCLIPImg2ImgPipeline saved with save_pretrained: the layout of the real checkpoint."""
    from transformers import CLIPTokenizer

    root = tmp_path_factory.mktemp("unclip")
    tok = CLIPTokenizer.from_pretrained(str(write_tokenizer(root / "tok")), local_files_only=True)
    assert tok("ab").input_ids == [0, 2, 5, 1]  # the fixture tokenizer really tokenizes
    pipe = build_tiny_unclip(TINY_DEFAULTS, tok)
    pipe.save_pretrained(root / "weights", safe_serialization=True)
    return root / "weights"


def test_unclip_column_from_local_weights(tmp_path, unclip_weights):
    root = tmp_path / "set"
    write_synthetic_split(root, "train", num_shards=2, per_shard=3, size=40, seed=2)
    out = generate(model="sd-unclip", shards=str(root), weights=str(unclip_weights), batch_size=4, overrides=TINY,
                   progress=False)  # fmt: skip
    assert sorted(out["shards"]) == [0, 1] and out["images"] == 12 and out["failures"] == 0
    folder = root / "gen" / "sd-unclip" / "train"
    man = read_manifest(folder)
    sched = man["recipe"]["sampling"]["scheduler"]
    assert sched == {"class": "DDIMScheduler", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}
    for i in range(2):
        src = [s["__key__"] for s in iter_shard_raw(root / "train" / f"{i:06d}.tar")]
        got = list(iter_shard_raw(folder / f"{i:06d}.tar"))
        assert [s["__key__"] for s in got] == src
        for s in got:
            assert json.loads(s["json"])["seeds"] == [variant_seed(0, s["__key__"], k) for k in range(2)]
            assert Image.open(io.BytesIO(s["gen_1.jpg"])).size == (24, 24)


def test_unclip_batched_rows_equal_the_plain_pipeline_call(unclip_weights):
    """genaug's embeddings-once batched call vs the paper code's way: one pipe(image) call per variant."""
    recipe = resolve_recipe("sd-unclip", overrides=TINY)
    gen = UnCLIPGenerator(recipe, device="cpu", weights=str(unclip_weights))
    assert type(gen.pipe.scheduler).__name__ == "DDIMScheduler" and gen.pipe.scheduler.config.rescale_betas_zero_snr
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(2)]
    seeds = [[variant_seed(0, f"k{i}", k) for k in range(2)] for i in range(2)]
    batched = gen.generate(images, ["k0", "k1"], seeds)  # runtime.batch_size 16: all 4 rows in one call
    for i, image in enumerate(images):
        for k in range(2):
            ref = gen.pipe(image, num_inference_steps=2, guidance_scale=10.0, noise_level=0, height=32, width=32,
                           generator=torch.Generator().manual_seed(seeds[i][k])).images[0]  # fmt: skip
            diff = np.abs(np.asarray(ref, np.int16) - np.asarray(batched[i][k].image, np.int16))
            assert diff.max() <= 2, diff.max()
    a, b = (np.asarray(batched[0][k].image, np.int16) for k in range(2))
    assert np.abs(a - b).mean() > 1  # the seeds matter
