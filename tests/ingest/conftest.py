"""Fixtures: a source tree with every kind of bad and tricky input."""

import io
from pathlib import Path

import numpy as np
import pytest
from ingest_helpers import png_with_size, rgb
from PIL import Image


@pytest.fixture
def tricky_tree(tmp_path) -> Path:
    """An ImageNet-style tree: good files, tricky-but-valid files, and bad files (name says which)."""
    root = tmp_path / "src"
    good, bad = root / "a_good", root / "b_bad"
    good.mkdir(parents=True)
    bad.mkdir()
    rgb(seed=1).save(good / "01_rgb.jpg", quality=90)
    Image.fromarray(np.full((30, 40, 4), [10, 200, 30, 255], np.uint8), "RGBA").convert("CMYK").save(
        good / "02_cmyk.jpg"
    )
    Image.fromarray(np.full((20, 20), 32896, np.uint16)).save(good / "03_gray16.png")  # 32896 / 257 = 128
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    pal.info["transparency"] = 0
    pal.save(good / "04_palette_transparent.png", transparency=0)
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[:10, :, 3] = 255  # top half opaque green, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(good / "05_alpha.png")
    rgb(seed=2).save(good / "06_webp.webp")
    Image.fromarray(np.zeros((20, 30), bool)).save(good / "07_bilevel.png")
    (bad / "01_empty.jpg").write_bytes(b"")
    full = io.BytesIO()
    rgb(200, 200, seed=3).save(full, format="JPEG", quality=95)
    (bad / "02_truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (bad / "03_text.jpg").write_text("this is not an image\n")
    Image.new("RGB", (1, 1)).save(bad / "04_one_pixel.png")
    (bad / "05_bomb.png").write_bytes(png_with_size(40000, 40000))
    (bad / "06_loop_a.jpg").symlink_to(bad / "06_loop_b.jpg")
    (bad / "06_loop_b.jpg").symlink_to(bad / "06_loop_a.jpg")
    (bad / "07_loopdir").symlink_to(bad, target_is_directory=True)  # a directory symlink loop
    (bad / "08_notes.txt").write_text("not an image extension: ignored, not an error")
    return root
