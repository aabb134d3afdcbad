"""Reading shards with genaug's own decoders: known fields only, nothing is ever unpickled."""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image

from genaug.core.errors import GenaugError
from genaug.core.jsonio import MAX_FIELD_BYTES, parse_json
from genaug.shards.layout import IMAGE_FIELDS, verify_command
from genaug.shards.storage import Location, as_location, bytes_io, open_read
from genaug.shards.tario import read_samples


def is_image_field(field: str) -> bool:
    """True for fields that hold encoded image bytes (jpg, png, webp, gen_3.jpg, ...)."""
    return field.rsplit(".", 1)[-1].lower() in IMAGE_FIELDS


def decode_image(data: bytes, mode: str = "RGB") -> Image.Image:
    """Decode image bytes with PIL into a loaded image of `mode`."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert(mode) if img.mode != mode else img


def decode_sample(raw: dict, images: str = "pil") -> dict:
    """Decode the known fields of a raw sample: images (pil or raw bytes), cls -> int, json -> dict, txt -> str.

    Any other field (.pyd, .pth, .pkl, ...) stays raw bytes: genaug never unpickles or torch.loads shard content.
    """
    out: dict = {}
    for field, data in raw.items():
        if field.startswith("__"):
            out[field] = data
        elif is_image_field(field):
            out[field] = decode_image(data) if images == "pil" else data
        elif field == "cls":
            out[field] = int(data.decode("ascii").strip())
        elif field == "json":
            out[field] = parse_json(data, f"field json of sample {raw.get('__key__')}", MAX_FIELD_BYTES)
        elif field == "txt":
            out[field] = data.decode("utf-8")
        else:
            out[field] = data
    return out


def iter_shard_raw(path: Location, data: bytes | None = None) -> Iterator[dict]:
    """Samples of one tar (file, object, or its bytes in `data`) as raw bytes, with __key__ and __shard__.

    A corrupt or missing tar is a user error naming it. Remote objects are streamed with a bounded read-ahead."""
    path = as_location(path)
    try:
        with bytes_io(data) if data is not None else open_read(path) as f:
            for sample in read_samples(f):
                sample["__shard__"] = path.name
                yield sample
    except FileNotFoundError:
        raise GenaugError(f"shard {path} is missing: run {verify_command(path)}") from None
    except Exception as e:  # tarfile raises several types on truncated or garbage input
        if isinstance(e, GenaugError):
            raise
        raise GenaugError(f"shard {path} is unreadable ({type(e).__name__}: {e}): run {verify_command(path)}") from None


def iter_checked_shard(
    folder: Location, index: int, data: bytes | None = None, stats: dict | None = None
) -> Iterator[dict]:
    """Raw samples of shard `index` of `folder` after its bytes are checked against the sha256 its stats recorded.

    The check `verify` and the training stream make, for readers that show or count samples (eval, inspect): a
    shard without valid stats (not complete) or whose bytes changed after commit is a GenaugError naming it.
    `data`, `stats`: the shard's bytes and stats when the caller already has them (e.g. through the shard cache)."""
    import hashlib

    from genaug.shards.layout import shard_name
    from genaug.shards.storage import RemotePath, file_sha256
    from genaug.shards.writer import read_stats

    folder = as_location(folder)
    path = folder / shard_name(index)
    stats = stats if stats is not None else read_stats(folder, index)
    if stats is None or not isinstance(stats.get("sha256"), str):
        raise GenaugError(f"shard {path} has no valid stats file, so it is not complete: run {verify_command(path)}")
    try:
        if data is None and isinstance(folder, RemotePath):
            data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(path)
    except FileNotFoundError:
        raise GenaugError(f"shard {path} is missing: run {verify_command(path)}") from None
    if sha != stats["sha256"]:
        raise GenaugError(
            f"shard {path} does not match the sha256 its stats recorded (its bytes changed after commit, or the "
            f"host serves another file): run {verify_command(path)} and redo the shard"
        )
    yield from iter_shard_raw(path, data)


def iter_shard(path: Location, images: str = "pil") -> Iterator[dict]:
    """Decoded samples of one tar (see decode_sample)."""
    for raw in iter_shard_raw(path):
        yield decode_sample(raw, images=images)


def complete_shards(folder: Location, check_sha: bool = False) -> list[Location]:
    """Paths of the shards of `folder` that are done (stats present and matching); half-written ones never appear."""
    from genaug.shards.layout import list_shards, shard_name
    from genaug.shards.writer import is_shard_done

    folder = as_location(folder)
    return [folder / shard_name(i) for i in list_shards(folder) if is_shard_done(folder, i, check_sha=check_sha)]
