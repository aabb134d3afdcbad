"""Enumerate the images of a source: an ImageNet-style class tree, a flat folder, existing WebDataset tars, or a
Hugging Face `datasets` set (genaug/ingest/hf.py)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from genaug.core.errors import GenaugError
from genaug.ingest.items import Source, SourceItem
from genaug.shards.tario import split_name

if TYPE_CHECKING:
    from genaug.ingest.hf import HFOptions

# torchvision.datasets.folder.IMG_EXTENSIONS, plus .jpe and .gif
IMG_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
TAR_IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")
LAYOUTS = ("auto", "imagefolder", "flat", "wds", "hf")
#: labels are non-negative integers below this (int32, what every loss and label tensor accepts)
MAX_LABEL = 2**31
_CLS_MAX_BYTES = 64
#: a label field named by --label-key (a JSON document, a class name) is read up to this many bytes
LABEL_MAX_BYTES = 1 << 20


def is_image_name(name: str) -> bool:
    """True when a file name has one of the image extensions (case-insensitive), as ImageFolder decides."""
    return name.lower().endswith(IMG_EXTENSIONS)


def _walk_files(top: Path, skipped: list[dict]) -> list[Path]:
    """Image files under `top`, following symlinks but never the same directory twice; sorted as ImageFolder does."""
    seen_dirs: set[tuple[int, int]] = set()
    out: list[Path] = []

    def visit(d: Path) -> None:
        try:
            st = d.stat()
        except OSError as e:
            skipped.append({"source": str(d), "error": f"{type(e).__name__}: {e.strerror or e}"})
            return
        ident = (st.st_dev, st.st_ino)
        if ident in seen_dirs:
            skipped.append({"source": str(d), "error": "directory symlink loop (already visited)"})
            return
        seen_dirs.add(ident)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            skipped.append({"source": str(d), "error": f"{type(e).__name__}: {e.strerror or e}"})
            return
        subdirs = []
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                subdirs.append(Path(e.path))
            elif is_image_name(e.name):
                out.append(Path(e.path))
        for sd in subdirs:
            visit(sd)

    visit(top)
    return out


def _imagefolder(root: Path, skipped: list[dict]) -> Source:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise GenaugError(f"{root} has no class folders: use --layout flat for a folder of images without labels")
    items = []
    for label, name in enumerate(classes):
        for p in _walk_files(root / name, skipped):
            items.append(SourceItem(ref=str(p), label=label, class_name=name))
    return Source("imagefolder", root, classes, items, skipped)


def _flat(root: Path, skipped: list[dict]) -> Source:
    items = [SourceItem(ref=str(p)) for p in _walk_files(root, skipped)]
    return Source("flat", root, None, items, skipped)


def _tar_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.tar") if p.is_file())


def check_label(label: object, num_classes: int | None = None) -> str | None:
    """None when `label` is a valid class index (in [0, num_classes), or [0, 2**31) without a class list), else why."""
    if isinstance(label, bool) or not isinstance(label, int):
        return f"label {label!r} is not an integer"
    top = num_classes if num_classes is not None else MAX_LABEL
    if not 0 <= label < top:
        what = f"the {num_classes} classes" if num_classes is not None else "a non-negative int32"
        return f"label {label} is out of range [0, {top}) ({what})"
    return None


def parse_cls(raw: bytes) -> tuple[int | None, str | None]:
    """(label, None) for a valid `.cls` field (ASCII decimal digits in [0, 2**31)), else (None, why)."""
    text = raw[: _CLS_MAX_BYTES + 1]
    shown = text[:20]
    try:
        s = text.decode("ascii").strip()
    except UnicodeDecodeError:
        return None, f"cls field {shown!r} is not an ASCII integer"
    if len(raw) > _CLS_MAX_BYTES or not (s.isascii() and s.isdigit()) or len(s) > 10:
        if s.startswith("-") and s[1:].isdigit() and len(s) <= 12:
            return None, f"cls field {s!r} is a negative label: labels must lie in [0, {MAX_LABEL})"
        return None, f"cls field {shown!r} is not a label in [0, {MAX_LABEL}) (decimal digits only)"
    label = int(s)
    why = check_label(label)
    return (None, f"cls field: {why}") if why else (label, None)


def check_label_key(label_key: str | None) -> tuple[str, list[str]] | None:
    """(field, JSON path) of a --label-key (`cls`, `label`, `json.label`, `json.meta.class`), None for none."""
    if label_key is None:
        return None
    parts = label_key.split(".") if isinstance(label_key, str) else []
    if not parts or any(not p or p != p.strip() or "/" in p for p in parts):
        raise GenaugError(
            f"--label-key {label_key!r} is not a field or JSON path: give a field such as `cls` or a path into the "
            "sample's JSON such as `json.label`"
        )
    if len(parts) > 1 and parts[0] != "json":
        raise GenaugError(
            f"--label-key {label_key!r}: only the `json` field can be followed by a path (json.label); "
            f"{parts[0]!r} is read as a whole"
        )
    return parts[0], parts[1:]


def _label_value(raw: bytes, path: list[str]) -> tuple[int | str | None, str | None]:
    """The label a --label-key finds in one field's bytes: an int id, a class name, or (None, why)."""
    if len(raw) > LABEL_MAX_BYTES:
        return None, f"label field is over {LABEL_MAX_BYTES} bytes"
    if not path:
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return None, f"label field {raw[:20]!r} is not UTF-8 text"
        if not text:
            return None, "label field is empty"
        if text.isascii() and text.isdigit():
            return parse_cls(text.encode())
        return text, None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return None, f"json field is not valid JSON ({type(e).__name__})"
    walked = "json"
    for part in path:
        walked += "." + part
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None, f"sample has no {walked} (--label-key)"
    if isinstance(value, bool) or value is None:
        return None, f"{walked} is {json.dumps(value)}, not a class id or name"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        why = check_label(value)
        return (None, f"{walked}: {why}") if why else (value, None)
    if isinstance(value, str) and value.strip():
        return value.strip(), None
    return None, f"{walked} is {json.dumps(value)[:40]}, not a class id (integer) or name (text)"


def name_labels(items: list[SourceItem], names: list[str | None]) -> tuple[list[SourceItem], list[str] | None]:
    """Map class names found by --label-key to ids in sorted order (as ImageFolder sorts); ids stay ids.

    When some samples name classes, a sample whose label is a bare integer is a recorded failure: its class cannot
    be matched to a name."""
    classes = sorted({n for n in names if n is not None})
    if not classes:
        return items, None
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for it, name in zip(items, names, strict=True):
        if name is not None:
            it = SourceItem(**{**it.__dict__, "label": index[name], "class_name": name})
        elif it.label is not None and it.error is None:
            why = f"label {it.label} is an integer, but this set's labels are class names (--label-key)"
            it = SourceItem(**{**it.__dict__, "label": None, "error": why})
        out.append(it)
    return out, classes


def _tar_samples(tf: tarfile.TarFile) -> list[tuple[str, dict[str, tarfile.TarInfo], str | None]]:
    """Samples of an input tar in order: (key, {field: member}, error); a key seen before is a duplicate (error)."""
    out: list[tuple[str, dict[str, tarfile.TarInfo], str | None]] = []
    seen: dict[str, int] = {}  # key -> position of its first sample
    for m in tf.getmembers():
        if not m.isfile():
            continue
        key, field = split_name(m.name)
        if key is None:
            continue  # no key.field name: webdataset's grouping skips it too
        field = field.lower()
        cur = out[-1] if out else None
        if cur is not None and cur[0] == key and field not in cur[1]:
            cur[1][field] = m  # consecutive members of one key form one sample, as WebDataset reads them
            continue
        error = None
        if key in seen:
            error = (
                f"duplicate key {key!r} in the input tar (its first sample is sample #{seen[key]} of that tar): "
                "the later sample is skipped, never merged"
            )
        else:
            seen[key] = len(out)
        out.append((key, {field: m}, error))
    return out


def _read_member(tf: tarfile.TarFile, m: tarfile.TarInfo, limit: int) -> bytes:
    f = tf.extractfile(m)
    return f.read(limit + 1) if f is not None else b""


def _wds(root: Path, skipped: list[dict], label_key: str | None = None) -> Source:
    items: list[SourceItem] = []
    names: list[str | None] = []
    key = check_label_key(label_key)
    tars = _tar_files(root)
    if not tars:
        raise GenaugError(f"{root} holds no .tar files: use --layout imagefolder or flat for image folders")
    for tpath in tars:
        try:
            with tarfile.open(tpath, "r:") as tf:
                for skey, fields, error in _tar_samples(tf):
                    ref = f"{tpath}:{skey}"
                    img = next((fields[f] for f in TAR_IMAGE_FIELDS if f in fields), None)
                    name = None
                    if error is not None:
                        items.append(
                            SourceItem(
                                ref=ref,
                                tar=str(tpath),
                                member=img and img.name,
                                offset=img and img.offset,
                                error=error,
                            )
                        )
                        names.append(None)
                        continue
                    if img is None:
                        skipped.append({"source": ref, "error": "sample has no image field"})
                        continue
                    label = None
                    if key is None:
                        if "cls" in fields:
                            label, error = parse_cls(_read_member(tf, fields["cls"], _CLS_MAX_BYTES))
                    elif key[0] in fields:
                        value, error = _label_value(_read_member(tf, fields[key[0]], LABEL_MAX_BYTES), key[1])
                        label, name = (value, None) if isinstance(value, int) else (None, value)
                    else:
                        error = f"sample has no {key[0]!r} field (--label-key {label_key})"
                    txt = fields.get("txt")
                    items.append(
                        SourceItem(
                            ref=ref,
                            label=label,
                            tar=str(tpath),
                            member=img.name,
                            offset=img.offset,
                            error=error,
                            text_member=txt.name if txt is not None else None,
                            text_offset=txt.offset if txt is not None else None,
                        )
                    )
                    names.append(name)
        except (tarfile.TarError, OSError) as e:
            skipped.append({"source": str(tpath), "error": f"unreadable tar ({type(e).__name__}: {e})"})
    items, classes = name_labels(items, names)
    src = Source("wds", root, classes, items, skipped)
    if label_key is not None:
        src.identity["label_key"] = label_key
        src.info["label_key"] = label_key
    return src


def detect_layout(root: Path) -> str:
    """Guess the layout: tars -> wds (img2dataset's parquet beside them is not the data); a `datasets` folder or
    parquet -> hf; class sub-folders and no images on top -> imagefolder; else flat."""
    from genaug.ingest.hf import is_hf_source

    if root.is_file():
        return "wds" if root.suffix == ".tar" else "hf"
    entries = list(os.scandir(root))
    has_tars = any(e.name.endswith(".tar") and e.is_file() for e in entries)
    has_images = any(is_image_name(e.name) for e in entries if not e.is_dir())
    has_dirs = any(e.is_dir() for e in entries)
    if has_tars and not has_images:
        return "wds"
    if is_hf_source(root) and not has_images:
        return "hf"
    if has_dirs and not has_images:
        return "imagefolder"
    return "flat"


def enumerate_source(
    source: str | os.PathLike,
    layout: str = "auto",
    label_key: str | None = None,
    hf: HFOptions | None = None,
    progress: bool = False,
    split: str = "train",
) -> Source:
    """Enumerate a source in a stable order; the layout is guessed when `auto`.

    A source that is not a path is a Hugging Face hub name when `layout` is `hf`."""
    from genaug.ingest.hf import HFOptions, scan_hf

    root = Path(source)
    hf = hf or HFOptions()
    if layout not in LAYOUTS:
        raise GenaugError(f"--layout {layout!r} is unknown: choose one of {', '.join(LAYOUTS)}")
    if label_key is not None and layout not in ("auto", "wds"):
        raise GenaugError(f"--label-key reads labels of WebDataset tars: it does not apply to --layout {layout}")
    if layout == "hf" and not root.exists():
        return scan_hf(str(source), hf, progress, split)  # a hub name (online only)
    if not root.exists():
        raise GenaugError(
            f"source {root} does not exist: give an image folder, a class-folder tree, WebDataset tars, a `datasets` "
            "folder or parquet (a Hugging Face hub name needs --layout hf)"
        )
    if not root.is_dir() and not (root.is_file() and root.suffix in (".tar", ".parquet")):
        raise GenaugError(f"source {root} is neither a folder nor a .tar or .parquet file")
    if layout == "auto":
        layout = detect_layout(root)
    if layout != "hf" and hf.given():
        raise GenaugError(
            f"{hf.given()[0]} applies to Hugging Face datasets, but {root} is read as --layout {layout}: "
            "pass --layout hf if it is a `datasets` folder or parquet"
        )
    if layout != "wds" and label_key is not None:
        raise GenaugError(f"--label-key reads labels of WebDataset tars, but {root} is read as --layout {layout}")
    if layout == "hf":  # a save_to_disk folder, or parquet files at any depth (hf.py says which is missing)
        return scan_hf(str(root), hf, progress, split)
    skipped: list[dict] = []
    if layout == "wds":
        src = _wds(root, skipped, label_key)
    else:
        src = {"imagefolder": _imagefolder, "flat": _flat}[layout](root, skipped)
    if not src.items:
        raise GenaugError(
            f"source {root} ({layout} layout) holds no images with extensions {', '.join(IMG_EXTENSIONS)}"
        )
    return src
