"""SSL view recipes (the `views:` section of a trainer recipe) and the per-view crop and colour parameters they define.

Schema, under `views:` in trainers/<method>.yaml (every key optional; a missing section means preset simclr):

    views:
      preset: byol        # simclr | byol | dino | swav | small: base values; the keys below override them
      size: 224           # output size of every global view (shortcut; a view's own `size` wins)
      mean: [0.485, 0.456, 0.406]     # normalisation of the float views the loader yields
      std: [0.229, 0.224, 0.225]
      global:             # one mapping per global view; entry i overrides the preset's view i key by key
        - scale: [0.08, 1.0]          # random resized crop: area fraction and aspect ratio ranges
          ratio: [0.75, 1.3333]
          flip: 0.5                   # horizontal flip probability
          jitter: {p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1}
          grayscale: 0.2
          blur: {p: 1.0, sigma: [0.1, 2.0]}
          solarize: 0.0               # probability; threshold 128
        - {blur: {p: 0.1}, solarize: 0.2}
      local: {n: 6, size: 96, scale: [0.05, 0.4]}   # multi-crop local views (DINO, SwAV), other view keys too
      eval: {size: 224, resize: 256}  # eval loader: resize the shorter side to `resize`, center crop `size`

Views are ordered global first, then local. Colour jitter applies brightness, contrast, saturation and hue in a
random order per view (as torchvision's ColorJitter) but fused into one 3x4 colour matrix per view (hue is a
rotation in YIQ space, as in DALI), then grayscale; then Gaussian blur, then solarization. The random parameters
of a view are a row of PARAM_WIDTH floats (see view_params), so the colour stage can run batched on CPU in the
loader workers or on the accelerator (genaug.data.color) with exactly the same parameters.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field

from genaug.core.errors import GenaugError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PARAM_WIDTH = 12  # perm[0:4], factors[4:8] (b, c, s, h), jitter_on, gray, blur sigma (0 = none), solarize

_STRONG = {"p": 0.8, "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2}  # SimCLR/SwAV s=1
_BYOL = {"p": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1}  # BYOL/DINO/VICReg/Barlow

# Defaults from the papers: SimCLR (Chen et al. 2020, App. A), BYOL (Grill et al. 2020, Tab. 6), DINO (Caron et
# al. 2021, main_dino.py), SwAV (Caron et al. 2020, 2x224 + 6x96), small: solo-learn's CIFAR recipes (32 px).
PRESETS: dict[str, dict] = {
    "simclr": {
        "size": 224,
        "global": [
            {"scale": [0.08, 1.0], "flip": 0.5, "jitter": _STRONG, "grayscale": 0.2, "blur": {"p": 0.5}},
            {"scale": [0.08, 1.0], "flip": 0.5, "jitter": _STRONG, "grayscale": 0.2, "blur": {"p": 0.5}},
        ],
        "local": {"n": 0},
        "eval": {"size": 224, "resize": 256},
    },
    "byol": {
        "size": 224,
        "global": [
            {"scale": [0.08, 1.0], "jitter": _BYOL, "grayscale": 0.2, "blur": {"p": 1.0}, "solarize": 0.0},
            {"scale": [0.08, 1.0], "jitter": _BYOL, "grayscale": 0.2, "blur": {"p": 0.1}, "solarize": 0.2},
        ],
        "local": {"n": 0},
        "eval": {"size": 224, "resize": 256},
    },
    "dino": {
        "size": 224,
        "global": [
            {"scale": [0.4, 1.0], "jitter": _BYOL, "grayscale": 0.2, "blur": {"p": 1.0}},
            {"scale": [0.4, 1.0], "jitter": _BYOL, "grayscale": 0.2, "blur": {"p": 0.1}, "solarize": 0.2},
        ],
        "local": {"n": 8, "size": 96, "scale": [0.05, 0.4], "jitter": _BYOL, "grayscale": 0.2, "blur": {"p": 0.5}},
        "eval": {"size": 224, "resize": 256},
    },
    "swav": {
        "size": 224,
        "global": [
            {"scale": [0.14, 1.0], "jitter": _STRONG, "grayscale": 0.2, "blur": {"p": 0.5}},
            {"scale": [0.14, 1.0], "jitter": _STRONG, "grayscale": 0.2, "blur": {"p": 0.5}},
        ],
        "local": {"n": 6, "size": 96, "scale": [0.05, 0.14], "jitter": _STRONG, "grayscale": 0.2, "blur": {"p": 0.5}},
        "eval": {"size": 224, "resize": 256},
    },
    "small": {
        "size": 32,
        "global": [
            {"scale": [0.08, 1.0], "jitter": _BYOL, "grayscale": 0.2, "blur": {"p": 0.0}, "solarize": 0.0},
            {"scale": [0.08, 1.0], "jitter": _BYOL, "grayscale": 0.2, "blur": {"p": 0.0}, "solarize": 0.2},
        ],
        "local": {"n": 0},
        "eval": {"size": 32, "resize": 32},
    },
}

VIEW_KEYS = {"size", "scale", "ratio", "flip", "jitter", "grayscale", "blur", "solarize", "n"}
TOP_KEYS = {"preset", "size", "mean", "std", "global", "local", "eval"}


@dataclass(frozen=True)
class ViewSpec:
    """The transform of one view: random resized crop, flip, colour jitter, grayscale, blur, solarization."""

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize: float = 0.0


@dataclass(frozen=True)
class ViewsRecipe:
    """All views of a method (global first, then local), normalisation and the eval transform."""

    views: tuple[ViewSpec, ...]
    n_global: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    eval_size: int = 224
    eval_resize: int = 256
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def n_views(self) -> int:
        """Number of views per sample."""
        return len(self.views)


def _pair(value, name: str) -> tuple[float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise GenaugError(f"views: {name} must be a list of two numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi or lo < 0:
        raise GenaugError(f"views: {name} must be [low, high] with 0 <= low <= high, got {value!r}")
    return lo, hi


def _prob(value, name: str) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise GenaugError(f"views: {name} is a probability and must lie in [0, 1], got {value!r}")
    return p


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _spec(d: dict, where: str, default_size: int) -> ViewSpec:
    unknown = set(d) - VIEW_KEYS
    if unknown:
        raise GenaugError(
            f"views: unknown key(s) {sorted(unknown)} in {where}: allowed are {sorted(VIEW_KEYS - {'n'})}"
        )
    jit = d.get("jitter") or {}
    blur = d.get("blur") or {}
    if not isinstance(blur, dict):
        blur = {"p": blur}
    size = int(d.get("size", default_size))
    if size < 8:
        raise GenaugError(f"views: {where}.size must be at least 8 pixels, got {size}")
    return ViewSpec(
        size=size,
        scale=_pair(d.get("scale", (0.08, 1.0)), f"{where}.scale"),
        ratio=_pair(d.get("ratio", (3 / 4, 4 / 3)), f"{where}.ratio"),
        flip=_prob(d.get("flip", 0.5), f"{where}.flip"),
        jitter_p=_prob(jit.get("p", 0.0), f"{where}.jitter.p"),
        brightness=float(jit.get("brightness", 0.0)),
        contrast=float(jit.get("contrast", 0.0)),
        saturation=float(jit.get("saturation", 0.0)),
        hue=float(jit.get("hue", 0.0)),
        grayscale=_prob(d.get("grayscale", 0.0), f"{where}.grayscale"),
        blur_p=_prob(blur.get("p", 0.0), f"{where}.blur.p"),
        blur_sigma=_pair(blur.get("sigma", (0.1, 2.0)), f"{where}.blur.sigma"),
        solarize=_prob(d.get("solarize", 0.0), f"{where}.solarize"),
    )


def parse_views(section: dict | None) -> ViewsRecipe:
    """Resolve a recipe's `views:` section (see the module docstring) into a ViewsRecipe."""
    section = dict(section or {})
    unknown = set(section) - TOP_KEYS
    if unknown:
        raise GenaugError(f"views: unknown key(s) {sorted(unknown)}: allowed are {sorted(TOP_KEYS)}")
    name = section.get("preset", "simclr")
    if not isinstance(name, str) or name not in PRESETS:
        raise GenaugError(f"views: unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    base = PRESETS[name]
    size = int(section.get("size", base["size"]))
    over_global = section.get("global") or []
    if not isinstance(over_global, list):
        raise GenaugError("views: global must be a list with one mapping per global view")
    n_global = max(len(base["global"]), len(over_global))
    views = []
    for i in range(n_global):
        b = base["global"][min(i, len(base["global"]) - 1)]
        o = over_global[i] if i < len(over_global) else {}
        views.append(_spec(_merge(b, o), f"global[{i}]", size))
    local = _merge(base.get("local", {"n": 0}), section.get("local") or {})
    n_local = int(local.get("n", 0))
    if n_local < 0:
        raise GenaugError(f"views: local.n must be >= 0, got {n_local}")
    if n_local:
        views += [_spec(local, "local", 96)] * n_local
    ev_over = section.get("eval") or {}
    ev = _merge(base.get("eval", {}), ev_over)
    eval_size = int(ev_over.get("size", size))
    if "resize" not in ev_over:  # keep the preset's resize / crop ratio (256 / 224) at other sizes
        ev["resize"] = round(eval_size * ev.get("resize", base["size"]) / ev.get("size", base["size"]))
    mean = tuple(float(v) for v in section.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in section.get("std", IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise GenaugError("views: mean and std must be lists of 3 numbers (std > 0)")
    return ViewsRecipe(
        views=tuple(views),
        n_global=n_global,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        eval_size=eval_size,
        eval_resize=int(ev["resize"]),
        raw=section,
    )


def crop_box(rnd: random.Random, width: int, height: int, scale, ratio) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, h, w) for an image of width x height (torchvision's algorithm)."""
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rnd.uniform(scale[0], scale[1])
        aspect = math.exp(rnd.uniform(*log_r))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rnd.randint(0, height - h), rnd.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def view_params(rnd: random.Random, spec: ViewSpec) -> tuple[bool, list[float]]:
    """Draw a view's flip and its colour-stage parameter row (PARAM_WIDTH floats)."""
    flip = rnd.random() < spec.flip
    perm = [0, 1, 2, 3]
    rnd.shuffle(perm)
    fac = [
        rnd.uniform(max(0.0, 1 - spec.brightness), 1 + spec.brightness),
        rnd.uniform(max(0.0, 1 - spec.contrast), 1 + spec.contrast),
        rnd.uniform(max(0.0, 1 - spec.saturation), 1 + spec.saturation),
        rnd.uniform(-spec.hue, spec.hue),
    ]
    jitter_on = rnd.random() < spec.jitter_p
    gray = rnd.random() < spec.grayscale
    blur_on = rnd.random() < spec.blur_p
    sigma = rnd.uniform(*spec.blur_sigma) if blur_on else 0.0
    solar = rnd.random() < spec.solarize
    return flip, [*map(float, perm), *fac, float(jitter_on), float(gray), float(sigma), float(solar)]


def _resized_crop(img, box, size: int):
    import torchvision.transforms.v2.functional as F

    top, left, h, w = box
    return F.resized_crop(img, top, left, h, w, [size, size], antialias=True)


def make_views(images: list[bytes], sources: list[int], recipe: ViewsRecipe, rnd: random.Random):
    """Crop and flip every view of one sample: view v is cut from images[sources[v]].

    Returns (uint8 crops [3,S,S] per view, parameter rows per view). Each image is decoded once, at reduced size
    when every crop taken from it is at least twice its output size. Raises decode.CorruptImage.
    """
    import torch

    from genaug.data.decode import decode_rgb, image_size

    sizes = {i: image_size(images[i]) for i in sorted(set(sources))}
    boxes, flips, rows = [], [], []
    for spec, i in zip(recipe.views, sources, strict=True):
        w, h = sizes[i]
        boxes.append(crop_box(rnd, w, h, spec.scale, spec.ratio))
        flip, row = view_params(rnd, spec)
        flips.append(flip)
        rows.append(row)
    crops = []
    decoded = {}
    for i in sizes:
        views = zip(boxes, recipe.views, sources, strict=True)
        reduce = min(min(b[2], b[3]) / spec.size for b, spec, s in views if s == i)
        decoded[i] = decode_rgb(images[i], reduce=reduce)
    for v, (spec, i) in enumerate(zip(recipe.views, sources, strict=True)):
        img = decoded[i]
        w, h = sizes[i]
        sy, sx = img.shape[1] / h, img.shape[2] / w
        top, left, bh, bw = boxes[v]
        box = (int(top * sy), int(left * sx), max(1, round(bh * sy)), max(1, round(bw * sx)))
        crop = _resized_crop(img, box, spec.size)
        crops.append(torch.flip(crop, dims=[2]) if flips[v] else crop)
    return crops, rows


def eval_view(data: bytes, size: int, resize: int):
    """The eval transform: resize the shorter side to `resize`, center crop `size`; uint8 [3, size, size]."""
    import torchvision.transforms.v2.functional as F

    from genaug.data.decode import decode_rgb, image_size

    w, h = image_size(data)
    img = decode_rgb(data, reduce=min(w, h) / resize)
    img = F.resize(img, [resize], antialias=True)
    return F.center_crop(img, [size, size])
