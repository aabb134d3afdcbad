"""Random-weight img2img models in the real diffusers folder layouts, for tests and smoke runs.

- a tiny StableDiffusionImg2ImgPipeline (UNet, VAE, CLIP text encoder, a byte-level BPE tokenizer over a-z) saved with
  save_pretrained: the layout of an SD 1.5 checkpoint;
- a tiny DDPMPipeline (UNet2DModel + DDPMScheduler) saved the same way: the layout `genaug fit-generator` writes.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from genaug.testing.tiny import TINY_DEFAULTS, _components


def write_clip_tokenizer(folder: Path) -> Path:
    """A byte-level BPE CLIP tokenizer over a-z (vocab.json, merges.txt, tokenizer_config.json)."""
    folder.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + "!":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16}))
    return folder


def save_tiny_sd_img2img(folder: Path, seed: int = 0) -> Path:
    """save_pretrained of a StableDiffusionImg2ImgPipeline with tiny random components into `folder`."""
    from diffusers import PNDMScheduler, StableDiffusionImg2ImgPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    tok = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(folder.parent / f"{folder.name}-tok")),
                                        local_files_only=True)  # fmt: skip
    spec = {**TINY_DEFAULTS, "seed": seed}
    parts = _components(spec)
    parts.pop("image_encoder")
    parts["scheduler"] = PNDMScheduler(skip_prk_steps=True, steps_offset=1)  # SD 1.5's shipped scheduler config
    d = int(spec["embed_dim"])
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=d, intermediate_size=2 * d, num_attention_heads=4, num_hidden_layers=int(spec["clip_layers"]),
            vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id, max_position_embeddings=tok.model_max_length,
        )
    ).eval()  # fmt: skip
    pipe = StableDiffusionImg2ImgPipeline(
        **parts, text_encoder=text_encoder, tokenizer=tok, safety_checker=None, requires_safety_checker=False
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_ddpm(folder: Path, seed: int = 0, size: int = 8, widths: tuple[int, ...] = (8, 16)) -> Path:
    """save_pretrained of a DDPMPipeline (random UNet2DModel of fit-generator's shape + DDPMScheduler)."""
    from genaug.fit.run import build_scheduler, build_unet, fit_config, save_model_folder

    cfg = fit_config(size=size, widths=list(widths))
    torch.manual_seed(seed)
    return save_model_folder(build_unet(cfg).eval(), build_scheduler(cfg), Path(folder))
