"""Class consistency of img2img variants of scikit-learn's digits: does a variant keep its source's label?

A classifier (scikit-learn LogisticRegression on the 64 pixels of the native 8 x 8 digits, levels 0..16) is trained on
the demo's training digits. Variants are made from held-out digits (the demo's val split: neither the classifier nor a
generator fitted on the training split has seen them) upscaled like the demo's images, with the img2img generator at
each strength, stored as the generate stage stores them (JPEG at the recipe's quality) and read back at 8 x 8 (box
filter). Per strength:

- keep: the share of variants whose predicted label is the source's label (the classifier's accuracy on the untouched
  sources is the ceiling, reported as `source_acc`);
- near_copy: the share of variants whose L2 distance to their source (8 x 8, levels 0..16) is below `near` = half
  the median distance from a training digit to its nearest other training digit: closer to the source than real
  digits come to each other;
- dist: the mean L2 distance of a variant to its source, in the same units.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from genaug.generate.writer import encode_jpeg

NATIVE = 8  # scikit-learn's digits are 8 x 8, levels 0..16


def digits_split(val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into load_digits(): the demo's split (genaug.demo.write_digits_tree)."""
    from sklearn.datasets import load_digits

    n = len(load_digits().images)
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return order[n_val:], order[:n_val]


def to_native(img: Image.Image) -> np.ndarray:
    """An image of a digit as the 64 features of the classifier: grey, box-downscaled to 8 x 8, levels 0..16."""
    a = np.asarray(img.convert("L").resize((NATIVE, NATIVE), Image.BOX), dtype=np.float64)
    return (a / 255.0 * 16.0).reshape(-1)


def digit_image(pixels: np.ndarray, size: int) -> Image.Image:
    """A digit (8 x 8, levels 0..16) as the demo writes it: grey upscaled bicubic to size x size, RGB."""
    arr = (pixels.reshape(NATIVE, NATIVE) / 16.0 * 255.0).astype(np.uint8)
    return Image.fromarray(arr, "L").resize((size, size), Image.BICUBIC).convert("RGB")


def near_copy_threshold(train: np.ndarray) -> float:
    """Half the median L2 distance from a training digit to its nearest other training digit."""
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=2).fit(train).kneighbors(train)
    return 0.5 * float(np.median(dist[:, 1]))


def class_consistency(
    weights: str,
    strengths: list[float],
    k: int = 4,
    n: int = 200,
    size: int = 32,
    seed: int = 0,
    model: str = "img2img-ddpm",
    batch_size: int = 64,
) -> dict[str, Any]:
    """The keep / near-copy table of `model` (--weights `weights`) on n held-out digits, K variants each."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from genaug.generate.base import generator_class, variant_seed
    from genaug.generate.recipe import resolve_recipe

    digits = load_digits()
    tr, va = digits_split()
    x_train = digits.data[tr]
    clf = LogisticRegression(max_iter=5000).fit(x_train, digits.target[tr])
    near = near_copy_threshold(x_train)
    src_idx = va[:n]
    sources = [digit_image(digits.data[i], size) for i in src_idx]
    src_native = np.stack([to_native(im) for im in sources])
    labels = digits.target[src_idx]
    rows = []
    for strength in strengths:
        recipe = resolve_recipe(model, k=k, batch_size=batch_size, seed=seed,
                                overrides={"sampling.strength": float(strength)})  # fmt: skip
        gen = generator_class(str(recipe["generator"]))(recipe, "cpu", weights)
        keys = [f"digit{int(i):04d}" for i in src_idx]
        seeds = [[variant_seed(int(recipe["seed"]), key, j) for j in range(k)] for key in keys]
        made = gen.generate(sources, keys, seeds)
        gen.close()
        quality = int((recipe.get("output") or {}).get("quality", 95))
        feats, src_rep, lab_rep = [], [], []
        for vs, s_nat, lab in zip(made, src_native, labels, strict=True):
            for v in vs:
                stored = Image.open(io.BytesIO(encode_jpeg(v.image, None, quality, "bicubic")))
                feats.append(to_native(stored))
                src_rep.append(s_nat)
                lab_rep.append(lab)
        feats, src_rep, lab_rep = np.stack(feats), np.stack(src_rep), np.array(lab_rep)
        dist = np.sqrt(((feats - src_rep) ** 2).sum(axis=1))
        rows.append({
            "strength": float(strength),
            "keep": float((clf.predict(feats) == lab_rep).mean()),
            "near_copy": float((dist < near).mean()),
            "dist": float(dist.mean()),
            "variants": len(feats),
        })  # fmt: skip
    return {
        "source_acc": float(clf.score(src_native, labels)),
        "near_threshold": near,
        "sources": len(src_idx),
        "k": k,
        "rows": rows,
    }


def format_table(res: dict) -> str:
    """The result of class_consistency as a markdown table."""
    lines = [
        f"classifier accuracy on the {res['sources']} untouched held-out sources: {100 * res['source_acc']:.1f}%; "
        f"near copy = L2 to source < {res['near_threshold']:.2f} (8x8, levels 0..16); K = {res['k']}",
        "",
        "| strength | keeps label | near copies | mean L2 to source | variants |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['strength']:.2f} | {100 * r['keep']:.1f}% | {100 * r['near_copy']:.1f}% | "
                     f"{r['dist']:.2f} | {r['variants']} |")  # fmt: skip
    return "\n".join(lines)
