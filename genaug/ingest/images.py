"""Turn one source file's bytes into the bytes stored in a shard: validated, RGB, resized, encoded once."""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

from genaug.ingest.options import DEFAULT_MAX_BYTES  # the cap of --max-bytes, declared once with the flag

ImageFile.LOAD_TRUNCATED_IMAGES = False


class BadImage(Exception):
    """A source file that cannot become a sample; its message is recorded in the shard stats."""


@dataclass(frozen=True)
class ImageOptions:
    """How ingest stores images: resize limits, JPEG quality, validity limits."""

    short_side: int | None = None
    max_side: int | None = None
    quality: int = 95
    min_side: int = 8
    max_pixels: int = 178_956_970  # twice PIL's default warning limit, where PIL itself refuses
    reencode: bool = False


def target_size(w: int, h: int, opts: ImageOptions) -> tuple[int, int]:
    """Size after the short-side and max-side limits (only ever downscales)."""
    scale = 1.0
    if opts.short_side and min(w, h) > opts.short_side:
        scale = opts.short_side / min(w, h)
    if opts.max_side and max(w, h) * scale > opts.max_side:
        scale = opts.max_side / max(w, h)
    if scale >= 1.0:
        return w, h
    return max(1, round(w * scale)), max(1, round(h * scale))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha composited on white, 16-bit scaled down, CMYK converted."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float64)
        hi = 65535.0 if (mode.startswith("I;16") or arr.max() > 255) else 255.0
        if mode == "F":
            lo, top = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (top - lo) * 255.0 if top > lo else np.zeros_like(arr)
        else:
            arr = arr * (255.0 / hi)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def process_image(data: bytes, opts: ImageOptions) -> tuple[bytes, str, dict]:
    """Validate and normalise one image; return (bytes, field extension, info) or raise BadImage."""
    if not data:
        raise BadImage("zero-byte file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise BadImage(f"decompression bomb ({e}); raise --max-pixels if the image is genuine") from None
        except Exception as e:  # PIL raises many types on garbage
            raise BadImage(f"not a readable image ({type(e).__name__}: {e})") from None
        fmt = img.format
        w, h = img.size
        if w * h > opts.max_pixels:
            raise BadImage(f"image is {w}x{h} = {w * h} pixels, over the limit of {opts.max_pixels} (--max-pixels)")
        if min(w, h) < opts.min_side:
            raise BadImage(f"image is {w}x{h}, smaller than --min-side {opts.min_side}")
        orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
        tw, th = target_size(w, h, opts)
        if orientation in (5, 6, 7, 8):
            tw, th = target_size(h, w, opts)
            tw, th = th, tw
        try:
            if fmt == "JPEG" and (tw, th) != (w, h):
                img.draft("RGB", (tw, th))  # DCT-domain downscale: decode at most 8x less
            img.load()
        except Exception as e:
            raise BadImage(f"corrupt or truncated image data ({type(e).__name__}: {e})") from None
        src_mode = img.mode
        passthrough = (
            fmt == "JPEG" and src_mode == "RGB" and (tw, th) == (w, h) and orientation == 1 and not opts.reencode
        )
        if passthrough:
            return (
                data,
                "jpg",
                {
                    "width": w,
                    "height": h,
                    "orig_width": w,
                    "orig_height": h,
                    "mode": src_mode,
                    "format": fmt,
                    "stored": "original",
                },
            )
        try:
            if orientation != 1:
                img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            if img.size != target_size(*img.size, opts):
                img = img.resize(target_size(*img.size, opts), Image.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=opts.quality, subsampling="4:2:0", optimize=False)
        except Exception as e:
            raise BadImage(f"cannot convert image ({type(e).__name__}: {e})") from None
    return (
        buf.getvalue(),
        "jpg",
        {
            "width": img.size[0],
            "height": img.size[1],
            "orig_width": w,
            "orig_height": h,
            "mode": src_mode,
            "format": fmt,
            "stored": f"jpeg-q{opts.quality}",
        },
    )


def read_file(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Bytes of a regular source file of at most `max_bytes`; a FIFO, device, bigger file or OS error is BadImage."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    except OSError as e:
        raise BadImage(f"{type(e).__name__}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadImage(f"not a regular file ({_file_kind(st.st_mode)}): only regular image files are read")
        if st.st_size > max_bytes:
            raise BadImage(f"file is {st.st_size} bytes, over the limit of {max_bytes} (--max-bytes)")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # the file grew while being read
                raise BadImage(f"file grew beyond the limit of {max_bytes} bytes while being read (--max-bytes)")
        return b"".join(chunks)
    except OSError as e:
        raise BadImage(f"{type(e).__name__}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "a special file"
