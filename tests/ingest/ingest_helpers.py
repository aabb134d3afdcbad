"""Image builders for the ingest tests."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def rgb(w=40, h=30, seed=0):
    """A random RGB image."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def png_with_size(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h (a decompression bomb: tiny file, huge declared size)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8  # signature, then length(4) type(4) data(13) crc(4)
    body = bytes(data[ihdr + 4 : ihdr + 8]) + struct.pack(">II", w, h) + bytes(data[ihdr + 16 : ihdr + 21])
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", w, h)
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return bytes(data)
