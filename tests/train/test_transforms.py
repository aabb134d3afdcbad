"""View recipes, crop boxes, the fused colour stage against torchvision, decoding at reduced size."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

from genaug.core.errors import GenaugError
from genaug.data.color import apply_color_stage
from genaug.data.decode import CorruptImage, decode_rgb
from genaug.data.transforms import PARAM_WIDTH, crop_box, make_views, parse_views, view_params


def _jpeg(arr: np.ndarray, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def _smooth(size: int, seed: int = 0) -> np.ndarray:
    lo = (np.random.default_rng(seed).random((4, 4, 3)) * 255).astype(np.uint8)
    return np.array(Image.fromarray(lo).resize((size, size), Image.BILINEAR))


def test_presets_and_overrides():
    dino = parse_views({"preset": "dino", "size": 64, "local": {"n": 3, "size": 32}})
    assert dino.n_views == 5 and dino.n_global == 2
    assert [v.size for v in dino.views] == [64, 64, 32, 32, 32]
    assert dino.views[0].blur_p == 1.0 and dino.views[1].solarize == 0.2 and dino.views[2].scale == (0.05, 0.4)
    byol = parse_views({"preset": "byol", "global": [{}, {"solarize": 0.5}]})
    assert byol.views[1].solarize == 0.5 and byol.views[1].blur_p == 0.1 and byol.views[0].brightness == 0.4
    assert (byol.eval_size, byol.eval_resize) == (224, 256)
    small = parse_views({"preset": "small", "size": 64})
    assert (small.eval_size, small.eval_resize) == (64, 64) and small.views[0].size == 64
    with pytest.raises(GenaugError, match="unknown key"):
        parse_views({"global": [{"crop": 3}]})
    with pytest.raises(GenaugError, match="unknown preset"):
        parse_views({"preset": "nope"})
    with pytest.raises(GenaugError, match="probability"):
        parse_views({"global": [{"flip": 2}]})


def test_crop_box_bounds_and_full_image():
    rnd = random.Random(0)
    assert crop_box(rnd, 40, 30, (1.0, 1.0), (40 / 30, 40 / 30)) == (0, 0, 30, 40)
    for _ in range(200):
        top, left, h, w = crop_box(rnd, 50, 37, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 37 and 0 <= left and left + w <= 50 and h > 0 and w > 0


def _row(b=1.0, c=1.0, s=1.0, h=0.0, jitter=True, gray=False, sigma=0.0, solar=False, order=(0, 1, 2, 3)):
    return [*map(float, order), b, c, s, h, float(jitter), float(gray), sigma, float(solar)]


@pytest.mark.parametrize(
    ("row", "ref"),
    [
        (_row(b=1.3), lambda x: F.adjust_brightness(x, 1.3)),
        (_row(c=0.6), lambda x: F.adjust_contrast(x, 0.6)),
        (_row(s=0.3), lambda x: F.adjust_saturation(x, 0.3)),
        (_row(jitter=False, gray=True), lambda x: F.rgb_to_grayscale(x, 3)),
        (_row(jitter=False, solar=True), lambda x: F.solarize(x, 128)),
        (_row(b=0.8, c=1.4, order=(0, 1, 2, 3)), lambda x: F.adjust_contrast(F.adjust_brightness(x, 0.8), 1.4)),
        (_row(b=1.2, s=1.5, order=(2, 0, 1, 3)), lambda x: F.adjust_brightness(F.adjust_saturation(x, 1.5), 1.2)),
    ],
)
def test_colour_stage_matches_torchvision(row, ref):
    x = torch.from_numpy(_smooth(24)).permute(2, 0, 1).contiguous()[None].repeat(2, 1, 1, 1)
    y = apply_color_stage(x, torch.tensor([row, _row(jitter=False)]))
    diff = (y[0].int() - ref(x[0]).int()).abs()
    assert diff.max() <= 3 and diff.float().mean() < 1.2  # rounding only (torchvision truncates its uint8 gray mean)
    assert torch.equal(y[1], x[1])  # the other sample's parameters do nothing


def test_hue_rotation_keeps_grays_and_inverts():
    x = torch.from_numpy(_smooth(16)).permute(2, 0, 1).contiguous()[None]
    gray = F.rgb_to_grayscale(x, 3)
    assert (apply_color_stage(gray, torch.tensor([_row(h=0.3)])).int() - gray.int()).abs().max() <= 1
    there = apply_color_stage(x, torch.tensor([_row(h=0.1)]))
    back = apply_color_stage(there, torch.tensor([_row(h=-0.1)]))
    assert (there.int() - x.int()).abs().float().mean() > 3
    assert (back.int() - x.int()).abs().float().mean() < 2.5


def test_blur_pil_and_torch_agree_and_batch_equals_single():
    x = torch.from_numpy(np.stack([_smooth(32, s) for s in range(3)])).permute(0, 3, 1, 2).contiguous()
    x = (x.int() + torch.randint(-20, 20, x.shape)).clamp(0, 255).to(torch.uint8)
    rows = torch.tensor([_row(sigma=1.5), _row(jitter=False), _row(b=1.2, sigma=0.7, solar=True)])
    a = apply_color_stage(x, rows, blur="pil")
    b = apply_color_stage(x, rows, blur="torch")
    assert (a.float() - b.float()).abs().mean() < 2.5
    assert torch.equal(a[1], x[1])
    singles = torch.cat([apply_color_stage(x[i : i + 1], rows[i : i + 1], blur="pil") for i in range(3)])
    assert torch.equal(a, singles)


def test_view_params_width_and_probabilities():
    spec = parse_views({"preset": "byol"}).views[1]
    rnd = random.Random(1)
    rows = [view_params(rnd, spec)[1] for _ in range(2000)]
    assert all(len(r) == PARAM_WIDTH for r in rows)
    arr = np.array(rows)
    assert abs(arr[:, 8].mean() - 0.8) < 0.05 and abs(arr[:, 11].mean() - 0.2) < 0.05
    assert abs((arr[:, 10] > 0).mean() - 0.1) < 0.04
    assert sorted(arr[0, :4]) == [0, 1, 2, 3]


def test_decode_reduced_size_and_corrupt():
    big = _smooth(256)
    data = _jpeg(big)
    assert tuple(decode_rgb(data).shape) == (3, 256, 256)
    assert tuple(decode_rgb(data, reduce=4.5).shape) == (3, 64, 64)  # libjpeg DCT scaling by 1/4
    assert tuple(decode_rgb(_jpeg(big[:40, :30], "PNG")).shape) == (3, 40, 30)
    with pytest.raises(CorruptImage):
        decode_rgb(b"\xff\xd8garbage")
    with pytest.raises(CorruptImage):
        decode_rgb(b"not an image at all")


def test_make_views_reduced_decode_close_to_full():
    recipe = parse_views({"preset": "simclr", "size": 32, "global": [{"scale": [0.5, 1.0], "flip": 0.0}] * 2})
    data = _jpeg(_smooth(512))
    crops, rows = make_views([data], [0, 0], recipe, random.Random(3))  # crops >= 360 px -> decoded at 1/8..1/4
    assert [tuple(c.shape) for c in crops] == [(3, 32, 32), (3, 32, 32)] and len(rows) == 2
    full = decode_rgb(data)
    rnd = random.Random(3)
    for v in range(2):
        top, left, h, w = crop_box(rnd, 512, 512, (0.5, 1.0), recipe.views[v].ratio)
        view_params(rnd, recipe.views[v])
        ref = F.resized_crop(full, top, left, h, w, [32, 32], antialias=True)
        assert (crops[v].float() - ref.float()).abs().mean() < 6  # box rounded to the 1/8-scale grid
