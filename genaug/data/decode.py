"""Image decoding for the training stream: libjpeg-turbo through torchvision.io, PIL draft mode when smaller suffices.

Measured on the 2-core container (256 px JPEG, one thread): torchvision.io.decode_jpeg 190-200 us, PIL
Image.open + load + convert 410 us; so full-size JPEG decodes go through torchvision.io. When every crop taken from an
image is at least twice the output size, PIL's draft mode decodes at 1/2, 1/4 or 1/8 scale inside libjpeg (DCT
scaling), which beats any full decode; PNG/WEBP and anything torchvision.io refuses go through PIL.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

JPEG_MAGIC = b"\xff\xd8"


class CorruptImage(ValueError):
    """Image bytes that no decoder accepts (counted and skipped by the stream)."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes, read from the header only."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Exception as e:
        raise CorruptImage(f"unreadable image header ({type(e).__name__}: {e})") from None
    if w <= 0 or h <= 0:
        raise CorruptImage(f"image has size {w}x{h}")
    return w, h


def _pil_to_tensor(img: Image.Image) -> torch.Tensor:
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_rgb(data: bytes, reduce: float = 1.0) -> torch.Tensor:
    """Decode to a uint8 RGB tensor [3, H, W]; with reduce >= 2 a JPEG may come back up to `reduce` times smaller.

    The caller rescales its crop boxes by the returned size over the header size.
    """
    try:
        if data[:2] == JPEG_MAGIC and reduce >= 2:
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            img.draft("RGB", (math.ceil(w / reduce), math.ceil(h / reduce)))
            img.load()
            return _pil_to_tensor(img)
        if data[:2] == JPEG_MAGIC:
            try:
                with warnings.catch_warnings():  # torchvision 0.29 says torchcodec will take these decoders over
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            except RuntimeError:
                pass  # e.g. progressive/odd JPEGs libjpeg via torchvision rejects: PIL may still read them
        img = Image.open(io.BytesIO(data))
        img.load()
        return _pil_to_tensor(img)
    except CorruptImage:
        raise
    except Exception as e:
        raise CorruptImage(f"undecodable image ({type(e).__name__}: {e})") from None
